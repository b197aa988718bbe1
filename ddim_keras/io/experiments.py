"""The experiments report: what each run measured, read from its files, as markdown tables.

:func:`build_report` turns the experiment configs (``experiments/*.json``) and
the runs trained from them (their ``run.json``, ``history.csv`` and sweep results)
into the tables of ``experiments/README.md``, beside the KIDs published by
clear-diffusion-keras; ``python -m ddim_keras.report`` writes them.
"""

import csv
import glob
import json
import os
import shutil

from ddim_keras.core.config import is_gan
from ddim_keras.core.datasets import DATASETS
from ddim_keras.io.gan_table import gan_table
from ddim_keras.io.guidance_table import guidance_table
from ddim_keras.io.objectives_table import objectives_table
from ddim_keras.io.sweep_results import CSV_NAME, PLOT_NAME, SWEEP_FOLDER

NOT_RUN = "not run yet"
HISTORY_NAME = "history.csv"
STATE_NAME = "state.json"


NOT_RECORDED = "not recorded"


#: Order of the report's sections: the datasets of config.DATASETS, your own folder last.
DATASET_ORDER = tuple(d for d in DATASETS if d != "folder") + ("folder",)


#: KID published by clear-diffusion-keras (the keras.io example's source), at 75 px with
#: 5 DDIM steps, by dataset and loss (cosine schedule).
ANCHORS = {
    ("flowers", "mae"): 0.259,
    ("flowers", "mse"): 0.399,
    ("celeba", "mae"): 0.148,
    ("celeba", "mse"): 0.104,
}


ANCHOR_SOURCE = "clear-diffusion-keras"


def read_json(path):
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def read_csv(path):
    if not os.path.isfile(path):
        return []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except (OSError, csv.Error):
        return []


def dataset_of_name(name):
    return name.split("_")[0]


def load_experiments(folder):
    from ddim_keras.core.config import PRESETS, DiffusionConfig

    experiments = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
        name = os.path.splitext(os.path.basename(path))[0]
        dataset = dataset_of_name(name)
        experiments[name] = {
            "name": name,
            "dataset": dataset,
            # As train reads it: the keys a file omits come from its dataset's preset.
            "config": DiffusionConfig.load(path, base=dataset if dataset in PRESETS else "flowers"),
            "config_path": path,
        }
    return experiments


def load_run(path):
    """Everything measured in one run directory (None where there is no file)."""
    from ddim_keras.core.config import DiffusionConfig
    from ddim_keras.core.errors import ConfigError

    config_path = os.path.join(path, "config.json")
    try:
        config = DiffusionConfig.load(config_path)
    except ConfigError:
        return None
    info = read_json(os.path.join(path, "run.json")) or {}
    state = read_json(os.path.join(path, STATE_NAME)) or {}
    history_path = os.path.join(path, HISTORY_NAME)
    history = read_csv(history_path)
    sweep_rows = read_csv(os.path.join(path, SWEEP_FOLDER, CSV_NAME))
    kid_results = []
    for kid_path in sorted(glob.glob(os.path.join(path, "kid_*.json"))):
        result = read_json(kid_path)
        if isinstance(result, dict) and "kid" in result:
            kid_results.append(result)
    training_seconds = state.get("train_seconds")
    timed_by_files = False
    if training_seconds is None and history and os.path.isfile(history_path):
        timed_by_files = True
        # train.py records no wall time: config.json is written when training
        # starts and history.csv after every epoch (a resumed run counts the gap).
        training_seconds = os.path.getmtime(history_path) - os.path.getmtime(config_path)
    final = os.path.join(path, "samples", "final.png")
    return {
        "name": os.path.basename(os.path.abspath(path)),
        "path": path,
        "config": config,
        "dataset": info.get("dataset"),
        "info": info,
        "state": state,
        "history": history,
        "sweep": sweep_rows,
        "kid_results": kid_results,
        "training_seconds": training_seconds,
        "timed_by_files": timed_by_files,
        "final_png": final if os.path.isfile(final) else None,
        "sweep_png": _file_or_none(os.path.join(path, SWEEP_FOLDER, PLOT_NAME)),
        "sweep_csv": _file_or_none(os.path.join(path, SWEEP_FOLDER, CSV_NAME)),
        "history_csv": history_path if history else None,
        "state_json": _file_or_none(os.path.join(path, STATE_NAME)),
    }


def load_saved_results(results_dir, experiment):
    """A run record from the results the report copied earlier, for an experiment whose run
    directory is not here (trained on another machine): its sweep, sample grid, and, where
    they were copied, its per-epoch history and training time. None when nothing was saved."""
    folder = os.path.join(results_dir, experiment["name"])
    sweep_csv = _file_or_none(os.path.join(folder, CSV_NAME))
    if sweep_csv is None:
        return None
    state = read_json(os.path.join(folder, STATE_NAME)) or {}
    return {
        "name": experiment["name"],
        "path": folder,
        "config": experiment["config"],
        "dataset": experiment["dataset"],
        "info": {},
        "state": state,
        "history": read_csv(os.path.join(folder, HISTORY_NAME)),
        "sweep": read_csv(sweep_csv),
        "kid_results": [],
        "training_seconds": state.get("train_seconds"),
        "timed_by_files": False,
        "final_png": _file_or_none(os.path.join(folder, "final.png")),
        "sweep_png": _file_or_none(os.path.join(folder, PLOT_NAME)),
        "sweep_csv": sweep_csv,
        "saved_results": True,
    }


def _file_or_none(path):
    return path if os.path.isfile(path) else None


def load_runs(folder):
    runs = {}
    if not os.path.isdir(folder):
        return runs
    for entry in sorted(os.listdir(folder)):
        path = os.path.join(folder, entry)
        if os.path.isfile(os.path.join(path, "config.json")):
            run = load_run(path)
            if run is not None:
                runs[run["name"]] = run
    return runs


def examples_sampler(record, sampler_field):
    """Whether a sweep row or KID result was sampled like the example (DDIM, time spacing);
    records written before samplers were recorded all were."""
    return (record.get(sampler_field) or "ddim") == "ddim" and (
        record.get("spacing") or "time"
    ) == "time"


def headline_kid(run):
    """The run's KID at its config's kid_diffusion_steps with DDIM (eta 0), from the
    sweep or a kid_*.json; prefers ImageNet weights, then more images. None if none."""
    steps = 1 if is_gan(run["config"]) else run["config"].kid_diffusion_steps
    candidates = []
    for row in run["sweep"]:
        try:
            if (
                int(row["steps"]) == steps
                and float(row["eta"]) == 0
                and row["kid"] != ""
                and examples_sampler(row, "solver")
            ):
                candidates.append(
                    {
                        "kid": float(row["kid"]),
                        "num_images": int(row["num_images"]),
                        "kid_weights": row["kid_weights"],
                        "steps": steps,
                        "machine": row.get("machine") or None,
                        "source": "sweep",
                    }
                )
        except (KeyError, ValueError):
            continue
    for result in run["kid_results"]:
        try:
            if (
                int(result["steps"]) == steps
                and float(result["eta"]) == 0
                and examples_sampler(result, "sampler")
            ):
                candidates.append(
                    {
                        "kid": float(result["kid"]),
                        "num_images": int(result["num_images"]),
                        "kid_weights": result.get("kid_weights", "?"),
                        "steps": steps,
                        "machine": result.get("machine"),
                        "source": "evaluate",
                    }
                )
        except (KeyError, ValueError, TypeError):
            continue
    if not candidates:
        return None
    return max(candidates, key=lambda c: (c["kid_weights"] == "imagenet", c["num_images"]))


def describe_weights(label):
    if label == "imagenet":
        return "ImageNet weights"
    if label == "none":
        return "random weights, not comparable"
    if label == "shapes_classifier":
        return "shapes classifier features (--kid-encoder shapes, offline)"
    return f"weights {os.path.basename(label)}"


def format_kid(value):
    return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


def format_duration(seconds):
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def sweep_machine(run):
    machines = [row.get("machine") for row in run["sweep"] if row.get("machine")]
    return machines[-1] if machines else None


def link(target, base):
    return os.path.relpath(target, base).replace(os.sep, "/")


def copy_results(run, results_dir):
    """Copy the small result files of a run beside the report; returns their new paths."""
    copied = {}
    folder = os.path.join(results_dir, run["name"])
    for key, name in (
        ("final_png", "final.png"),
        ("sweep_csv", CSV_NAME),
        ("sweep_png", PLOT_NAME),
        # The objectives table's per-epoch KIDs and the training time, kept for when
        # the run directory is not on the machine that writes the report.
        ("history_csv", HISTORY_NAME),
        ("state_json", STATE_NAME),
    ):
        if run.get(key):
            os.makedirs(folder, exist_ok=True)
            target = os.path.join(folder, name)
            if os.path.abspath(run[key]) != os.path.abspath(target):
                shutil.copyfile(run[key], target)
            copied[key] = target
    return copied


def config_text(config):
    if is_gan(config):
        return f"GAN baseline (ADA), {config.epochs} epochs, {config.image_size} px"
    return f"{config.loss}, {config.schedule}, {config.epochs} epochs, {config.image_size} px"


def row_cells(name, dataset, config, run, copied, base):
    anchor = ANCHORS.get((dataset, config.loss)) if config.schedule == "cosine" else None
    anchor_text = f"{anchor:g} ({config.loss})" if anchor is not None else "—"
    if run is None:
        return [
            f"`{name}`",
            config_text(config),
            NOT_RUN,
            NOT_RUN,
            anchor_text,
            NOT_RUN,
            NOT_RUN,
            NOT_RUN,
            NOT_RUN,
        ]
    kid = headline_kid(run)
    if kid is None and run["sweep"]:
        # Swept, but at other step counts (the objectives' sweeps use 10 and 20).
        steps = run["config"].kid_diffusion_steps
        kid_text, kid_how = f"not swept at {steps} steps", "—"
    elif kid is None:
        kid_text, kid_how = NOT_RUN, NOT_RUN
    else:
        kid_text = format_kid(kid["kid"])
        if kid["kid_weights"] != "imagenet":
            kid_text += (
                " (random weights, not comparable)"
                if kid["kid_weights"] == "none"
                else f" ({describe_weights(kid['kid_weights'])})"
            )
        kid_how = f"{kid['num_images']} images, {describe_weights(kid['kid_weights'])}"
        if is_gan(run["config"]):
            kid_text += " (GAN: 1 generator call)"
    epochs_done = run["state"].get("epoch")
    if run["training_seconds"] is not None:
        training = f"≈{format_duration(run['training_seconds'])}"
        if epochs_done is not None:
            training += f", {epochs_done}/{run['config'].epochs} epochs"
        if run["timed_by_files"]:
            training += " (file times)"
    else:
        training = NOT_RECORDED if run["history"] or run.get("saved_results") else NOT_RUN
    machine = (
        sweep_machine(run)
        or (kid or {}).get("machine")
        or run["info"].get("machine")
        or NOT_RECORDED
    )
    sweep = NOT_RUN
    if "sweep_csv" in copied:
        sweep = f"[csv]({link(copied['sweep_csv'], base)})"
        if "sweep_png" in copied:
            sweep += f", [plot]({link(copied['sweep_png'], base)})"
    samples = (
        f"[final.png]({link(copied['final_png'], base)})" if "final_png" in copied else NOT_RUN
    )
    return [
        f"`{name}`",
        config_text(run["config"]),
        kid_text,
        kid_how,
        anchor_text,
        training,
        machine,
        sweep,
        samples,
    ]


HEADER = [
    "experiment",
    "config (loss, schedule)",
    "KID, 5 DDIM steps (lower is better)",
    "KID measured on",
    f"{ANCHOR_SOURCE} KID",
    "training time",
    "machine (sweep)",
    "KID vs steps",
    "samples",
]


def _cell(row):
    """A sweep cell: KID, the share the shapes classifier recognised (if measured), seconds."""
    recognised = row.get("recognised") or ""
    share = f", {float(recognised):.0%} recognised" if recognised else ""
    return f"{format_kid(float(row['kid']))} ({float(row['seconds']):.1f} s{share})"


def sweep_table(run):
    """Steps x sampler KIDs of a run's sweep, one table per (N, weights, seed); the floor
    (real training images in place of generated ones) in the line above the table."""
    from ddim_keras.metrics.evaluation import FLOOR_LABEL

    groups = {}
    for row in run["sweep"]:
        key = (row.get("num_images"), row.get("kid_weights"), row.get("seed"))
        groups.setdefault(key, []).append(row)
    lines = []
    for (num_images, weights, seed), rows in groups.items():
        floors = [row for row in rows if row["sampler"] == FLOOR_LABEL]
        rows = [row for row in rows if row["sampler"] != FLOOR_LABEL]
        if not rows:
            continue
        samplers = list(dict.fromkeys(row["sampler"] for row in rows))
        steps = sorted({int(row["steps"]) for row in rows})
        values = {(int(r["steps"]), r["sampler"]): r for r in rows}
        lines.append(
            f"`{run['name']}` sweep: {num_images} images, {describe_weights(weights)}, "
            f"seed {seed}; seconds per cell in brackets."
        )
        if floors:
            lines.append(
                f"The floor, real training images against the validation images: "
                f"{_cell(floors[0])}."
            )
        lines.append("")
        lines.append("| steps | " + " | ".join(samplers) + " |")
        lines.append("| --- |" + " --- |" * len(samplers))
        for step in steps:
            cells = []
            for sampler in samplers:
                row = values.get((step, sampler))
                cells.append(NOT_RUN if row is None else _cell(row))
            lines.append(f"| {step} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def build_report(experiments, runs, results_dir, base):
    """The Markdown between the markers (without them).

    An experiment with no run directory in ``runs`` keeps the results an earlier report
    copied to ``results_dir`` (its sweep and samples), so a report made on another
    machine does not erase them.
    """
    runs = dict(runs)
    for name, experiment in experiments.items():
        if name not in runs:
            saved = load_saved_results(results_dir, experiment)
            if saved is not None:
                runs[name] = saved
    names = list(experiments)
    names += [
        name
        for name, run in runs.items()
        if name not in experiments and (run["sweep"] or run["kid_results"])
    ]
    skipped = [name for name in runs if name not in names]
    datasets = {}
    for name in names:
        run = runs.get(name)
        dataset = (run or {}).get("dataset") or experiments[name]["dataset"]
        datasets.setdefault(dataset, []).append(name)
    order = [d for d in DATASET_ORDER if d in datasets] + sorted(
        d for d in datasets if d not in DATASET_ORDER
    )

    lines = ["_Generated by `python -m ddim_keras.report`; edit outside the markers._", ""]
    details = []
    for dataset in order:
        lines += [
            f"### {dataset}",
            "",
            "| " + " | ".join(HEADER) + " |",
            "|" + " --- |" * len(HEADER),
        ]
        for name in datasets[dataset]:
            run = runs.get(name)
            copied = copy_results(run, results_dir) if run is not None else {}
            config = run["config"] if run is not None else experiments[name]["config"]
            lines.append(
                "| " + " | ".join(row_cells(name, dataset, config, run, copied, base)) + " |"
            )
            if run is not None and run["sweep"]:
                details += sweep_table(run)
        lines.append("")
    lines += objectives_table(experiments, runs, format_kid, format_duration)
    lines += guidance_table({name: runs[name] for name in names if name in runs}, format_kid)
    lines += gan_table(experiments, runs, format_kid, format_duration)
    if details:
        lines += ["### KID against sampling steps", ""] + details
    if skipped:
        lines += [
            f"Runs without KID measurements and without an experiment config, not listed: "
            f"{', '.join(f'`{name}`' for name in skipped)}.",
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"
