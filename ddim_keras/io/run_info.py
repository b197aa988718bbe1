"""What a run was trained on (its run.json), for the commands that compare with its data."""

import os

from ddim_keras.core.datasets import DEFAULT_BACKGROUND, check_dataset_name, parse_background
from ddim_keras.core.errors import UsageError


def training_data(dataset, data_dir, run_path):
    """(dataset, data dir, data seed) to compare with: ``dataset`` and ``data_dir`` when
    given, else the run's run.json.

    ``run_path`` may be None (a checkpoint outside a run), in which case
    ``dataset`` is required.
    """
    from ddim_keras.io.run_dir import RunDir

    run_info = RunDir(run_path).read_run_info() if run_path else {}
    dataset = dataset or run_info.get("dataset")
    if dataset is None:
        where = f"run {run_path} has" if run_path else "there is"
        raise UsageError(f"pass --dataset: {where} no run.json that names the training data.")
    try:
        check_dataset_name(dataset)
    except ValueError:
        where = os.path.join(run_path, "run.json") if run_path else "run.json"
        raise UsageError(f"unknown dataset {dataset!r} in {where}; pass --dataset.") from None
    data_dir = data_dir or (
        run_info.get("data_dir") if dataset == run_info.get("dataset") else None
    )
    if dataset == "folder" and not data_dir:
        raise UsageError(
            "--dataset folder needs --data-dir DIR, the folder of images the run was trained on."
        )
    return dataset, data_dir, int(run_info.get("seed", 0) or 0)


def training_background(background, run_path):
    """(R, G, B) under transparent pixels: ``background`` when given, else the run's
    (run.json), else white: the validation images look as they did in training."""
    if background is not None:
        return parse_background(background)
    from ddim_keras.io.run_dir import RunDir

    recorded = RunDir(run_path).read_run_info().get("background") if run_path else None
    try:
        return parse_background(recorded or DEFAULT_BACKGROUND)
    except ValueError as error:
        raise UsageError(
            f"{os.path.join(run_path, 'run.json')}: {error} Pass --background."
        ) from None


def run_classes(run_path):
    """The class names a class-conditional run recorded in its run.json (index = label);
    [] for an unconditional run, or without a run directory."""
    if not run_path:
        return []
    from ddim_keras.io.run_dir import RunDir

    return [str(name) for name in RunDir(run_path).read_run_info().get("classes") or []]


def run_label(run_path):
    """The attribute a conditional celeba run took its classes from (run.json "label"),
    or None."""
    if not run_path:
        return None
    from ddim_keras.io.run_dir import RunDir

    return RunDir(run_path).read_run_info().get("label")
