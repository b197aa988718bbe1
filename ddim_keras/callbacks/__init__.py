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

from ddim_keras.callbacks.base import logs_are_finite
from ddim_keras.callbacks.checkpoints import (
    AtomicCheckpoint,
    RunState,
    StopOnNonFinite,
    save_weights_atomic,
)
from ddim_keras.callbacks.curves import LossCurvePlot, read_history_csv
from ddim_keras.callbacks.notebook import in_notebook
from ddim_keras.callbacks.sample_grid import SampleGrid
from ddim_keras.callbacks.tensorboard import (
    NoTensorBoard,
    NoTensorBoardWarning,
    summaries_available,
    tensorboard,
)

__all__ = [
    "SampleGrid",
    "LossCurvePlot",
    "AtomicCheckpoint",
    "RunState",
    "StopOnNonFinite",
    "tensorboard",
    "NoTensorBoard",
    "NoTensorBoardWarning",
    "summaries_available",
    "in_notebook",
    "read_history_csv",
    "logs_are_finite",
    "save_weights_atomic",
]
