"""TensorBoard summaries where TensorFlow (which writes them) is installed, none elsewhere."""

import warnings

import keras

from ddim_keras.core.optional import TENSORFLOW_EXTRA, tensorflow_installed


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
        warnings.warn(
            f"TensorFlow is not installed, so no TensorBoard logs are written "
            f"(`{TENSORFLOW_EXTRA}` adds them); sample grids, history.csv and "
            f"checkpoints are written as usual.",
            NoTensorBoardWarning,
            stacklevel=3,
        )
    return False


def tensorboard(log_dir, **kwargs):
    """``keras.callbacks.TensorBoard(log_dir, **kwargs)``, or without TensorFlow a
    callback that does nothing (and one :class:`NoTensorBoardWarning`)."""
    if summaries_available():
        return keras.callbacks.TensorBoard(log_dir, **kwargs)
    return NoTensorBoard()


class NoTensorBoard(keras.callbacks.Callback):
    """Stands in for Keras' ``TensorBoard`` callback where TensorFlow is not installed."""
