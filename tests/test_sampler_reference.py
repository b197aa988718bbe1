"""The compiled samplers against an independent float64 reference, every sampler x spacing.

``reference_samplers.py`` restates DDIM, DPM-Solver++(2M)/(3M) and EDM's Heun from the
papers, and the three spacings' grids from the schedule, in NumPy; nothing of it
comes from ``ddim_keras``. On the Gaussian toy (exact denoiser) the compiled graph loop
(``reverse_diffusion_graph``, compiled as production compiles it) must give the
reference's images to float32 accuracy at 1 to 20 steps. The karras and time grids
have unequal steps, so a step size taken from the wrong interval (a swapped h and
previous h, say) shows; so does the order chosen at the DPM-Solver++ boundary (10
steps lowered, 11 not).
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
import pytest
import reference_samplers as reference
from conftest import BACKEND, compiled
from keras import ops

from ddim_keras.core.checks import SAMPLERS, SPACINGS
from ddim_keras.core.schedules import cosine_schedule
from ddim_keras.sampling import loops, step_rules

pytestmark = pytest.mark.backends  # the core suite: `make test` runs it on every backend

STEPS = (1, 2, 3, 5, 9, 10, 11, 12, 20)
INITIAL = np.random.default_rng(2).standard_normal((3, 2, 2, 3)).astype("float32")


def schedule(times):
    return cosine_schedule(times, reference.MIN_SIGNAL, reference.MAX_SIGNAL)


def toy_denoise(x, noise_rates, signal_rates):
    """The toy's exact denoiser in keras.ops: (predicted noises, predicted images)."""
    pred_images = reference.denoise(x, signal_rates, noise_rates)
    return (x - signal_rates * pred_images) / noise_rates, pred_images


def graph_sampler(sampler, spacing):
    """The graph loop compiled once for ``sampler`` and ``spacing``: steps -> images."""
    function = compiled(
        lambda x, k: loops.reverse_diffusion_graph(
            toy_denoise, schedule, x, k, sampler=sampler, spacing=spacing
        )
    )

    def run(steps):
        images = function(ops.convert_to_tensor(INITIAL), ops.convert_to_tensor(steps, "int32"))
        return ops.convert_to_numpy(images)

    return run


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_compiled_sampler_is_the_reference(sampler, spacing):
    run = graph_sampler(sampler, spacing)
    for steps in STEPS:
        expected = reference.sample(sampler, spacing, steps, INITIAL)
        np.testing.assert_allclose(
            run(steps),
            expected,
            rtol=0,
            atol=reference.float32_tolerance(sampler, spacing, steps),
            err_msg=f"{sampler} {spacing} {steps} steps",
        )


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("sampler", ["dpmpp_2m", "dpmpp_3m"])
def test_final_order_is_lowered_at_10_steps_and_not_at_11(sampler, spacing):
    """10 steps make 9 transitions (< 10: lowered), 11 make 10 (not lowered). The other
    rule's reference is far outside the tolerance, so the boundary is really tested."""
    run = graph_sampler(sampler, spacing)
    tolerance = reference.float32_tolerance(sampler, spacing, 10)
    # (steps, a rule that would decide the other way at that count)
    for steps, other_rule in ((10, 9), (11, 11)):
        got = run(steps)
        expected = reference.sample(sampler, spacing, steps, INITIAL, lower_final_below=10)
        np.testing.assert_allclose(got, expected, rtol=0, atol=tolerance, err_msg=str(steps))
        wrong = reference.sample(sampler, spacing, steps, INITIAL, lower_final_below=other_rule)
        assert np.abs(got - wrong).max() > 20 * tolerance, (steps, np.abs(got - wrong).max())


def test_solver_order_of_the_last_step_is_one():
    """The loop's last step (K - 1 of K) runs no transition; at 11+ steps it used to get the
    full order, whose update divides by that step's h = 0 (logsnr, karras)."""
    for sampler in ("dpmpp_2m", "dpmpp_3m"):
        for steps in (1, 2, 10, 11, 12, 20):
            assert int(step_rules.solver_order(sampler, steps - 1, steps - 1)) == 1


# -- the last step computes no NaN ---------------------------------------------------

NAN_CASES = [
    (s, p, k) for s in ("dpmpp_2m", "dpmpp_3m") for p in ("logsnr", "karras") for k in (11, 12, 20)
]


def checked_step(step_rule, calls, divides_by_h):
    """``step_rule`` that fails on a non-finite input or output, or on a zero step size
    if it ``divides_by_h`` (the first-order update does not: the last step gives it 0)."""

    def step(*args):
        values = [ops.convert_to_numpy(a) for a in args]
        assert all(np.all(np.isfinite(v)) for v in values), step_rule.__name__
        # The scalar arguments are the step sizes: h, and the earlier ones.
        if divides_by_h:
            assert all(v != 0 for v in values if np.ndim(v) == 0), step_rule.__name__
        result = step_rule(*args)
        assert np.all(np.isfinite(ops.convert_to_numpy(result))), step_rule.__name__
        calls.append(step_rule.__name__)
        return result

    return step


@pytest.mark.skipif(BACKEND == "jax", reason="JAX traces both branches of ops.switch")
def test_no_step_divides_by_a_zero_h(monkeypatch):
    """Eagerly (only the chosen branch of ops.switch runs): every DPM-Solver++ update is
    given nonzero step sizes and finite values and returns finite values. The last step
    of 11+ steps called the 3M (2M) update with h = 0 before."""
    calls = []
    for name in ("dpmpp_first_order_step", "dpmpp_2m_step", "dpmpp_3m_step"):
        rule = getattr(loops, name)
        monkeypatch.setattr(loops, name, checked_step(rule, calls, "first" not in name))
    for sampler, spacing, steps in NAN_CASES:
        images = loops.reverse_diffusion_graph(
            toy_denoise, schedule, INITIAL, steps, sampler=sampler, spacing=spacing
        )
        expected = reference.sample(sampler, spacing, steps, INITIAL)
        atol = reference.float32_tolerance(sampler, spacing, steps)
        np.testing.assert_allclose(ops.convert_to_numpy(images), expected, rtol=0, atol=atol)
    assert len(calls) == sum(steps for _, _, steps in NAN_CASES)


@pytest.mark.skipif(BACKEND != "jax", reason="JAX's debug_nans")
def test_jax_debug_nans_finds_no_nan():
    """Op by op (jit disabled, so every primitive's output is checked and only the taken
    branch of ops.switch runs) with jax_debug_nans and jax_debug_infs on."""
    import jax

    with jax.disable_jit(), jax.debug_nans(True), jax.debug_infs(True):
        for sampler, spacing, steps in NAN_CASES:
            images = loops.reverse_diffusion_graph(
                toy_denoise, schedule, INITIAL, steps, sampler=sampler, spacing=spacing
            )
            expected = reference.sample(sampler, spacing, steps, INITIAL)
            atol = reference.float32_tolerance(sampler, spacing, steps)
            np.testing.assert_allclose(np.asarray(images), expected, rtol=0, atol=atol)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow's check_numerics")
def test_tensorflow_check_numerics_finds_no_nan():
    """The compiled graph loop with every op's output checked for NaN and infinity."""
    import tensorflow as tf

    tf.debugging.enable_check_numerics()
    try:
        for sampler, spacing, steps in NAN_CASES:
            images = graph_sampler(sampler, spacing)(steps)
            np.testing.assert_allclose(
                images,
                reference.sample(sampler, spacing, steps, INITIAL),
                rtol=0,
                atol=reference.float32_tolerance(sampler, spacing, steps),
            )
    finally:
        tf.debugging.disable_check_numerics()
