"""``python -m ddim_keras.sweep``: KID against the number of network calls, per sampler.

For each run (``--run``, repeatable) and each cell (steps, sampler, eta) of the
grid (``--samplers``: the example's ``ddim`` by default, with every ``--etas``
value; the other samplers are deterministic and run with eta 0),
generates N images and measures their KID against N validation images as
``ddim_keras.evaluate`` does (``ddim_keras.metrics.evaluation``: per-batch KID, averaged). The
validation images are encoded once per run and their features reused for
every cell. Writes, per run::

    RUN_DIR/sweep/sweep.csv          one row per cell (see COLUMNS)
    RUN_DIR/sweep/kid_vs_steps.png   KID against network calls (log x), one line per sampler

Re-running reuses the cells already in the CSV whose cache key matches (the
checkpoint's path, size and mtime, steps, sampler, spacing, eta, N, batch size,
seed, dataset, data dir, background, KID weights and encoder); only missing
cells are computed.
``--force`` recomputes.
"""

import os
import sys
import time

from ddim_keras.cli.args import (
    add_background_argument,
    add_dataset_argument,
    add_debug_argument,
    add_kid_encoder_argument,
    add_samplers_list_argument,
)
from ddim_keras.cli.gan_args import GAN_LABEL
from ddim_keras.cli.runner import ArgumentParser, run_cli
from ddim_keras.core import checks
from ddim_keras.core.classes import check_guidance
from ddim_keras.core.config import is_gan
from ddim_keras.core.datasets import format_background
from ddim_keras.core.devices import machine_description
from ddim_keras.core.errors import DdimError, UsageError
from ddim_keras.io.loading import resolve_source
from ddim_keras.io.run_info import run_classes, run_label, training_background, training_data
from ddim_keras.io.sweep_results import (
    CSV_NAME,
    PLOT_NAME,
    SWEEP_FOLDER,
    cache_key,
    cache_key_or_none,
    plot,
    read_rows,
    weights_title,
    write_rows,
)
from ddim_keras.metrics import evaluation
from ddim_keras.metrics import guidance as guidance_numbers

DEFAULT_STEPS = (1, 2, 3, 5, 10, 20, 50)


DEFAULT_ETAS = (0.0, 1.0)


DEFAULT_NUM_IMAGES = 1000


def build_parser():
    parser = ArgumentParser(
        prog="python -m ddim_keras.sweep",
        description="KID of trained runs for a grid of sampling steps and eta (0 = DDIM, "
        "1 = DDPM); writes RUN_DIR/sweep/sweep.csv and kid_vs_steps.png, reusing "
        "cells already measured.",
    )
    parser.add_argument(
        "--run",
        action="append",
        required=True,
        metavar="RUN_DIR",
        help="run directory written by ddim_keras.train (repeatable)",
    )
    parser.add_argument(
        "--steps",
        default=",".join(map(str, DEFAULT_STEPS)),
        help="comma-separated diffusion step counts (default: %(default)s)",
    )
    add_samplers_list_argument(parser, "ddim", "ddim, the example's")
    parser.add_argument(
        "--guidance",
        help="class-conditional runs: comma-separated guidance scales w (0 = unconditional, "
        "1 = plain conditional), each a cell of every sampler; samples are of the validation "
        "images' classes, with per-class KID (and, on shapes, the share showing the requested "
        "kind). Default: unconditional samples only",
    )
    parser.add_argument(
        "--etas",
        default="0,1",
        help="comma-separated eta values, 0 = DDIM, 1 = DDPM (default: %(default)s)",
    )
    parser.add_argument(
        "--num-images",
        type=int,
        default=DEFAULT_NUM_IMAGES,
        help="generated and validation images per cell (default: %(default)s; "
        "rounded down to whole batches)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        help="images per KID estimate, at least 2 (default: the config's batch_size)",
    )
    parser.add_argument(
        "--kid-weights",
        default="imagenet",
        help="InceptionV3 weights for KID: 'imagenet', a local no-top .h5 file, "
        "or 'none' (random: not comparable with published KIDs). "
        "(default: %(default)s)",
    )
    add_kid_encoder_argument(parser)
    add_dataset_argument(parser, "validation images to compare with (default: each run's dataset)")
    parser.add_argument(
        "--data-dir",
        help="image folder for 'folder'; tfds data_dir for "
        "flowers/celeba/tfds:NAME (default: the run's)",
    )
    add_background_argument(parser, "each run's, from run.json, else white")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the generated images (default: %(default)s)"
    )
    parser.add_argument(
        "--force", action="store_true", help="recompute every cell instead of reusing the CSV's"
    )
    add_debug_argument(parser)
    return parser


def check_args(args):
    steps = checks.parse_number_list(args.steps, int, "--steps")
    if min(steps) < 1:
        raise UsageError(f"--steps must all be at least 1, got {args.steps}.")
    etas = checks.parse_number_list(args.etas, float, "--etas")
    for eta in etas:
        checks.check_eta(eta, "every --etas value")
    evaluation.check_kid_settings(args.num_images, args.batch_size, args.seed)
    guidances = [None]
    if args.guidance is not None:
        guidances = checks.parse_number_list(args.guidance, float, "--guidance")
        for guidance in guidances:
            check_guidance(guidance, "every --guidance value")
    return steps, etas, checks.parse_samplers(args.samplers), guidances


def sampler_name(eta, solver="ddim", spacing="time", guidance=None):
    """A cell's label in the CSV and the plot: DDIM / DDPM / eta=E for the example's
    sampler (with /SPACING when not time), else SAMPLER/SPACING; `` w=G`` for a
    guided cell."""
    if solver != "ddim":
        name = checks.sampler_label(solver, spacing)
    else:
        name = "DDIM" if eta == 0 else "DDPM" if eta == 1 else f"eta={eta:g}"
        name = name if spacing == "time" else f"{name}/{spacing}"
    return name if guidance is None else f"{name} w={guidance:g}"


def cells_of(steps_list, etas, samplers, guidances=(None,)):
    """(steps, eta, solver, spacing, guidance) of every cell: ddim with each eta, the
    others with 0; each with every guidance (None: unconditional samples)."""
    return [
        (steps, eta, solver, spacing, guidance)
        for guidance in guidances
        for solver, spacing in samplers
        for eta in (etas if solver == "ddim" else [0.0])
        for steps in steps_list
    ]


def sweep_run(run, args, steps_list, etas, samplers, guidances, kid_weights, say, machine):
    """Measure (or reuse) every cell of one run; returns the path of its CSV."""
    checkpoint, config, run_path = resolve_source(run=run, say=say)
    gan = is_gan(config)
    if gan:  # one cell: a GAN has no steps or sampler, each image is one generator call
        say(f"{run_path} is a GAN run: one cell, one generator call per image.")
        steps_list, etas, samplers = [1], [0.0], [("ddim", "time")]
    dataset, data_dir, data_seed = training_data(args.dataset, args.data_dir, run_path)
    background = training_background(args.background, run_path)
    class_names = run_classes(run_path)
    guided = guidances != [None]
    if guided:
        guidance_numbers.check_guided_run(run_path, config, class_names)

    folder = os.path.join(run_path, SWEEP_FOLDER)
    os.makedirs(folder, exist_ok=True)
    csv_path = os.path.join(folder, CSV_NAME)
    stat = os.stat(checkpoint)
    batch_size = args.batch_size or config.batch_size
    common = {
        "run": os.path.basename(run_path),
        "dataset": dataset,
        # Absolute, as run.json records it; shapes reads none.
        "data_dir": os.path.abspath(os.path.expanduser(data_dir))
        if data_dir and dataset != "shapes"
        else "",
        "config": os.path.basename(run_path),
        "loss": "non-saturating" if gan else config.loss,
        "schedule": config.schedule,
        "kid_weights": evaluation.weights_label(kid_weights, args.kid_encoder),
        "kid_encoder": args.kid_encoder,
        "background": format_background(background),
        "seed": args.seed,
        "num_images_requested": args.num_images,
        "batch_size": batch_size,
        "checkpoint": os.path.relpath(checkpoint, run_path),
        "checkpoint_size": stat.st_size,
        "checkpoint_mtime": f"{stat.st_mtime:.6f}",
    }
    from ddim_keras.sampling.step_rules import network_calls

    wanted = [
        dict(
            common,
            steps=steps,
            eta=f"{eta:g}",
            solver=solver,
            spacing=spacing,
            sampler=GAN_LABEL if gan else sampler_name(eta, solver, spacing, guidance),
            # A guided step (w other than 0 and 1) calls the network on a doubled batch.
            network_calls=network_calls(solver, steps),
            guidance="" if guidance is None else f"{guidance:g}",
        )
        for steps, eta, solver, spacing, guidance in cells_of(steps_list, etas, samplers, guidances)
    ]
    # The floor: real training images in place of generated ones (steps 0, no sampler).
    wanted.append(
        dict(
            common,
            steps=0,
            eta="0",
            solver="real",
            spacing="-",
            sampler=evaluation.FLOOR_LABEL,
            network_calls=0,
        )
    )

    existing = read_rows(csv_path)
    cached = {}
    for row in [] if args.force else existing:
        try:
            cached[cache_key(row)] = row
        except (KeyError, ValueError, TypeError):
            continue  # a row of an older layout: ignored, measured again if wanted
    missing = [cell for cell in wanted if cache_key(cell) not in cached]
    wanted_keys = [cache_key(cell) for cell in wanted]
    # Rows of other cells (another N, seed, checkpoint...) stay in the CSV.
    others = [row for row in existing if cache_key_or_none(row) not in set(wanted_keys)]
    say(
        f"{run_path}: {len(wanted) - len(missing)} of {len(wanted)} cells cached, "
        f"{len(missing)} to measure."
    )

    if missing:
        import numpy as np

        from ddim_keras.io.loading import load_model

        model = load_model(checkpoint=checkpoint, config=config, kid_weights=kid_weights)
        if model.diffusion_config.num_classes and not guided:
            say(evaluation.UNCONDITIONAL_KID_NOTE)
        real_batches, num_images, batch_size = evaluation.validation_batches(
            dataset,
            config,
            data_dir,
            data_seed,
            args.num_images,
            args.batch_size,
            say,
            background=background,
            conditional=guided,
            attribute=run_label(run_path),
        )
        real_labels = None
        if guided:
            real_batches, real_labels = guidance_numbers.split_labelled(real_batches)
        encoder = evaluation.make_encoder(
            config, kid_weights, say, encoder_name=args.kid_encoder, dataset=dataset
        )
        started = time.perf_counter()
        real_features = evaluation.encode_batches(encoder, real_batches)
        say(
            f"Encoded {len(real_features) * batch_size} {dataset} validation images once "
            f"({time.perf_counter() - started:.1f} s)."
        )
        if not real_features:
            raise DdimError(
                f"the {dataset} validation set gave no whole batch of {batch_size} "
                "images; lower --batch-size."
            )
        recognise = None
        if args.kid_encoder == "shapes":
            # The share of generated images the shapes classifier recognises confidently.
            from ddim_keras.metrics.shapes_classifier import recognised_fraction

            recognise = recognised_fraction
        for cell in missing:
            started = time.perf_counter()
            fractions = []
            classify = (
                None if recognise is None else (lambda images: fractions.append(recognise(images)))  # noqa: B023
            )
            numbers = None
            if cell.get("guidance") and cell["solver"] != "real":
                numbers = guidance_numbers.GuidedNumbers(
                    real_labels,
                    class_names,
                    batch_size,
                    classify=guidance_numbers.can_check_kinds(dataset, class_names),
                )
                classify = numbers.on_generated
            if cell["solver"] == "real":
                values = evaluation.real_floor(
                    encoder,
                    real_features,
                    dataset,
                    config,
                    data_dir,
                    data_seed,
                    batch_size,
                    background,
                    classify,
                )
            else:
                values = evaluation.compute_kid(
                    model,
                    encoder,
                    real_features,
                    batch_size,
                    cell["steps"],
                    float(cell["eta"]),
                    args.seed,
                    num_images,
                    sampler=cell["solver"],
                    spacing=cell["spacing"],
                    on_generated=classify,
                    labels=real_labels if numbers else None,
                    guidance=float(cell.get("guidance") or 1),
                    on_features=numbers.on_features if numbers else None,
                )
            seconds = time.perf_counter() - started
            cell.update(
                kid=f"{float(np.mean(values)):.6g}",
                kid_std=f"{float(np.std(values)):.3g}",
                num_images=len(values) * batch_size,
                seconds=f"{seconds:.2f}",
                machine=machine,
                recognised=f"{float(np.mean(fractions)):.3f}" if fractions else "",
            )
            if numbers is not None:
                cell.update(guided_columns(numbers.results(real_features)))
            cached[cache_key(cell)] = cell
            say(
                f"  {cell['sampler']:>4} {cell['steps']:>3} steps: KID {cell['kid']} "
                f"({seconds:.1f} s)"
            )
            # Written after every cell, so an interrupted sweep keeps what it measured.
            write_rows(csv_path, others + [cached[key] for key in wanted_keys if key in cached])

    rows = [cached[key] for key in wanted_keys]
    write_rows(csv_path, others + rows)
    plot(
        rows,
        os.path.join(folder, PLOT_NAME),
        f"{os.path.basename(run_path)} ({dataset}, {config.loss}, {config.schedule}): KID of "
        f"{rows[0]['num_images']} images, {weights_title(common['kid_weights'])}",
    )
    for row in rows:
        print(f"{row['run']}\t{row['sampler']}\t{row['steps']}\t{row['kid']}")
    return csv_path


def guided_columns(numbers):
    """The CSV cells of a guided measurement (``GuidedNumbers`` results)."""
    columns = {"class_kids": guidance_numbers.format_per_class(numbers["class_kids"])}
    if numbers["requested"] is not None:
        columns.update(
            requested=f"{numbers['requested']:.3f}",
            requested_per_class=guidance_numbers.format_per_class(
                numbers["requested_per_class"], 3
            ),
            recognised=f"{numbers['recognised']:.3f}",
        )
    return columns


def sweep(args):
    steps_list, etas, samplers, guidances = check_args(args)
    say = lambda message: print(message, file=sys.stderr)  # noqa: E731
    from ddim_keras.io.run_dir import RunDir

    for run in args.run:  # every run is checked before any is measured
        if not os.path.isdir(run):
            raise DdimError(f"run directory {os.path.abspath(run)} does not exist.")
        RunDir(run).read_config()

    from ddim_keras.metrics.kid import resolve_weights

    kid_weights = resolve_weights(args.kid_weights)
    machine = machine_description()
    for run in args.run:
        print(
            sweep_run(run, args, steps_list, etas, samplers, guidances, kid_weights, say, machine)
        )
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    return sweep(args)


if __name__ == "__main__":
    sys.exit(run_cli(main))
