"""The experiments report's "Training objectives" table: shapes runs that differ in objective.

One row per ``experiments/shapes_*.json`` (and per shapes run trained from one): its
objective fields, the validation KID its training recorded after 6, 12 and 24 epochs
(``history.csv``'s ``val_kid``: 5 DDIM steps on the 500 validation images, shapes
classifier features), and its final sweep cells: ``dpmpp_2m`` with logSNR spacing at 10
network calls, DDIM at 20 steps (with the share of samples the shapes classifier
recognises), both from the best checkpoint. Every cell is read from a file; a missing
file reads "not run yet".
"""

from ddim_keras.core.config import PREDICTIONS, DiffusionConfig, is_gan

NOT_RUN = "not run yet"

#: Epochs at which the table reads each run's validation KID.
KID_EPOCHS = (6, 12, 24)

#: The sweep cells of the table: (column title, sampler label in sweep.csv, steps).
SWEEP_CELLS = (
    ("KID, dpmpp_2m/logsnr, 10 calls", "dpmpp_2m/logsnr", 10),
    ("KID, DDIM 20 steps (recognised)", "DDIM", 20),
)

_DEFAULT = DiffusionConfig()


def objective_text(config):
    """The run's objective in words: the fields that differ from the example's."""
    parts = [f"{config.prediction} prediction"]
    if config.loss != _DEFAULT.loss:
        parts.append(f"{config.loss} loss")
    if config.loss_weighting == "min_snr":
        parts.append(f"min-SNR γ={config.snr_gamma:g}")
    if config.augment != _DEFAULT.augment:
        parts.append(f"{config.augment}s")
    if config.ema_warmup:
        parts.append("EMA warm-up")
    return ", ".join(parts)


def kid_after(history, epoch):
    """``val_kid`` after ``epoch`` epochs (history rows count epochs from 0), or None."""
    for row in history:
        try:
            if int(row["epoch"]) + 1 == epoch and row.get("val_kid"):
                return float(row["val_kid"])
        except (KeyError, ValueError):
            continue
    return None


def sweep_cell(run, sampler, steps):
    """(KID, recognised share or None) of one sweep cell at eta 0, or None."""
    for row in reversed(run["sweep"]):
        try:
            if row["sampler"] == sampler and int(row["steps"]) == steps and float(row["eta"]) == 0:
                recognised = row.get("recognised") or ""
                return float(row["kid"]), (float(recognised) if recognised else None)
        except (KeyError, ValueError):
            continue
    return None


def _row_order(config):
    """The example's objective first, then each prediction with its changes, fewest first."""
    changes = (
        int(config.loss != _DEFAULT.loss)
        + int(config.loss_weighting != _DEFAULT.loss_weighting)
        + int(config.augment != _DEFAULT.augment)
        + int(config.ema_warmup != _DEFAULT.ema_warmup)
    )
    return (PREDICTIONS.index(config.prediction), changes)


def is_objective_experiment(name):
    return name.startswith("shapes_")


def objectives_table(experiments, runs, format_kid, format_duration):
    """Markdown lines of the table (empty when there is no shapes objective experiment)."""

    def config_of(name):
        run = runs.get(name)
        return run["config"] if run is not None else experiments[name]["config"]

    names = [name for name in experiments if is_objective_experiment(name)]
    names += [n for n in runs if is_objective_experiment(n) and n not in experiments]
    # A class-conditional run changes what is drawn, not the objective (its own table);
    # a GAN is no diffusion objective (gan_table.py).
    names = [
        name for name in names if not config_of(name).num_classes and not is_gan(config_of(name))
    ]
    if not names:
        return []

    names.sort(key=lambda name: (_row_order(config_of(name)), name))
    header = (
        ["experiment", "objective"]
        + [f"val KID after {epoch} epochs" for epoch in KID_EPOCHS]
        + [title for title, _, _ in SWEEP_CELLS]
        + ["training time"]
    )
    lines = [
        "### Training objectives",
        "",
        "`shapes` preset (32 px, widths [16, 32, 64], batch 32, 24 epochs) with KID on;"
        " **val KID** is what training recorded each epoch (5 DDIM steps, the 500 validation"
        " images, shapes classifier features); the last columns are the sweep of the run's best"
        " checkpoint (by val KID) over the same 500 images (seed 0), with the share of samples"
        " the shapes classifier recognises (real images: 88 %). Lower KID is better. Training"
        " times are wall times with three or four runs sharing the machine.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + " --- |" * len(header),
    ]
    for name in names:
        run = runs.get(name)
        config = run["config"] if run is not None else experiments[name]["config"]
        cells = [f"`{name}`", objective_text(config)]
        if run is None:
            cells += [NOT_RUN] * (len(header) - 2)
            lines.append("| " + " | ".join(cells) + " |")
            continue
        for epoch in KID_EPOCHS:
            kid = kid_after(run["history"], epoch)
            cells.append(NOT_RUN if kid is None else format_kid(kid))
        for _, sampler, steps in SWEEP_CELLS:
            cell = sweep_cell(run, sampler, steps)
            if cell is None:
                cells.append(NOT_RUN)
            else:
                kid, recognised = cell
                text = format_kid(kid)
                if recognised is not None:
                    text += f" ({recognised:.0%})"
                cells.append(text)
        seconds = run["training_seconds"]
        epochs = run["state"].get("epoch")
        cells.append(
            NOT_RUN
            if seconds is None
            else f"{format_duration(seconds)}, {epochs or 0}/{config.epochs} epochs"
        )
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    return lines
