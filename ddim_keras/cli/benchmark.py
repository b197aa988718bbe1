"""``python -m ddim_keras.benchmark``: training and sampling speed, memory and FLOPs.

Runs on the active Keras backend (``KERAS_BACKEND``: tensorflow, jax or torch);
TensorFlow is needed only for the TensorFlow backend.
Measures one config (a preset or a JSON file) on synthetic data of its shape
(uniform random images in [0, 1]; the normalizer is adapted on them), so it
needs no dataset and no download:

* training: the wall time of the first ``model.fit`` step (tracing and
  compilation included); then one ``model.fit`` call of a warm-up step and
  ``--train-steps`` timed steps, each timed from the end of the previous one
  by a callback (Keras reads the step's loss back before calling it, so each
  step has finished: images/s); then the same again with the callback run
  from Keras' callback threads (JAX and PyTorch; TensorFlow's loop calls it
  itself), which lets asynchronous dispatch (JAX, CUDA) queue the next steps
  while one runs (``pipelined_images_per_s``). Batches are one synthetic batch, repeated:
  a ``tf.data`` dataset on TensorFlow, an endless ``keras.utils.PyDataset`` of
  the NumPy batch on the other backends, so the input costs next to nothing;
* sampling: images/s (and image-steps/s) of the compiled sampler (one
  compiled while-loop, after one warm-up call) and of the example's
  step-by-step Python loop, which calls the network eagerly once per step
  (after a one-step warm-up), on the same noise and steps, each timed
  ``--repeats`` times in turns (the median counts); their ratio, and the
  largest difference between their outputs;
  then the compiled sampler once more in reduced precision (``--mixed-precision``,
  by default generate's ``auto`` choice: bfloat16 on a CPU with native
  bfloat16, float16 on a GPU), its speed against both, and how far its output
  is from the float32 sampler's;
* data: images/s that the folder pipeline (``--dataset folder``) decodes and
  preprocesses from ``--data-files`` JPEGs of 256 x 256 pixels written to a
  temporary folder (after a warm-up pass; median of 3 passes), beside the
  images/s the train step consumes: below 1x, data loading would starve the
  accelerator whenever images are decoded (the first epoch with ``--cache
  memory``, every epoch with ``--cache none``). The pipeline is the one
  training would use here: ``tf.data`` where TensorFlow is installed (whatever
  the Keras backend), else the NumPy/Pillow one of :mod:`ddim_keras.data.numpy_pipeline`;
* memory: the process's peak resident set size (``ru_maxrss``), and on a GPU
  the backend's peak device memory;
* FLOPs: the network's forward FLOPs per image, counted analytically from its
  layers (see :func:`forward_flops`), the training FLOP/s this achieves, and a
  float32 matmul's FLOP/s (``keras.ops.matmul``) measured in the same process
  as the machine's practical limit (measured first and last; the faster run
  counts).

``--skip`` leaves out whole parts (train, sampling, loop, data, matmul).
``--backends tensorflow,jax,torch`` instead runs the training measurement
under each backend in its own process, in turns (``--rounds``), at the same
config, and reports each backend's images/s and its ratio to TensorFlow's.

Prints a table; ``--output FILE.json`` also writes every number as JSON.
Timings are wall-clock times of one process; on a shared machine they vary
with whatever else runs, so the share of CPU time other processes took while
measuring is recorded too (``machine_load``; Linux only).
"""

import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from ddim_keras.cli.args import add_debug_argument
from ddim_keras.cli.runner import ArgumentParser, run_cli
from ddim_keras.core.backend import (
    BACKENDS,  # the order --backends reports them in, TensorFlow first
)
from ddim_keras.core.config import DiffusionConfig, preset
from ddim_keras.core.devices import (
    POLICIES,
    PRECISIONS,
    cpu_description,
    gpu_names,
    resolve_precision_name,
    xla_rejects_mixed_precision,
)
from ddim_keras.core.errors import DdimError, UsageError
from ddim_keras.io.run_dir import check_writable_folder, write_json_atomic
from ddim_keras.model.distribute import JIT_CHOICES, parse_jit_compile

DEFAULT_PRESET = "flowers"
DEFAULT_STEPS = 20
DEFAULT_TRAIN_STEPS = 5
DEFAULT_NUM_IMAGES = 18
DEFAULT_REPEATS = 3
DEFAULT_MATMUL_SIZE = 2048
DEFAULT_DATA_FILES = 200
#: Width and height of the benchmark's JPEG files.
DATA_FILE_SIZE = 256
DATA_REPEATS = 3
#: The matmul is repeated until it has run this long (and at least 3 times).
MATMUL_MIN_SECONDS = 1.0
#: Seeds of the synthetic images, the weights, the noise and the sampler.
SEED = 0
#: Parts of the benchmark that --skip can leave out.
PARTS = ("train", "sampling", "loop", "data", "matmul")
#: What a --backends child measures: the train step only.
BACKENDS_CHILD_SKIP = ("sampling", "data", "matmul")
#: A backend within this factor of TensorFlow's training images/s counts as on par.
BACKEND_PARITY_FACTOR = 1.5

FLOPS_CONVENTION = (
    "1 multiply-add = 2 FLOPs. Forward FLOPs count the convolutions and dense layers "
    "(2*H_out*W_out*kh*kw*C_in*C_out per image, plus H_out*W_out*C_out for the bias); "
    "element-wise work (batch norm, swish, additions, pooling, upsampling, the sinusoidal "
    "embedding) is not counted. Training = 3 x forward (forward + backward), sampling = "
    "steps x forward. A float32 matmul of n x n matrices counts 2*n**3."
)


def build_parser():
    parser = ArgumentParser(
        prog="python -m ddim_keras.benchmark",
        description="Training and sampling speed, peak memory and FLOP utilization of a "
        "config, on synthetic data of its shape.",
    )
    parser.add_argument(
        "--preset",
        help=f"starting config (default: {DEFAULT_PRESET}); one of flowers, celeba, shapes",
    )
    parser.add_argument("--config", help="JSON config file; keys it omits come from --preset")
    parser.add_argument("--batch-size", type=int, help="override the config's batch_size")
    parser.add_argument(
        "--steps",
        type=int,
        default=DEFAULT_STEPS,
        help="sampling (diffusion) steps (default: %(default)s)",
    )
    parser.add_argument(
        "--train-steps",
        type=int,
        default=DEFAULT_TRAIN_STEPS,
        help="timed training steps after the warm-up (default: %(default)s)",
    )
    parser.add_argument(
        "--num-images",
        type=int,
        default=DEFAULT_NUM_IMAGES,
        help="images sampled, in one batch (default: %(default)s)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=DEFAULT_REPEATS,
        help="timed runs of each sampler; the median counts (default: %(default)s)",
    )
    parser.add_argument(
        "--jit-compile",
        default="auto",
        choices=JIT_CHOICES,
        help="compiling the train step, passed to model.compile: XLA on "
        "TensorFlow, jax.jit on JAX, torch.compile on PyTorch (default: "
        "auto, Keras' choice: on TensorFlow off on CPU-only machines, on "
        "JAX on, on PyTorch off); the sampler is not affected",
    )
    parser.add_argument(
        "--mixed-precision",
        default="auto",
        choices=PRECISIONS,
        help="also time training and the compiled sampler in this precision, "
        "as train/generate --mixed-precision would run them (default: "
        "%(default)s: bfloat16 on a CPU with native bfloat16, float16 on a "
        "GPU, else skipped); off skips it",
    )
    parser.add_argument(
        "--matmul-size",
        type=int,
        default=DEFAULT_MATMUL_SIZE,
        help="n of the n x n float32 matmul that measures the machine's "
        "practical FLOP/s (default: %(default)s)",
    )
    parser.add_argument(
        "--data-files",
        type=int,
        default=DEFAULT_DATA_FILES,
        help=f"JPEGs of {DATA_FILE_SIZE} px that time the data pipeline; 0 "
        "skips it (default: %(default)s)",
    )
    parser.add_argument(
        "--skip",
        default="",
        help="comma-separated parts to leave out: "
        + ", ".join(PARTS)
        + " (loop: the example's step-by-step sampler; data: the same as "
        "--data-files 0)",
    )
    parser.add_argument(
        "--backends",
        help="comma-separated Keras backends (" + ", ".join(BACKENDS) + "): "
        "time the train step under each, in its own process, at this "
        "config, and report each one's images/s and its ratio to "
        "TensorFlow's; sampling, data and the matmul are not measured",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="with --backends: run every backend this many times, in turns; "
        "the median counts (default: %(default)s)",
    )
    parser.add_argument("--output", help="also write the results to this JSON file")
    add_debug_argument(parser)
    return parser


# -- checks (before TensorFlow is imported, so that bad flags fail fast) -------------


def check_args(args):
    for flag, value in (
        ("--batch-size", args.batch_size),
        ("--steps", args.steps),
        ("--train-steps", args.train_steps),
        ("--num-images", args.num_images),
        ("--repeats", args.repeats),
        ("--rounds", args.rounds),
        ("--matmul-size", args.matmul_size),
    ):
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}.")
    if args.data_files < 0:
        raise UsageError(f"--data-files must be 0 (skip) or more, got {args.data_files}.")
    args.skip = parse_names(args.skip, PARTS, "--skip")
    if args.backends is not None:
        args.backends = parse_names(args.backends, BACKENDS, "--backends")
        if not args.backends:
            raise UsageError("--backends needs at least one of " + ", ".join(BACKENDS) + ".")
    if args.output:
        path = os.path.abspath(args.output)
        if os.path.isdir(path):
            raise UsageError(
                f"--output {args.output} is a folder; give a file name such as bench.json."
            )
        check_writable_folder(os.path.dirname(path))


def parse_names(text, choices, flag):
    """The comma-separated names of ``text``, each one of ``choices``, in ``choices``' order."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in choices]
    if unknown:
        raise UsageError(f"{flag} got {', '.join(unknown)}; choose from {', '.join(choices)}.")
    return tuple(name for name in choices if name in names)


def resolve_config(args):
    base = preset(args.preset or DEFAULT_PRESET)
    config = DiffusionConfig.load(args.config, base=base) if args.config else base
    if args.batch_size is not None and args.batch_size != config.batch_size:
        changes = {"batch_size": args.batch_size}
        if args.batch_size < 2:
            # KID (never measured here) refuses batches of one.
            changes["kid"] = False
        config = config.replace(**changes)
    return config


# -- FLOPs ---------------------------------------------------------------------------


def _layers(model):
    """Every layer of a model, nested models expanded."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _layers(layer)
        else:
            yield layer


def forward_flops(network):
    """Forward FLOPs per image of a functional Keras model, counted from its layers.

    1 multiply-add = 2 FLOPs. A Conv2D counts ``2 * H_out * W_out * kh * kw *
    C_in/groups * C_out`` plus ``H_out * W_out * C_out`` for its bias; a Dense
    counts ``2 * C_in * C_out`` (times any leading non-batch dimensions) plus
    the bias. Element-wise layers are not counted: in this U-Net they are
    under 1 % of the total (TensorFlow's graph profiler, which counts them,
    gives 0.3 % more for the flowers network and 0.6 % more for shapes).
    """
    from keras import layers

    total = 0
    for layer in _layers(network):
        if isinstance(layer, layers.Conv2D):
            kernel_h, kernel_w, in_per_group, out_channels = layer.kernel.shape
            _, height, width, _ = layer.output.shape
            positions = int(height) * int(width)
            total += 2 * positions * kernel_h * kernel_w * in_per_group * out_channels
            if layer.use_bias:
                total += positions * out_channels
        elif isinstance(layer, layers.Dense):
            in_channels, out_channels = layer.kernel.shape
            positions = math.prod(int(d) for d in layer.output.shape[1:-1])
            total += 2 * positions * in_channels * out_channels
            if layer.use_bias:
                total += positions * out_channels
    return int(total)


# -- environment ---------------------------------------------------------------------


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


#: How each backend's name is printed.
BACKEND_LABELS = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}


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


# -- measurements --------------------------------------------------------------------


def synthetic_images(config, count, seed=SEED):
    import numpy as np

    rng = np.random.default_rng(seed)
    shape = (count, config.image_size, config.image_size, 3)
    return rng.uniform(0.0, 1.0, size=shape).astype("float32")


def _finite_loss(logs):
    import numpy as np

    loss = float(np.asarray(logs["n_loss"]))
    if not math.isfinite(loss):
        raise DdimError(
            f"the benchmark's training loss became {loss}; the timings would be "
            "meaningless. Try a lower learning_rate in a --config file."
        )
    return loss


def repeated_batches(batch):
    """A callable making endless fit data of one batch, repeated (no input pipeline cost).

    TensorFlow gets a ``tf.data`` dataset of it; the other backends an endless
    ``keras.utils.PyDataset`` of the NumPy batch (read in the main thread),
    which Keras turns into their tensors.
    """
    import keras

    if active_backend() == "tensorflow":
        import tensorflow as tf

        # One element = one whole batch, repeated.
        return lambda: tf.data.Dataset.from_tensors(batch).repeat()

    class Repeated(keras.utils.PyDataset):
        @property
        def num_batches(self):
            return None  # endless; fit's steps_per_epoch says how many

        def __getitem__(self, index):
            return batch

    return Repeated


def _step_clock(pipelined=False):
    """A Keras callback recording when each train step ends; ``.ends()`` in step order.

    Keras turns a step's logs into Python floats, which waits for the step,
    before it calls ``on_train_batch_end``. A callback that is not async-safe
    (``pipelined=False``) is called in the training loop, so the loop waits for
    every step before it starts the next. An async-safe one is called from
    Keras' callback threads on the backends Keras deems thread-safe (JAX and
    PyTorch; on TensorFlow it is called in the loop all the same), so the loop
    runs on and queues the next steps meanwhile (JAX's dispatch, and CUDA's, are
    asynchronous); the clock still notes when each step's loss became available.
    """
    import keras

    class StepClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.async_safe = pipelined
            self._ends = []  # (step, time): appended from several threads when async

        def on_train_batch_end(self, batch, logs=None):
            self._ends.append((batch, time.perf_counter()))

        def ends(self):
            return [end for _, end in sorted(self._ends)]

    return StepClock()


def _fit(model, data, steps, callbacks=None):
    history = model.fit(
        data(), epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False, callbacks=callbacks
    )
    return _finite_loss({"n_loss": history.history["n_loss"][-1]})


def measure_training(model, config, train_steps):
    """First-step time (tracing included), steady-state step times, then pipelined steps."""
    batch = synthetic_images(config, config.batch_size)
    data = repeated_batches(batch)
    model.normalizer.adapt(batch)

    started = time.perf_counter()
    _fit(model, data, 1)
    first_step_s = time.perf_counter() - started

    # One warm-up step (a new fit call sets up its iterator), then train_steps timed
    # ones, each from the end of the one before.
    clock = _step_clock()
    _fit(model, data, train_steps + 1, callbacks=[clock])
    ends = clock.ends()
    step_times = [later - earlier for earlier, later in zip(ends, ends[1:])]
    if len(step_times) != train_steps:
        raise DdimError(
            f"the benchmark timed {len(step_times)} train steps instead of {train_steps}."
        )
    total = sum(step_times)

    # The same steps with nothing waiting for each one: what a backend with asynchronous
    # dispatch gains by queueing steps; from the end of the warm-up step to the last's.
    clock = _step_clock(pipelined=True)
    _fit(model, data, train_steps + 1, callbacks=[clock])
    ends = clock.ends()
    pipelined_s = ends[-1] - ends[0]
    return {
        "first_step_s": first_step_s,
        "images_per_s": config.batch_size * train_steps / total,
        "step_s": total / train_steps,
        "step_s_min": min(step_times),
        "step_s_max": max(step_times),
        "step_s_all": step_times,
        "timed_steps": train_steps,
        "pipelined_s": pipelined_s,
        "pipelined_images_per_s": config.batch_size * train_steps / pipelined_s,
        "jit_compile": bool(model.jit_compile),
        "compiler": compiler_description(active_backend(), model.jit_compile),
    }


def randomize_output_layer(network, noise, seed=SEED):
    """Re-draw the zero-initialised output convolution with random weights.

    An untrained network predicts exactly zero noise, which would make the
    two samplers agree trivially; with random output weights the agreement
    check compares real network outputs. The weights are scaled so that the
    predicted noise of pure noise has unit standard deviation, as a trained
    network's would. An untrained network is no denoiser, so its samples are
    still far outside the data range (the first step divides by
    min_signal_rate); the agreement is judged relative to their size. Speed
    does not depend on the values.
    """
    import keras
    import numpy as np

    convolutions = [layer for layer in _layers(network) if isinstance(layer, keras.layers.Conv2D)]
    kernel = convolutions[-1].kernel
    kernel.assign(keras.initializers.GlorotUniform(seed=seed)(kernel.shape))
    variances = np.ones((len(noise), 1, 1, 1), "float32")
    std = float(np.std(keras.ops.convert_to_numpy(network([noise, variances], training=False))))
    if std > 0 and math.isfinite(std):
        kernel.assign(kernel / std)


def _timed(function):
    """(seconds, result as NumPy) of one call; converting waits for the result."""
    from keras import ops

    started = time.perf_counter()
    result = ops.convert_to_numpy(function())
    return time.perf_counter() - started, result


def measure_sampling(
    model, num_images, steps, precision="float32", repeats=DEFAULT_REPEATS, loop=True
):
    """Compiled sampler and Python loop in float32; then ``precision``, unless float32.

    Each sampler runs ``repeats`` times after a warm-up, the samplers taking
    turns so that a change in the machine's load hits them alike; the median
    time counts. ``loop=False`` leaves out the example's step-by-step loop
    (its numbers, and those compared with it, are then None).
    """
    import numpy as np

    noise = model.initial_noise(num_images, seed=SEED)
    randomize_output_layer(model.ema_network, noise)
    # The compiled sampler itself (what sampling_loop.sample runs chunk by chunk), timed
    # against the example's step-by-step loop on the same noise: one chunk, no
    # denormalisation, so that the two compute the same thing.
    samplers = {
        "compiled": lambda: model.compiled_reverse_diffusion(noise, steps, seed=SEED),
    }
    if loop:
        samplers["loop"] = lambda: model.reverse_diffusion(noise, steps, seed=SEED)
    if precision != "float32":
        samplers["mixed"] = lambda: model.compiled_reverse_diffusion(
            noise, steps, seed=SEED, precision=precision
        )
    first_call_s, _ = _timed(samplers["compiled"])
    if loop:
        _timed(lambda: model.reverse_diffusion(noise, 1, seed=SEED))  # warm-up: one step
    if "mixed" in samplers:
        _timed(samplers["mixed"])
    times = {name: [] for name in samplers}
    outputs = {}
    for _ in range(repeats):
        for name, sampler in samplers.items():
            seconds, outputs[name] = _timed(sampler)
            times[name].append(seconds)
    median = {name: float(np.median(values)) for name, values in times.items()}

    compiled = outputs["compiled"]
    compiled_ips = num_images / median["compiled"]
    if loop:
        max_abs_diff = float(np.max(np.abs(compiled - outputs["loop"])))
        max_abs = float(np.max(np.abs(outputs["loop"])))
        loop_ips = num_images / median["loop"]
    else:
        max_abs_diff = loop_ips = None
        max_abs = float(np.max(np.abs(compiled)))
    mixed = None
    if "mixed" in samplers:
        mixed_ips = num_images / median["mixed"]
        mixed = {
            "precision": precision,
            "compiled_s": median["mixed"],
            "compiled_s_all": times["mixed"],
            "images_per_s": mixed_ips,
            "image_steps_per_s": mixed_ips * steps,
            "ratio": mixed_ips / loop_ips if loop else None,
            "speedup_over_float32": mixed_ips / compiled_ips,
            # Relative to the largest float32 value: the untrained network's
            # samples are far outside the data range (see randomize_output_layer).
            "max_rel_diff": float(np.max(np.abs(outputs["mixed"] - compiled))) / max(1.0, max_abs),
        }
    return {
        "num_images": num_images,
        "steps": steps,
        "repeats": repeats,
        "compiled_first_call_s": first_call_s,
        "compiled_s": median["compiled"],
        "loop_s": median.get("loop"),
        "compiled_s_all": times["compiled"],
        "loop_s_all": times.get("loop"),
        "compiled_images_per_s": compiled_ips,
        "compiled_image_steps_per_s": compiled_ips * steps,
        "loop_images_per_s": loop_ips,
        # The example's loop calls the network once per step from Python: eager
        # TensorFlow, eager JAX ops or eager PyTorch, as the backend runs it.
        "loop": (
            f"eager {BACKEND_LABELS.get(active_backend(), active_backend())}"
            if loop
            else "skipped (--skip loop)"
        ),
        "ratio": compiled_ips / loop_ips if loop else None,
        "max_abs_diff": max_abs_diff,
        "max_abs_value": max_abs,
        "agree": bool(max_abs_diff <= 1e-3 * max(1.0, max_abs)) if loop else None,
        "mixed": mixed,
    }


def write_benchmark_jpegs(folder, count, size=DATA_FILE_SIZE, seed=SEED):
    """``count`` photo-like JPEGs (smooth colours plus grain, quality 90); their paths."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        blocks = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
        smooth = np.asarray(blocks.resize((size, size), Image.BICUBIC), dtype=np.float32)
        grain = rng.normal(0.0, 8.0, smooth.shape)
        pixels = np.clip(smooth + grain, 0, 255).astype(np.uint8)
        path = os.path.join(folder, f"{index:04d}.jpg")
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


def folder_pipeline(paths, config):
    """(name, one pass, images per pass) of the folder pipeline training here would use.

    ``tf.data`` (``data.image_files_dataset``, batched and scaled as
    ``data.prepare_dataset`` does) where TensorFlow is installed, whatever the
    Keras backend; otherwise the NumPy/Pillow pipeline of
    :mod:`ddim_keras.data.numpy_pipeline` (a thread pool decoding each batch's files;
    its batches drop an incomplete last one). ``one pass`` returns the number
    of images it produced.
    """
    whole = len(paths) // config.batch_size * config.batch_size
    from ddim_keras.core.optional import tensorflow_installed
    from ddim_keras.data.folder import file_entries
    from ddim_keras.data.tf_pipeline import image_files_dataset, to_unit_range

    if tensorflow_installed():
        import tensorflow as tf

        images = image_files_dataset(paths, config.image_size)
        batches = (
            images.batch(config.batch_size)
            .map(to_unit_range, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE)
        )

        def one_pass():
            return sum(int(batch.shape[0]) for batch in batches)

        return "tf.data", one_pass, len(paths)

    from ddim_keras.core.datasets import background_rgb
    from ddim_keras.data import numpy_pipeline as numpy_data

    files = numpy_data.ImageFiles(
        file_entries(paths), config.image_size, background_rgb(), cache="none"
    )
    batches = numpy_data.ImageBatches(files, config.batch_size)

    def one_pass():
        return sum(len(batches[index]) for index in range(len(batches)))

    return "NumPy/Pillow", one_pass, whole


def measure_data_pipeline(config, num_files, train_images_per_s, repeats=DATA_REPEATS):
    """Images/s of the folder pipeline: decode, crop, resize to image_size, batch, scale.

    The files are read from a fresh temporary folder (so mostly from the page
    cache after the warm-up pass, as a folder read every epoch would be).
    """
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="ddim-benchmark-") as folder:
        paths = write_benchmark_jpegs(folder, num_files)
        started = time.perf_counter()
        pipeline, one_pass, expected = folder_pipeline(paths, config)
        inspect_s = time.perf_counter() - started
        if expected == 0:
            raise UsageError(
                f"--data-files {num_files} is less than one batch of "
                f"{config.batch_size}, which the {pipeline} pipeline drops."
            )
        count = one_pass()  # warm-up: traces the map functions, starts the threads
        if count != expected:
            raise DdimError("the benchmark's JPEG files did not all decode.")
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            one_pass()
            times.append(time.perf_counter() - started)
    seconds = float(np.median(times))
    images_per_s = count / seconds
    return {
        "pipeline": pipeline,
        "format": "JPEG",
        "num_files": num_files,
        "num_images": count,
        "file_size": DATA_FILE_SIZE,
        "image_size": config.image_size,
        "repeats": repeats,
        "seconds": seconds,
        "seconds_all": times,
        "inspect_s": inspect_s,
        "images_per_s": images_per_s,
        "train_images_per_s": train_images_per_s,
        "ratio": images_per_s / train_images_per_s,
    }


def measure_matmul(size, min_seconds=MATMUL_MIN_SECONDS):
    """FLOP/s of a float32 ``size x size`` matmul (``keras.ops``), repeated after a warm-up.

    On a GPU the backend's default float32 matmul precision applies (JAX and
    TensorFlow may use TF32 tensor cores for it), as it does in the network.
    """
    import keras
    from keras import ops

    a = keras.random.uniform((size, size), seed=SEED + 1, dtype="float32")
    b = keras.random.uniform((size, size), seed=SEED + 2, dtype="float32")

    def one():
        # Reading one value back to the host waits for the product.
        return float(ops.convert_to_numpy(ops.matmul(a, b)[0, 0]))

    for _ in range(2):
        one()
    repeats = 0
    started = time.perf_counter()
    while repeats < 3 or time.perf_counter() - started < min_seconds:
        one()
        repeats += 1
    elapsed = time.perf_counter() - started
    return {"size": size, "repeats": repeats, "flops_per_s": 2.0 * size**3 * repeats / elapsed}


def measure_mixed_training(config, train_steps, precision, jit_compile, float32_train):
    """The training measurement again, for a model built under ``precision``'s policy."""
    import keras

    from ddim_keras.model.diffusion_model import DiffusionModel

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(POLICIES[precision])
    try:
        keras.utils.set_random_seed(SEED)
        model = DiffusionModel(config, kid_weights=None)
        model.compile(jit_compile=jit_compile)
        result = measure_training(model, config, train_steps)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    result["precision"] = precision
    result["speedup_over_float32"] = result["images_per_s"] / float32_train["images_per_s"]
    return result


def run_benchmark(
    config,
    steps,
    train_steps,
    num_images,
    jit_compile="auto",
    matmul_size=DEFAULT_MATMUL_SIZE,
    precision="float32",
    repeats=DEFAULT_REPEATS,
    data_files=DEFAULT_DATA_FILES,
    skip=(),
):
    """Every measurement for one config on the active backend; returns the result as a dict.

    ``precision`` other than float32 also times training and the compiled
    sampler in that precision (``train.mixed``, ``sampling.mixed``).
    ``data_files`` JPEGs time the data pipeline (``data``; None when 0).
    ``skip``: parts of :data:`PARTS` left out; their sections are None and
    ``skipped`` says why.
    """
    import keras

    from ddim_keras.model.diffusion_model import DiffusionModel

    backend = active_backend()
    skipped = {part: "--skip" for part in skip}
    if "data" not in skip and not data_files:
        skipped["data"] = "--data-files 0"
    if "data" not in skipped and "train" in skip:
        skipped["data"] = "compared with the train step, which is skipped"
    if "sampling" in skip:
        skipped["loop"] = "--skip sampling"

    cpu_share = CpuShare()
    rss_before_model = peak_rss_mb()
    # The matmul runs first and last; the faster run is the practical limit (a
    # slower one means something else took CPU or GPU time meanwhile).
    matmul_start = None if "matmul" in skipped else measure_matmul(matmul_size)
    keras.utils.set_random_seed(SEED)
    # No KID: it is never measured here, and its encoder is only built on use.
    model = DiffusionModel(config, kid_weights=None)
    model.compile(jit_compile=jit_compile)

    forward = forward_flops(model.network)
    train = None if "train" in skipped else measure_training(model, config, train_steps)
    sampling = (
        None
        if "sampling" in skipped
        else measure_sampling(
            model, num_images, steps, precision, repeats, loop="loop" not in skipped
        )
    )
    peak_float32 = peak_rss_mb()
    if train is not None:
        train["mixed"] = None
        if xla_rejects_mixed_precision(jit_compile, precision):
            train["mixed"] = {
                "precision": precision,
                "skipped": "TensorFlow's XLA for CPU refuses mixed-precision training graphs",
            }
        elif precision != "float32":
            train["mixed"] = measure_mixed_training(
                config, train_steps, precision, jit_compile, train
            )
    data_pipeline = (
        None
        if "data" in skipped
        else measure_data_pipeline(config, data_files, train["images_per_s"])
    )
    matmul_end = None if "matmul" in skipped else measure_matmul(matmul_size)

    flops = {
        "per_image": forward,
        "train_per_image": 3 * forward,
        "sampling_per_image": steps * forward,
        "achieved_per_s": None,
        "sampling_achieved_per_s": None,
        "matmul_per_s": None,
        "matmul_per_s_first": None,
        "matmul_per_s_last": None,
        "matmul_size": None,
        "utilization": None,
        "convention": FLOPS_CONVENTION,
    }
    if train is not None:
        flops["achieved_per_s"] = 3.0 * forward * train["images_per_s"]
    if sampling is not None:
        flops["sampling_achieved_per_s"] = steps * forward * sampling["compiled_images_per_s"]
    if matmul_start is not None:
        matmul_per_s = max(matmul_start["flops_per_s"], matmul_end["flops_per_s"])
        flops.update(
            matmul_per_s=matmul_per_s,
            matmul_per_s_first=matmul_start["flops_per_s"],
            matmul_per_s_last=matmul_end["flops_per_s"],
            matmul_size=matmul_size,
        )
        if train is not None:
            flops["utilization"] = flops["achieved_per_s"] / matmul_per_s
    return {
        "backend": backend,
        "device": device_description(),
        "config": config.to_dict(),
        "batch_size": config.batch_size,
        "steps": steps,
        "num_images": num_images,
        "precision": precision,
        "train": train,
        "sampling": sampling,
        "data": data_pipeline,
        "skipped": skipped,
        "memory": {
            # The float32 model's training and sampling (the reduced-precision
            # sampler's copy included); the second model of train.mixed adds to
            # the process's peak afterwards.
            "peak_rss_mb": peak_float32,
            "peak_rss_mb_before_model": rss_before_model,
            "peak_rss_mb_at_end": peak_rss_mb(),
            # The backend's peak on its first GPU over the whole run (None on a CPU).
            "accelerator_peak_mb": accelerator_peak_mb(),
        },
        "flops": flops,
        "versions": backend_versions(),
        "machine_load": cpu_share.result(),
    }


# -- output --------------------------------------------------------------------------


def _si(value, unit):
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.2f} {prefix}{unit}"
    return f"{value:.2f} {unit}"


def _versions_text(versions):
    names = [
        ("tensorflow", "TensorFlow"),
        ("jax", "JAX"),
        ("jaxlib", "jaxlib"),
        ("torch", "PyTorch"),
        ("keras", "Keras"),
    ]
    return ", ".join(f"{label} {versions[key]}" for key, label in names if key in versions)


def _train_rows(train):
    if train is None:
        return []
    rows = [
        ("train: first step (tracing)", f"{train['first_step_s']:.2f} s"),
        (
            "train: step time",
            f"{train['step_s']:.3f} s (min {train['step_s_min']:.3f}, max "
            f"{train['step_s_max']:.3f}; {train['timed_steps']} steps, "
            f"{train['compiler']})",
        ),
        (
            "train: images/s",
            f"{train['images_per_s']:.2f} (each step waited for; "
            f"{train['pipelined_images_per_s']:.2f} pipelined, "
            "steps queued without waiting)",
        ),
    ]
    mixed_train = train.get("mixed")
    if mixed_train and "skipped" in mixed_train:
        rows.append(
            (f"train: {mixed_train['precision']}", f"not measured: {mixed_train['skipped']}")
        )
    elif mixed_train:
        rows.append(
            (
                f"train: {mixed_train['precision']} step time",
                f"{mixed_train['step_s']:.3f} s ({mixed_train['images_per_s']:.2f} "
                f"images/s, {mixed_train['pipelined_images_per_s']:.2f} pipelined; "
                f"{mixed_train['speedup_over_float32']:.2f}x float32)",
            )
        )
    return rows


def _sampling_rows(sampling):
    if sampling is None:
        return []
    rows = [
        (
            "sampling: compiled images/s",
            f"{sampling['compiled_images_per_s']:.2f} "
            f"({sampling['compiled_s']:.2f} s for "
            f"{sampling['num_images']} images x "
            f"{sampling['steps']} steps; median of "
            f"{sampling['repeats']}; "
            f"{sampling['compiled_image_steps_per_s']:.1f} "
            "image-steps/s)",
        ),
    ]
    if sampling["loop_images_per_s"] is None:
        rows.append(("sampling: Python loop", f"not measured: {sampling['loop']}"))
    else:
        rows += [
            (
                "sampling: Python loop images/s",
                f"{sampling['loop_images_per_s']:.2f} "
                f"({sampling['loop_s']:.2f} s, "
                f"{sampling['loop']})",
            ),
            ("sampling: compiled / loop", f"{sampling['ratio']:.2f}x"),
            (
                "sampling: max |compiled - loop|",
                f"{sampling['max_abs_diff']:.2e} of values up to {sampling['max_abs_value']:.3g} "
                f"({'agree' if sampling['agree'] else 'DIFFER'})",
            ),
        ]
    mixed = sampling["mixed"]
    if mixed is not None:
        versus_loop = "" if mixed["ratio"] is None else f"{mixed['ratio']:.2f}x the loop, "
        rows += [
            (
                f"sampling: compiled {mixed['precision']} images/s",
                f"{mixed['images_per_s']:.2f} ({mixed['compiled_s']:.2f} s; {versus_loop}"
                f"{mixed['speedup_over_float32']:.2f}x float32; "
                f"{mixed['image_steps_per_s']:.1f} image-steps/s)",
            ),
            (
                f"sampling: {mixed['precision']} vs float32",
                f"max difference {100.0 * mixed['max_rel_diff']:.2g} % of the largest value",
            ),
        ]
    return rows


def format_table(result):
    flops, config = result["flops"], result["config"]
    skipped = result.get("skipped", {})
    rows = [
        ("backend", BACKEND_LABELS.get(result["backend"], result["backend"])),
        ("device", result["device"]),
        (
            "config",
            f"{config['image_size']} px, widths {config['widths']}, block_depth "
            f"{config['block_depth']}, batch {result['batch_size']}",
        ),
        ("versions", _versions_text(result["versions"])),
    ]
    rows += _train_rows(result["train"])
    rows += _sampling_rows(result["sampling"])
    pipeline = result.get("data")
    if pipeline:
        verdict = (
            "keeps up"
            if pipeline["ratio"] >= 1
            else "TOO SLOW: training would wait whenever images are decoded"
        )
        rows.append(
            (
                "data: JPEG decode + preprocess images/s",
                f"{pipeline['images_per_s']:.1f} ({pipeline['pipeline']}; "
                f"{pipeline['num_files']} files of "
                f"{pipeline['file_size']} px to {pipeline['image_size']} px; "
                f"{pipeline['ratio']:.2f}x the train step's "
                f"{pipeline['train_images_per_s']:.1f} images/s: {verdict})",
            )
        )
    rows.append(("memory: peak RSS", f"{result['memory']['peak_rss_mb']:.0f} MiB"))
    if result["memory"].get("accelerator_peak_mb") is not None:
        rows.append(("memory: GPU peak", f"{result['memory']['accelerator_peak_mb']:.0f} MiB"))
    rows.append(("FLOPs: forward per image", _si(flops["per_image"], "FLOP")))
    if flops["achieved_per_s"] is not None:
        rows.append(("FLOPs: training achieved", _si(flops["achieved_per_s"], "FLOP/s")))
    if flops["matmul_per_s"] is not None:
        rows.append(
            (
                "FLOPs: float32 matmul",
                _si(flops["matmul_per_s"], "FLOP/s")
                + f" ({flops['matmul_size']}x{flops['matmul_size']}; best of "
                f"{_si(flops['matmul_per_s_first'], 'FLOP/s')} first and "
                f"{_si(flops['matmul_per_s_last'], 'FLOP/s')} last)",
            )
        )
    if flops["utilization"] is not None:
        rows.append(
            ("FLOPs: training utilization", f"{100.0 * flops['utilization']:.1f} % of the matmul")
        )
    for part, reason in skipped.items():
        rows.append((f"skipped: {part}", reason))
    load = result["machine_load"]
    if "other_processes_cpu_share" in load:
        share = load["other_processes_cpu_share"]
        rows.append(
            (
                "other processes' CPU share",
                f"{100.0 * share:.0f} %"
                f" (steal {100.0 * load['steal_share']:.0f} %) over "
                f"{load['wall_s']:.0f} s; timings are noisy if this is not near 0",
            )
        )
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


# -- one backend against another -----------------------------------------------------


def child_argv(args, output):
    """The command line of one --backends measurement: this config, the train step only."""
    argv = [
        sys.executable,
        "-m",
        "ddim_keras.benchmark",
        "--skip",
        ",".join(BACKENDS_CHILD_SKIP),
        "--train-steps",
        str(args.train_steps),
        "--jit-compile",
        args.jit_compile,
        "--mixed-precision",
        args.mixed_precision,
        "--output",
        output,
    ]
    for flag, value in (
        ("--preset", args.preset),
        ("--config", args.config),
        ("--batch-size", args.batch_size),
    ):
        if value is not None:
            argv += [flag, str(value)]
    return argv


def _last_lines(text, count=3):
    return " | ".join(line for line in text.strip().splitlines()[-count:])


def run_backend(args, backend, folder, index):
    """One child process measuring ``backend``'s train step: its result dict, or an error."""
    output = os.path.join(folder, f"{backend}_{index}.json")
    env = dict(os.environ, KERAS_BACKEND=backend)
    process = subprocess.run(
        child_argv(args, output), env=env, capture_output=True, text=True, check=False
    )
    if process.returncode != 0 or not os.path.exists(output):
        return {
            "error": f"exit {process.returncode}: {_last_lines(process.stderr or process.stdout)}"
        }
    with open(output, encoding="utf-8") as handle:
        return json.load(handle)


def summarize_backends(runs, reference="tensorflow"):
    """Per-backend medians of the runs and each one's ratio to ``reference``'s images/s.

    ``runs`` maps a backend to its list of child results (dicts from
    :func:`run_benchmark`, or ``{"error": ...}``). ``ratio_to_tensorflow`` is
    images/s over TensorFlow's (1 = as fast, 0.5 = half as fast);
    ``within_parity`` says whether the backend is within
    :data:`BACKEND_PARITY_FACTOR` of it.
    """
    summary = {}
    for backend, results in runs.items():
        good = [result for result in results if "error" not in result]
        entry = {"runs": len(results), "errors": [r["error"] for r in results if "error" in r]}
        if good:
            trains = [result["train"] for result in good]
            entry.update(
                images_per_s=statistics.median(t["images_per_s"] for t in trains),
                images_per_s_all=[t["images_per_s"] for t in trains],
                pipelined_images_per_s=statistics.median(
                    t["pipelined_images_per_s"] for t in trains
                ),
                step_s=statistics.median(t["step_s"] for t in trains),
                first_step_s=statistics.median(t["first_step_s"] for t in trains),
                compiler=trains[0]["compiler"],
                versions=good[0]["versions"],
                device=good[0]["device"],
            )
            mixed = [t["mixed"] for t in trains if t.get("mixed") and "skipped" not in t["mixed"]]
            skipped = [t["mixed"] for t in trains if t.get("mixed") and "skipped" in t["mixed"]]
            if mixed:
                entry["mixed"] = {
                    "precision": mixed[0]["precision"],
                    "images_per_s": statistics.median(m["images_per_s"] for m in mixed),
                    "images_per_s_all": [m["images_per_s"] for m in mixed],
                }
            elif skipped:
                entry["mixed"] = skipped[0]
        summary[backend] = entry
    base = summary.get(reference, {})
    for entry in summary.values():
        for section, reference_section in ((entry, base), (entry.get("mixed"), base.get("mixed"))):
            if not section or "images_per_s" not in section:
                continue
            if reference_section and "images_per_s" in reference_section:
                ratio = section["images_per_s"] / reference_section["images_per_s"]
                section["ratio_to_tensorflow"] = ratio
                section["within_parity"] = ratio >= 1.0 / BACKEND_PARITY_FACTOR
    return summary


def compare_backends(args, config):
    """``--backends``: each backend's train step in its own process, in turns; a result dict."""
    runs = {backend: [] for backend in args.backends}
    cpu_share = CpuShare()
    with tempfile.TemporaryDirectory(prefix="ddim-backends-") as folder:
        for index in range(args.rounds):
            for backend in args.backends:
                print(
                    f"round {index + 1}/{args.rounds}: {backend} ...", file=sys.stderr, flush=True
                )
                runs[backend].append(run_backend(args, backend, folder, index))
    return {
        "mode": "backends",
        "reference": "tensorflow",
        "parity_factor": BACKEND_PARITY_FACTOR,
        "config": config.to_dict(),
        "batch_size": config.batch_size,
        "train_steps": args.train_steps,
        "rounds": args.rounds,
        "jit_compile": args.jit_compile,
        "mixed_precision": args.mixed_precision,
        "backends": summarize_backends(runs),
        "runs": runs,
        "machine_load": cpu_share.result(),
    }


def format_backends_table(result):
    config = result["config"]
    lines = [
        f"train step per backend: {config['image_size']} px, widths {config['widths']}, "
        f"block_depth {config['block_depth']}, batch {result['batch_size']}; "
        f"{result['train_steps']} timed steps, median of {result['rounds']} round(s) "
        "in turns"
    ]
    rows = []
    for backend, entry in result["backends"].items():
        label = BACKEND_LABELS[backend]
        if "images_per_s" not in entry:
            rows.append((label, "FAILED: " + "; ".join(entry["errors"])))
            continue
        text = (
            f"{entry['images_per_s']:.2f} images/s ({entry['step_s']:.3f} s/step, first "
            f"step {entry['first_step_s']:.1f} s, {entry['compiler']}; "
            f"{entry['pipelined_images_per_s']:.2f} pipelined)"
        )
        if "ratio_to_tensorflow" in entry:
            text += f"; {entry['ratio_to_tensorflow']:.2f}x TensorFlow's"
            if backend != "tensorflow":
                text += " (within 1.5x)" if entry["within_parity"] else " (NOT within 1.5x)"
        rows.append((label, text))
        mixed = entry.get("mixed")
        if mixed and "skipped" in mixed:
            rows.append((f"{label} {mixed['precision']}", f"not measured: {mixed['skipped']}"))
        elif mixed:
            text = f"{mixed['images_per_s']:.2f} images/s"
            if "ratio_to_tensorflow" in mixed:
                text += f"; {mixed['ratio_to_tensorflow']:.2f}x TensorFlow's"
            rows.append((f"{label} {mixed['precision']}", text))
        if entry["errors"]:
            rows.append((f"{label} errors", "; ".join(entry["errors"])))
    load = result["machine_load"]
    if "other_processes_cpu_share" in load:
        rows.append(
            (
                "other processes' CPU share",
                f"{100.0 * load['other_processes_cpu_share']:.0f} % over {load['wall_s']:.0f} s",
            )
        )
    width = max(len(name) for name, _ in rows)
    return "\n".join(lines + [f"{name:<{width}}  {value}" for name, value in rows])


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_args(args)
    config = resolve_config(args)
    if args.backends:
        result = compare_backends(args, config)
        print(format_backends_table(result))
        if args.output:
            write_json_atomic(args.output, result)
            print(f"Wrote {args.output}")
        failed = [name for name, entry in result["backends"].items() if "images_per_s" not in entry]
        if failed:
            print(f"warning: no measurement for {', '.join(failed)}.", file=sys.stderr)
        return 1 if failed else 0
    result = run_benchmark(
        config,
        steps=args.steps,
        train_steps=args.train_steps,
        num_images=args.num_images,
        jit_compile=parse_jit_compile(args.jit_compile),
        matmul_size=args.matmul_size,
        precision=resolve_precision_name(args.mixed_precision),
        repeats=args.repeats,
        data_files=args.data_files,
        skip=args.skip,
    )
    print(format_table(result))
    sampling = result["sampling"]
    if sampling is not None and sampling["agree"] is False:
        print(
            f"warning: the compiled sampler and the Python loop differ by up to "
            f"{sampling['max_abs_diff']:.3g}.",
            file=sys.stderr,
        )
    if args.output:
        write_json_atomic(args.output, result)
        print(f"Wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
