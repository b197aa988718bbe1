"""The experiments report's GAN table: the GAN baseline beside diffusion on ``shapes``.

One row per GAN run on shapes (``experiments/shapes_gan*.json``, its sweep's one cell:
one generator call per image), then the diffusion reference, the ``shapes`` experiment
(the demo's config), at 1, 5, 10 and 20 network calls with DDIM and with
``dpmpp_2m/logsnr``. Each row: KID over the 500 validation images with the shapes
classifier's features, the share of samples the classifier recognises, the training
images seen and the training time. Every cell is read from a file; a missing one reads
"not run yet" (or "not recorded" for a time nobody measured).
"""

from ddim_keras.core.config import is_gan

NOT_RUN = "not run yet"
NOT_RECORDED = "not recorded"

#: The diffusion run the GAN is compared with: the demo's config (experiments/shapes.json).
DIFFUSION_REFERENCE = "shapes"
#: Its sweep cells in the table: (sampler label in sweep.csv, network calls).
DIFFUSION_CELLS = tuple(
    (sampler, calls) for sampler in ("DDIM", "dpmpp_2m/logsnr") for calls in (1, 5, 10, 20)
)
#: Training images per epoch of shapes (its train split).
SHAPES_EPOCH_IMAGES = 2000


def _sweep_row(run, sampler, calls):
    for row in reversed(run["sweep"]):
        try:
            if row["sampler"] == sampler and int(row["network_calls"]) == calls:
                return row
        except (KeyError, ValueError):
            continue
    return None


def _result_cells(row, format_kid):
    if row is None:
        return [NOT_RUN, NOT_RUN]
    recognised = row.get("recognised") or ""
    return [
        format_kid(float(row["kid"])),
        f"{float(recognised):.0%}" if recognised else NOT_RUN,
    ]


def _training_cells(run, format_duration):
    epochs = run["state"].get("epoch") or run["config"].epochs
    seconds = run["training_seconds"]
    return [
        f"{epochs * SHAPES_EPOCH_IMAGES:,} ({epochs} epochs)",
        NOT_RECORDED if seconds is None else format_duration(seconds),
    ]


def gan_table(experiments, runs, format_kid, format_duration):
    """Markdown lines of the table (empty when there is no GAN experiment on shapes)."""

    def config_of(name):
        run = runs.get(name)
        return run["config"] if run is not None else experiments[name]["config"]

    names = list(experiments) + [name for name in runs if name not in experiments]
    gans = [name for name in names if name.startswith("shapes") and is_gan(config_of(name))]
    if not gans:
        return []
    header = [
        "model",
        "network calls per image",
        "KID (lower is better)",
        "recognised",
        "training images seen",
        "training time",
    ]
    lines = [
        "### GAN baseline against diffusion (shapes)",
        "",
        "The GAN baseline (`--model gan`: keras.io's data-efficient GAN with adaptive"
        " discriminator augmentation, see docs/gan.md) beside the diffusion demo's config"
        " (`shapes`), both scored as the sweep scores them: KID over the 500 validation images"
        " (seed 0) with the shapes classifier's features, and the share of samples the"
        " classifier recognises confidently (real images: 88 %). A GAN makes an image in one"
        " generator call; the diffusion rows are its sweep at 1, 5, 10 and 20 network calls.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + " --- |" * len(header),
    ]
    for name in gans:
        run = runs.get(name)
        cells = [f"GAN `{name}`", "1"]
        if run is None:
            cells += [NOT_RUN] * 4
        else:
            row = next((r for r in run["sweep"] if r.get("network_calls") == "1"), None)
            cells += _result_cells(row, format_kid) + _training_cells(run, format_duration)
        lines.append("| " + " | ".join(cells) + " |")
    reference = runs.get(DIFFUSION_REFERENCE)
    for sampler, calls in DIFFUSION_CELLS:
        cells = [f"diffusion `{DIFFUSION_REFERENCE}`, {sampler}", str(calls)]
        if reference is None:
            cells += [NOT_RUN] * 4
        else:
            cells += _result_cells(_sweep_row(reference, sampler, calls), format_kid)
            cells += _training_cells(reference, format_duration)
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    return lines
