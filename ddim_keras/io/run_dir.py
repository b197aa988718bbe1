"""The layout of a run directory, and the checks of the files commands write.

::

    RUN_DIR/
      config.json                 the DiffusionConfig the run trains
      run.json                    dataset, data dir, KID weights, seed, machine of the run
      state.json                  last completed epoch, best value so far, training seconds
      history.csv                 one row of metrics per epoch
      checkpoints/best.weights.h5 best by val_kid (val_n_loss without KID)
      checkpoints/last.weights.h5 after every epoch, optimizer state included
      samples/epoch_0001.png ...  3x6 grid per epoch (fixed seed), final.png at the end
      curves.png                  losses and KID per epoch
      logs/                       TensorBoard event files (scalars, sample grids)
      generated/                  default output folder of ddim_keras.generate
"""

import json
import os

from ddim_keras.core.config import DiffusionConfig
from ddim_keras.core.errors import CheckpointError, ConfigError, UsageError


class RunDir:
    def __init__(self, path):
        self.path = os.path.abspath(path)

    def __repr__(self):
        return f"RunDir({self.path!r})"

    # paths
    @property
    def config_path(self):
        return os.path.join(self.path, "config.json")

    @property
    def run_info_path(self):
        return os.path.join(self.path, "run.json")

    @property
    def state_path(self):
        return os.path.join(self.path, "state.json")

    @property
    def history_path(self):
        return os.path.join(self.path, "history.csv")

    @property
    def checkpoint_dir(self):
        return os.path.join(self.path, "checkpoints")

    @property
    def best_checkpoint(self):
        return os.path.join(self.checkpoint_dir, "best.weights.h5")

    @property
    def last_checkpoint(self):
        return os.path.join(self.checkpoint_dir, "last.weights.h5")

    @property
    def samples_dir(self):
        return os.path.join(self.path, "samples")

    @property
    def logs_dir(self):
        return os.path.join(self.path, "logs")

    def exists(self):
        return os.path.isfile(self.config_path)

    def make(self):
        for folder in (self.path, self.checkpoint_dir, self.samples_dir, self.logs_dir):
            os.makedirs(folder, exist_ok=True)

    # files
    def read_config(self):
        if not os.path.isfile(self.config_path):
            raise CheckpointError(
                f"{self.path} is not a run directory: it has no config.json. Pass the folder "
                "that `python -m ddim_keras.train --output` wrote."
            )
        try:
            return DiffusionConfig.load(self.config_path)
        except ConfigError as error:
            raise CheckpointError(f"the run's config.json is unusable: {error}") from None

    def read_json(self, path, default=None):
        if not os.path.isfile(path):
            return default
        try:
            with open(path, encoding="utf-8") as handle:
                return json.load(handle)
        except (OSError, ValueError) as error:  # unreadable, or not JSON (edited by hand?)
            raise CheckpointError(
                f"{path} is unusable ({type(error).__name__}: {first_line(error)}); fix or "
                "remove it."
            ) from None

    def write_json(self, path, data):
        write_json_atomic(path, data)

    def read_state(self):
        return self.read_json(self.state_path, default={})

    def read_run_info(self):
        return self.read_json(self.run_info_path, default={})

    def checkpoint_for_inference(self):
        """The best checkpoint if there is one, else the last."""
        for path in (self.best_checkpoint, self.last_checkpoint):
            if os.path.isfile(path):
                return path
        raise CheckpointError(
            f"run directory {self.path} has no checkpoint yet (looked for "
            f"{os.path.relpath(self.best_checkpoint, self.path)} and "
            f"{os.path.relpath(self.last_checkpoint, self.path)}); train it first."
        )


def check_writable_folder(folder, create_levels=0):
    """Check that files can be written into ``folder`` (a usage error if not).

    Up to ``create_levels`` missing folders at the end of the path may be
    created when writing (``None``: any number, like ``mkdir -p``); the first
    existing one must be a writable folder. Missing folders beyond that are an
    error, not created.
    """
    target = os.path.abspath(folder)
    levels = 0
    while not os.path.exists(target) and (create_levels is None or levels < create_levels):
        target = os.path.dirname(target)
        levels += 1
    if not os.path.exists(target):
        raise UsageError(
            f"output folder {target} does not exist; create it first or choose another --output."
        )
    if not os.path.isdir(target):
        raise UsageError(f"output path {target} is a file, not a folder; choose another --output.")
    if not os.access(target, os.W_OK | os.X_OK):
        raise UsageError(f"output folder {target} is not writable; choose another --output.")


def check_output_files(paths, overwrite):
    """Refuse before any work when an output would replace a file (or is a folder)."""
    for path in paths:
        if os.path.isdir(path):
            raise UsageError(f"output {path} is a folder; choose a file name for --output.")
    existing = [path for path in paths if os.path.exists(path)]
    if existing and not overwrite:
        shown = ", ".join(existing[:3]) + (
            f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        )
        raise UsageError(
            f"output {shown} already exists; pass --overwrite to replace it, or "
            "choose another --output or --seed."
        )


def write_json_atomic(path, data):
    """Write JSON durably (see ddim_keras.io.durable); an OSError becomes DdimError."""
    from ddim_keras.core.durable import write_json

    write_json(path, data, user_error=True)


def owner_run_dir(checkpoint):
    """The run directory a checkpoint file belongs to, or None.

    That is the folder holding a config.json next to the file, or one level up
    (``RUN/checkpoints/best.weights.h5`` belongs to ``RUN``).
    """
    folder = os.path.dirname(os.path.abspath(checkpoint))
    for candidate in (folder, os.path.dirname(folder)):
        if os.path.isfile(os.path.join(candidate, "config.json")):
            return candidate
    return None


def first_line(error):
    text = str(error).strip().splitlines()
    return text[0][:300] if text else ""
