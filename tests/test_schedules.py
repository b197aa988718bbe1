"""Diffusion schedules: end points, unit variance, bounds, the DDPM linear betas."""

import numpy as np
import pytest

from ddim_keras.core.config import DiffusionConfig
from ddim_keras.core.schedules import (
    LINEAR_BETA_END,
    LINEAR_BETA_START,
    LINEAR_NUM_STEPS,
    SCHEDULES,
    cosine_schedule,
    get_schedule,
    linear_schedule,
)

MIN_SIGNAL, MAX_SIGNAL = 0.02, 0.95
TIMES = np.linspace(0.0, 1.0, 1001, dtype=np.float32)


def rates(schedule, times=TIMES, low=MIN_SIGNAL, high=MAX_SIGNAL):
    noise_rates, signal_rates = schedule(times, low, high)
    return np.asarray(noise_rates, np.float64), np.asarray(signal_rates, np.float64)


def ddpm_alpha_bars():
    """The DDPM paper's discrete cumulative product, alpha_bar_i for i = 1..1000."""
    betas = np.linspace(LINEAR_BETA_START, LINEAR_BETA_END, LINEAR_NUM_STEPS, dtype=np.float64)
    return np.cumprod(1.0 - betas)


def test_cosine_is_the_default_schedule():
    assert DiffusionConfig().schedule == "cosine"
    assert get_schedule("cosine") is cosine_schedule
    assert get_schedule("linear") is linear_schedule
    with pytest.raises(ValueError, match="unknown schedule"):
        get_schedule("quadratic")


def test_cosine_end_points():
    noise_rates, signal_rates = rates(cosine_schedule, np.array([0.0, 1.0], np.float32))
    np.testing.assert_allclose(signal_rates, [MAX_SIGNAL, MIN_SIGNAL], atol=1e-6)
    np.testing.assert_allclose(
        noise_rates, np.sqrt(1 - np.array([MAX_SIGNAL, MIN_SIGNAL]) ** 2), atol=1e-6
    )


def test_cosine_angles_are_linear_in_time():
    # The example's construction: the angle arccos(signal_rate) grows linearly.
    _, signal_rates = rates(cosine_schedule)
    angles = np.arccos(signal_rates)
    expected = np.arccos(MAX_SIGNAL) + TIMES * (np.arccos(MIN_SIGNAL) - np.arccos(MAX_SIGNAL))
    np.testing.assert_allclose(angles, expected, atol=1e-5)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_unit_variance_bounds_and_monotone(name):
    noise_rates, signal_rates = rates(SCHEDULES[name])
    np.testing.assert_allclose(signal_rates**2 + noise_rates**2, 1.0, atol=1e-6)
    assert signal_rates.min() >= MIN_SIGNAL - 1e-6
    assert signal_rates.max() <= MAX_SIGNAL + 1e-6
    assert np.all(np.diff(signal_rates) <= 1e-7), "the signal rate must not grow with time"
    assert np.all(np.diff(noise_rates) >= -1e-7)
    # Both schedules span the whole range.
    assert signal_rates[0] == pytest.approx(MAX_SIGNAL, abs=1e-6)
    assert signal_rates[-1] == pytest.approx(MIN_SIGNAL, abs=1e-6)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedules_broadcast_over_image_batches(name):
    times = np.random.default_rng(0).uniform(size=(5, 1, 1, 1)).astype(np.float32)
    noise_rates, signal_rates = SCHEDULES[name](times, MIN_SIGNAL, MAX_SIGNAL)
    assert tuple(noise_rates.shape) == (5, 1, 1, 1)
    assert tuple(signal_rates.shape) == (5, 1, 1, 1)


def ddpm_time(signal_rate):
    """Independently: the continuous DDPM time where sqrt(alpha_bar) == signal_rate."""
    b0, b1, n = LINEAR_BETA_START, LINEAR_BETA_END, LINEAR_NUM_STEPS
    return np.roots([n * (b1 - b0) / 2, n * b0, 2 * np.log(signal_rate)]).real.max()


def test_linear_matches_discrete_ddpm_product():
    """With the DDPM curve's own end points as bounds, t = i/1000 is DDPM step i."""
    times = (np.arange(1, LINEAR_NUM_STEPS + 1) / LINEAR_NUM_STEPS).astype(np.float32)
    low = np.exp(-LINEAR_NUM_STEPS * (LINEAR_BETA_START + LINEAR_BETA_END) / 4)  # about 0.0066
    _, signal_rates = rates(linear_schedule, times, low=low, high=1.0)
    alpha_bars = signal_rates**2
    expected = ddpm_alpha_bars()
    # The continuous integral is very close where most of the signal is...
    early = expected > 0.05
    np.testing.assert_allclose(alpha_bars[early], expected[early], rtol=0.01)
    # ...and everywhere the signal rates themselves differ by at most 1e-3.
    np.testing.assert_allclose(signal_rates, np.sqrt(expected), atol=2e-3)
    # The end point: alpha_bar_1000 is about 4e-5, the DDPM paper's value.
    assert alpha_bars[-1] == pytest.approx(expected[-1], rel=0.1)


# DDPM discrete steps covered at the default bounds, and the measured worst relative
# error of the continuous alpha_bar against the discrete product over them: 4.63 %.
COVERED_STEPS = (97, 881)
DISCRETE_RTOL = 0.055


def test_linear_covers_ddpm_steps_and_matches_the_discrete_product():
    start, end = ddpm_time(MAX_SIGNAL), ddpm_time(MIN_SIGNAL)
    assert start == pytest.approx(0.096638, abs=1e-6) and end == pytest.approx(0.881745, abs=1e-6)
    steps = np.arange(1, LINEAR_NUM_STEPS + 1)
    covered = steps[(steps >= LINEAR_NUM_STEPS * start) & (steps <= LINEAR_NUM_STEPS * end)]
    assert (covered[0], covered[-1]) == COVERED_STEPS
    # Step i sits at diffusion time (i / N - start) / (end - start).
    times = ((covered / LINEAR_NUM_STEPS - start) / (end - start)).astype(np.float32)
    _, signal_rates = rates(linear_schedule, times)
    expected = ddpm_alpha_bars()[covered - 1]
    relative = np.abs(signal_rates**2 / expected - 1)
    assert 0.04 < relative.max() < DISCRETE_RTOL
    np.testing.assert_allclose(signal_rates**2, expected, rtol=DISCRETE_RTOL)
    np.testing.assert_allclose(signal_rates, np.sqrt(expected), atol=1e-3)


def test_linear_is_strictly_monotone_over_sampling_steps():
    # 50 sampling steps t = 1, 0.98, ..., 0: each step to t - 1/50 has less noise.
    times = np.linspace(1.0, 0.0, 51).astype(np.float32)
    noise_rates, signal_rates = rates(linear_schedule, times)
    assert np.all(np.diff(noise_rates) < 0), "a sampling step repeats a noise level"
    assert np.all(np.diff(signal_rates) > 0)
    # The dense grid too: no flat stretch at either end.
    noise_rates, _ = rates(linear_schedule)
    assert np.all(np.diff(noise_rates) > 0)


@pytest.mark.parametrize("low, high", [(MIN_SIGNAL, MAX_SIGNAL), (0.1, 0.8), (0.01, 1.0)])
def test_linear_ends_are_the_bounds_and_variance_is_one(low, high):
    noise_rates, signal_rates = rates(linear_schedule, TIMES, low=low, high=high)
    assert signal_rates[0] == pytest.approx(high, abs=1e-6)
    assert signal_rates[-1] == pytest.approx(low, abs=1e-6)
    np.testing.assert_allclose(
        noise_rates[[0, -1]], np.sqrt(1 - np.array([high, low]) ** 2), atol=1e-6
    )
    np.testing.assert_allclose(signal_rates**2 + noise_rates**2, 1.0, atol=1e-6)
    assert np.all(np.diff(signal_rates) < 0)


def test_linear_schedule_in_a_model(tiny_config):
    from ddim_keras.model.diffusion_model import DiffusionModel

    model = DiffusionModel(tiny_config.replace(schedule="linear"), kid_weights=None)
    noise_rates, signal_rates = model.diffusion_schedule(np.array([0.5], np.float32))
    expected = rates(linear_schedule, np.array([0.5], np.float32))
    np.testing.assert_allclose(
        [float(noise_rates[0]), float(signal_rates[0])], [expected[0][0], expected[1][0]], atol=1e-6
    )
