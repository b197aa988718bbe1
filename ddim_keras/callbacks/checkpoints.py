"""Checkpoints that are never half-written, the resume bookkeeping, and stopping on NaN."""

import math
import os
import time

import keras
import numpy as np

from ddim_keras.callbacks.base import Configurable, logs_are_finite
from ddim_keras.core.durable import write_durably
from ddim_keras.io.run_dir import write_json_atomic


class AtomicCheckpoint(Configurable, keras.callbacks.Callback):
    """Save weights every epoch (or only on improvement), never half-written.

    With ``monitor`` set, saves only when the monitored value improves and is
    finite. ``best`` may be given to continue a resumed run's record.

    Example::

        from ddim_keras.callbacks import AtomicCheckpoint

        model.fit(train_ds, validation_data=val_ds, epochs=10, callbacks=[
            AtomicCheckpoint("checkpoints/best.weights.h5", monitor="val_n_loss"),
            AtomicCheckpoint("checkpoints/last.weights.h5"),
        ])
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
        return {
            "filepath": self.filepath,
            "monitor": self.monitor,
            "mode": self.mode,
            "best": self.best,
        }

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


def save_weights_atomic(model, filepath):
    """Save weights durably (``last.tmp.weights.h5``, fsync, rename; see ddim_keras.io.durable)."""
    directory = os.path.dirname(os.path.abspath(filepath))
    os.makedirs(directory, exist_ok=True)
    write_durably(filepath, model.save_weights)


class RunState(keras.callbacks.Callback):
    """Record the last completed epoch and the best value after the checkpoints.

    Put it after the checkpoint callbacks, so ``path`` moves on only once
    they are on disk.

    Example::

        best = AtomicCheckpoint("run/checkpoints/best.weights.h5", monitor="val_n_loss")
        model.fit(train_ds, validation_data=val_ds, epochs=10, callbacks=[
            best, AtomicCheckpoint("run/checkpoints/last.weights.h5"),
            RunState("run/state.json", best),
        ])
    """

    def __init__(self, path, best_checkpoint, train_seconds=0.0):
        super().__init__()
        self.path = path
        self.best_checkpoint = best_checkpoint
        # Wall time of the completed epochs, carried over from a resumed run.
        self.train_seconds = float(train_seconds)
        self._epoch_started = None

    def get_config(self):
        return {
            "path": self.path,
            "best_checkpoint": self.best_checkpoint.get_config(),
            "train_seconds": self.train_seconds,
        }

    @classmethod
    def from_config(cls, config):
        """A RunState with a new :class:`AtomicCheckpoint` built from the nested config."""
        config = dict(config)
        return cls(
            config.pop("path"),
            AtomicCheckpoint.from_config(config.pop("best_checkpoint")),
            config.pop("train_seconds", 0.0),
        )

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        if not logs_are_finite(logs):
            return
        if self._epoch_started is not None:
            self.train_seconds += time.monotonic() - self._epoch_started
        write_json_atomic(
            self.path,
            {
                "epoch": epoch + 1,
                "monitor": self.best_checkpoint.monitor,
                "best": self.best_checkpoint.best,
                "train_seconds": round(self.train_seconds, 1),
            },
        )


class StopOnNonFinite(Configurable, keras.callbacks.Callback):
    """Stop as soon as a batch reports a NaN or infinite loss.

    ``stopped_at`` is then the index of the batch, for a message after ``fit``.

    Example::

        stopper = StopOnNonFinite("n_loss")
        model.fit(train_ds, epochs=10, callbacks=[stopper])
        if stopper.stopped_at is not None:
            print(f"diverged in batch {stopper.stopped_at + 1}")
    """

    def __init__(self, monitor="n_loss"):
        super().__init__()
        self.monitor = monitor
        self.stopped_at = None

    def get_config(self):
        return {"monitor": self.monitor}

    def on_train_batch_end(self, batch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and not np.isfinite(float(value)):
            self.stopped_at = batch
            self.model.stop_training = True
