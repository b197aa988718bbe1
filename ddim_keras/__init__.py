"""ddim_keras: denoising diffusion models (DDIM and DDPM sampling) in Keras 3.

A packaged, faithful port of the keras.io example "Denoising Diffusion
Implicit Models" (András Béres). Public names::

    from ddim_keras import DiffusionConfig, DiffusionModel, preset, callbacks
"""

import os

from ddim_keras import optional

#: The package name under which its Keras classes are registered ("ddim_keras>...").
PACKAGE = "ddim_keras"

#: Keras backends in the order of preference when KERAS_BACKEND is not set.
BACKENDS = ("tensorflow", "jax", "torch")

if "KERAS_BACKEND" not in os.environ:
    # The example's backend, TensorFlow, where it is installed; otherwise the first
    # installed of the others, so a machine without TensorFlow works unconfigured.
    installed = [name for name in BACKENDS if optional.installed(name)]
    os.environ["KERAS_BACKEND"] = installed[0] if installed else "tensorflow"

#: XLA:CPU hands dots, convolutions and element-wise work to the YNNPACK library with
#: this flag. The default config's JAX train step on the 2-core development CPU:
#: 4.3 s -> 2.3 s. The flag is experimental and XLA aborts at start-up on flags it does
#: not know, so it is set only for the jaxlib releases it was tested with.
XLA_CPU_LIBRARY_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
XLA_CPU_LIBRARY_FUSIONS = "dot,eltwise,reduce"
XLA_CPU_LIBRARY_JAXLIBS = ((0, 10, 2), (0, 11, 0))  # from, up to (excluded)


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

    JAX reads XLA_FLAGS when it starts its CPU backend, so this runs on ``import
    ddim_keras`` (a program that ran JAX computations before that import keeps XLA's
    defaults). It only concerns XLA on CPUs (GPUs and TPUs ignore it). To switch it off:
    ``XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=-dot,-eltwise,-reduce``.
    """
    flags = environ.get("XLA_FLAGS", "")
    if XLA_CPU_LIBRARY_FLAG in flags or not jaxlib_takes_xla_cpu_library_flag():
        return
    environ["XLA_FLAGS"] = f"{flags} {XLA_CPU_LIBRARY_FLAG}={XLA_CPU_LIBRARY_FUSIONS}".strip()


use_xla_cpu_libraries()

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
