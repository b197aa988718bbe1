"""The machine a command runs on: its CPU and GPUs, and the precision they compute in.

- :func:`machine_description` (recorded with runs and results) names the CPU
  and the GPUs the active Keras backend sees.
- :func:`resolve_precision_name` turns ``--mixed-precision`` into a precision
  (float32, bfloat16, float16); :data:`POLICIES` maps it to a Keras dtype policy.

Backends are imported only inside the functions that ask them.
"""

import os

PRECISIONS = ("off", "float16", "bfloat16", "auto")


def cpu_has_bfloat16(cpuinfo="/proc/cpuinfo"):
    """True when the CPU has native bfloat16 dot products (AVX512_BF16 or AMX-BF16)."""
    try:
        with open(cpuinfo, encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


#: Keras dtype policy of each precision.
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def resolve_precision_name(value, tpu=False, cpuinfo="/proc/cpuinfo"):
    """The precision of ``--mixed-precision VALUE``: "float32", "bfloat16" or "float16".

    Shared by train, generate and benchmark. ``auto`` is bfloat16 on a TPU
    (``tpu=True``), float16 when a GPU is visible, bfloat16 on a CPU with
    native bfloat16 instructions (on the development CPU, at the default
    config, training measured 1.5x and sampling 1.7x faster than float32; see the
    docs' "Speed and multiple devices"), and float32 otherwise (emulated bfloat16 is slower). Only
    physical devices are listed, so this may run before a strategy is made.
    """
    if value == "off":
        return "float32"
    if value in ("float16", "bfloat16"):
        return value
    if tpu:
        return "bfloat16"
    if _has_gpu():
        return "float16"
    return "bfloat16" if cpu_has_bfloat16(cpuinfo) else "float32"


def _has_gpu():
    return bool(gpu_names())


def xla_rejects_mixed_precision(jit_compile, precision, tpu=False):
    """True where XLA cannot compile a mixed-precision train step: CPU-only machines.

    TensorFlow 2.21's XLA for CPU refuses the gradient graph of a float16 or
    bfloat16 network ("Seen floating point types of different precisions ...
    but mixed precision is disallowed"); XLA is slower on CPU anyway.
    """
    import keras

    if jit_compile is not True or precision == "float32" or tpu:
        return False
    return keras.backend.backend() == "tensorflow" and not _has_gpu()


def cpu_description():
    """CPU model and the cores this process may use, e.g. 'AMD EPYC 9B14 (2 cores)'."""
    import platform

    name = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    name = name or platform.processor() or platform.machine() or "unknown CPU"
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return f"{name} ({cores} cores)"


def gpu_names():
    """Names of the GPUs the active Keras backend sees (empty without GPU support)."""
    try:
        import keras

        backend = keras.backend.backend()
        if backend == "jax":
            import jax

            return [device.device_kind for device in jax.devices() if device.platform == "gpu"]
        if backend == "torch":
            import torch

            return [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())]
        import tensorflow as tf

        names = []
        for device in tf.config.list_physical_devices("GPU"):
            details = tf.config.experimental.get_device_details(device)
            names.append(details.get("device_name", device.name))
        return names
    except Exception:  # noqa: BLE001 - a description is best effort
        return []


def machine_description():
    """'CPU model (N cores); GPU names or no GPU', recorded with runs and results."""
    gpus = gpu_names()
    return f"{cpu_description()}; {', '.join(gpus) if gpus else 'no GPU'}"
