"""``python -m ddim_keras.benchmark``: training and sampling speed, memory and FLOPs.

Measures one config (a preset or a JSON file) on synthetic data of its shape
(uniform random images in [0, 1]; the normalizer is adapted on them), so it
needs no dataset and no download:

* training: the wall time of the first ``model.fit`` step (tracing included),
  then images/s over ``--train-steps`` calls of the compiled train function
  after one more warm-up call;
* sampling: images/s of the compiled sampler (one graph while-loop, after one
  warm-up call) and of the example's step-by-step Python loop, which calls the
  network eagerly once per step (after a one-step warm-up), on the same noise
  and steps, each timed ``--repeats`` times in turns (the median counts); their
  ratio, and the largest difference between their outputs;
  then the compiled sampler once more in reduced precision (``--mixed-precision``,
  by default generate's ``auto`` choice: bfloat16 on a CPU with native
  bfloat16, float16 on a GPU), its speed against both, and how far its output
  is from the float32 sampler's;
* data: images/s that the folder pipeline (``--dataset folder``) decodes and
  preprocesses from ``--data-files`` JPEGs of 256 x 256 pixels written to a
  temporary folder (after a warm-up pass; median of 3 passes), beside the
  images/s the train step consumes: below 1x, data loading would starve the
  accelerator whenever images are decoded (the first epoch with ``--cache
  memory``, every epoch with ``--cache none``);
* memory: the process's peak resident set size (``ru_maxrss``);
* FLOPs: the network's forward FLOPs per image, counted analytically from its
  layers (see :func:`forward_flops`), the training FLOP/s this achieves, and a
  float32 matmul's FLOP/s measured in the same process as the machine's
  practical limit (measured first and last; the faster run counts).

Prints a table; ``--output FILE.json`` also writes every number as JSON.
Timings are wall-clock times of one process; on a shared machine they vary
with whatever else runs, so the share of CPU time other processes took while
measuring is recorded too (``machine_load``; Linux only).
"""

import math
import os
import platform
import resource
import sys
import time

from ddim_keras.config import DiffusionConfig, preset
from ddim_keras.distribute import (JIT_CHOICES, POLICIES, PRECISIONS, cpu_description,
                                   gpu_names, parse_jit_compile, resolve_precision_name,
                                   xla_rejects_mixed_precision)
from ddim_keras.cli_args import add_debug_argument
from ddim_keras.errors import ArgumentParser, DdimError, UsageError, run_cli
from ddim_keras.run_dir import check_writable_folder, write_json_atomic

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
    parser.add_argument("--preset", help=f"starting config (default: {DEFAULT_PRESET}); one of "
                                         "flowers, celeba, shapes")
    parser.add_argument("--config", help="JSON config file; keys it omits come from --preset")
    parser.add_argument("--batch-size", type=int, help="override the config's batch_size")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                        help="sampling (diffusion) steps (default: %(default)s)")
    parser.add_argument("--train-steps", type=int, default=DEFAULT_TRAIN_STEPS,
                        help="timed training steps after the warm-up (default: %(default)s)")
    parser.add_argument("--num-images", type=int, default=DEFAULT_NUM_IMAGES,
                        help="images sampled, in one batch (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS,
                        help="timed runs of each sampler; the median counts (default: "
                             "%(default)s)")
    parser.add_argument("--jit-compile", default="auto", choices=JIT_CHOICES,
                        help="XLA for the train step, passed to model.compile (default: auto, "
                             "Keras' choice: off on CPU-only machines); the sampler is not "
                             "affected")
    parser.add_argument("--mixed-precision", default="auto", choices=PRECISIONS,
                        help="also time training and the compiled sampler in this precision, "
                             "as train/generate --mixed-precision would run them (default: "
                             "%(default)s: bfloat16 on a CPU with native bfloat16, float16 on a "
                             "GPU, else skipped); off skips it")
    parser.add_argument("--matmul-size", type=int, default=DEFAULT_MATMUL_SIZE,
                        help="n of the n x n float32 matmul that measures the machine's "
                             "practical FLOP/s (default: %(default)s)")
    parser.add_argument("--data-files", type=int, default=DEFAULT_DATA_FILES,
                        help=f"JPEGs of {DATA_FILE_SIZE} px that time the data pipeline; 0 "
                             "skips it (default: %(default)s)")
    parser.add_argument("--output", help="also write the results to this JSON file")
    add_debug_argument(parser)
    return parser


# -- checks (before TensorFlow is imported, so that bad flags fail fast) -------------


def check_args(args):
    for flag, value in (("--batch-size", args.batch_size), ("--steps", args.steps),
                        ("--train-steps", args.train_steps), ("--num-images", args.num_images),
                        ("--repeats", args.repeats),
                        ("--matmul-size", args.matmul_size)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}.")
    if args.data_files < 0:
        raise UsageError(f"--data-files must be 0 (skip) or more, got {args.data_files}.")
    if args.output:
        path = os.path.abspath(args.output)
        if os.path.isdir(path):
            raise UsageError(f"--output {args.output} is a folder; give a file name such as "
                             "bench.json.")
        check_writable_folder(os.path.dirname(path))


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


def device_description():
    gpus = gpu_names()
    return f"GPU: {', '.join(gpus)}" if gpus else f"CPU: {cpu_description()}"


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
        self.own = sum(os.times()[:2])
        self.load = load_average()

    def result(self):
        wall = time.perf_counter() - self.started
        system = _system_cpu_seconds()
        result = {"load_average_1min_start": self.load, "load_average_1min_end": load_average(),
                  "wall_s": wall}
        if self.system is not None and system is not None and wall > 0:
            try:
                cores = len(os.sched_getaffinity(0))
            except AttributeError:
                cores = os.cpu_count() or 1
            own = sum(os.times()[:2]) - self.own
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
        raise DdimError(f"the benchmark's training loss became {loss}; the timings would be "
                        "meaningless. Try a lower learning_rate in a --config file.")
    return loss


def measure_training(model, config, train_steps):
    """First-step time (tracing included), then steady-state step times."""
    import tensorflow as tf

    batch = synthetic_images(config, config.batch_size)
    # One element = one whole batch, repeated: no input pipeline cost in the timings.
    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    model.normalizer.adapt(dataset.take(1))

    started = time.perf_counter()
    history = model.fit(dataset, epochs=1, steps_per_epoch=1, verbose=0, shuffle=False)
    first_step_s = time.perf_counter() - started
    _finite_loss({"n_loss": history.history["n_loss"][-1]})

    train_function = model.make_train_function() or model.train_function
    iterator = iter(dataset)
    _finite_loss(train_function(iterator))  # warm-up: this iterator, steady state
    step_times = []
    for _ in range(train_steps):
        started = time.perf_counter()
        logs = train_function(iterator)
        _finite_loss(logs)  # reading the loss waits for the step to finish
        step_times.append(time.perf_counter() - started)
    total = sum(step_times)
    return {
        "first_step_s": first_step_s,
        "images_per_s": config.batch_size * train_steps / total,
        "step_s": total / train_steps,
        "step_s_min": min(step_times),
        "step_s_max": max(step_times),
        "timed_steps": train_steps,
        "jit_compile": bool(model.jit_compile),
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
    std = float(np.std(np.asarray(network([noise, variances], training=False))))
    if std > 0 and math.isfinite(std):
        kernel.assign(kernel / std)


def _timed(function):
    """(seconds, result as NumPy) of one call; converting waits for the result."""
    import numpy as np

    started = time.perf_counter()
    result = np.asarray(function())
    return time.perf_counter() - started, result


def measure_sampling(model, num_images, steps, precision="float32", repeats=DEFAULT_REPEATS):
    """Compiled sampler and Python loop in float32; then ``precision``, unless float32.

    Each sampler runs ``repeats`` times after a warm-up, the samplers taking
    turns so that a change in the machine's load hits them alike; the median
    time counts.
    """
    import numpy as np

    noise = model.initial_noise(num_images, seed=SEED)
    randomize_output_layer(model.ema_network, noise)
    # The compiled sampler itself (what sampling_loop.sample runs chunk by chunk), timed
    # against the example's step-by-step loop on the same noise: one chunk, no
    # denormalisation, so that the two compute the same thing.
    samplers = {
        "compiled": lambda: model.compiled_reverse_diffusion(noise, steps, seed=SEED),
        "loop": lambda: model.reverse_diffusion(noise, steps, seed=SEED),
    }
    if precision != "float32":
        samplers["mixed"] = lambda: model.compiled_reverse_diffusion(noise, steps, seed=SEED,
                                                                     precision=precision)
    first_call_s, _ = _timed(samplers["compiled"])
    np.asarray(model.reverse_diffusion(noise, 1, seed=SEED))  # the loop's warm-up: one step
    if "mixed" in samplers:
        _timed(samplers["mixed"])
    times = {name: [] for name in samplers}
    outputs = {}
    for _ in range(repeats):
        for name, sampler in samplers.items():
            seconds, outputs[name] = _timed(sampler)
            times[name].append(seconds)
    median = {name: float(np.median(values)) for name, values in times.items()}

    compiled, loop = outputs["compiled"], outputs["loop"]
    max_abs_diff = float(np.max(np.abs(compiled - loop)))
    max_abs = float(np.max(np.abs(loop)))
    compiled_ips = num_images / median["compiled"]
    loop_ips = num_images / median["loop"]
    mixed = None
    if "mixed" in samplers:
        mixed_ips = num_images / median["mixed"]
        mixed = {
            "precision": precision,
            "compiled_s": median["mixed"],
            "compiled_s_all": times["mixed"],
            "images_per_s": mixed_ips,
            "ratio": mixed_ips / loop_ips,
            "speedup_over_float32": mixed_ips / compiled_ips,
            # Relative to the largest float32 value: the untrained network's
            # samples are far outside the data range (see randomize_output_layer).
            "max_rel_diff": float(np.max(np.abs(outputs["mixed"] - compiled)))
            / max(1.0, max_abs),
        }
    return {
        "num_images": num_images,
        "steps": steps,
        "repeats": repeats,
        "compiled_first_call_s": first_call_s,
        "compiled_s": median["compiled"],
        "loop_s": median["loop"],
        "compiled_s_all": times["compiled"],
        "loop_s_all": times["loop"],
        "compiled_images_per_s": compiled_ips,
        "loop_images_per_s": loop_ips,
        "ratio": compiled_ips / loop_ips,
        "max_abs_diff": max_abs_diff,
        "max_abs_value": max_abs,
        "agree": bool(max_abs_diff <= 1e-3 * max(1.0, max_abs)),
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


def measure_data_pipeline(config, num_files, train_images_per_s, repeats=DATA_REPEATS):
    """Images/s of the folder pipeline: decode, crop, resize to image_size, batch, scale.

    The files are read from a fresh temporary folder (so mostly from the page
    cache after the warm-up pass, as a folder read every epoch would be).
    """
    import tempfile

    import numpy as np
    import tensorflow as tf

    from ddim_keras import data

    with tempfile.TemporaryDirectory(prefix="ddim-benchmark-") as folder:
        paths = write_benchmark_jpegs(folder, num_files)
        started = time.perf_counter()
        images = data.image_files_dataset(paths, config.image_size)
        inspect_s = time.perf_counter() - started
        batches = images.batch(config.batch_size).map(
            data.to_unit_range, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

        def one_pass():
            count = 0
            for batch in batches:
                count += int(batch.shape[0])
            return count

        if one_pass() != num_files:  # warm-up: traces the map functions
            raise DdimError("the benchmark's JPEG files did not all decode.")
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            one_pass()
            times.append(time.perf_counter() - started)
    seconds = float(np.median(times))
    images_per_s = num_files / seconds
    return {
        "format": "JPEG",
        "num_files": num_files,
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
    """FLOP/s of a float32 ``size x size`` matmul, repeated after a warm-up."""
    import tensorflow as tf

    a = tf.random.stateless_uniform((size, size), seed=(SEED, 1), dtype=tf.float32)
    b = tf.random.stateless_uniform((size, size), seed=(SEED, 2), dtype=tf.float32)
    for _ in range(2):
        float(tf.matmul(a, b)[0, 0])
    repeats = 0
    started = time.perf_counter()
    while repeats < 3 or time.perf_counter() - started < min_seconds:
        float(tf.matmul(a, b)[0, 0])  # reading one value waits for the result
        repeats += 1
    elapsed = time.perf_counter() - started
    return {"size": size, "repeats": repeats, "flops_per_s": 2.0 * size**3 * repeats / elapsed}


def measure_mixed_training(config, train_steps, precision, jit_compile, float32_train):
    """The training measurement again, for a model built under ``precision``'s policy."""
    import keras

    from ddim_keras.model import DiffusionModel

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


def run_benchmark(config, steps, train_steps, num_images, jit_compile="auto",
                  matmul_size=DEFAULT_MATMUL_SIZE, precision="float32",
                  repeats=DEFAULT_REPEATS, data_files=DEFAULT_DATA_FILES):
    """Every measurement for one config; returns the result as a dict.

    ``precision`` other than float32 also times training and the compiled
    sampler in that precision (``train.mixed``, ``sampling.mixed``).
    ``data_files`` JPEGs time the data pipeline (``data``; None when 0).
    """
    import keras
    import tensorflow as tf

    from ddim_keras.model import DiffusionModel

    cpu_share = CpuShare()
    rss_before_model = peak_rss_mb()
    # The matmul runs first and last; the faster run is the practical limit (a
    # slower one means something else took CPU or GPU time meanwhile).
    matmul_start = measure_matmul(matmul_size)
    keras.utils.set_random_seed(SEED)
    # No KID: it is never measured here, and its encoder is only built on use.
    model = DiffusionModel(config, kid_weights=None)
    model.compile(jit_compile=jit_compile)

    forward = forward_flops(model.network)
    train = measure_training(model, config, train_steps)
    sampling = measure_sampling(model, num_images, steps, precision, repeats)
    peak_float32 = peak_rss_mb()
    train["mixed"] = None
    if xla_rejects_mixed_precision(jit_compile, precision):
        train["mixed"] = {"precision": precision,
                          "skipped": "XLA for CPU refuses mixed-precision training graphs"}
    elif precision != "float32":
        train["mixed"] = measure_mixed_training(config, train_steps, precision, jit_compile,
                                                train)
    data_pipeline = measure_data_pipeline(config, data_files, train["images_per_s"]) \
        if data_files else None
    matmul_end = measure_matmul(matmul_size)
    matmul_per_s = max(matmul_start["flops_per_s"], matmul_end["flops_per_s"])

    achieved = 3.0 * forward * train["images_per_s"]
    return {
        "device": device_description(),
        "config": config.to_dict(),
        "batch_size": config.batch_size,
        "steps": steps,
        "num_images": num_images,
        "train": train,
        "sampling": sampling,
        "data": data_pipeline,
        "memory": {
            # The float32 model's training and sampling (the reduced-precision
            # sampler's copy included); the second model of train.mixed adds to
            # the process's peak afterwards.
            "peak_rss_mb": peak_float32,
            "peak_rss_mb_before_model": rss_before_model,
            "peak_rss_mb_at_end": peak_rss_mb(),
        },
        "flops": {
            "per_image": forward,
            "train_per_image": 3 * forward,
            "sampling_per_image": steps * forward,
            "achieved_per_s": achieved,
            "sampling_achieved_per_s": steps * forward * sampling["compiled_images_per_s"],
            "matmul_per_s": matmul_per_s,
            "matmul_per_s_first": matmul_start["flops_per_s"],
            "matmul_per_s_last": matmul_end["flops_per_s"],
            "matmul_size": matmul_size,
            "utilization": achieved / matmul_per_s,
            "convention": FLOPS_CONVENTION,
        },
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
        "machine_load": cpu_share.result(),
    }


# -- output --------------------------------------------------------------------------


def _si(value, unit):
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.2f} {prefix}{unit}"
    return f"{value:.2f} {unit}"


def format_table(result):
    train, sampling, flops = result["train"], result["sampling"], result["flops"]
    config = result["config"]
    rows = [
        ("device", result["device"]),
        ("config", f"{config['image_size']} px, widths {config['widths']}, block_depth "
                   f"{config['block_depth']}, batch {result['batch_size']}"),
        ("versions", f"TensorFlow {result['versions']['tensorflow']}, Keras "
                     f"{result['versions']['keras']}"),
        ("train: first step (tracing)", f"{train['first_step_s']:.2f} s"),
        ("train: step time", f"{train['step_s']:.3f} s (min {train['step_s_min']:.3f}, max "
                             f"{train['step_s_max']:.3f}; {train['timed_steps']} steps, "
                             f"XLA {'on' if train['jit_compile'] else 'off'})"),
        ("train: images/s", f"{train['images_per_s']:.2f}"),
    ]
    mixed_train = train.get("mixed")
    if mixed_train and "skipped" in mixed_train:
        rows.append((f"train: {mixed_train['precision']}", f"not measured: "
                                                            f"{mixed_train['skipped']}"))
    elif mixed_train:
        rows.append((f"train: {mixed_train['precision']} step time",
                     f"{mixed_train['step_s']:.3f} s ({mixed_train['images_per_s']:.2f} "
                     f"images/s, {mixed_train['speedup_over_float32']:.2f}x float32)"))
    rows += [
        ("sampling: compiled images/s", f"{sampling['compiled_images_per_s']:.2f} "
                                        f"({sampling['compiled_s']:.2f} s for "
                                        f"{sampling['num_images']} images x "
                                        f"{sampling['steps']} steps; median of "
                                        f"{sampling['repeats']})"),
        ("sampling: Python loop images/s", f"{sampling['loop_images_per_s']:.2f} "
                                           f"({sampling['loop_s']:.2f} s)"),
        ("sampling: compiled / loop", f"{sampling['ratio']:.2f}x"),
        ("sampling: max |compiled - loop|", f"{sampling['max_abs_diff']:.2e} of values up to "
                                            f"{sampling['max_abs_value']:.3g} "
                                            f"({'agree' if sampling['agree'] else 'DIFFER'})"),
    ]
    mixed = sampling["mixed"]
    if mixed is not None:
        rows += [
            (f"sampling: compiled {mixed['precision']} images/s",
             f"{mixed['images_per_s']:.2f} ({mixed['compiled_s']:.2f} s; "
             f"{mixed['ratio']:.2f}x the loop, {mixed['speedup_over_float32']:.2f}x float32)"),
            (f"sampling: {mixed['precision']} vs float32",
             f"max difference {100.0 * mixed['max_rel_diff']:.2g} % of the largest value"),
        ]
    pipeline = result.get("data")
    if pipeline:
        verdict = "keeps up" if pipeline["ratio"] >= 1 else \
            "TOO SLOW: training would wait whenever images are decoded"
        rows.append(("data: JPEG decode + preprocess images/s",
                     f"{pipeline['images_per_s']:.1f} ({pipeline['num_files']} files of "
                     f"{pipeline['file_size']} px to {pipeline['image_size']} px; "
                     f"{pipeline['ratio']:.2f}x the train step's "
                     f"{pipeline['train_images_per_s']:.1f} images/s: {verdict})"))
    rows += [
        ("memory: peak RSS", f"{result['memory']['peak_rss_mb']:.0f} MiB"),
        ("FLOPs: forward per image", _si(flops["per_image"], "FLOP")),
        ("FLOPs: training achieved", _si(flops["achieved_per_s"], "FLOP/s")),
        ("FLOPs: float32 matmul", _si(flops["matmul_per_s"], "FLOP/s")
         + f" ({flops['matmul_size']}x{flops['matmul_size']}; best of "
           f"{_si(flops['matmul_per_s_first'], 'FLOP/s')} first and "
           f"{_si(flops['matmul_per_s_last'], 'FLOP/s')} last)"),
        ("FLOPs: training utilization", f"{100.0 * flops['utilization']:.1f} % of the matmul"),
    ]
    load = result["machine_load"]
    if "other_processes_cpu_share" in load:
        share = load["other_processes_cpu_share"]
        rows.append(("other processes' CPU share", f"{100.0 * share:.0f} %"
                     f" (steal {100.0 * load['steal_share']:.0f} %) over "
                     f"{load['wall_s']:.0f} s; timings are noisy if this is not near 0"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_args(args)
    config = resolve_config(args)
    result = run_benchmark(config, steps=args.steps, train_steps=args.train_steps,
                           num_images=args.num_images,
                           jit_compile=parse_jit_compile(args.jit_compile),
                           matmul_size=args.matmul_size,
                           precision=resolve_precision_name(args.mixed_precision),
                           repeats=args.repeats, data_files=args.data_files)
    print(format_table(result))
    if not result["sampling"]["agree"]:
        print(f"warning: the compiled sampler and the Python loop differ by up to "
              f"{result['sampling']['max_abs_diff']:.3g}.", file=sys.stderr)
    if args.output:
        write_json_atomic(args.output, result)
        print(f"Wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
