"""A sweep's results: ``RUN_DIR/sweep/sweep.csv`` (one row per measured cell) and its plot.

``python -m ddim_keras.sweep`` writes them; the report (:mod:`ddim_keras.io.experiments`)
reads them. A cell is reused when its cache key (:func:`cache_key`) matches: the
checkpoint, the sampler settings, the number of images, the batch size, the seed,
the KID weights and encoder, and the data it was measured against.
"""

import csv
import os

from ddim_keras.core.durable import write_durably
from ddim_keras.core.errors import DdimError
from ddim_keras.metrics import evaluation

SWEEP_FOLDER = "sweep"


CSV_NAME = "sweep.csv"


PLOT_NAME = "kid_vs_steps.png"


#: Columns of sweep.csv; the last ones form the cache key with steps and eta.
COLUMNS = (
    "run",
    "dataset",
    "config",
    "loss",
    "schedule",
    "steps",
    "eta",
    "sampler",
    "kid",
    "kid_std",
    "num_images",
    "kid_weights",
    "seconds",
    "machine",
    "batch_size",
    "seed",
    "num_images_requested",
    "checkpoint",
    "checkpoint_size",
    "checkpoint_mtime",
    "kid_encoder",
    "background",
    "solver",
    "spacing",
    "network_calls",
    "recognised",
    "data_dir",
    "guidance",
    "requested",
    "requested_per_class",
    "class_kids",
)


KEY_COLUMNS = (
    "dataset",
    "data_dir",
    "steps",
    "eta",
    "num_images_requested",
    "batch_size",
    "seed",
    "kid_weights",
    "checkpoint",
    "checkpoint_size",
    "checkpoint_mtime",
    "kid_encoder",
    "background",
    "solver",
    "spacing",
    "guidance",
)


#: What rows written before a column existed were measured with.
OLDER_ROWS = {
    "kid_encoder": "inception",
    "background": "white",
    "solver": "ddim",
    "spacing": "time",
    # No folder: a folder's cells always name theirs, so its older rows match none.
    "data_dir": "",
    # Unguided: unconditional samples (all rows before --guidance).
    "guidance": "",
}


def read_rows(path):
    if not os.path.isfile(path):
        return []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except (OSError, csv.Error) as error:
        raise DdimError(f"{path} is unreadable ({error}); remove it to measure again.") from None


def write_rows(path, rows):
    def save(tmp_path):
        with open(tmp_path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow(row)

    write_durably(path, save)


def cache_key(row):
    """The identity of a cell as strings (values read back from the CSV compare equal)."""
    key = []
    for column in KEY_COLUMNS:
        # Rows written before a column was recorded were measured with its OLDER_ROWS
        # value (the background changes nothing for images without transparency).
        value = (row.get(column) or OLDER_ROWS[column]) if column in OLDER_ROWS else row[column]
        if column == "eta":
            value = f"{float(value):g}"
        elif column in ("steps", "num_images_requested", "batch_size", "seed", "checkpoint_size"):
            value = str(int(value))
        elif column == "guidance" and value:
            value = f"{float(value):g}"
        elif column == "checkpoint_mtime":
            value = f"{float(value):.6f}"
        key.append(str(value))
    return tuple(key)


def plot(rows, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4), dpi=100)
    for row in rows:
        if row["sampler"] == evaluation.FLOOR_LABEL:
            axis.axhline(
                float(row["kid"]), color="grey", linestyle="--", label=evaluation.FLOOR_LABEL
            )
    rows = [row for row in rows if row["sampler"] != evaluation.FLOOR_LABEL]
    for sampler in dict.fromkeys(row["sampler"] for row in rows):
        points = sorted(
            (calls_of(row), float(row["kid"])) for row in rows if row["sampler"] == sampler
        )
        axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=sampler)
    axis.set_xscale("log")
    calls = sorted({calls_of(row) for row in rows})
    # Round ticks within the range: Heun's odd call counts would crowd the axis.
    ticks = [
        t for t in (1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000) if calls[0] <= t <= calls[-1]
    ] or calls
    if calls[-1] > 1.5 * ticks[-1]:
        ticks.append(calls[-1])  # the largest count measured, when no round tick is near
    axis.set_xticks(ticks)
    axis.set_xticklabels([str(t) for t in ticks])
    axis.minorticks_off()
    kids = [float(row["kid"]) for row in rows]
    if kids and min(kids) > 0 and max(kids) > 100 * min(kids):
        axis.set_yscale("log")  # a diverging sampler would flatten every other line
    axis.set_xlabel("network calls (steps; Heun: 2 per step but the last)")
    axis.set_ylabel("KID (lower is better)")
    axis.set_title(title, fontsize=9)
    axis.grid(True, alpha=0.3)
    axis.legend()
    figure.tight_layout()
    try:
        write_durably(path, figure.savefig)
    finally:
        plt.close(figure)


def calls_of(row):
    """A row's network calls (rows written before they were recorded: its steps)."""
    return int(row.get("network_calls") or row["steps"])


def weights_title(label):
    if label == evaluation.SHAPES_WEIGHTS_LABEL:
        return "shapes classifier features"
    if label == "none":
        return "random Inception weights (not comparable)"
    return f"Inception weights {os.path.basename(label)}"


def cache_key_or_none(row):
    try:
        return cache_key(row)
    except (KeyError, ValueError, TypeError):
        return None
