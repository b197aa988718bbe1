"""The one sampling path: chunking, the per-image noise streams, the eta range."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
import pytest
from conftest import TINY, assert_not_saturated, unsaturate

from ddim_keras.core.config import DiffusionConfig
from ddim_keras.core.errors import UsageError
from ddim_keras.sampling import chunks, step_rules

pytestmark = pytest.mark.backends  # the core suite: `make test` runs it on every backend


@pytest.fixture(scope="module")
def model():
    from ddim_keras.model.diffusion_model import DiffusionModel

    return unsaturate(DiffusionModel(DiffusionConfig(**TINY), kid_weights=None))


def test_stochastic_sampling_does_not_depend_on_chunking(model):
    """The fresh noise is keyed by each image's index: chunks of 3, 4 or all 7 agree."""
    noise = model.initial_noise(7, seed=6)
    whole = chunks.sample(model, noise, 3, eta=1.0, seed=4, batch_size=7)
    assert_not_saturated(whole)
    for batch_size in (3, 4):
        chunked = chunks.sample(model, noise, 3, eta=1.0, seed=4, batch_size=batch_size)
        # Equal up to float rounding (convolutions may sum in another order per batch size).
        np.testing.assert_allclose(whole, chunked, atol=1e-4)


def test_chunks_of_calls_whose_seeds_differ_by_the_offset_differ(model):
    """Seed 0's second chunk and seed 8's first chunk, from the same starting noise."""
    noise = model.initial_noise(16, seed=1)
    whole = chunks.sample(model, noise, 3, eta=1.0, seed=0, batch_size=8)
    shifted = chunks.sample(model, noise[8:], 3, eta=1.0, seed=8, batch_size=8)
    assert_not_saturated(whole)
    # Same start, same network: only the injected noise can make them differ.
    assert np.abs(whole[8:] - shifted).mean() > 0.01
    # The same (seed, chunk) is repeatable, and DDIM (no injected noise) agrees.
    np.testing.assert_array_equal(
        whole, chunks.sample(model, noise, 3, eta=1.0, seed=0, batch_size=8)
    )
    ddim_whole = chunks.sample(model, noise, 3, eta=0.0, seed=0, batch_size=8)
    ddim_shifted = chunks.sample(model, noise[8:], 3, eta=0.0, seed=8, batch_size=8)
    np.testing.assert_allclose(ddim_whole[8:], ddim_shifted, atol=1e-5)


def test_each_image_gets_its_own_stream(model):
    """Two chunks of one call, given the same starting noise, are sampled differently."""
    noise = np.concatenate([model.initial_noise(4, seed=2)] * 2)
    images = chunks.sample(model, noise, 3, eta=1.0, seed=5, batch_size=4)
    assert np.abs(images[:4] - images[4:]).mean() > 0.01


def test_generate_evaluate_and_the_generate_command_share_the_path(model):
    """model.generate is sample() on model.initial_noise, chunk for chunk."""
    noise = model.initial_noise(6, seed=3)
    expected = chunks.sample(model, noise, 2, eta=1.0, seed=3, batch_size=4)
    np.testing.assert_array_equal(model.generate(6, 2, eta=1.0, seed=3, batch_size=4), expected)
    parts = list(chunks.sample_chunks(model, noise, 2, eta=1.0, seed=3, batch_size=4))
    assert [first for first, _ in parts] == [0, 4]
    np.testing.assert_array_equal(np.concatenate([images for _, images in parts]), expected)


def test_record_returns_every_step(model):
    noise = model.initial_noise(3, seed=4)
    images, noisy, predicted = chunks.sample(model, noise, 3, batch_size=2, record=True)
    assert noisy.shape == predicted.shape == (3, 3, 16, 16, 3)
    np.testing.assert_allclose(predicted[-1], images, atol=1e-6)
    np.testing.assert_allclose(images, chunks.sample(model, noise, 3, batch_size=3), atol=1e-4)


@pytest.mark.parametrize("eta", [1.0001, 1.5, -0.1, float("nan"), float("inf")])
def test_eta_outside_zero_to_one_is_refused(model, eta):
    noise = model.initial_noise(1, seed=0)
    for call in (
        lambda: model.generate(1, 2, eta=eta, seed=0),
        lambda: model.compiled_reverse_diffusion(noise, 2, eta=eta),
        lambda: model.reverse_diffusion(noise, 2, eta=eta),
    ):
        with pytest.raises(ValueError, match="between 0 .* and 1"):
            call()


def test_eta_one_never_needs_clamping():
    """At eta = 1 the injected noise never exceeds the next noise level (so the clamp in
    reverse_step only mattered above 1): sigma**2 <= next_noise_rate**2 on a dense grid."""
    from ddim_keras.core.schedules import SCHEDULES

    times = np.linspace(1.0, 0.0, 401, dtype="float32")
    for schedule in SCHEDULES.values():
        noise_rates, signal_rates = (np.asarray(r) for r in schedule(times, 0.02, 0.95))
        sigmas = np.asarray(step_rules.step_sigmas(signal_rates[:-1], signal_rates[1:], 1.0))
        assert np.all(sigmas**2 <= noise_rates[1:] ** 2 + 1e-6)


def test_sampling_arguments_are_checked_in_the_library(model):
    noise = model.initial_noise(2, seed=0)
    with pytest.raises(UsageError, match="diffusion_steps"):
        chunks.sample(model, noise, 0)
    with pytest.raises(UsageError, match="batch_size"):
        chunks.sample(model, noise, 1, batch_size=-1)
    with pytest.raises(UsageError, match="seed"):
        chunks.sample(model, noise, 1, seed=-3)
