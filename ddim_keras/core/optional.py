"""Optional packages: whether TensorFlow (and TFDS), or a Keras backend, can be imported here.

``pip install ddim_keras[tensorflow]`` brings TensorFlow, TensorFlow Datasets
and TensorBoard. Without them the package still trains on ``shapes`` and
``folder`` (through :mod:`ddim_keras.data.numpy_pipeline`) on the JAX or PyTorch backend;
the TFDS sources and TensorBoard summaries need them. Pure Python: asking
imports nothing (``importlib.util.find_spec`` only looks for the package).
"""

import importlib.util

#: The command that installs TensorFlow, TensorFlow Datasets and TensorBoard.
TENSORFLOW_EXTRA = "pip install 'ddim_keras[tensorflow]'"


def tensorflow_installed():
    """True if ``import tensorflow`` can find TensorFlow (without importing it)."""
    return installed("tensorflow")


def tfds_installed():
    """True if TensorFlow and TensorFlow Datasets are both installed."""
    return tensorflow_installed() and installed("tensorflow_datasets")


def installed(name):
    """True if package ``name`` can be imported here (without importing it)."""
    try:
        # None also when sys.modules[name] is None, the standard way to block an import.
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a module whose __spec__ is missing
        return False
