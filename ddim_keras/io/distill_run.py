"""The run directory of a distilled student, and what resuming one checks.

A student's run directory is an ordinary run directory (``config.json``,
``checkpoints/best.weights.h5``, ``samples/``, ``logs/``, ``history.csv``,
``state.json``), so that ``generate``, ``evaluate``, ``sweep`` and ``load_model``
work on it; distillation adds::

    RUN_DIR/
      distillation.json             the teacher and the settings (a resume must match them)
      students/8steps/ ...          each round's student, itself a run directory
      samples/teacher_16steps.png   the teacher's grid, before the first round
      samples/round_1_8steps.png    each round's final grid (epoch_NNNN.png: every epoch's)

``state.json``'s ``epoch`` counts the epochs of all rounds: round ``r`` (from 1)
trains epochs ``(r - 1) * N + 1 .. r * N`` of ``N = epochs_per_halving``.
"""

import os
import shutil

from ddim_keras.core.errors import UsageError
from ddim_keras.io.run_dir import RunDir

SETTINGS_FILE = "distillation.json"
#: Settings a resumed distillation may not change (the others: epochs are fixed per round).
SETTINGS_KEYS = (
    "teacher_run",
    "teacher_checkpoint",
    "teacher_steps",
    "steps",
    "epochs_per_halving",
    "prediction",
    "learning_rate",
    "steps_per_epoch",
    "seed",
)


def settings_path(run_dir):
    return os.path.join(run_dir.path, SETTINGS_FILE)


def student_dir(run_dir, steps):
    """The run directory of the round whose student takes ``steps`` steps."""
    return RunDir(os.path.join(run_dir.path, "students", f"{steps}steps"))


def round_grid_path(run_dir, round_number, steps):
    return os.path.join(run_dir.samples_dir, f"round_{round_number}_{steps}steps.png")


def teacher_grid_path(run_dir, steps):
    return os.path.join(run_dir.samples_dir, f"teacher_{steps}steps.png")


def check_output(run_dir, settings):
    """The epochs already distilled into ``run_dir`` (0: a new run); refuses what is not ours.

    An existing output must be a distillation of the same teacher with the same
    settings; anything else is refused before a file is written.
    """
    if os.path.exists(run_dir.path) and not os.path.isdir(run_dir.path):
        raise UsageError(f"--output {run_dir.path} exists and is not a directory.")
    if not os.path.isdir(run_dir.path) or not os.listdir(run_dir.path):
        return 0
    recorded = run_dir.read_json(settings_path(run_dir))
    if not run_dir.exists() or recorded is None:
        raise UsageError(
            f"--output {run_dir.path} exists and is not a distillation run that could be "
            "resumed (it has no config.json and distillation.json); nothing was changed. "
            "Choose another --output for the student."
        )
    differences = [
        f"{key}: {recorded.get(key)!r} -> {settings[key]!r}"
        for key in SETTINGS_KEYS
        if recorded.get(key) != settings[key]
    ]
    if differences:
        raise UsageError(
            f"--output {run_dir.path} is a distillation with other settings "
            f"({'; '.join(differences)}); nothing was changed. Re-run with its settings to "
            "resume it, or choose another --output."
        )
    state = run_dir.read_state()
    epochs = int(state.get("epoch", 0))
    if epochs and not os.path.isfile(run_dir.last_checkpoint):
        raise UsageError(
            f"{run_dir.path} records {epochs} distilled epoch(s) but has no "
            f"{os.path.relpath(run_dir.last_checkpoint, run_dir.path)} to resume from; "
            "nothing was changed. Choose another --output."
        )
    return epochs


def write_student_dir(run_dir, steps, config, run_info, checkpoint, grid):
    """Copy one round's student (``checkpoint``, its grid) into ``students/Ksteps/``."""
    student = student_dir(run_dir, steps)
    student.make()
    config.save(student.config_path)
    student.write_json(student.run_info_path, run_info)
    shutil.copyfile(checkpoint, student.best_checkpoint + ".tmp")
    os.replace(student.best_checkpoint + ".tmp", student.best_checkpoint)
    if grid and os.path.isfile(grid):
        shutil.copyfile(grid, os.path.join(student.samples_dir, "final.png"))
    return student
