"""ddim_keras: denoising diffusion models (DDIM and DDPM sampling) in Keras 3.

A packaged, faithful port of the keras.io example "Denoising Diffusion
Implicit Models" (András Béres). Public names::

    from ddim_keras import DiffusionConfig, DiffusionModel, preset, callbacks

The parts, lowest first (each imports only its own and the ones before it):
``core`` (configs, schedules, checks, errors), ``sampling`` (step rules,
spacings, the compiled loop), ``data`` (sources and pipelines), ``metrics``
(KID, the shapes classifier), ``model`` (network, DiffusionModel, training
steps), ``io`` (run directories, loading, files), ``callbacks``, ``bench`` (the
benchmark), and the commands in ``cli`` (``python -m ddim_keras.train`` and the
others).

Importing the package changes nothing in the process, except where Keras could
not start otherwise: see :func:`ddim_keras.core.backend.choose_backend`.
"""

from ddim_keras.core import backend as _backend
from ddim_keras.core.backend import BACKENDS, use_xla_cpu_libraries
from ddim_keras.core.config import PRESETS, DiffusionConfig, preset

_backend.choose_backend()

__version__ = "0.1.0"

__all__ = [
    "DiffusionConfig",
    "DiffusionModel",
    "PRESETS",
    "preset",
    "callbacks",
    "BACKENDS",
    "use_xla_cpu_libraries",
    "__version__",
]


def __getattr__(name):
    # Keras and TensorFlow load on first use, so `--help` and config checks stay fast.
    if name == "DiffusionModel":
        from ddim_keras.model.diffusion_model import DiffusionModel

        return DiffusionModel
    if name == "callbacks":
        import importlib

        return importlib.import_module("ddim_keras.callbacks")
    raise AttributeError(f"module 'ddim_keras' has no attribute {name!r}")
