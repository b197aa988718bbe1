"""Diffusion schedules: end points, unit variance, bounds, the DDPM linear betas."""

import numpy as np
import pytest

from ddim_keras.config import DiffusionConfig
from ddim_keras.schedules import (LINEAR_BETA_END, LINEAR_BETA_START, LINEAR_NUM_STEPS,
                                  SCHEDULES, cosine_schedule, get_schedule, linear_schedule)

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
    np.testing.assert_allclose(noise_rates, np.sqrt(1 - np.array([MAX_SIGNAL, MIN_SIGNAL]) ** 2),
                               atol=1e-6)


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
    # Clipped schedules are flat near the ends but must still span the range.
    assert signal_rates[0] == pytest.approx(MAX_SIGNAL, abs=1e-6)
    assert signal_rates[-1] == pytest.approx(MIN_SIGNAL, abs=1e-6)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedules_broadcast_over_image_batches(name):
    times = np.random.default_rng(0).uniform(size=(5, 1, 1, 1)).astype(np.float32)
    noise_rates, signal_rates = SCHEDULES[name](times, MIN_SIGNAL, MAX_SIGNAL)
    assert tuple(noise_rates.shape) == (5, 1, 1, 1)
    assert tuple(signal_rates.shape) == (5, 1, 1, 1)


def test_linear_matches_discrete_ddpm_product():
    """Unclipped, alpha_bar(t = i/1000) follows the DDPM product of (1 - beta)."""
    times = (np.arange(1, LINEAR_NUM_STEPS + 1) / LINEAR_NUM_STEPS).astype(np.float32)
    # Bounds wide enough that nothing is clipped.
    _, signal_rates = rates(linear_schedule, times, low=1e-12, high=1.0)
    alpha_bars = signal_rates**2
    expected = ddpm_alpha_bars()
    # The continuous integral is very close where most of the signal is...
    early = expected > 0.05
    np.testing.assert_allclose(alpha_bars[early], expected[early], rtol=0.01)
    # ...and everywhere the signal rates themselves differ by at most 1e-3.
    np.testing.assert_allclose(signal_rates, np.sqrt(expected), atol=2e-3)
    # The end point: alpha_bar_1000 is about 4e-5, the DDPM paper's value.
    assert alpha_bars[-1] == pytest.approx(expected[-1], rel=0.1)


def test_linear_is_clipped_to_the_signal_bounds():
    _, unclipped = rates(linear_schedule, low=1e-12, high=1.0)
    _, clipped = rates(linear_schedule)
    np.testing.assert_allclose(clipped, np.clip(unclipped, MIN_SIGNAL, MAX_SIGNAL), atol=1e-6)
    # Both bounds are active somewhere: near t=0 the DDPM signal exceeds 0.95,
    # near t=1 it falls below 0.02.
    assert unclipped[0] > MAX_SIGNAL and unclipped[-1] < MIN_SIGNAL


def test_linear_schedule_in_a_model(tiny_config):
    from ddim_keras.model import DiffusionModel

    model = DiffusionModel(tiny_config.replace(schedule="linear"), kid_weights=None)
    noise_rates, signal_rates = model.diffusion_schedule(np.array([0.5], np.float32))
    expected = rates(linear_schedule, np.array([0.5], np.float32))
    np.testing.assert_allclose([float(noise_rates[0]), float(signal_rates[0])],
                               [expected[0][0], expected[1][0]], atol=1e-6)
