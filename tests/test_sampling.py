"""The sampler: pure step math against an independent NumPy version of the DDIM
paper's update, the Python and graph loops, and the compiled sampler of a model."""

import numpy as np
import pytest
from conftest import BACKEND, assert_not_saturated, compiled
from keras import ops

from ddim_keras.core.schedules import cosine_schedule
from ddim_keras.sampling import loops, spacings, step_rules

pytestmark = pytest.mark.backends  # the core suite: `make test` runs it on every backend

ETAS = (0.0, 0.5, 1.0)
MIN_SIGNAL, MAX_SIGNAL = 0.02, 0.95


# -- a NumPy reference, written from the paper ---------------------------------------


def paper_sigma(alpha, alpha_prev, eta):
    """Song et al. (2020) Eq. 16, alpha = alpha_bar_t, alpha_prev = alpha_bar_{t-1}."""
    return eta * np.sqrt((1.0 - alpha_prev) / (1.0 - alpha)) * np.sqrt(1.0 - alpha / alpha_prev)


def paper_update(x_t, eps, alpha, alpha_prev, eta, z):
    """Eq. 12: predicted x0, the direction pointing to x_t, and fresh noise."""
    x0 = (x_t - np.sqrt(1.0 - alpha) * eps) / np.sqrt(alpha)
    sigma = paper_sigma(alpha, alpha_prev, eta)
    direction = np.sqrt(1.0 - alpha_prev - sigma**2) * eps
    return np.sqrt(alpha_prev) * x0 + direction + sigma * z


def numpy_cosine(times):
    start, end = np.arccos(MAX_SIGNAL), np.arccos(MIN_SIGNAL)
    angles = start + times * (end - start)
    return np.sin(angles), np.cos(angles)


def toy_eps(noisy_images, noise_rates):
    # Any smooth function of the input and the noise level will do.
    return np.tanh(0.7 * noisy_images + noise_rates)


def toy_denoise(noisy_images, noise_rates, signal_rates):
    pred_noises = ops.tanh(0.7 * noisy_images + noise_rates)
    return pred_noises, (noisy_images - noise_rates * pred_noises) / signal_rates


def toy_schedule(times):
    return cosine_schedule(times, MIN_SIGNAL, MAX_SIGNAL)


def numpy_sampler(initial_noise, steps, eta, fresh_noises):
    """The whole reverse process with ``paper_update``; returns the last x0 estimate."""
    x = initial_noise.astype(np.float64)
    x0 = x
    for step in range(steps):
        time = 1.0 - step / steps
        noise_rate, signal_rate = numpy_cosine(time)
        _, next_signal_rate = numpy_cosine(time - 1.0 / steps)
        alpha, alpha_prev = signal_rate**2, next_signal_rate**2
        eps = toy_eps(x, noise_rate)
        x0 = (x - noise_rate * eps) / signal_rate
        x = paper_update(x, eps, alpha, alpha_prev, eta, fresh_noises[step])
    return x0


def random_rates(rng, shape):
    """Signal rates at t and at the (less noisy) next time, as the sampler sees them."""
    signal = rng.uniform(0.05, 0.9, size=shape)
    next_signal = np.minimum(signal + rng.uniform(0.01, 0.3, size=shape), 0.95)
    return np.sqrt(1 - signal**2), signal, np.sqrt(1 - next_signal**2), next_signal


# -- the pure step ----------------------------------------------------------------------


@pytest.mark.parametrize("eta", ETAS)
def test_step_sigmas_match_eq16(eta):
    rng = np.random.default_rng(1)
    _, signal, _, next_signal = random_rates(rng, (64,))
    got = np.asarray(
        step_rules.step_sigmas(signal.astype(np.float32), next_signal.astype(np.float32), eta)
    )
    np.testing.assert_allclose(
        got, paper_sigma(signal**2, next_signal**2, eta), rtol=1e-4, atol=1e-6
    )


def test_eta_one_sigma_is_the_ddpm_posterior_std():
    # sigma(eta=1)^2 = (1 - a_prev) / (1 - a) * beta_t with beta_t = 1 - a / a_prev.
    alpha, alpha_prev = 0.3, 0.5
    beta = 1 - alpha / alpha_prev
    expected = np.sqrt((1 - alpha_prev) / (1 - alpha) * beta)
    got = float(
        step_rules.step_sigmas(np.float32(np.sqrt(alpha)), np.float32(np.sqrt(alpha_prev)), 1.0)
    )
    assert got == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("eta", ETAS)
def test_ddim_step_matches_eq12(eta):
    rng = np.random.default_rng(2)
    shape = (6, 4, 4, 3)
    noise, signal, next_noise, next_signal = random_rates(rng, (6, 1, 1, 1))
    x_t = rng.standard_normal(shape)
    eps = rng.standard_normal(shape)
    z = rng.standard_normal(shape)
    x0 = (x_t - noise * eps) / signal
    expected = paper_update(x_t, eps, signal**2, next_signal**2, eta, z)

    f32 = lambda a: ops.convert_to_tensor(np.asarray(a, np.float32))  # noqa: E731
    got = step_rules.ddim_step(
        f32(x_t),
        f32(eps),
        f32(x0),
        f32(noise),
        f32(signal),
        f32(next_noise),
        f32(next_signal),
        eta=eta,
        fresh_noises=f32(z),
    )
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-4)

    # Without fresh noise the step is the update's mean (z = 0).
    mean = step_rules.ddim_step(
        f32(x_t),
        f32(eps),
        f32(x0),
        f32(noise),
        f32(signal),
        f32(next_noise),
        f32(next_signal),
        eta=eta,
    )
    np.testing.assert_allclose(
        np.asarray(mean),
        paper_update(x_t, eps, signal**2, next_signal**2, eta, 0.0),
        rtol=1e-4,
        atol=1e-4,
    )


def test_eta_zero_is_the_keras_io_update():
    rng = np.random.default_rng(3)
    _, _, next_noise, next_signal = random_rates(rng, (5, 1, 1, 1))
    pred_noises = rng.standard_normal((5, 2, 2, 3)).astype(np.float32)
    pred_images = rng.standard_normal((5, 2, 2, 3)).astype(np.float32)
    tensor = ops.convert_to_tensor
    got = step_rules.reverse_step(
        tensor(pred_noises),
        tensor(pred_images),
        tensor(next_noise.astype(np.float32)),
        tensor(next_signal.astype(np.float32)),
    )
    expected = next_signal * pred_images + next_noise * pred_noises
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-5)


def test_time_grid_runs_from_one_towards_zero():
    grid = [tuple(float(t) for t in spacings.time_grid(step, 4)) for step in range(4)]
    assert grid == [(1.0, 0.75), (0.75, 0.5), (0.5, 0.25), (0.25, 0.0)]


def test_time_grid_is_the_examples_float32_arithmetic():
    """Bit for bit the example's times, ``ones - step * step_size`` and ``- step_size``
    with step_size = 1 / K a Python float, eager and compiled. (``1 - step * (1 / K)``
    in float32, the sampler's formula before, rounds 725 of these 5,050 steps otherwise.)"""
    grid = compiled(lambda step, steps: spacings.time_grid(step, steps))
    for steps in range(1, 101):
        step_size = 1.0 / steps
        for step in range(steps):
            times = ops.ones((1,)) - step * step_size
            expected = [ops.convert_to_numpy(t)[0] for t in (times, times - step_size)]
            eager = [ops.convert_to_numpy(t) for t in spacings.time_grid(step, steps)]
            traced = grid(
                ops.convert_to_tensor(step, "int32"), ops.convert_to_tensor(steps, "int32")
            )
            np.testing.assert_array_equal(eager, expected, err_msg=f"step {step} of {steps}")
            np.testing.assert_array_equal(
                [ops.convert_to_numpy(t) for t in traced], expected, err_msg=f"{step}/{steps}"
            )


def example_schedule(diffusion_times):
    """The example's ``diffusion_schedule``, restated."""
    start_angle = ops.cast(ops.arccos(MAX_SIGNAL), "float32")
    end_angle = ops.cast(ops.arccos(MIN_SIGNAL), "float32")
    diffusion_angles = start_angle + diffusion_times * (end_angle - start_angle)
    return ops.sin(diffusion_angles), ops.cos(diffusion_angles)


def example_reverse_diffusion(denoise, initial_noise, diffusion_steps):
    """The example's ``reverse_diffusion``, restated around a given denoiser."""
    num_images = initial_noise.shape[0]
    step_size = 1.0 / diffusion_steps
    next_noisy_images = initial_noise
    for step in range(diffusion_steps):
        noisy_images = next_noisy_images
        diffusion_times = ops.ones((num_images, 1, 1, 1)) - step * step_size
        noise_rates, signal_rates = example_schedule(diffusion_times)
        pred_noises, pred_images = denoise(noisy_images, noise_rates, signal_rates)
        next_diffusion_times = diffusion_times - step_size
        next_noise_rates, next_signal_rates = example_schedule(next_diffusion_times)
        next_noisy_images = next_signal_rates * pred_images + next_noise_rates * pred_noises
    return pred_images


def test_ddim_is_the_examples_sampler_bit_for_bit():
    """The Python loop (model.reverse_diffusion's) on every backend, and the compiled graph
    loop on TensorFlow and PyTorch, give the example's images exactly, at step counts
    where the old time formula rounded differently (6, 10, 11, 13, 20, 50). jax.jit fuses
    the toy's arithmetic into kernels that round otherwise than JAX's one-op-at-a-time
    eager calls (its vectorised division, for one), so there the graph loop agrees to
    float rounding only (measured 1.1e-4 at 50 steps, after the first step's x50)."""
    initial = ops.convert_to_tensor(
        np.random.default_rng(4).standard_normal((3, 4, 4, 3)).astype(np.float32)
    )
    graph = compiled(lambda x, k: loops.reverse_diffusion_graph(toy_denoise, toy_schedule, x, k))
    for steps in (1, 2, 5, 6, 10, 11, 13, 20, 50):
        expected = ops.convert_to_numpy(example_reverse_diffusion(toy_denoise, initial, steps))
        loop = loops.reverse_diffusion_loop(toy_denoise, toy_schedule, initial, steps)
        np.testing.assert_array_equal(ops.convert_to_numpy(loop), expected, err_msg=str(steps))
        traced = ops.convert_to_numpy(graph(initial, ops.convert_to_tensor(steps, "int32")))
        if BACKEND == "jax":
            np.testing.assert_allclose(traced, expected, rtol=1e-4, atol=1e-4)
        else:
            np.testing.assert_array_equal(traced, expected, err_msg=str(steps))


# -- the loops, with a toy denoiser -----------------------------------------------------


def fresh_noises(shape, seed, steps, first_image=0):
    # The samplers' own stateless noise, so the reference can use the same draws.
    return [
        ops.convert_to_numpy(loops.fresh_noise(shape, seed, first_image, step)).astype(np.float64)
        for step in range(steps)
    ]


@pytest.mark.parametrize("eta,first_image", [(eta, 0) for eta in ETAS] + [(1.0, 6)])
def test_loops_match_the_numpy_reference(eta, first_image):
    steps, seed = 5, 7
    initial = np.random.default_rng(4).standard_normal((3, 4, 4, 3)).astype(np.float32)
    expected = numpy_sampler(
        initial, steps, eta, fresh_noises(initial.shape, seed, steps, first_image)
    )

    loop = loops.reverse_diffusion_loop(
        toy_denoise, toy_schedule, initial, steps, eta=eta, seed=seed, first_image=first_image
    )
    graph = compiled(
        lambda x, k: loops.reverse_diffusion_graph(
            toy_denoise, toy_schedule, x, k, eta=eta, seed=seed, first_image=first_image
        )
    )(ops.convert_to_tensor(initial), ops.convert_to_tensor(steps, "int32"))
    np.testing.assert_allclose(ops.convert_to_numpy(loop), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ops.convert_to_numpy(graph), expected, rtol=1e-4, atol=1e-4)


def test_graph_records_the_trajectory():
    steps = 4
    initial = np.random.default_rng(5).standard_normal((2, 4, 4, 3)).astype(np.float32)
    pred, noisy_trajectory, pred_trajectory = loops.reverse_diffusion_graph(
        toy_denoise, toy_schedule, initial, steps, eta=0.0, record=steps
    )
    assert tuple(noisy_trajectory.shape) == (steps, 2, 4, 4, 3)
    assert tuple(pred_trajectory.shape) == (steps, 2, 4, 4, 3)
    noisy_trajectory, pred_trajectory, pred = (
        ops.convert_to_numpy(a) for a in (noisy_trajectory, pred_trajectory, pred)
    )
    np.testing.assert_array_equal(noisy_trajectory[0], initial)
    np.testing.assert_array_equal(pred_trajectory[-1], pred)


# -- the model's compiled sampler -------------------------------------------------------


@pytest.fixture(scope="module")
def random_model():
    """A tiny untrained model whose samples are not clipped flat (see conftest.unsaturate).

    (A fresh network's output convolution is zero, which would make every
    sampler agree trivially; random weights clip nearly every pixel to 0 or 1.)
    """
    from conftest import TINY, unsaturate

    from ddim_keras.core.config import DiffusionConfig
    from ddim_keras.model.diffusion_model import DiffusionModel

    return unsaturate(DiffusionModel(DiffusionConfig(**TINY), kid_weights=None))


def test_compiled_sampler_matches_the_python_loop(random_model):
    noise = random_model.initial_noise(3, seed=11)
    compiled = np.asarray(random_model.compiled_reverse_diffusion(noise, 4, eta=0.0, seed=0))
    loop = np.asarray(random_model.reverse_diffusion(noise, 4, eta=0.0, seed=0))
    assert np.abs(compiled - noise).max() > 0.1, "the network should change the images"
    np.testing.assert_allclose(compiled, loop, atol=1e-4, rtol=1e-5)


def test_eta_one_compiled_matches_the_python_loop(random_model):
    noise = random_model.initial_noise(2, seed=12)
    compiled = np.asarray(random_model.compiled_reverse_diffusion(noise, 3, eta=1.0, seed=5))
    loop = np.asarray(random_model.reverse_diffusion(noise, 3, eta=1.0, seed=5))
    np.testing.assert_allclose(compiled, loop, atol=1e-4, rtol=1e-5)


@pytest.mark.skipif(BACKEND == "torch", reason="PyTorch samples eagerly: nothing is traced")
def test_step_count_changes_do_not_retrace(random_model, monkeypatch):
    # The network is called in Python only while the loop is traced (once per trace).
    random_model._samplers.value.functions.clear()
    traces = []
    denoise = random_model.denoise

    def counting_denoise(*args, **kwargs):
        traces.append(1)
        return denoise(*args, **kwargs)

    monkeypatch.setattr(random_model, "denoise", counting_denoise)
    noise = random_model.initial_noise(2, seed=1)
    random_model.compiled_reverse_diffusion(noise, 2)
    assert len(traces) == 1
    for steps, eta, seed in ((3, 0.0, 0), (5, 0.5, 1), (1, 1.0, 2)):
        random_model.compiled_reverse_diffusion(noise, steps, eta=eta, seed=seed)
    assert len(traces) == 1
    # A different batch size: the same graph on TensorFlow (the batch dimension is
    # None); JAX compiles once per shape.
    random_model.compiled_reverse_diffusion(random_model.initial_noise(3, seed=1), 4)
    assert len(traces) == (1 if BACKEND == "tensorflow" else 2)
    random_model._samplers.value.functions.clear()


def test_record_gives_one_frame_per_step(random_model):
    noise = random_model.initial_noise(2, seed=3)
    pred, noisy_trajectory, pred_trajectory = random_model.compiled_reverse_diffusion(
        noise, 3, record=True
    )
    assert tuple(noisy_trajectory.shape) == (3, 2, 16, 16, 3)
    assert tuple(pred_trajectory.shape) == (3, 2, 16, 16, 3)
    np.testing.assert_allclose(np.asarray(pred_trajectory[-1]), np.asarray(pred), atol=1e-6)
    # Recording does not change the result.
    np.testing.assert_allclose(
        np.asarray(pred), np.asarray(random_model.compiled_reverse_diffusion(noise, 3)), atol=1e-5
    )


def test_seeds_make_generation_repeatable(random_model):
    first = random_model.generate(3, 3, seed=21)
    assert first.shape == (3, 16, 16, 3)
    assert first.min() >= 0.0 and first.max() <= 1.0
    assert_not_saturated(first)
    np.testing.assert_array_equal(first, random_model.generate(3, 3, seed=21))
    assert not np.allclose(first, random_model.generate(3, 3, seed=22))


def test_stochastic_sampling_is_repeatable_with_a_seed(random_model):
    ddpm = random_model.generate(3, 3, eta=1.0, seed=21)
    np.testing.assert_array_equal(ddpm, random_model.generate(3, 3, eta=1.0, seed=21))
    assert not np.allclose(ddpm, random_model.generate(3, 3, eta=1.0, seed=22))
    # Fresh noise makes eta=1 differ from deterministic DDIM from the same start.
    assert not np.allclose(ddpm, random_model.generate(3, 3, eta=0.0, seed=21))


def test_deterministic_generation_does_not_depend_on_chunking(random_model):
    whole = random_model.generate(4, 2, seed=8, batch_size=4)
    chunked = random_model.generate(4, 2, seed=8, batch_size=3)
    assert_not_saturated(whole)
    # Equal up to float rounding (convolutions may sum in another order per batch size).
    np.testing.assert_allclose(whole, chunked, atol=1e-4)


def test_progress_callback_and_bad_arguments(random_model):
    calls = []
    random_model.generate(5, 1, seed=0, batch_size=2, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(2, 5), (4, 5), (5, 5)]
    with pytest.raises(ValueError):
        random_model.generate(0, 2)
    with pytest.raises(ValueError):
        random_model.generate(2, 0)
