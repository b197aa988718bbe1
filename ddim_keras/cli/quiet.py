"""Keep TensorFlow's and Keras' internal chatter off the terminal (issue #12).

Every command calls :func:`quiet_tensorflow` first (through ``runner.run_cli``),
before TensorFlow is imported; ``--debug`` skips it and shows everything. Pure
Python: importing this module does not import TensorFlow, and TensorFlow still
loads lazily, only in the commands that need it.

What silences what (TensorFlow 2.21, measured):

* ``TF_CPP_MIN_LOG_LEVEL=3`` hides the C++ logs written once logging is set
  up: ``E0000 ... cuda_platform.cc] failed call to cuInit`` at the first device
  use, ``cpu_feature_guard.cc`` "This TensorFlow binary is optimized ...".
* The lines written while ``import tensorflow`` runs, before absl logging is
  initialised ("WARNING: All log messages before absl::InitializeLog() ...",
  ``I0000 ... port.cc] oneDNN custom operations are on``, ``cudart_stub.cc]
  Could not find cuda drivers``), ignore every environment variable
  (TF_CPP_MIN_LOG_LEVEL, GLOG_minloglevel, ABSL_*, GRPC_VERBOSITY); only
  pointing file descriptor 2 elsewhere while that import runs hides them. An
  import hook does that around the first ``import tensorflow`` (whoever makes
  it: keras, tensorflow_datasets, the package). It replays the error-level
  lines among them (``E0000 ... cuda_dnn.cc] Unable to ...``: a CUDA or cuDNN
  that failed to load), and everything it held back if the import fails.
* Python warnings filters hide Keras' warnings about how it was called, which
  do not concern the user; the ``tensorflow`` and ``absl`` Python loggers are
  set to ERROR once TensorFlow is loaded.

Warnings the package gives itself (skipped image files, a slow download, ...)
are not touched.

Without TensorFlow installed (``pip install ddim_keras`` with the JAX or PyTorch
backend only) there is nothing of TensorFlow's to hide: only the Keras warnings
filters are set. With TensorFlow installed, its import is quieted whatever the
Keras backend, because tf.data pipelines and TensorBoard still load it.
"""

import importlib.abc
import importlib.util
import logging
import os
import re
import sys
import tempfile
import warnings

from ddim_keras.core.optional import tensorflow_installed

#: Keras warnings (regexes matched at the start of the message) that are not
#: the user's business: fit() on a dataset of unknown length ends each epoch by
#: running out of data, and tf.data pipelines shuffle themselves.
KERAS_WARNINGS = (
    r"Your input ran out of data",
    r"`shuffle=True` was passed, but will be ignored",
)


def quiet_tensorflow(argv=None):
    """Hide TensorFlow's C++ logs and Keras' internal warnings unless ``--debug``.

    Call before TensorFlow is imported. Returns False (and changes nothing)
    when ``--debug`` is in ``argv`` (default ``sys.argv[1:]``), else True.
    An explicit ``TF_CPP_MIN_LOG_LEVEL`` in the environment is kept.
    """
    argv = sys.argv[1:] if argv is None else argv
    if "--debug" in argv:
        return False
    for message in KERAS_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    if not tensorflow_installed():
        return True
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if sys.modules.get("tensorflow") is not None:
        _quiet_python_loggers()
    elif not any(isinstance(finder, _QuietTensorFlowImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())
    return True


def _quiet_python_loggers():
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    absl_logging = sys.modules.get("absl.logging")
    if absl_logging is not None:  # created by absl itself (it sets its own logger class)
        absl_logging.set_verbosity(absl_logging.ERROR)


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` once, with a loader that runs the import with fd 2 held back."""

    _finding = False

    def find_spec(self, name, path=None, target=None):
        # Only a find, not yet an import: other packages look TensorFlow up without
        # importing it (PyTorch's dynamo does, under the torch backend), so the
        # finder stays in place until the import itself runs (see _QuietLoader).
        if name != "tensorflow" or self._finding:
            return None
        self._finding = True  # the finders after us do the finding
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._finding = False
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _QuietLoader(spec.loader, self)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader, finder):
        self._loader = loader
        self._finder = finder

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        if self._finder in sys.meta_path:
            sys.meta_path.remove(self._finder)  # one import only
        # The module gets its real loader back, for anyone who looks at it.
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        with _held_back_stderr():
            self._loader.exec_module(module)
        _quiet_python_loggers()

    def __getattr__(self, name):
        return getattr(self._loader, name)


#: An error- or fatal-level line of absl's log format (``E0000 00:00:...``).
ERROR_LINE = re.compile(r"[EF]\d{4} ")


class _held_back_stderr:
    """Point file descriptor 2 at a temporary file; replay its error lines afterwards,
    and all of it if the block raises."""

    def __enter__(self):
        self._saved = None
        try:
            sys.stderr.flush()
            self._file = tempfile.TemporaryFile()
            self._saved = os.dup(2)
            os.dup2(self._file.fileno(), 2)
        except (OSError, AttributeError, ValueError):  # no fd 2 (pythonw, a closed stream)
            self._restore()
        return self

    def __exit__(self, kind, error, traceback):
        if self._saved is None:
            return False
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        self._file.seek(0)
        held = self._file.read().decode("utf-8", "replace")
        if kind is None:
            # A successful import keeps only its error-level lines: CUDA or cuDNN that
            # failed to load would otherwise leave a GPU machine training on its CPU.
            held = "".join(
                line for line in held.splitlines(keepends=True) if ERROR_LINE.match(line)
            )
        self._restore()
        if held:
            sys.stderr.write(held)
            sys.stderr.flush()
        return False

    def _restore(self):
        if self._saved is not None:
            os.dup2(self._saved, 2)
            os.close(self._saved)
            self._saved = None
        file = getattr(self, "_file", None)
        if file is not None:
            file.close()
            self._file = None
