"""Which Keras backend runs, and the XLA:CPU flag that makes JAX fast on CPUs.

Keras chooses its backend by its own rules: ``KERAS_BACKEND``, else the
``backend`` of its ``keras.json`` (in ``KERAS_HOME``, else ``~/.keras``), else
TensorFlow. ``import ddim_keras`` keeps to them and changes nothing, with one
exception (:func:`choose_backend`): when no ``KERAS_BACKEND`` is set and the
backend Keras would choose is not installed (e.g. a machine with JAX or
PyTorch only, where ``import keras`` would fail on the missing TensorFlow), it
sets ``KERAS_BACKEND`` to the first installed of :data:`BACKENDS`.

The YNNPACK flag of XLA:CPU (:func:`use_xla_cpu_libraries`) is never set on
import: the commands set it for themselves when they run on JAX
(:func:`prepare_command_backend`), and a program of your own may call
:func:`use_xla_cpu_libraries` before its first JAX computation.

Plain Python: nothing here imports Keras or a backend.
"""

import json
import os
import sys

from ddim_keras.core.optional import installed

#: Keras backends in the order of preference when one has to be picked.
BACKENDS = ("tensorflow", "jax", "torch")
#: How each backend's name is printed.
BACKEND_LABELS = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}

#: XLA:CPU hands dots, convolutions and element-wise work to the YNNPACK library with
#: this flag. The default config's JAX train step on the 2-core development CPU:
#: 4.3 s -> 2.3 s. The flag is experimental and XLA aborts at start-up on flags it does
#: not know, so it is set only for the jaxlib releases it was tested with.
XLA_CPU_LIBRARY_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
XLA_CPU_LIBRARY_FUSIONS = "dot,eltwise,reduce"
XLA_CPU_LIBRARY_JAXLIBS = ((0, 10, 2), (0, 11, 0))  # from, up to (excluded)


def keras_config_path(environ=os.environ):
    """Where Keras reads its ``keras.json``: ``$KERAS_HOME``, else ``~/.keras`` (or
    ``/tmp/.keras`` when the home folder is not writable), as Keras itself decides."""
    folder = environ.get("KERAS_HOME")
    if folder is None:
        home = os.path.expanduser("~")
        folder = os.path.join(home if os.access(home, os.W_OK) else "/tmp", ".keras")
    return os.path.join(os.path.expanduser(folder), "keras.json")


def configured_backend(environ=os.environ):
    """The backend Keras will run on, by Keras' rules, without importing Keras."""
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "backend"):
        return keras.backend.backend()
    if environ.get("KERAS_BACKEND"):
        return environ["KERAS_BACKEND"]
    try:
        with open(keras_config_path(environ), encoding="utf-8") as handle:
            backend = json.load(handle).get("backend")
    except (OSError, ValueError, AttributeError):  # no file, not JSON, not an object
        backend = None
    return backend or "tensorflow"


def choose_backend(environ=os.environ):
    """Set ``KERAS_BACKEND`` only where Keras' own choice cannot work; returns the backend.

    Nothing changes when Keras is already imported, when ``KERAS_BACKEND`` is set,
    or when the backend of ``keras.json`` (or Keras' default, TensorFlow) is
    installed. Otherwise the first installed of :data:`BACKENDS` is set.
    """
    backend = configured_backend(environ)
    if "keras" in sys.modules or environ.get("KERAS_BACKEND") or installed(backend):
        return backend
    for candidate in BACKENDS:
        if installed(candidate):
            environ["KERAS_BACKEND"] = candidate
            return candidate
    return backend  # none installed: Keras says what to install


def _jaxlib_version():
    from importlib import metadata

    try:
        text = metadata.version("jaxlib")
    except metadata.PackageNotFoundError:
        return None
    parts = []
    for part in text.split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def jaxlib_takes_xla_cpu_library_flag(version=None):
    """Whether the installed jaxlib (or ``version``) is one the YNNPACK flag is set for."""
    version = _jaxlib_version() if version is None else version
    low, high = XLA_CPU_LIBRARY_JAXLIBS
    return version is not None and low <= version < high


def xla_cpu_libraries_set(environ=os.environ):
    """Whether XLA_FLAGS holds the YNNPACK flag as :func:`use_xla_cpu_libraries` sets it."""
    setting = f"{XLA_CPU_LIBRARY_FLAG}={XLA_CPU_LIBRARY_FUSIONS}"
    return setting in environ.get("XLA_FLAGS", "").split()


def use_xla_cpu_libraries(environ=os.environ):
    """Add the YNNPACK flag to XLA_FLAGS, unless the user set that flag or jaxlib is another.

    JAX reads XLA_FLAGS when it starts its CPU backend, so call this before the
    first JAX computation; it concerns XLA on CPUs only (GPUs and TPUs ignore
    it). The commands call it themselves on the JAX backend. To switch it off:
    ``XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=-dot,-eltwise,-reduce``.
    """
    flags = environ.get("XLA_FLAGS", "")
    if XLA_CPU_LIBRARY_FLAG in flags or not jaxlib_takes_xla_cpu_library_flag():
        return
    environ["XLA_FLAGS"] = f"{flags} {XLA_CPU_LIBRARY_FLAG}={XLA_CPU_LIBRARY_FUSIONS}".strip()
    _added_to.append(environ)


#: The environments :func:`use_xla_cpu_libraries` added the flag to (this process's).
_added_to = []


def child_environment(environ=os.environ, **changes):
    """A copy of ``environ`` for a child process, with ``changes``, without the flag
    :func:`use_xla_cpu_libraries` added to it: the flag was set for this process, and a
    child on TensorFlow would read it too (its XLA aborts on flags it does not know).
    A child command on JAX sets it again for itself.
    """
    env = dict(environ, **changes)
    if any(added is environ for added in _added_to):
        setting = f"{XLA_CPU_LIBRARY_FLAG}={XLA_CPU_LIBRARY_FUSIONS}"
        flags = [flag for flag in env.get("XLA_FLAGS", "").split() if flag != setting]
        if flags:
            env["XLA_FLAGS"] = " ".join(flags)
        else:
            env.pop("XLA_FLAGS", None)
    return env


def prepare_command_backend(environ=os.environ):
    """What a command does before its work: the backend by :func:`choose_backend`, and
    on JAX the YNNPACK flag (for this process: JAX reads it when it starts)."""
    backend = choose_backend(environ)
    if backend == "jax":
        use_xla_cpu_libraries(environ)
    return backend
