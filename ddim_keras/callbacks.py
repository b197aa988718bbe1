"""Keras callbacks for diffusion training, usable in any ``model.fit``.

- :class:`SampleGrid`: a grid of generated images every N epochs, from fixed
  seed noise so that epochs are comparable.
- :class:`AtomicCheckpoint`: weights saved through a temporary file and a
  rename, so an interrupted write never destroys the previous checkpoint.
- :class:`RunState`: the resume bookkeeping of a run directory.
- :class:`StopOnNonFinite`: stops training on a NaN/inf loss with a message.
"""

import math
import os

import keras
import numpy as np

from ddim_keras import images as image_files
from ddim_keras.run_dir import write_json_atomic


class SampleGrid(keras.callbacks.Callback):
    """Save a ``num_rows x num_cols`` grid of samples as PNG every ``every`` epochs.

    The same ``seed`` is used at every epoch, so grids show how the same noise
    is decoded as training goes on.

    Example::

        model.fit(train_ds, epochs=10, callbacks=[
            SampleGrid("samples", diffusion_steps=20, seed=42)])
    """

    def __init__(self, directory, num_rows=3, num_cols=6, diffusion_steps=20, seed=42,
                 every=1, eta=0.0, filename="epoch_{epoch:04d}.png"):
        super().__init__()
        self.directory = directory
        self.num_rows = num_rows
        self.num_cols = num_cols
        self.diffusion_steps = diffusion_steps
        self.seed = seed
        self.every = every
        self.eta = eta
        self.filename = filename
        self.last_path = None

    def get_config(self):
        return {
            "directory": self.directory, "num_rows": self.num_rows, "num_cols": self.num_cols,
            "diffusion_steps": self.diffusion_steps, "seed": self.seed, "every": self.every,
            "eta": self.eta, "filename": self.filename,
        }

    def make_grid(self):
        samples = self.model.generate(
            self.num_rows * self.num_cols, self.diffusion_steps, eta=self.eta, seed=self.seed
        )
        return image_files.image_grid(samples, self.num_rows, self.num_cols)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        os.makedirs(self.directory, exist_ok=True)
        grid = self.make_grid()
        self.last_path = os.path.join(self.directory, self.filename.format(epoch=epoch + 1))
        image_files.save_png(grid, self.last_path)


class AtomicCheckpoint(keras.callbacks.Callback):
    """Save weights every epoch (or only on improvement), never half-written.

    With ``monitor`` set, saves only when the monitored value improves and is
    finite. ``best`` may be given to continue a resumed run's record.
    """

    def __init__(self, filepath, monitor=None, mode="min", best=None):
        super().__init__()
        if not filepath.endswith(".weights.h5"):
            raise ValueError("AtomicCheckpoint writes .weights.h5 files")
        self.filepath = filepath
        self.monitor = monitor
        self.mode = mode
        self.best = best

    def get_config(self):
        return {"filepath": self.filepath, "monitor": self.monitor, "mode": self.mode,
                "best": self.best}

    def _improved(self, value):
        if value is None or not math.isfinite(value):
            return False
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def on_epoch_end(self, epoch, logs=None):
        if not logs_are_finite(logs):
            return  # never replace a good checkpoint with diverged weights
        if self.monitor is not None:
            value = (logs or {}).get(self.monitor)
            value = None if value is None else float(value)
            if not self._improved(value):
                return
            self.best = value
        save_weights_atomic(self.model, self.filepath)


def logs_are_finite(logs, keys=("n_loss", "i_loss")):
    """False when a loss in ``logs`` is NaN or infinite (training diverged)."""
    for key in keys:
        value = (logs or {}).get(key)
        if value is not None and not math.isfinite(float(value)):
            return False
    return True


def save_weights_atomic(model, filepath):
    """Write to a temporary file beside ``filepath``, then rename over it."""
    directory = os.path.dirname(os.path.abspath(filepath))
    os.makedirs(directory, exist_ok=True)
    tmp_path = filepath[: -len(".weights.h5")] + ".tmp.weights.h5"
    model.save_weights(tmp_path)
    os.replace(tmp_path, filepath)


class RunState(keras.callbacks.Callback):
    """Record the last completed epoch and the best value after the checkpoints."""

    def __init__(self, path, best_checkpoint):
        super().__init__()
        self.path = path
        self.best_checkpoint = best_checkpoint

    def on_epoch_end(self, epoch, logs=None):
        if not logs_are_finite(logs):
            return
        write_json_atomic(self.path, {
            "epoch": epoch + 1,
            "monitor": self.best_checkpoint.monitor,
            "best": self.best_checkpoint.best,
        })


class StopOnNonFinite(keras.callbacks.Callback):
    """Stop as soon as a batch reports a NaN or infinite loss."""

    def __init__(self, monitor="n_loss"):
        super().__init__()
        self.monitor = monitor
        self.stopped_at = None

    def on_train_batch_end(self, batch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and not np.isfinite(float(value)):
            self.stopped_at = batch
            self.model.stop_training = True
