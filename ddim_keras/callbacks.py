"""Keras callbacks for diffusion training, usable in any ``model.fit``.

- :class:`SampleGrid`: a grid of generated images every N epochs, from fixed
  seed noise so that epochs are comparable; saved as PNG, optionally logged to
  TensorBoard, and shown inline when training runs in a notebook.
- :class:`LossCurvePlot`: a PNG plot of the losses (and KID) over the epochs.
- :class:`AtomicCheckpoint`: weights saved through a temporary file and a
  rename, so an interrupted write never destroys the previous checkpoint.
- :class:`RunState`: the resume bookkeeping of a run directory.
- :class:`StopOnNonFinite`: stops training on a NaN/inf loss with a message.
- :func:`tensorboard`: Keras' ``TensorBoard`` callback where TensorFlow (which
  writes TensorBoard summaries) is installed, else a stand-in that writes
  nothing; without TensorFlow, :class:`SampleGrid` skips its image summaries
  too, and one :class:`NoTensorBoardWarning` says so.

Every callback has ``get_config`` and ``from_config``:
``SampleGrid.from_config(grid.get_config())`` builds an equivalent callback.
"""

import csv
import io
import math
import os
import sys
import time
import warnings

import keras
import numpy as np

from ddim_keras import images as image_files
from ddim_keras.durable import write_bytes, write_durably
from ddim_keras.optional import TENSORFLOW_EXTRA, tensorflow_installed
from ddim_keras.run_dir import write_json_atomic


class NoTensorBoardWarning(UserWarning):
    """TensorFlow is not installed, so no TensorBoard summaries are written."""


_warned_no_tensorboard = False


def summaries_available():
    """True if TensorBoard summaries can be written (they are written by ``tf.summary``).

    Without TensorFlow, warns once per process (a :class:`NoTensorBoardWarning`).
    """
    global _warned_no_tensorboard
    if tensorflow_installed():
        return True
    if not _warned_no_tensorboard:
        _warned_no_tensorboard = True
        warnings.warn(f"TensorFlow is not installed, so no TensorBoard logs are written "
                      f"(`{TENSORFLOW_EXTRA}` adds them); sample grids, history.csv and "
                      f"checkpoints are written as usual.", NoTensorBoardWarning, stacklevel=3)
    return False


def tensorboard(log_dir, **kwargs):
    """``keras.callbacks.TensorBoard(log_dir, **kwargs)``, or without TensorFlow a
    callback that does nothing (and one :class:`NoTensorBoardWarning`)."""
    if summaries_available():
        return keras.callbacks.TensorBoard(log_dir, **kwargs)
    return NoTensorBoard()


class NoTensorBoard(keras.callbacks.Callback):
    """Stands in for Keras' ``TensorBoard`` callback where TensorFlow is not installed."""


def in_notebook():
    """True inside a Jupyter/Colab kernel, where rich output can be shown inline.

    Detected, not configured: the IPython shell of a notebook kernel is a
    ``ZMQInteractiveShell`` (Colab's shell is a subclass of it). A terminal
    IPython, a plain ``python`` process and pytest all give False. IPython is
    never imported here: a process that has not imported it is no notebook.
    """
    ipython = sys.modules.get("IPython")
    if ipython is None or not hasattr(ipython, "get_ipython"):
        return False
    shell = ipython.get_ipython()
    if shell is None:
        return False
    names = {cls.__name__ for cls in type(shell).__mro__}
    return "ZMQInteractiveShell" in names or "google.colab" in sys.modules


def png_bytes(pixels):
    """PNG file contents of one (H, W, 3) uint8 image."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def display_png(data):
    """Show PNG bytes as a notebook output (``image/png``)."""
    from IPython.display import Image, display

    display(Image(data=data, format="png"))


class _Configurable:
    """``from_config`` for callbacks whose ``get_config`` holds their arguments."""

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class SampleGrid(_Configurable, keras.callbacks.Callback):
    """A ``num_rows x num_cols`` grid of samples every ``every`` epochs.

    Each sample is enlarged ``scale`` times, nearest neighbour
    (``scale=None``: :func:`ddim_keras.images.default_scale` of the image size,
    tiles of at least 128 px; 1: the model's resolution).

    The grid is generated with ``model.generate`` (the EMA network) from noise
    drawn from the same ``seed`` at every epoch, so grids show how the same
    noise is decoded as training goes on. Each grid is

    - saved as ``directory/filename`` (PNG; ``directory=None`` saves no file),
    - logged to TensorBoard as an image summary with tag ``tag`` in the run
      ``log_dir/samples`` when ``log_dir`` is given (step: the epoch index
      that Keras' ``TensorBoard`` callback uses for the epoch scalars, so
      images and scalars line up; epoch 1 is step 0; the same enlarged pixels
      as the PNG, so TensorBoard shows them at a visible size),
    - shown inline when training runs in a Jupyter or Colab notebook (detected
      with :func:`in_notebook`; ``inline=False`` turns it off, ``inline=True``
      forces it).

    Needs a model with ``generate(num_images, diffusion_steps, eta=, seed=)``
    returning images in [0, 1], such as :class:`ddim_keras.DiffusionModel`;
    ``sampler`` and ``spacing`` other than the example's ("ddim", "time") are
    passed on to it too (see ``DiffusionModel.compiled_reverse_diffusion``).

    Example::

        from ddim_keras.callbacks import SampleGrid

        model.fit(train_ds, epochs=10, callbacks=[
            SampleGrid("samples", diffusion_steps=20, seed=42, log_dir="logs"),
            keras.callbacks.TensorBoard("logs"),
        ])
        # samples/epoch_0001.png ... samples/epoch_0010.png; `tensorboard --logdir logs`
        # shows them under Images, tag "samples".
    """

    def __init__(self, directory="samples", num_rows=3, num_cols=6, diffusion_steps=20,
                 seed=42, every=1, eta=0.0, filename="epoch_{epoch:04d}.png", log_dir=None,
                 tag="samples", inline=None, scale=None, sampler="ddim", spacing="time"):
        super().__init__()
        from ddim_keras.checks import check_sampler

        self.sampler, self.spacing, self.eta = check_sampler(sampler, spacing, eta)
        if int(every) < 1:
            raise ValueError(f"every must be at least 1, got {every!r}")
        if scale is not None and (isinstance(scale, bool) or int(scale) != scale or scale < 1):
            raise ValueError(f"scale must be a whole number of at least 1, got {scale!r}")
        self.directory = directory
        self.num_rows = num_rows
        self.num_cols = num_cols
        self.diffusion_steps = diffusion_steps
        self.seed = seed
        self.every = int(every)
        self.filename = filename
        self.log_dir = log_dir
        self.tag = tag
        self.inline = inline
        self.scale = None if scale is None else int(scale)
        self.last_path = None
        self._writer = None

    def get_config(self):
        return {
            "directory": self.directory, "num_rows": self.num_rows, "num_cols": self.num_cols,
            "diffusion_steps": self.diffusion_steps, "seed": self.seed, "every": self.every,
            "eta": self.eta, "filename": self.filename, "log_dir": self.log_dir,
            "tag": self.tag, "inline": self.inline, "scale": self.scale,
            "sampler": self.sampler, "spacing": self.spacing,
        }

    def make_grid(self):
        """Generate one grid, (H, W, 3) floats in [0, 1]; the same weights give the same grid.

        Enlarged by ``scale`` (default: the rule of ``images.default_scale``).
        """
        # The example's sampler is asked for with the example's arguments only, so any
        # model with the example's generate() signature works.
        extra = {} if (self.sampler, self.spacing) == ("ddim", "time") else dict(
            sampler=self.sampler, spacing=self.spacing)
        samples = self.model.generate(
            self.num_rows * self.num_cols, self.diffusion_steps, eta=self.eta, seed=self.seed,
            **extra
        )
        scale = self.scale or image_files.default_scale(min(samples.shape[1:3]))
        return image_files.image_grid(samples, self.num_rows, self.num_cols, scale=scale)

    def _show_inline(self):
        return in_notebook() if self.inline is None else bool(self.inline)

    @property
    def writer_dir(self):
        """The TensorBoard run directory the images go to (None without ``log_dir``)."""
        return None if self.log_dir is None else os.path.join(self.log_dir, "samples")

    def log_image(self, pixels, step):
        """Write one (H, W, 3) uint8 image as an image summary at ``step``.

        Does nothing without TensorFlow (see :func:`summaries_available`).
        """
        if not summaries_available():
            return
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.writer_dir)
        with self._writer.as_default():
            tf.summary.image(self.tag, pixels[np.newaxis], step=int(step), max_outputs=1,
                             description=f"{self.num_rows}x{self.num_cols} samples, "
                                         f"{self.diffusion_steps} steps, seed {self.seed}")
        self._writer.flush()

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every or not logs_are_finite(logs):
            return  # nothing worth drawing from diverged weights
        pixels = image_files.to_uint8(self.make_grid())
        data = png_bytes(pixels)
        if self.directory is not None:
            os.makedirs(self.directory, exist_ok=True)
            self.last_path = os.path.join(self.directory, self.filename.format(epoch=epoch + 1))
            write_bytes(self.last_path, data)
        if self.log_dir is not None:
            self.log_image(pixels, epoch)
        if self._show_inline():
            print(f"Samples after epoch {epoch + 1}:")
            display_png(png_bytes(_enlarge(pixels)))

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _enlarge(pixels, min_width=384):
    """Nearest-neighbour upscale by a whole factor so small grids are visible inline."""
    return image_files.upscale(pixels, max(1, min_width // pixels.shape[1]))


def read_history_csv(path):
    """{epoch (1-based): {metric: float}} from a ``keras.callbacks.CSVLogger`` file.

    CSVLogger numbers epochs from 0; missing files give ``{}`` and cells that
    are not numbers are left out.
    """
    history = {}
    if not path or not os.path.isfile(path):
        return history
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            try:
                epoch = int(row.get("epoch", "")) + 1
            except (TypeError, ValueError):
                continue
            values = {}
            for key, value in row.items():
                if key in (None, "epoch"):
                    continue
                try:
                    values[key] = float(value)
                except (TypeError, ValueError):
                    pass
            history[epoch] = values
    return history


class LossCurvePlot(_Configurable, keras.callbacks.Callback):
    """Plot the losses (left) and KID (right) over the epochs into a PNG file.

    Values come from the logs of each epoch and, when ``history_csv`` is given
    (a ``CSVLogger`` file, e.g. a resumed run's ``history.csv``), from the
    epochs it already holds, so a resumed run's plot covers the whole run.
    The plot is written at the end of training, and after every epoch with
    ``every_epoch=True``; the file is replaced atomically. Drawn with
    matplotlib's Agg canvas: no window ever opens and pyplot's state is left
    alone. In a notebook the final plot is also shown inline (``inline`` as in
    :class:`SampleGrid`). Keys missing from the logs (``val_kid`` without
    KID) are skipped; the KID panel appears only when there is a KID value.

    Example::

        from ddim_keras.callbacks import LossCurvePlot

        model.fit(train_ds, validation_data=val_ds, epochs=10, callbacks=[
            keras.callbacks.CSVLogger("history.csv", append=True),
            LossCurvePlot("curves.png", history_csv="history.csv"),
        ])
    """

    def __init__(self, path="curves.png", history_csv=None, every_epoch=False,
                 loss_keys=("n_loss", "i_loss", "val_n_loss", "val_i_loss"),
                 metric_keys=("val_kid",), title=None, inline=None):
        super().__init__()
        self.path = path
        self.history_csv = history_csv
        self.every_epoch = every_epoch
        self.loss_keys = tuple(loss_keys)
        self.metric_keys = tuple(metric_keys)
        self.title = title
        self.inline = inline
        self.history = {}
        self.last_path = None

    def get_config(self):
        return {
            "path": self.path, "history_csv": self.history_csv, "every_epoch": self.every_epoch,
            "loss_keys": list(self.loss_keys), "metric_keys": list(self.metric_keys),
            "title": self.title, "inline": self.inline,
        }

    def on_train_begin(self, logs=None):
        for epoch, values in read_history_csv(self.history_csv).items():
            self.history.setdefault(epoch, values)

    def on_epoch_end(self, epoch, logs=None):
        values = {}
        for key, value in (logs or {}).items():
            try:
                values[key] = float(value)
            except (TypeError, ValueError):
                pass
        self.history[epoch + 1] = values
        if self.every_epoch:
            self.plot()

    def on_train_end(self, logs=None):
        path = self.plot()
        if path is not None and (in_notebook() if self.inline is None else self.inline):
            with open(path, "rb") as handle:
                display_png(handle.read())

    def _series(self, key):
        epochs = [epoch for epoch in sorted(self.history) if key in self.history[epoch]]
        return epochs, [self.history[epoch][key] for epoch in epochs]

    def plot(self, path=None):
        """Write the plot now (to ``path`` or ``self.path``); None when there is no epoch yet."""
        path = path or self.path
        losses = [key for key in self.loss_keys if self._series(key)[0]]
        metrics = [key for key in self.metric_keys if self._series(key)[0]]
        if not losses and not metrics:
            return None
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        panels = [("loss", losses)] if losses else []
        if metrics:
            panels.append(("KID" if metrics == ["val_kid"] else "metric", metrics))
        figure = Figure(figsize=(6.0 * len(panels), 4.0), dpi=100)
        FigureCanvasAgg(figure)
        axes = figure.subplots(1, len(panels), squeeze=False)[0]
        # A metric and its validation twin share a colour: solid train, dashed validation.
        bases = list(dict.fromkeys(key.removeprefix("val_") for key in losses + metrics))
        for axis, (label, keys) in zip(axes, panels):
            for key in keys:
                epochs, values = self._series(key)
                axis.plot(epochs, values, label=key, marker="o" if len(epochs) <= 30 else None,
                          markersize=3, color=f"C{bases.index(key.removeprefix('val_')) % 10}",
                          linestyle="--" if key.startswith("val_") else "-")
            axis.set_xlabel("epoch")
            axis.set_ylabel(label)
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
            axis.grid(alpha=0.3)
            axis.legend()
        if self.title:
            figure.suptitle(self.title)
        figure.tight_layout()
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        write_durably(path, lambda tmp_path: figure.savefig(tmp_path, format="png"))
        self.last_path = path
        return path


class AtomicCheckpoint(_Configurable, keras.callbacks.Callback):
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
    """Save weights durably (``last.tmp.weights.h5``, fsync, rename; see ddim_keras.durable)."""
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
        return {"path": self.path, "best_checkpoint": self.best_checkpoint.get_config(),
                "train_seconds": self.train_seconds}

    @classmethod
    def from_config(cls, config):
        """A RunState with a new :class:`AtomicCheckpoint` built from the nested config."""
        config = dict(config)
        return cls(config.pop("path"), AtomicCheckpoint.from_config(config.pop("best_checkpoint")),
                   config.pop("train_seconds", 0.0))

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        if not logs_are_finite(logs):
            return
        if self._epoch_started is not None:
            self.train_seconds += time.monotonic() - self._epoch_started
        write_json_atomic(self.path, {
            "epoch": epoch + 1,
            "monitor": self.best_checkpoint.monitor,
            "best": self.best_checkpoint.best,
            "train_seconds": round(self.train_seconds, 1),
        })


class StopOnNonFinite(_Configurable, keras.callbacks.Callback):
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
