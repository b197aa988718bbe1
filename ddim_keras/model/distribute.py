"""Devices and strategies for ``python -m ddim_keras.train``.

- :func:`make_strategy` turns ``--strategy`` into the backend's way to use
  several devices: a ``tf.distribute`` strategy on TensorFlow,
  ``keras.distribution.DataParallel`` on JAX, and one device on PyTorch.
- :func:`is_chief` / :func:`task_from_tf_config` read ``TF_CONFIG`` (without
  importing TensorFlow) to decide which multi-worker process writes the run
  directory: the chief, or worker 0 when the cluster names no chief.

Under any strategy ``config.batch_size`` is the GLOBAL batch: Keras' ``fit``
splits each batch of the dataset across the replicas (TensorFlow) or shards it
over the devices (JAX), and an update equals one-device training on the same
global batch (each replica differentiates its share's summed loss and the
all-reduce sums them).
"""

import json
import os

from ddim_keras.core.errors import UsageError

STRATEGIES = ("auto", "one-device", "mirrored", "multi-worker", "tpu")


JIT_CHOICES = ("auto", "true", "false")


def parse_jit_compile(value):
    """``--jit-compile`` as ``model.compile`` takes it: "auto", True or False."""
    return {"auto": "auto", "true": True, "false": False}[value]


def task_from_tf_config(environ=None):
    """(task type, task index, cluster dict) from ``TF_CONFIG``; (None, 0, {}) without it."""
    environ = os.environ if environ is None else environ
    raw = environ.get("TF_CONFIG")
    if not raw:
        return None, 0, {}
    try:
        tf_config = json.loads(raw)
    except ValueError as error:
        raise UsageError(f"TF_CONFIG is not valid JSON ({error}).") from None
    task = tf_config.get("task") or {}
    return task.get("type"), int(task.get("index", 0)), tf_config.get("cluster") or {}


def is_chief(environ=None):
    """True for the process that writes checkpoints and logs of a multi-worker run.

    That is the ``chief`` task, or ``worker`` 0 when the cluster has no chief;
    a process without ``TF_CONFIG`` is its own chief.
    """
    environ = os.environ if environ is None else environ
    if _backend_name() == "jax":
        # JAX's processes are numbered by JAX_PROCESS_ID (see _jax_placement).
        return int(environ.get("JAX_PROCESS_ID", "0") or 0) == 0
    task_type, task_index, cluster = task_from_tf_config(environ)
    if task_type is None:
        return True
    if task_type == "chief":
        return True
    return task_type == "worker" and task_index == 0 and "chief" not in cluster


def check_strategy_args(strategy, devices=None, environ=None):
    """Usage errors that need no TensorFlow: a missing TF_CONFIG, --devices misuse."""
    environ = os.environ if environ is None else environ
    if strategy == "multi-worker" and _backend_name() == "jax":
        missing = [name for name in JAX_PROCESS_VARIABLES if not environ.get(name)]
        if missing:
            raise UsageError(
                f"--strategy multi-worker under JAX needs {', '.join(missing)} in the "
                "environment (the coordinator's host:port, the number of processes and this "
                "process's index, as jax.distributed.initialize takes them); see the docs' "
                "'Speed and multiple devices'."
            )
    elif strategy == "multi-worker" and not environ.get("TF_CONFIG"):
        raise UsageError(
            "--strategy multi-worker needs the TF_CONFIG environment variable (the cluster's "
            "worker addresses and this process's task); see the docs' 'Speed and multiple devices'."
        )
    if strategy == "multi-worker" and _backend_name() == "tensorflow":
        task_from_tf_config(environ)  # valid JSON
    if devices and strategy != "mirrored":
        raise UsageError("--devices is only used with --strategy mirrored.")


class DataParallelPlacement:
    """JAX's or PyTorch's answer to ``--strategy``, shaped like a ``tf.distribute`` strategy.

    ``num_replicas_in_sync`` devices share each global batch; ``scope()`` is
    where the model is built. On JAX with several devices the
    ``keras.distribution.DataParallel`` distribution is set globally (Keras
    then shards every batch and replicates the weights); PyTorch is always
    one device.
    """

    def __init__(self, description, devices=1):
        self.description = description
        self.num_replicas_in_sync = devices

    def scope(self):
        import contextlib

        return contextlib.nullcontext()

    def __repr__(self):
        return self.description


def make_strategy(name, devices=None):
    """The device placement for ``--strategy NAME`` on the active Keras backend.

    TensorFlow: a ``tf.distribute.Strategy``, see :func:`make_tf_strategy`.
    JAX: ``keras.distribution.DataParallel`` over the local devices (``auto``
    when there are several, ``mirrored`` over all or ``--devices``), or over
    every process's devices for ``multi-worker`` after
    ``jax.distributed.initialize()`` (one process per host, coordinator from
    JAX's environment variables; see the docs' "Speed and multiple devices").
    PyTorch: one device; strategies that need several are refused.
    """
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        return _jax_placement(name, devices)
    if backend == "torch":
        return _torch_placement(name)
    return make_tf_strategy(name, devices)


#: What ``--strategy multi-worker`` reads under JAX, one process per host.
JAX_PROCESS_VARIABLES = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def _backend_name():
    # Without importing Keras when the variable says it (checks run before imports).
    name = os.environ.get("KERAS_BACKEND")
    if name:
        return name
    import keras

    return keras.backend.backend()


def _jax_placement(name, devices):
    import jax
    import keras

    if name == "multi-worker":
        address, processes, process = (os.environ[v] for v in JAX_PROCESS_VARIABLES)
        jax.distributed.initialize(
            coordinator_address=address, num_processes=int(processes), process_id=int(process)
        )
    if name == "one-device":
        return DataParallelPlacement("one device")
    chosen = jax.devices()
    if devices:
        by_name = {_short_device(f"{d.platform}:{d.id}"): d for d in jax.devices()}
        unknown = [d for d in devices if _short_device(d) not in by_name]
        if unknown:
            raise UsageError(
                f"--devices names {', '.join(unknown)}, which JAX does not see here (it has "
                f"{', '.join(sorted(by_name))}). Name devices such as gpu:0,gpu:1."
            )
        chosen = [by_name[_short_device(d)] for d in devices]
    if name == "auto" and len(chosen) == 1:
        return DataParallelPlacement("one device")
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=chosen))
    return DataParallelPlacement(
        f"keras.distribution.DataParallel over {len(chosen)} JAX devices", len(chosen)
    )


def _torch_placement(name):
    if name in ("auto", "one-device"):
        return DataParallelPlacement("one device")
    raise UsageError(
        f"--strategy {name} needs several devices, and this package trains on one device "
        "under the PyTorch backend. Use --strategy auto (one GPU), or KERAS_BACKEND=jax "
        "(keras.distribution) or tensorflow (tf.distribute) for several."
    )


def make_tf_strategy(name, devices=None):
    """A ``tf.distribute.Strategy`` for ``--strategy NAME``.

    - ``auto``: MirroredStrategy over the local GPUs when there are several,
      otherwise TensorFlow's default strategy (one device).
    - ``one-device``: the default strategy.
    - ``mirrored``: MirroredStrategy over ``devices`` (e.g. ["/gpu:0", "/gpu:1"]),
      by default every local GPU (the CPU when there is none).
    - ``multi-worker``: MultiWorkerMirroredStrategy, cluster from ``TF_CONFIG``.
    - ``tpu``: TPUStrategy; the TPU from ``TPU_NAME`` (empty: the local/Colab TPU).
    """
    import tensorflow as tf

    if name == "auto":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if name == "one-device":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if devices:
            devices = list(devices)
            _split_cpu_for(devices)
            known = {_short_device(device.name) for device in tf.config.list_logical_devices()}
            unknown = [d for d in devices if _short_device(d) not in known]
            if unknown:
                have = ", ".join("/" + name for name in sorted(known))
                raise UsageError(
                    f"--devices names {', '.join(unknown)}, which this machine does not have "
                    f"(it has {have}). Name local devices such as /gpu:0,/gpu:1, or "
                    "/cpu:0,/cpu:1 to try mirroring on one CPU."
                )
        return tf.distribute.MirroredStrategy(devices=devices or None)
    if name == "multi-worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
            tpu=os.environ.get("TPU_NAME", "")
        )
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise UsageError(f"unknown --strategy {name!r}; choose one of {', '.join(STRATEGIES)}.")


def _short_device(name):
    """'/cpu:1', '/device:CPU:1' or '/job:localhost/.../device:CPU:1' -> 'cpu:1'."""
    return ":".join(name.strip().lower().split("/")[-1].split(":")[-2:])


def _split_cpu_for(devices):
    """Make as many logical CPU devices as ``devices`` names (/cpu:0, /cpu:1, ...).

    A MirroredStrategy over /cpu:0,/cpu:1 on one physical CPU runs the real
    multi-replica code path (split batches, all-reduce, gathered KID) without
    GPUs: useful to check a setup on a laptop before renting several GPUs. It
    must happen before TensorFlow has initialized its devices.
    """
    import tensorflow as tf

    indices = []
    for device in devices:
        kind, _, index = _short_device(device).partition(":")
        if kind == "cpu" and index.isdigit():
            indices.append(int(index))
    if not indices:
        return
    needed = max(indices) + 1
    if needed == 1:
        return
    # Listing logical devices would initialize them: ask the configuration instead.
    cpu = tf.config.list_physical_devices("CPU")[0]
    configured = tf.config.get_logical_device_configuration(cpu) or []
    if len(configured) >= needed:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(needed)]
        )
    except RuntimeError:
        if len(tf.config.list_logical_devices("CPU")) >= needed:
            return
        raise UsageError(
            f"--devices asks for {needed} CPU devices, but TensorFlow had already set up its "
            "devices in this process; run the command in a fresh Python process."
        ) from None


def describe_placement(strategy, batch_size):
    """The line ``train`` prints before it trains: the devices, the backend, the batch split.

    Names the GPUs the backend sees, or the CPU when it sees none (so a GPU
    setup that failed to load shows here), e.g. "Training on the CPU (AMD EPYC
    9B14, 2 cores) with TensorFlow." or "Training on 2 replicas of NVIDIA H100
    80GB HBM3 with TensorFlow (MirroredStrategy); global batch 64, 32 per replica."
    """
    import keras

    from ddim_keras.core.backend import BACKEND_LABELS
    from ddim_keras.core.devices import cpu_description, gpu_names

    backend = keras.backend.backend()
    gpus = gpu_names()
    replicas = strategy.num_replicas_in_sync
    if not gpus:
        where = f"the CPU ({cpu_description()})"
    elif len(set(gpus)) == 1 and replicas > 1:
        where = gpus[0]
    else:
        where = ", ".join(gpus)
    line = f"Training on {f'{replicas} replicas of ' if replicas > 1 else ''}{where} with "
    line += BACKEND_LABELS.get(backend, backend)
    if replicas == 1:
        return line + "."
    kind = type(strategy).__name__ if backend == "tensorflow" else repr(strategy)
    return f"{line} ({kind}); global batch {batch_size}, {batch_size // replicas} per replica."
