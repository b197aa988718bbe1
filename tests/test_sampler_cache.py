"""ddim_keras.sampler_cache: precision copies hold the current EMA weights; one trace per key."""

import numpy as np
import pytest

from conftest import TINY, unsaturate
from ddim_keras.config import DiffusionConfig
from ddim_keras.model import DiffusionModel


@pytest.fixture
def model():
    return unsaturate(DiffusionModel(DiffusionConfig(**TINY), kid_weights=None))


def test_float32_is_the_ema_network_and_copies_follow_its_weights(model):
    cache = model._samplers.value
    assert cache.network(model.ema_network, "float32") is model.ema_network
    copy = cache.network(model.ema_network, "bfloat16")
    assert copy is not model.ema_network
    assert copy.layers[-1].compute_dtype == "bfloat16"
    for weight, source in zip(copy.weights, model.ema_network.weights):
        assert weight.dtype == "float32"
        np.testing.assert_array_equal(weight.numpy(), source.numpy())
    # The EMA moves (training): the next call copies the new weights in, same copy object.
    kernel = model.ema_network.layers[-1].kernel
    kernel.assign(kernel.numpy() + 1.0)
    again = cache.network(model.ema_network, "bfloat16")
    assert again is copy
    np.testing.assert_array_equal(again.layers[-1].kernel.numpy(), kernel.numpy())
    with pytest.raises(ValueError, match="unknown sampling precision"):
        cache.network(model.ema_network, "float64")


def test_one_compiled_function_per_record_and_precision(model):
    noise = model.initial_noise(2, seed=0)
    for steps in (1, 2, 3):
        model.compiled_reverse_diffusion(noise, steps)
        model.compiled_reverse_diffusion(noise, steps, record=True)
    functions = model._samplers.value.functions
    assert set(functions) == {(False, "float32", "ddim", "time"), (True, "float32", "ddim", "time")}
    assert all(f.experimental_get_tracing_count() == 1 for f in functions.values())
