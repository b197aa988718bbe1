"""``python -m ddim_keras.sampler_error``: how close each sampler gets to the model's solution.

Decodes the same N initial noises with a long run of the example's sampler
(``--reference-steps`` DDIM steps, time spacing: the solution the trained model
defines) and with every (sampler, spacing) of ``--samplers`` at each budget of
``--calls`` network calls, and reports the RMSE between the two in [0, 1]
pixel units: quality per network call, measured without any dataset or
Inception weights. Prints a table and writes it as JSON (default
``RUN_DIR/sampler_error.json``).
"""

import json
import os
import sys

from ddim_keras.cli.args import (
    add_model_arguments,
    add_result_file_arguments,
    add_samplers_list_argument,
)
from ddim_keras.cli.progress import make_progress
from ddim_keras.cli.runner import ArgumentParser, run_cli
from ddim_keras.core import checks
from ddim_keras.core.durable import write_text
from ddim_keras.io.loading import load_checked_model, resolve_source
from ddim_keras.io.run_dir import check_output_files, check_writable_folder

DEFAULT_SAMPLERS = ",".join(
    f"{sampler}/{spacing}" for sampler in checks.SAMPLERS for spacing in checks.SPACINGS
)
DEFAULT_CALLS = "2,3,5,10,20,50"


def build_parser():
    parser = ArgumentParser(
        prog="python -m ddim_keras.sampler_error",
        description="RMSE between each sampler's images and a long DDIM decode of the same "
        "noise, per number of network calls; printed and written as JSON.",
    )
    add_model_arguments(parser)
    add_samplers_list_argument(parser, DEFAULT_SAMPLERS, "all of them")
    parser.add_argument(
        "--calls",
        default=DEFAULT_CALLS,
        help="comma-separated network-call budgets (default: %(default)s); "
        "heun uses the largest odd number within each",
    )
    parser.add_argument(
        "--reference-steps",
        type=int,
        default=1000,
        help="DDIM steps of the reference decode (default: %(default)s)",
    )
    parser.add_argument(
        "--num-images", type=int, default=64, help="initial noises decoded (default: %(default)s)"
    )
    parser.add_argument(
        "--batch-size", type=int, help="images sampled at once (default: the config's batch_size)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the initial noise (default: %(default)s)"
    )
    parser.add_argument(
        "--reference-run",
        help="run directory whose long DDIM decode is the reference, e.g. a distilled "
        "student's teacher (default: the measured model's own)",
    )
    parser.add_argument(
        "--output", help="JSON file (default: RUN_DIR/sampler_error.json, or beside the checkpoint)"
    )
    add_result_file_arguments(parser)
    return parser


def parse_calls(text):
    calls = checks.parse_number_list(text, int, "--calls")
    return sorted(checks.check_at_least(value, 1, "every --calls value") for value in calls)


def sampler_error(args):
    samplers = checks.parse_samplers(args.samplers)
    calls = parse_calls(args.calls)
    checks.check_steps(args.reference_steps, "--reference-steps")
    checks.check_at_least(args.num_images, 1, "--num-images")
    if args.batch_size is not None:
        checks.check_at_least(args.batch_size, 1, "--batch-size")
    checks.check_seed(args.seed, "--seed")
    say = lambda message: print(message, file=sys.stderr)  # noqa: E731
    checkpoint, config, run_path = resolve_source(args.run, args.checkpoint, args.config, say)
    output = (
        os.path.abspath(args.output)
        if args.output
        else os.path.join(run_path or os.path.dirname(checkpoint), "sampler_error.json")
    )
    check_writable_folder(os.path.dirname(output))
    check_output_files([output], args.overwrite)

    from ddim_keras.metrics.kid import resolve_weights
    from ddim_keras.sampling.solution_error import solution_errors

    model = load_checked_model(checkpoint, config, resolve_weights(args.kid_weights), args.debug)
    reference_model = None
    if args.reference_run:
        from ddim_keras.io.loading import load_model

        reference_model = load_model(run=args.reference_run, kid_weights=None)
    cells = len(samplers) * len(calls)
    with make_progress(not args.no_progress, cells, "samplers", "cell") as bar:
        errors = solution_errors(
            model,
            samplers,
            calls,
            args.reference_steps,
            args.num_images,
            args.seed,
            args.batch_size,
            on_cell=lambda *_: bar.update(1),
            reference_model=reference_model,
        )
    result = {
        "rmse": {label: {str(k): v for k, v in row.items()} for label, row in errors.items()},
        "reference": f"{args.reference_steps} DDIM steps, time spacing"
        + (f", of {os.path.abspath(args.reference_run)}" if args.reference_run else ""),
        "num_images": args.num_images,
        "seed": args.seed,
        "checkpoint": checkpoint,
        "run": run_path,
    }
    write_text(output, json.dumps(result, indent=2) + "\n", user_error=True)
    print(format_table(errors))
    print(output)
    return 0


def format_table(errors):
    """A Markdown table: one row per sampler, one column per budget of network calls."""
    budgets = sorted({calls for row in errors.values() for calls in row})
    lines = [
        "| sampler | " + " | ".join(f"{calls} calls" for calls in budgets) + " |",
        "| --- |" + " --- |" * len(budgets),
    ]
    for label, row in errors.items():
        cells = [f"{row[calls]:.4f}" if calls in row else "" for calls in budgets]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    args = build_parser().parse_args(argv)
    return sampler_error(args)


if __name__ == "__main__":
    sys.exit(run_cli(main))
