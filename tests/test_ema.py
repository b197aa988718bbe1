"""ddim_keras.model.ema: the example's moving average, as a pure update of variables."""

import keras
import numpy as np
import pytest

from ddim_keras.model.ema import update_ema


def test_update_follows_the_examples_formula_over_several_steps():
    rng = np.random.default_rng(0)
    shapes = [(3, 3, 4, 8), (8,), (1, 1, 1, 3)]
    targets = [keras.Variable(rng.normal(size=shape).astype("float32")) for shape in shapes]
    averages = [keras.Variable(rng.normal(size=shape).astype("float32")) for shape in shapes]
    expected = [np.asarray(v.numpy(), np.float64) for v in averages]
    ema = 0.9
    for _ in range(5):
        for target in targets:  # the network moves between updates
            target.assign(target.numpy() + rng.normal(size=target.shape).astype("float32"))
        update_ema(targets, averages, ema)
        # The example: ema_weight.assign(ema * ema_weight + (1 - ema) * weight), in float64.
        expected = [
            ema * e + (1 - ema) * np.asarray(t.numpy(), np.float64)
            for e, t in zip(expected, targets)
        ]
        for average, reference in zip(averages, expected):
            np.testing.assert_allclose(average.numpy(), reference, rtol=1e-5, atol=1e-6)


def test_mismatched_networks_are_refused():
    with pytest.raises(ValueError, match="different weights"):
        update_ema([keras.Variable(np.zeros(2, "float32"))], [], 0.99)
