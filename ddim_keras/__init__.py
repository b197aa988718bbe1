"""ddim_keras: denoising diffusion models (DDIM and DDPM sampling) in Keras 3.

A packaged, faithful port of the keras.io example "Denoising Diffusion
Implicit Models" (András Béres). Public names::

    from ddim_keras import DiffusionConfig, DiffusionModel, preset, callbacks
"""

import os

# The package is written for the TensorFlow backend (tf.data, tf.distribute).
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

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
