"""``python -m ddim_keras.benchmark``: training and sampling speed, memory and FLOPs.

Measures one config (a preset or a JSON file) on synthetic data of its shape, on
the active Keras backend; what is measured, and how, is told in
:mod:`ddim_keras.bench`, which does the measuring. This command parses and checks
the flags (before TensorFlow is imported, so that bad flags fail fast), calls
:func:`~ddim_keras.bench.run.run_benchmark` and prints its table.

``--skip`` leaves out whole parts (train, sampling, loop, data, matmul).
``--backends tensorflow,jax,torch`` instead runs the training measurement
under each backend in its own process, in turns (``--rounds``), at the same
config, and reports each backend's images/s and its ratio to TensorFlow's
(:func:`~ddim_keras.bench.backends.compare_backends`).

Prints a table; ``--output FILE.json`` also writes every number as JSON.
"""

import os
import sys

from ddim_keras.bench.backends import compare_backends
from ddim_keras.bench.data_pipeline import DATA_FILE_SIZE
from ddim_keras.bench.defaults import (
    DEFAULT_DATA_FILES,
    DEFAULT_MATMUL_SIZE,
    DEFAULT_NUM_IMAGES,
    DEFAULT_PRESET,
    DEFAULT_REPEATS,
    DEFAULT_STEPS,
    DEFAULT_TRAIN_STEPS,
    PARTS,
)
from ddim_keras.bench.run import run_benchmark
from ddim_keras.bench.tables import format_backends_table, format_table
from ddim_keras.cli.args import add_debug_argument
from ddim_keras.cli.runner import ArgumentParser, run_cli
from ddim_keras.core.backend import (
    BACKENDS,  # the order --backends reports them in, TensorFlow first
)
from ddim_keras.core.config import DiffusionConfig, preset
from ddim_keras.core.devices import PRECISIONS, resolve_precision_name
from ddim_keras.core.errors import UsageError
from ddim_keras.io.run_dir import check_writable_folder, write_json_atomic
from ddim_keras.model.distribute import JIT_CHOICES, parse_jit_compile


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
