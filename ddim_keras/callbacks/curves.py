"""The losses (and KID) over the epochs, as a PNG plot."""

import csv
import os

import keras

from ddim_keras.callbacks import notebook
from ddim_keras.callbacks.base import Configurable
from ddim_keras.core.durable import write_durably


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


class LossCurvePlot(Configurable, keras.callbacks.Callback):
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

    def __init__(
        self,
        path="curves.png",
        history_csv=None,
        every_epoch=False,
        loss_keys=("n_loss", "i_loss", "val_n_loss", "val_i_loss"),
        metric_keys=("val_kid",),
        title=None,
        inline=None,
    ):
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
            "path": self.path,
            "history_csv": self.history_csv,
            "every_epoch": self.every_epoch,
            "loss_keys": list(self.loss_keys),
            "metric_keys": list(self.metric_keys),
            "title": self.title,
            "inline": self.inline,
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
        if path is not None and (notebook.in_notebook() if self.inline is None else self.inline):
            with open(path, "rb") as handle:
                notebook.display_png(handle.read())

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
                axis.plot(
                    epochs,
                    values,
                    label=key,
                    marker="o" if len(epochs) <= 30 else None,
                    markersize=3,
                    color=f"C{bases.index(key.removeprefix('val_')) % 10}",
                    linestyle="--" if key.startswith("val_") else "-",
                )
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
