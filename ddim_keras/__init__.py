"""ddim_keras: denoising diffusion models (DDIM and DDPM sampling) in Keras 3.

A packaged, faithful port of the keras.io example "Denoising Diffusion
Implicit Models" (András Béres). Public names::

    from ddim_keras import DiffusionConfig, DiffusionModel, preset, callbacks
"""

import importlib.util
import os

#: The package name under which its Keras classes are registered ("ddim_keras>...").
PACKAGE = "ddim_keras"

#: Keras backends in the order of preference when KERAS_BACKEND is not set.
BACKENDS = ("tensorflow", "jax", "torch")

if "KERAS_BACKEND" not in os.environ:
    # The example's backend, TensorFlow, where it is installed; otherwise the first
    # installed of the others, so a machine without TensorFlow works unconfigured.
    installed = [name for name in BACKENDS if importlib.util.find_spec(name) is not None]
    os.environ["KERAS_BACKEND"] = installed[0] if installed else "tensorflow"

#: XLA:CPU hands dots, convolutions and element-wise work to the YNNPACK library with
#: this flag (jaxlib 0.10.2, where it was measured; older jaxlibs abort on unknown flags).
#: The default config's JAX train step on the 2-core development CPU: 4.3 s -> 2.4 s.
XLA_CPU_LIBRARY_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
XLA_CPU_LIBRARY_FUSIONS = "dot,eltwise,reduce"
XLA_CPU_LIBRARY_MIN_JAXLIB = (0, 10, 2)


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


def use_xla_cpu_libraries(environ=os.environ):
    """Add the YNNPACK flag to XLA_FLAGS, unless the user set that flag or jaxlib predates it.

    Read by JAX when it starts its CPU backend, so this runs on ``import ddim_keras``;
    it only concerns XLA on CPUs (GPUs and TPUs ignore it). To switch it off, set
    ``XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=-dot,-eltwise,-reduce``.
    """
    flags = environ.get("XLA_FLAGS", "")
    version = _jaxlib_version()
    if XLA_CPU_LIBRARY_FLAG in flags or version is None or version < XLA_CPU_LIBRARY_MIN_JAXLIB:
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
