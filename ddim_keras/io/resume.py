"""Starting, resuming or refusing a run directory: what ``train`` decides before it trains.

A run directory holds one run (:mod:`ddim_keras.io.run_dir`). Training into an
existing one resumes it when its config, dataset and background agree, and is
refused otherwise, with nothing changed, unless it is to be overwritten; the
messages name ``train``'s flags.
"""

import csv
import io
import os
import sys

from ddim_keras.core.config import RESUME_MAY_CHANGE
from ddim_keras.core.datasets import (
    background_rgb,
    format_background,
    parse_background,
)
from ddim_keras.core.durable import write_text
from ddim_keras.core.errors import CheckpointError, UsageError
from ddim_keras.io.run_dir import check_writable_folder


def prepare_run_dir(run_dir, config, dataset, background=None, resume=False, overwrite=False):
    """Decide between a fresh run, a resume, and a refusal. Returns the state."""
    if resume and overwrite:
        raise UsageError("--resume and --overwrite contradict each other; pass one of them.")
    if not run_dir.exists():
        if resume:
            raise UsageError(
                f"--resume: {run_dir.path} holds no run to resume (no config.json); check "
                "--output, or leave out --resume to start a new run there."
            )
        if os.path.exists(run_dir.path) and not os.path.isdir(run_dir.path):
            raise UsageError(f"--output {run_dir.path} exists and is not a directory.")
        # A cache/ folder alone is what a --cache disk start that failed later left.
        if (
            os.path.isdir(run_dir.path)
            and set(os.listdir(run_dir.path)) - {"cache"}
            and not overwrite
        ):
            raise UsageError(
                f"--output {run_dir.path} is a non-empty folder that is not a run directory; "
                "choose another --output, or pass --overwrite to write into it."
            )
        # Missing folders are created like mkdir -p; the nearest existing one must be writable.
        check_writable_folder(run_dir.path, create_levels=None)
        return {}
    existing = run_dir.read_config()
    if overwrite:
        # Cleared by _train_in_scope once data and model are ready: a bad flag or
        # an unreadable dataset found before then leaves the old run whole.
        return {}
    old, new = existing.to_dict(), config.to_dict()
    # A GAN's config has fields a diffusion config leaves out (absent: None).
    differences = [
        f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
        for key in list(old) + [key for key in new if key not in old]
        if key not in RESUME_MAY_CHANGE and new.get(key) != old.get(key)
    ]
    if differences:
        raise UsageError(
            f"run directory {run_dir.path} holds a run with a different config "
            f"({'; '.join(differences)}). Nothing was changed. Resume it with its own config, "
            "choose another --output, or pass --overwrite to replace it."
        )
    trained_on = run_dir.read_run_info().get("dataset")
    if trained_on and trained_on != dataset:
        raise UsageError(
            f"run directory {run_dir.path} trains on --dataset {trained_on}, not "
            f"{dataset}. Nothing was changed. Resume it with --dataset {trained_on}, "
            "choose another --output, or pass --overwrite to replace it."
        )
    recorded = run_dir.read_run_info().get("background")
    if (
        recorded
        and background is not None
        and parse_background(background) != parse_background(recorded)
    ):
        raise UsageError(
            f"run directory {run_dir.path} trains on images composited onto --background "
            f"{format_background(recorded)}, not {format_background(background)}. "
            f"Nothing was changed. Resume it with --background {format_background(recorded)} "
            "(or without --background), choose another --output, or pass --overwrite to "
            "replace it."
        )
    state = run_dir.read_state()
    if state.get("epoch"):
        if not os.path.isfile(run_dir.last_checkpoint):
            raise CheckpointError(
                f"run directory {run_dir.path} has {state['epoch']} completed epoch(s) but no "
                f"{os.path.relpath(run_dir.last_checkpoint, run_dir.path)} to resume from. "
                "Nothing was changed. Restore that file, or pass --overwrite to start the run "
                "again (this deletes its checkpoints and history)."
            )
        changes = [
            f"{key} {old[key]!r} -> {new[key]!r}"
            for key in RESUME_MAY_CHANGE
            if key != "epochs" and new[key] != old[key]
        ]
        print(
            f"Resuming {run_dir.path} after epoch {state['epoch']}"
            + (f", with {', '.join(changes)}." if changes else "."),
            file=sys.stderr,
        )
        return state
    if resume:
        print(
            f"{run_dir.path} has no completed epoch yet; starting it from the beginning.",
            file=sys.stderr,
        )
    return {}


def clear_run(run_dir):
    import shutil

    for path in (
        run_dir.state_path,
        run_dir.history_path,
        run_dir.config_path,
        run_dir.run_info_path,
        os.path.join(run_dir.path, "curves.png"),
    ):
        if os.path.exists(path):
            os.remove(path)
    for folder in (run_dir.checkpoint_dir, run_dir.samples_dir, run_dir.logs_dir):
        shutil.rmtree(folder, ignore_errors=True)


def completed_history_rows(path, epochs):
    """Keep only the history rows of completed epochs (a killed run may have more)."""
    if not os.path.isfile(path):
        return
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return
    header, body = rows[0], rows[1:]
    kept = [row for row in body if row and row[0].isdigit() and int(row[0]) < epochs]
    text = io.StringIO(newline="")
    csv.writer(text).writerows([header] + kept)
    write_text(path, text.getvalue(), newline="")


def resolve_background(background, run_dir, overwrite=False):
    """(R, G, B) under transparent pixels: --background, else the resumed run's, else white."""
    if background is not None:
        return parse_background(background)
    if not overwrite and run_dir.exists():
        recorded = run_dir.read_run_info().get("background")
        if recorded:
            try:
                return parse_background(recorded)
            except ValueError as error:
                raise UsageError(f"{run_dir.run_info_path}: {error} Pass --background.") from None
    return background_rgb()


def worker_state(run_dir, overwrite=False):
    """The resume state a multi-worker non-chief follows: what the chief will resume from.

    Read only; the chief may be creating the run directory at the same time.
    """
    if overwrite or not run_dir.exists():
        return {}
    state = run_dir.read_state()
    return state if state.get("epoch") and os.path.isfile(run_dir.last_checkpoint) else {}
