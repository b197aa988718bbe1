"""Inpainting and image-to-image as one ``keras.ops.while_loop``, for every sampler.

The same step rules as generation (:func:`ddim_keras.sampling.loops.make_step_rule`),
started part-way down the grid, with the known images pasted after each step
and RePaint's repeated steps; the math is in :mod:`ddim_keras.sampling.editing`.
"""

from keras import ops

from ddim_keras.sampling.editing import (
    JUMP_BACK_STREAM,
    PASTE_STREAM,
    STREAMS_PER_REPETITION,
    jump_back,
    noised_images,
    paste_known,
)
from ddim_keras.sampling.loops import empty_history, fresh_noise, make_step_rule
from ddim_keras.sampling.spacings import grid_rates, time_grid


def edit_diffusion_graph(
    denoise_fn,
    schedule_fn,
    initial_noise,
    known_images,
    masks,
    diffusion_steps,
    start_step=0,
    resample=1,
    eta=0.0,
    seed=0,
    first_image=0,
    sampler="ddim",
    spacing="time",
    paste=True,
    resampling=False,
):
    """Edit ``known_images`` (normalized); returns the last step's predicted images.

    Steps ``start_step`` .. ``diffusion_steps - 1`` of the sampler's grid run
    from ``known_images`` noised with ``initial_noise`` to the start's rates, or
    from ``initial_noise`` itself at step 0 (as generation starts). With
    ``paste`` (a Python bool: inpainting), after each step the pixels where
    ``masks`` (one channel) is 0 are replaced by the known images noised to the
    step's end level. With ``resampling`` (a Python bool) every step but the
    last is done ``resample`` times, jumping back to its own level in between.
    ``diffusion_steps``, ``start_step``, ``resample``, ``eta``, ``seed`` and
    ``first_image`` may be tensors (no retrace when they change).

    DPM-Solver++ keeps its history of the network's predictions at the states
    the loop visits, pasted ones included, and warms up from the start step
    (no history before it). ``resampling`` needs a one-step rule (ddim, heun):
    a jump back would leave a multistep history pointing at states no longer
    on the path, which :func:`ddim_keras.core.checks.check_resample` refuses.
    """
    diffusion_steps = ops.cast(diffusion_steps, "int32")
    start_step = ops.cast(start_step, "int32")
    resample = ops.cast(resample, "int32")
    eta = ops.cast(eta, "float32")
    initial_noise = ops.convert_to_tensor(initial_noise, "float32")
    known_images = ops.convert_to_tensor(known_images, "float32")
    shape = ops.shape(initial_noise)
    step_rule = make_step_rule(
        denoise_fn,
        schedule_fn,
        diffusion_steps,
        eta,
        seed,
        first_image,
        sampler,
        spacing,
        start_step=start_step,
    )

    def step_levels(step):
        """(noise, signal rates) at step ``step`` and at the level its step rule remixes to."""
        if sampler == "ddim" and spacing == "time":
            time, next_time = time_grid(step, diffusion_steps)
            return schedule_fn(time), schedule_fn(next_time)
        return (
            grid_rates(schedule_fn, spacing, step, diffusion_steps),
            grid_rates(schedule_fn, spacing, step + 1, diffusion_steps),
        )

    def edited_step(step, noisy_images, history, repetition):
        streams = repetition * STREAMS_PER_REPETITION
        next_noisy_images, pred_images, history = step_rule(
            step, noisy_images, history, stream=streams
        )
        if paste:
            _, (next_noise_rates, next_signal_rates) = step_levels(step)
            known_noises = fresh_noise(shape, seed, first_image, step, streams + PASTE_STREAM)
            next_noisy_images = paste_known(
                next_noisy_images,
                noised_images(known_images, known_noises, next_noise_rates, next_signal_rates),
                masks,
            )
        return next_noisy_images, pred_images, history

    def body(step, noisy_images, pred_images, history):
        if not resampling:
            next_noisy_images, pred_images, history = edited_step(
                step, noisy_images, history, ops.zeros((), "int32")
            )
            return step + 1, next_noisy_images, pred_images, history
        # The last step's result is not sampled on (its predicted images are the
        # output), so it is not repeated.
        repetitions = ops.where(step < diffusion_steps - 1, resample, ops.ones((), "int32"))

        def repeat(repetition, noisy_images, next_noisy_images, pred_images, new_history):
            # Each repetition redoes the step from the same history (none for one-step rules).
            next_noisy_images, pred_images, new_history = edited_step(
                step, noisy_images, history, repetition
            )
            (noise_rates, signal_rates), (next_noise_rates, next_signal_rates) = step_levels(step)
            back_noises = fresh_noise(
                shape,
                seed,
                first_image,
                step,
                repetition * STREAMS_PER_REPETITION + JUMP_BACK_STREAM,
            )
            noisy_images = jump_back(
                next_noisy_images,
                back_noises,
                noise_rates,
                signal_rates,
                next_noise_rates,
                next_signal_rates,
            )
            return repetition + 1, noisy_images, next_noisy_images, pred_images, new_history

        _, _, next_noisy_images, pred_images, history = ops.while_loop(
            lambda repetition, *_: repetition < repetitions,
            repeat,
            (ops.zeros((), "int32"), noisy_images, noisy_images, pred_images, history),
        )
        return step + 1, next_noisy_images, pred_images, history

    # Step 0 starts from pure noise, as generation does (its signal rate is taken as
    # the schedule's minimum there); later starts from the input noised to their level.
    start_noise_rates, start_signal_rates = grid_rates(
        schedule_fn, spacing, start_step, diffusion_steps
    )
    noisy_images = ops.where(
        start_step > 0,
        noised_images(known_images, initial_noise, start_noise_rates, start_signal_rates),
        initial_noise,
    )
    _, _, pred_images, _ = ops.while_loop(
        lambda step, *_: step < diffusion_steps,
        body,
        (start_step, noisy_images, noisy_images, empty_history(noisy_images)),
    )
    return pred_images
