"""The sampler cache: precision copies hold the current EMA weights; one trace per key."""

import numpy as np
import pytest

pytestmark = pytest.mark.backends  # the core suite: `make test` runs it on every backend

from conftest import TINY, unsaturate

from ddim_keras.core.config import DiffusionConfig
from ddim_keras.model.diffusion_model import DiffusionModel


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


def test_the_compiled_sampler_sees_weights_that_change_after_compiling(model):
    """JAX passes the weights into its jitted sampler on every call (a closure would keep
    the first weights as constants); every backend must sample with the current EMA."""
    noise = model.initial_noise(2, seed=0)
    before = np.asarray(model.compiled_reverse_diffusion(noise, 2))
    kernel = model.ema_network.layers[-1].kernel
    kernel.assign(kernel.numpy() * 2.0)
    after = np.asarray(model.compiled_reverse_diffusion(noise, 2))
    assert np.abs(after - before).max() > 1e-3
    bfloat16_before = np.asarray(model.compiled_reverse_diffusion(noise, 2, precision="bfloat16"))
    kernel.assign(kernel.numpy() * 0.5)
    np.testing.assert_allclose(
        np.asarray(model.compiled_reverse_diffusion(noise, 2)), before, atol=1e-6
    )
    bfloat16_after = np.asarray(model.compiled_reverse_diffusion(noise, 2, precision="bfloat16"))
    assert np.abs(bfloat16_after - bfloat16_before).max() > 1e-3


def test_one_compiled_function_per_key(model, monkeypatch):
    """One function for all step counts; a recording (whose shape is its step count) one per
    count. Each is traced once: the network runs in Python only while tracing (TensorFlow,
    JAX), and per step on PyTorch, which samples eagerly."""
    import keras

    calls = []
    denoise = model.denoise
    monkeypatch.setattr(model, "denoise", lambda *a, **k: calls.append(1) or denoise(*a, **k))
    noise = model.initial_noise(2, seed=0)
    for _ in range(2):
        for steps in (1, 2, 3):
            model.compiled_reverse_diffusion(noise, steps)
            model.compiled_reverse_diffusion(noise, steps, record=True)
    functions = model._samplers.value.functions
    assert set(functions) == {(record, "float32", "ddim", "time") for record in (False, 1, 2, 3)}
    if keras.backend.backend() == "torch":
        assert len(calls) == 2 * 2 * (1 + 2 + 3)
    else:
        assert len(calls) == len(functions)
