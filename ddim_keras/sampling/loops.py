"""The reverse process: the example's Python loop, and one ``keras.ops.while_loop`` for all.

``denoise_fn(noisy_images, noise_rates, signal_rates) -> (pred_noises, pred_images)``
and ``schedule_fn(diffusion_times) -> (noise_rates, signal_rates)`` are passed in,
so the loops know neither the network nor the schedule.
"""

from keras import ops

from ddim_keras.sampling.keyed_noise import keyed_normal
from ddim_keras.sampling.spacings import grid_rates, log_snr, time_grid
from ddim_keras.sampling.step_rules import (
    ddim_step,
    dpmpp_2m_step,
    dpmpp_3m_step,
    dpmpp_first_order_step,
    euler_step,
    heun_step,
    solver_order,
)


def fresh_noise(shape, seed, first_image, step, stream=0):
    """The fresh noise of one stochastic step: keyed by (seed, step, image index).

    Drawn by :func:`ddim_keras.sampling.keyed_noise.keyed_normal`, the same on every
    backend and in the graph loop and the Python loop alike, which makes
    seeded DDPM sampling repeatable; image ``first_image + i`` gets the same
    noise whatever chunk it is sampled in. ``stream`` 0 is generation's; a
    redone step of inpainting draws from another (its own fresh noise).
    """
    return keyed_normal(shape, seed, step, first_image, stream)


def _reverse_step_at(
    denoise_fn,
    schedule_fn,
    noisy_images,
    step,
    diffusion_steps,
    eta,
    seed,
    first_image=0,
    stream=0,
):
    """Separate the noisy images at step ``step`` and remix them one step on.

    The example's step, on the example's time grid (:func:`time_grid`).
    """
    shape = ops.shape(noisy_images)
    time, next_time = time_grid(step, diffusion_steps)
    # At the first step the "noisy image" is pure noise, but its signal rate is
    # taken as min_signal_rate: the schedule never reaches zero signal.
    diffusion_times = ops.full((shape[0], 1, 1, 1), time, dtype="float32")
    noise_rates, signal_rates = schedule_fn(diffusion_times)
    pred_noises, pred_images = denoise_fn(noisy_images, noise_rates, signal_rates)
    next_diffusion_times = ops.full((shape[0], 1, 1, 1), next_time, dtype="float32")
    next_noise_rates, next_signal_rates = schedule_fn(next_diffusion_times)
    fresh_noises = fresh_noise(shape, seed, first_image, step, stream)
    next_noisy_images = ddim_step(
        noisy_images,
        pred_noises,
        pred_images,
        noise_rates,
        signal_rates,
        next_noise_rates,
        next_signal_rates,
        eta,
        fresh_noises,
    )
    return next_noisy_images, pred_images


def reverse_diffusion_loop(
    denoise_fn, schedule_fn, initial_noise, diffusion_steps, eta=0.0, seed=0, first_image=0
):
    """Reference sampler: a plain Python loop, one network call per step.

    Returns the predicted images of the last step (normalized space).
    ``first_image``: index of the chunk's first image, which keys its fresh
    noise together with ``seed`` (see :func:`fresh_noise`).
    """
    # A tensor, not a NumPy array: a Keras network refuses a mix of both.
    noisy_images = ops.convert_to_tensor(initial_noise, "float32")
    initial_noise = noisy_images
    pred_images = initial_noise
    for step in range(int(diffusion_steps)):
        noisy_images, pred_images = _reverse_step_at(
            denoise_fn, schedule_fn, noisy_images, step, diffusion_steps, eta, seed, first_image
        )
    return pred_images


def make_step_rule(
    denoise_fn,
    schedule_fn,
    diffusion_steps,
    eta,
    seed,
    first_image,
    sampler,
    spacing,
    start_step=None,
):
    """``step_rule(step, noisy_images, history, stream=0)`` of one sampler and spacing.

    It returns (next noisy images, predicted images, new history) of step
    ``step``; the graph loops of generation (:func:`reverse_diffusion_graph`)
    and of editing (:mod:`ddim_keras.sampling.editing`) share it. ``stream``
    keys a stochastic step's fresh noise (0: generation's). ``start_step``: the
    step a loop starts at (image-to-image starts part-way down the grid); the
    DPM-Solver++ orders then count their warm-up and final steps from there, as
    if the remaining grid were the whole one. None: from step 0.
    """

    def rates(index, num_images):
        noise_rates, signal_rates = grid_rates(schedule_fn, spacing, index, diffusion_steps)
        # One rate per image, shaped like the network's noise-variance input.
        return (
            ops.full((num_images, 1, 1, 1), noise_rates, dtype="float32"),
            ops.full((num_images, 1, 1, 1), signal_rates, dtype="float32"),
        )

    def step_rule(step, noisy_images, history, stream=0):
        """(next noisy images, predicted images, new history) of step ``step``."""
        if sampler == "ddim" and spacing == "time":
            next_noisy_images, pred_images = _reverse_step_at(
                denoise_fn,
                schedule_fn,
                noisy_images,
                step,
                diffusion_steps,
                eta,
                seed,
                first_image,
                stream,
            )
            return next_noisy_images, pred_images, history
        num_images = ops.shape(noisy_images)[0]
        noise_rates, signal_rates = rates(step, num_images)
        next_noise_rates, next_signal_rates = rates(step + 1, num_images)
        pred_noises, pred_images = denoise_fn(noisy_images, noise_rates, signal_rates)
        if sampler == "ddim":
            fresh_noises = fresh_noise(ops.shape(noisy_images), seed, first_image, step, stream)
            return (
                ddim_step(
                    noisy_images,
                    pred_noises,
                    pred_images,
                    noise_rates,
                    signal_rates,
                    next_noise_rates,
                    next_signal_rates,
                    eta,
                    fresh_noises,
                ),
                pred_images,
                history,
            )
        if sampler == "heun":

            def corrected():
                euler = euler_step(
                    noisy_images,
                    pred_noises,
                    noise_rates,
                    signal_rates,
                    next_noise_rates,
                    next_signal_rates,
                )
                next_pred_noises, _ = denoise_fn(euler, next_noise_rates, next_signal_rates)
                return heun_step(
                    noisy_images,
                    pred_noises,
                    next_pred_noises,
                    noise_rates,
                    signal_rates,
                    next_noise_rates,
                    next_signal_rates,
                )

            # The last step's images are the output: no correction (no extra call).
            next_noisy_images = ops.cond(
                step < diffusion_steps - 1, corrected, lambda: noisy_images
            )
            return next_noisy_images, pred_images, history
        # DPM-Solver++: transitions 0 .. K-2 run between the K evaluated points; the
        # last step's (K-1) is never used (its predicted images are the output), and
        # solver_order makes it first order: with logsnr or karras spacing its h is 0,
        # which the higher orders divide by.
        previous_images, earlier_images, previous_h, earlier_h = history
        # The step in lambda: one number for the whole batch.
        h = log_snr(*grid_rates(schedule_fn, spacing, step + 1, diffusion_steps)) - log_snr(
            *grid_rates(schedule_fn, spacing, step, diffusion_steps)
        )
        if start_step is None:
            order = solver_order(sampler, step, diffusion_steps - 1)
        else:
            # No history before the start: warm up from there.
            order = solver_order(sampler, step - start_step, diffusion_steps - 1 - start_step)
        first = lambda: dpmpp_first_order_step(  # noqa: E731
            noisy_images, pred_images, noise_rates, next_noise_rates, next_signal_rates, h
        )
        second = lambda: dpmpp_2m_step(  # noqa: E731
            noisy_images,
            pred_images,
            previous_images,
            noise_rates,
            next_noise_rates,
            next_signal_rates,
            h,
            previous_h,
        )
        third = lambda: dpmpp_3m_step(  # noqa: E731
            noisy_images,
            pred_images,
            previous_images,
            earlier_images,
            noise_rates,
            next_noise_rates,
            next_signal_rates,
            h,
            previous_h,
            earlier_h,
        )
        branches = [first, second, third][: {"dpmpp_2m": 2, "dpmpp_3m": 3}[sampler]]
        next_noisy_images = ops.switch(ops.cast(order, "int32") - 1, branches)
        return next_noisy_images, pred_images, (pred_images, previous_images, h, previous_h)

    return step_rule


def empty_history(initial_noise):
    """The multistep history before the first step: the previous two predicted images
    and lambda steps, placeholders until the warm-up steps fill them (never read before)."""
    one = ops.ones((), "float32")
    return (initial_noise, initial_noise, one, one)


def reverse_diffusion_graph(
    denoise_fn,
    schedule_fn,
    initial_noise,
    diffusion_steps,
    eta=0.0,
    seed=0,
    record=False,
    first_image=0,
    sampler="ddim",
    spacing="time",
):
    """Any sampler as one ``keras.ops.while_loop`` over steps, on every backend.

    ``diffusion_steps`` may be a tensor, so a compiled caller does not retrace
    when it changes (TensorFlow's ``tf.while_loop``, JAX's ``lax.while_loop``;
    PyTorch runs the loop in Python); ``sampler`` and ``spacing`` are Python
    strings (one graph each). The multistep history (the last predicted images
    and their lambdas) travels in the loop state. With ``record`` (the number
    of steps, a Python int: the recording's shape depends on it) also returns
    the noisy and predicted images of every step, stacked on a leading axis
    (for animations). ``ddim`` with ``time`` spacing is the example's sampler,
    computed exactly as :func:`reverse_diffusion_loop` computes it.
    """
    diffusion_steps = ops.cast(diffusion_steps, "int32")
    eta = ops.cast(eta, "float32")
    initial_noise = ops.convert_to_tensor(initial_noise, "float32")
    step_rule = make_step_rule(
        denoise_fn, schedule_fn, diffusion_steps, eta, seed, first_image, sampler, spacing
    )

    def body(step, noisy_images, pred_images, history, recording):
        next_noisy_images, pred_images, history = step_rule(step, noisy_images, history)
        if record:
            noisy_trajectory, pred_trajectory = recording
            at = (step, 0, 0, 0, 0)
            recording = (
                ops.slice_update(noisy_trajectory, at, noisy_images[None]),
                ops.slice_update(pred_trajectory, at, pred_images[None]),
            )
        return step + 1, next_noisy_images, pred_images, history, recording

    history = empty_history(initial_noise)
    recording = ()
    if record:
        trajectory = ops.zeros((int(record),) + tuple(ops.shape(initial_noise)), "float32")
        recording = (trajectory, trajectory)
    _, _, pred_images, _, recording = ops.while_loop(
        lambda step, *_: step < diffusion_steps,
        body,
        (ops.zeros((), "int32"), initial_noise, initial_noise, history, recording),
    )
    if record:
        return (pred_images,) + tuple(recording)
    return pred_images
