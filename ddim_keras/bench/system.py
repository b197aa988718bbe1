"""What the benchmark ran on and what else ran meanwhile: backend, device, versions,
how the train step is compiled, peak memory, and other processes' share of the CPU.

Descriptions and readings of the machine, apart from the measurements themselves,
so that a single run and the backend comparison describe it the same way.
"""

import os
import platform
import resource
import sys
import time

from ddim_keras.core.devices import cpu_description, gpu_names


def active_backend():
    """The Keras backend this process runs: "tensorflow", "jax" or "torch"."""
    import keras

    return keras.backend.backend()


def device_description():
    gpus = gpu_names()  # the active backend's: jax.devices(), torch.cuda or TensorFlow's
    return f"GPU: {', '.join(gpus)}" if gpus else f"CPU: {cpu_description()}"


def backend_versions():
    """Python's, Keras' and the active backend's versions (JAX: jaxlib's too)."""
    import keras

    backend = active_backend()
    versions = {"python": platform.python_version(), "keras": keras.__version__}
    if backend == "jax":
        import jax
        import jaxlib

        versions["jax"] = jax.__version__
        versions["jaxlib"] = jaxlib.__version__
    elif backend == "torch":
        import torch

        versions["torch"] = torch.__version__
    else:
        import tensorflow as tf

        versions["tensorflow"] = tf.__version__
    return versions


def compiler_description(backend, jit_compile):
    """How the train step is compiled, in words: XLA, tf.function graph, torch.compile, eager."""
    if backend == "jax":
        # Keras jits JAX's train step unless jit_compile is False (then it runs op by op).
        if not jit_compile:
            return "eager JAX ops (no jit)"
        import jax

        from ddim_keras.core.backend import xla_cpu_libraries_set

        # On CPUs the flag the commands set on JAX moves XLA's kernels to YNNPACK.
        ynnpack = jax.default_backend() == "cpu" and xla_cpu_libraries_set()
        return "XLA (jax.jit)" + (", YNNPACK on CPU" if ynnpack else "")
    if backend == "torch":
        return "torch.compile" if jit_compile else "eager PyTorch"
    return "XLA" if jit_compile else "tf.function graph, XLA off"


def accelerator_peak_mb():
    """The backend's peak memory on its first GPU so far, in MiB (None on a CPU)."""
    if not gpu_names():
        return None
    backend = active_backend()
    try:
        if backend == "jax":
            import jax

            stats = jax.devices()[0].memory_stats() or {}
            peak = stats.get("peak_bytes_in_use")
        elif backend == "torch":
            import torch

            peak = torch.cuda.max_memory_allocated()
        else:
            import tensorflow as tf

            peak = tf.config.experimental.get_memory_info("GPU:0")["peak"]
    except Exception:  # noqa: BLE001 - best effort: not every runtime reports it
        return None
    return None if peak is None else peak / (1024.0 * 1024.0)


def peak_rss_mb():
    """Peak resident set size of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def _system_cpu_seconds():
    """(busy, steal) CPU seconds of the whole machine since boot, from /proc/stat."""
    try:
        with open("/proc/stat", encoding="utf-8") as handle:
            fields = [int(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / ticks, steal / ticks


class CpuShare:
    """How much CPU other processes (and the hypervisor) took while we measured.

    The machine's busy time minus this process's CPU time, as a share of all
    cores over the wall time: near 0 on an idle machine, and up to
    ``(cores - 1) / cores`` when another process kept every other core busy.
    """

    def __init__(self):
        self.started = time.perf_counter()
        self.system = _system_cpu_seconds()
        # This process's CPU time and that of its children (--backends runs them).
        self.own = sum(os.times()[:4])
        self.load = load_average()

    def result(self):
        wall = time.perf_counter() - self.started
        system = _system_cpu_seconds()
        result = {
            "load_average_1min_start": self.load,
            "load_average_1min_end": load_average(),
            "wall_s": wall,
        }
        if self.system is not None and system is not None and wall > 0:
            try:
                cores = len(os.sched_getaffinity(0))
            except AttributeError:
                cores = os.cpu_count() or 1
            own = sum(os.times()[:4]) - self.own
            others = max(0.0, system[0] - self.system[0] - own)
            result["other_processes_cpu_share"] = others / (wall * cores)
            result["steal_share"] = (system[1] - self.system[1]) / (wall * cores)
        return result


def load_average():
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None
