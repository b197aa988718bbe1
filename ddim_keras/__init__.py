"""ddim_keras: denoising diffusion models (DDIM and DDPM sampling) in Keras 3.

A packaged, faithful port of the keras.io example "Denoising Diffusion
Implicit Models" (András Béres). Public names::

    from ddim_keras import DiffusionConfig, DiffusionModel, preset, callbacks
"""

import importlib.util
import os

#: Keras backends in the order of preference when KERAS_BACKEND is not set.
BACKENDS = ("tensorflow", "jax", "torch")

if "KERAS_BACKEND" not in os.environ:
    # The example's backend, TensorFlow, where it is installed; otherwise the first
    # installed of the others, so a machine without TensorFlow works unconfigured.
    installed = [name for name in BACKENDS if importlib.util.find_spec(name) is not None]
    os.environ["KERAS_BACKEND"] = installed[0] if installed else "tensorflow"

from ddim_keras.config import PRESETS, DiffusionConfig, preset  # noqa: E402

__version__ = "0.1.0"

__all__ = ["DiffusionConfig", "DiffusionModel", "PRESETS", "preset", "callbacks", "__version__"]


def __getattr__(name):
    # Keras and TensorFlow load on first use, so `--help` and config checks stay fast.
    if name == "DiffusionModel":
        from ddim_keras.model import DiffusionModel

        return DiffusionModel
    if name == "callbacks":
        import importlib

        return importlib.import_module("ddim_keras.callbacks")
    raise AttributeError(f"module 'ddim_keras' has no attribute {name!r}")
