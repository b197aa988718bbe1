"""Samplers: each step rule against an independent NumPy restatement, and its order of
accuracy on a toy whose exact answer is known.

The toy: data drawn from a Gaussian N(mu, s^2) per pixel. Its ideal denoiser is
linear, E[x0 | x_t] = mu + alpha s^2 / (alpha^2 s^2 + sigma^2) (x_t - alpha mu),
and the probability-flow ODE moves every point along its quantile of the noisy
marginal N(alpha mu, alpha^2 s^2 + sigma^2): x = alpha mu + sqrt(alpha^2 s^2 +
sigma^2) z with z constant. So the exact end point of any trajectory is known in
closed form, and a sampler's error can be measured as steps double.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import functools
import math

import numpy as np
import pytest
from conftest import BACKEND, compiled
from keras import ops

from ddim_keras.core.checks import SAMPLERS, SPACINGS
from ddim_keras.core.schedules import cosine_schedule
from ddim_keras.sampling import loops, spacings, step_rules

#: The step rules' exact-formula and order tests compute in float64 from NumPy arrays,
#: which JAX (32-bit by default) and PyTorch (no mixing with NumPy) do not take; the
#: rules are the same keras.ops on every backend, so those run on TensorFlow only. The
#: compiled loops run on every backend (`backends` marks).

MU, SCALE = 0.3, 0.5
MIN_SIGNAL, MAX_SIGNAL = 0.02, 0.95


def toy_denoise(x, noise_rates, signal_rates):
    gain = signal_rates * SCALE**2 / (signal_rates**2 * SCALE**2 + noise_rates**2)
    pred_images = MU + gain * (x - signal_rates * MU)
    pred_noises = (x - signal_rates * pred_images) / noise_rates
    return pred_noises, pred_images


def exact_point(x_start, start, end):
    """The ODE's exact solution at rates ``end`` = (noise, signal) from ``x_start`` at ``start``."""
    (noise_0, signal_0), (noise_1, signal_1) = start, end
    z = (x_start - signal_0 * MU) / math.sqrt(signal_0**2 * SCALE**2 + noise_0**2)
    return signal_1 * MU + math.sqrt(signal_1**2 * SCALE**2 + noise_1**2) * z


def rates_of_log_snr(log_snr):
    # float64 arrays: Keras would turn Python floats into float32 tensors.
    return (
        np.float64(1.0 / math.sqrt(1.0 + math.exp(2 * log_snr))),
        np.float64(1.0 / math.sqrt(1.0 + math.exp(-2 * log_snr))),
    )


def log_snr_of(noise, signal):
    return math.log(signal / noise)


# -- step rules against NumPy restatements of the published formulas --------------------

RNG = np.random.default_rng(0)
X, D0, D1, D2, EPS0, EPS1 = (RNG.standard_normal((2, 3, 3, 3)) for _ in range(6))
LAMBDAS = [
    np.float64(v) for v in (-2.9, -2.1, -1.4, -0.6)
]  # lambda_{i-2}, lambda_{i-1}, lambda_i, lambda_{i+1}


def rates(index):
    return rates_of_log_snr(LAMBDAS[index])


def test_dpmpp_first_order_is_ddim():
    (noise, signal), (next_noise, next_signal) = rates(2), rates(3)
    h = LAMBDAS[3] - LAMBDAS[2]
    got = np.asarray(step_rules.dpmpp_first_order_step(X, D0, noise, next_noise, next_signal, h))
    pred_noises = (X - signal * D0) / noise
    # DDIM (eta = 0): re-mix the predicted components at the next rates.
    np.testing.assert_allclose(got, next_signal * D0 + next_noise * pred_noises, rtol=1e-10)


def test_dpmpp_2m_is_the_papers_algorithm_2():
    (noise, _), (next_noise, next_signal) = rates(2), rates(3)
    h, previous_h = LAMBDAS[3] - LAMBDAS[2], LAMBDAS[2] - LAMBDAS[1]
    got = np.asarray(
        step_rules.dpmpp_2m_step(X, D0, D1, noise, next_noise, next_signal, h, previous_h)
    )
    r = previous_h / h
    d = (1 + 1 / (2 * r)) * D0 - 1 / (2 * r) * D1
    expected = next_noise / noise * X - next_signal * (math.exp(-h) - 1) * d
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_dpmpp_3m_is_the_reference_third_order_multistep_update():
    """The third-order multistep DPM-Solver++ update as the reference implementation
    writes it: divided differences D1_0, D1_1 of the last three data predictions,
    D1 = D1_0 + r0 / (r0 + r1) (D1_0 - D1_1), D2 = (D1_0 - D1_1) / (r0 + r1), and
    x_next = sigma_next / sigma x - alpha_next phi_1 D0 + alpha_next phi_2 D1
    - alpha_next phi_3 D2. (Its order is checked on the toy below.)"""
    (noise, _), (next_noise, next_signal) = rates(2), rates(3)
    h, h_0, h_1 = (LAMBDAS[3] - LAMBDAS[2], LAMBDAS[2] - LAMBDAS[1], LAMBDAS[1] - LAMBDAS[0])
    got = np.asarray(
        step_rules.dpmpp_3m_step(X, D0, D1, D2, noise, next_noise, next_signal, h, h_0, h_1)
    )
    r0, r1 = h_0 / h, h_1 / h
    d1_0, d1_1 = (D0 - D1) / r0, (D1 - D2) / r1
    first = d1_0 + r0 / (r0 + r1) * (d1_0 - d1_1)
    second = (d1_0 - d1_1) / (r0 + r1)
    phi_1 = math.expm1(-h)
    phi_2 = phi_1 / h + 1
    phi_3 = phi_2 / h - 0.5
    expected = (
        next_noise / noise * X
        - next_signal * phi_1 * D0
        + next_signal * phi_2 * first
        - next_signal * phi_3 * second
    )
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-14)


def test_heun_is_edms_algorithm_1():
    """EDM works in y = x / alpha and sigma_edm = sigma / alpha, with a denoiser D:
    d = (y - D) / sigma_edm, an Euler step y' = y + (s_1 - s_0) d_0, then the
    trapezoid y_next = y + (s_1 - s_0) (d_0 + d_1) / 2 with d_1 taken at y'."""
    (noise, signal), (next_noise, next_signal) = rates(2), rates(3)
    s_0, s_1 = noise / signal, next_noise / next_signal
    y = X / signal
    # The denoiser's outputs from the network's predicted noises at both points.
    denoised_0 = (X - noise * EPS0) / signal
    d_0 = (y - denoised_0) / s_0
    y_euler = y + (s_1 - s_0) * d_0
    euler = np.asarray(step_rules.euler_step(X, EPS0, noise, signal, next_noise, next_signal))
    np.testing.assert_allclose(euler, next_signal * y_euler, rtol=1e-10)
    denoised_1 = (next_signal * y_euler - next_noise * EPS1) / next_signal
    d_1 = (y_euler - denoised_1) / s_1
    y_next = y + (s_1 - s_0) * 0.5 * (d_0 + d_1)
    got = np.asarray(step_rules.heun_step(X, EPS0, EPS1, noise, signal, next_noise, next_signal))
    np.testing.assert_allclose(got, next_signal * y_next, rtol=1e-10)


# -- order of accuracy on the Gaussian toy ----------------------------------------------

START, END = rates_of_log_snr(-3.0), rates_of_log_snr(1.0)


def integrate(sampler, transitions, x_start):
    """Integrate the toy ODE over ``transitions`` steps uniform in lambda from START to END
    with the package's step rules, in float64. Multistep rules get their history from the
    exact solution at the grid points before START, so every step runs at full order."""
    lambda_0, lambda_1 = log_snr_of(*START), log_snr_of(*END)
    h = np.float64((lambda_1 - lambda_0) / transitions)
    grid = [lambda_0 + h * k for k in range(-2, transitions + 1)]
    point = lambda index: rates_of_log_snr(grid[index + 2])  # noqa: E731
    history = [toy_denoise(exact_point(x_start, START, point(k)), *point(k))[1] for k in (-2, -1)]
    x = x_start
    for k in range(transitions):
        (noise, signal), (next_noise, next_signal) = point(k), point(k + 1)
        pred_noises, pred_images = toy_denoise(x, noise, signal)
        if sampler == "ddim":
            x = np.asarray(
                step_rules.ddim_step(
                    x, pred_noises, pred_images, noise, signal, next_noise, next_signal
                )
            )
        elif sampler == "dpmpp_2m":
            x = np.asarray(
                step_rules.dpmpp_2m_step(
                    x, pred_images, history[-1], noise, next_noise, next_signal, h, h
                )
            )
        elif sampler == "dpmpp_3m":
            x = np.asarray(
                step_rules.dpmpp_3m_step(
                    x,
                    pred_images,
                    history[-1],
                    history[-2],
                    noise,
                    next_noise,
                    next_signal,
                    h,
                    h,
                    h,
                )
            )
        else:
            euler = np.asarray(
                step_rules.euler_step(x, pred_noises, noise, signal, next_noise, next_signal)
            )
            next_pred_noises, _ = toy_denoise(euler, next_noise, next_signal)
            x = np.asarray(
                step_rules.heun_step(
                    x, pred_noises, next_pred_noises, noise, signal, next_noise, next_signal
                )
            )
        history.append(pred_images)
    return x


@pytest.mark.parametrize(
    "sampler, order", [("ddim", 1), ("dpmpp_2m", 2), ("dpmpp_3m", 3), ("heun", 2)]
)
def test_error_falls_at_the_samplers_order_when_steps_double(sampler, order):
    x_start = np.random.default_rng(1).standard_normal((4, 2, 2, 3))
    exact = exact_point(x_start, START, END)
    errors = [
        np.sqrt(np.mean((integrate(sampler, steps, x_start) - exact) ** 2))
        for steps in (8, 16, 32, 64)
    ]
    ratios = [errors[i] / errors[i + 1] for i in range(3)]
    print(sampler, [f"{e:.3g}" for e in errors], [f"{r:.2f}" for r in ratios])
    # The last doubling is in the asymptotic range: 2**order within 15 %.
    assert ratios[-1] == pytest.approx(2**order, rel=0.15), ratios
    assert all(r > 0.8 * 2**order for r in ratios[1:]), ratios


# -- the compiled loop -----------------------------------------------------------------


def schedule(times):
    return cosine_schedule(times, MIN_SIGNAL, MAX_SIGNAL)


def toy_denoise_f32(x, noise_rates, signal_rates):
    return toy_denoise(x, noise_rates, signal_rates)


@pytest.mark.parametrize("spacing", SPACINGS)
def test_spacings_run_from_pure_noise_to_their_end(spacing):
    steps = 6
    rates_at = [
        tuple(float(r) for r in spacings.grid_rates(schedule, spacing, i, steps))
        for i in range(steps)
    ]
    noise_first, _ = rates_at[0]
    assert noise_first == pytest.approx(math.sin(math.acos(MIN_SIGNAL)), rel=1e-5)
    noises = [noise for noise, _ in rates_at]
    assert all(a > b for a, b in zip(noises, noises[1:]))  # strictly less noise each call
    for noise, signal in rates_at:
        assert noise**2 + signal**2 == pytest.approx(1.0, rel=1e-5)
    last = rates_at[-1][0]
    if spacing == "time":  # the example's: the last call at t = 1/K
        assert last == pytest.approx(float(schedule(1.0 / steps)[0]), rel=1e-5)
    else:  # the schedule's t = 0 end
        assert last == pytest.approx(math.sin(math.acos(MAX_SIGNAL)), rel=1e-4)
    log_snrs = [log_snr_of(*r) for r in rates_at]
    if spacing == "logsnr":
        np.testing.assert_allclose(np.diff(log_snrs), np.diff(log_snrs)[0], rtol=1e-4)
    if spacing == "karras":
        sigmas = np.array([n / s for n, s in rates_at]) ** (1 / 7)
        np.testing.assert_allclose(np.diff(sigmas), np.diff(sigmas)[0], rtol=1e-3)


def graph_sample(sampler, spacing, steps, initial):
    return np.asarray(
        compiled(
            lambda x, k: loops.reverse_diffusion_graph(
                toy_denoise_f32, schedule, x, k, sampler=sampler, spacing=spacing
            )
        )(ops.convert_to_tensor(initial, "float32"), ops.convert_to_tensor(steps, "int32"))
    )


@pytest.mark.backends
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_compiled_samplers_approach_the_exact_answer(sampler):
    """Through the graph loop with its warm-up and final steps, on the toy: the error of the
    output (the last call's predicted images) against the exact ODE solution falls with
    steps, and 20 steps of every sampler beat the example's sampler at 20."""
    initial = np.random.default_rng(2).standard_normal((3, 2, 2, 3)).astype("float32")
    start = tuple(float(r) for r in schedule(1.0))
    end = tuple(float(r) for r in schedule(0.0))

    def error(sampler, spacing, steps):
        last = tuple(float(r) for r in spacings.grid_rates(schedule, spacing, steps - 1, steps))
        exact = toy_denoise(exact_point(initial.astype("float64"), start, last), *last)[1]
        return np.sqrt(np.mean((graph_sample(sampler, spacing, steps, initial) - exact) ** 2))

    errors = [error(sampler, "logsnr", steps) for steps in (5, 10, 20)]
    assert errors[0] > errors[1] > errors[2], errors
    if sampler != "ddim":
        assert errors[2] < error("ddim", "logsnr", 20), errors
    del end


@pytest.mark.backends
@pytest.mark.skipif(BACKEND == "torch", reason="PyTorch samples eagerly: nothing is traced")
def test_no_retrace_per_step_count_for_any_sampler():
    initial = np.zeros((2, 2, 2, 3), "float32")

    def traced(traces, sampler, x, k):
        traces.append(1)  # Python runs only while tracing
        return loops.reverse_diffusion_graph(
            toy_denoise_f32, schedule, x, k, sampler=sampler, spacing="logsnr"
        )

    for sampler in SAMPLERS:
        traces = []
        function = compiled(functools.partial(traced, traces, sampler))
        for steps in (1, 2, 3, 7, 12):
            output = function(ops.convert_to_tensor(initial), ops.convert_to_tensor(steps, "int32"))
            assert np.all(np.isfinite(np.asarray(output))), (sampler, steps)
        assert len(traces) == 1


@pytest.mark.backends
def test_solver_order_warms_up_and_lowers_at_the_end():
    orders = [int(step_rules.solver_order("dpmpp_3m", n, 5)) for n in range(5)]
    assert orders == [1, 2, 3, 2, 1]
    orders = [int(step_rules.solver_order("dpmpp_3m", n, 12)) for n in range(12)]
    assert orders == [1, 2] + [3] * 10
    assert [int(step_rules.solver_order("dpmpp_2m", n, 4)) for n in range(4)] == [1, 2, 2, 1]
    # The boundary: 10 steps (9 transitions) lowered, 11 steps (10 transitions) not.
    orders = [int(step_rules.solver_order("dpmpp_3m", n, 9)) for n in range(9)]
    assert orders == [1, 2, 3, 3, 3, 3, 3, 2, 1]
    orders = [int(step_rules.solver_order("dpmpp_3m", n, 10)) for n in range(10)]
    assert orders == [1, 2] + [3] * 8


@pytest.mark.backends
def test_network_calls():
    assert step_rules.network_calls("ddim", 10) == 10
    assert step_rules.network_calls("dpmpp_3m", 10) == 10
    assert step_rules.network_calls("heun", 10) == 19
