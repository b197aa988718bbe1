"""``python -m ddim_keras.inpainting_check``: inpainting measured on a ``shapes`` run.

Hides the half of each of the run's validation images that holds the most of its
shapes, regenerates it with ``model.inpaint``, and reports how often the shapes
classifier's labels of the result match its labels of the original, against the same
figure for plain samples of the same seed (the chance baseline); see
:mod:`ddim_keras.metrics.inpainting`. Prints the result, writes it as JSON (default
``RUN_DIR/inpainting_check.json``) and a picture of the first six images beside it:
rows original, what the model was shown, inpainted, plain sample.
"""

import json
import os
import sys

from ddim_keras.cli.args import (
    SAMPLER_FLAGS,
    add_model_arguments,
    add_result_file_arguments,
    add_sampler_arguments,
)
from ddim_keras.cli.progress import make_progress
from ddim_keras.cli.runner import ArgumentParser, run_cli
from ddim_keras.core import checks
from ddim_keras.core.durable import write_text
from ddim_keras.core.errors import UsageError
from ddim_keras.io.loading import load_checked_model, resolve_source
from ddim_keras.io.run_dir import check_output_files, check_writable_folder
from ddim_keras.io.run_info import training_data

#: Columns of the picture written beside the JSON.
PICTURE_COLUMNS = 6


def build_parser():
    parser = ArgumentParser(
        prog="python -m ddim_keras.inpainting_check",
        description="Inpaint the shape half of a shapes run's validation images and report how "
        "often the shapes classifier's labels of the result match the original's, against "
        "plain samples; printed and written as JSON with a picture.",
    )
    add_model_arguments(parser)
    add_sampler_arguments(parser)
    parser.add_argument(
        "--steps", type=int, default=20, help="diffusion steps (default: %(default)s)"
    )
    parser.add_argument(
        "--resample",
        type=int,
        default=1,
        help="RePaint resampling: every step but the last done N times (default: %(default)s; "
        "ddim and heun only)",
    )
    parser.add_argument(
        "--num-images",
        type=int,
        default=500,
        help="validation images used, from the first (default: %(default)s, all of them)",
    )
    parser.add_argument(
        "--batch-size", type=int, help="images sampled at once (default: the config's batch_size)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the sampler's noise (default: %(default)s)"
    )
    parser.add_argument(
        "--output",
        help="JSON file; the picture is written beside it as .png "
        "(default: RUN_DIR/inpainting_check.json)",
    )
    add_result_file_arguments(parser)
    return parser


def check_args(args):
    checks.check_sampler(args.sampler, args.spacing, args.eta, SAMPLER_FLAGS)
    checks.check_steps(args.steps, "--steps")
    checks.check_resample(args.resample, args.sampler, ("--resample", "--sampler"))
    checks.check_at_least(args.num_images, 1, "--num-images")
    if args.batch_size is not None:
        checks.check_at_least(args.batch_size, 1, "--batch-size")
    checks.check_seed(args.seed, "--seed")


def inpainting_check(args):
    check_args(args)
    say = lambda message: print(message, file=sys.stderr)  # noqa: E731
    checkpoint, config, run_path = resolve_source(args.run, args.checkpoint, args.config, say)
    if run_path is None:
        raise UsageError(
            "inpainting_check needs --run RUN_DIR: it measures on the run's own shapes "
            "validation images, which its run.json names."
        )
    dataset, _, data_seed = training_data(None, None, run_path)
    if dataset != "shapes":
        raise UsageError(
            f"run {run_path} was trained on {dataset!r}; inpainting_check measures with the "
            "shapes generator's labels and the shapes classifier, so it needs a run trained "
            "with --dataset shapes. For other runs, inpaint pictures with "
            "`python -m ddim_keras.generate --mode inpaint`."
        )
    output = os.path.abspath(args.output or os.path.join(run_path, "inpainting_check.json"))
    picture = os.path.splitext(output)[0] + ".png"
    check_writable_folder(os.path.dirname(output))
    check_output_files([output, picture], args.overwrite)

    import numpy as np

    from ddim_keras.data.shapes import shapes_validation_with_labels
    from ddim_keras.io.images import save_grid
    from ddim_keras.metrics.inpainting import inpainting_agreement
    from ddim_keras.metrics.kid import resolve_weights

    images, labels = shapes_validation_with_labels(config.image_size, seed=data_seed)
    count = min(args.num_images, len(images))
    images = images[:count].astype("float32") / 255.0
    coverage = labels["coverage"][:count]
    model = load_checked_model(checkpoint, config, resolve_weights(args.kid_weights), args.debug)
    with make_progress(not args.no_progress, 2 * count, "inpainting", "image") as bar:
        result = inpainting_agreement(
            model,
            images,
            coverage,
            args.steps,
            seed=args.seed,
            resample=args.resample,
            sampler=args.sampler,
            spacing=args.spacing,
            eta=args.eta,
            batch_size=args.batch_size,
            progress=lambda done, _: bar.update(done - bar.n),
        )
    shown = min(PICTURE_COLUMNS, count)
    masks = result["masks"][:shown, ..., None]
    rows = [
        images[:shown],
        images[:shown] * (1.0 - masks) + 0.5 * masks,  # the hidden half in grey
        result["inpainted_images"][:shown],
        result["generated_images"][:shown],
    ]
    save_grid(np.concatenate(rows), picture, num_rows=len(rows), num_cols=shown)
    summary = {
        key: result[key]
        for key in (
            "inpainted",
            "unconditional",
            "recognised_inpainted",
            "recognised_unconditional",
            "halves",
        )
    }
    summary.update(
        num_images=count,
        steps=args.steps,
        sampler=args.sampler,
        spacing=args.spacing,
        eta=args.eta,
        resample=args.resample,
        seed=args.seed,
        checkpoint=checkpoint,
        run=run_path,
    )
    write_text(output, json.dumps(summary, indent=2) + "\n", user_error=True)
    print(
        f"Labels match the original's: {summary['inpainted']:.1%} of inpainted images, "
        f"{summary['unconditional']:.1%} of plain samples (chance); recognised: "
        f"{summary['recognised_inpainted']:.1%} / {summary['recognised_unconditional']:.1%}."
    )
    print(output)
    print(picture)
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    return inpainting_check(args)


if __name__ == "__main__":
    sys.exit(run_cli(main))
