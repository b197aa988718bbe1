"""Untracked: what a model holds through it is not tracked, saved or loaded."""

import keras
import numpy as np

from ddim_keras.core.untracked import Untracked


class Holder(keras.Model):
    def __init__(self, hidden, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(2)
        self.held = Untracked(hidden)

    def call(self, x):
        return self.dense(x)


def test_held_layers_are_not_the_models_weights_nor_in_its_checkpoints(tmp_path):
    hidden = keras.layers.Dense(3)
    hidden.build((None, 4))
    model = Holder(hidden)
    model(np.zeros((1, 4), "float32"))
    assert len(model.weights) == 2  # the tracked Dense's kernel and bias only
    assert model.held.value is hidden
    tracked = Holder(None)
    tracked.extra = hidden  # a plain attribute is tracked: the contrast
    tracked(np.zeros((1, 4), "float32"))
    assert len(tracked.weights) == 4

    path = str(tmp_path / "holder.weights.h5")
    model.save_weights(path)
    other = Holder(keras.layers.Dense(5))
    other(np.zeros((1, 4), "float32"))
    other.load_weights(path)  # loads although the held layers differ
    np.testing.assert_array_equal(other.dense.kernel.numpy(), model.dense.kernel.numpy())
