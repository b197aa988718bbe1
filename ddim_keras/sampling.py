"""Sampler math: step rules and step spacings, as pure functions.

A noisy image is ``signal_rate * image + noise_rate * noise`` with
``signal_rate**2 + noise_rate**2 == 1`` (signal_rate = sqrt(alpha) in the DDIM
paper's notation); lambda = log(signal_rate / noise_rate) is the half log-SNR
in which the DPM-Solver++ updates are written. Nothing here knows about a
network: the loops below are given a ``denoise_fn`` and a ``schedule_fn``.

Step rules:

* ``ddim``: the generalised update of the DDIM paper (Song et al. 2020, Eq. 12,
  with the noise scale sigma of Eq. 16). ``eta = 0`` is deterministic DDIM, the
  keras.io example's sampler (first order); ``eta = 1`` uses the DDPM posterior
  variance.
* ``dpmpp_2m`` / ``dpmpp_3m``: multistep DPM-Solver++ with data prediction
  (Lu et al. 2022, "DPM-Solver++", Algorithm 2 and its third-order multistep
  extension), second and third order, with lower-order warm-up steps and, for
  fewer than 10 steps, lower-order final steps, as the reference
  implementation does.
* ``heun``: the second-order Heun method of EDM (Karras et al. 2022,
  Algorithm 1, deterministic), two network calls per step but the last.

Step spacings (where the K network calls of K steps are made):

* ``time``: uniform in diffusion time, t = 1, 1 - 1/K, ..., 1/K (the example's);
* ``logsnr``: uniform in lambda between the schedule's ends;
* ``karras``: EDM's spacing of sigma = noise_rate / signal_rate with rho = 7.

Every sampler makes its last call at the K-th grid point and returns that
call's predicted images, as the example does.
"""

from keras import ops

from ddim_keras.keyed_noise import keyed_normal


def step_sigmas(signal_rates, next_signal_rates, eta):
    """Standard deviation of the fresh noise added in a step (paper Eq. 16).

    sigma = eta * sqrt((1 - a_next) / (1 - a)) * sqrt(1 - a / a_next), with
    a = signal_rate**2 the paper's alpha at the current and next time.
    """
    alphas = ops.square(signal_rates)
    next_alphas = ops.square(next_signal_rates)
    variance = (1.0 - next_alphas) / (1.0 - alphas) * (1.0 - alphas / next_alphas)
    # Rounding can make the variance a hair below zero when the rates are equal.
    return eta * ops.sqrt(ops.maximum(variance, 0.0))


def reverse_step(pred_noises, pred_images, next_noise_rates, next_signal_rates,
                 sigmas=0.0, fresh_noises=None):
    """Remix the predicted components at the next noise level.

    The direction pointing to the noisy image keeps a noise rate of
    sqrt(next_noise_rate**2 - sigma**2); the removed variance sigma**2 is put
    back as fresh Gaussian noise. With sigma = 0 this is the example's
    ``next_signal_rates * pred_images + next_noise_rates * pred_noises``.
    """
    direction_rates = ops.sqrt(ops.maximum(ops.square(next_noise_rates) - ops.square(sigmas), 0.0))
    next_noisy_images = next_signal_rates * pred_images + direction_rates * pred_noises
    if fresh_noises is not None:
        next_noisy_images = next_noisy_images + sigmas * fresh_noises
    return next_noisy_images


def ddim_step(noisy_images, pred_noises, pred_images, noise_rates, signal_rates,
              next_noise_rates, next_signal_rates, eta=0.0, fresh_noises=None):
    """One full reverse step from time t to the next (smaller) time.

    ``noisy_images`` and ``noise_rates`` are accepted so the signature mirrors
    the paper's update; the prediction already carries what is needed from them.
    """
    del noisy_images, noise_rates
    sigmas = step_sigmas(signal_rates, next_signal_rates, eta)
    # Without fresh noise this is the mean of the eta-step (z = 0 in Eq. 12),
    # whose direction term still shrinks by sigma.
    return reverse_step(pred_noises, pred_images, next_noise_rates, next_signal_rates,
                        sigmas, fresh_noises)


def log_snr(noise_rates, signal_rates):
    """lambda = log(signal_rate / noise_rate), the half log signal-to-noise ratio."""
    return ops.log(signal_rates) - ops.log(noise_rates)


def rates_from_log_snr(log_snrs):
    """(noise_rates, signal_rates) of a lambda: sqrt(sigmoid(-2 lambda)), sqrt(sigmoid(2 lambda))."""
    return ops.sqrt(ops.sigmoid(-2.0 * log_snrs)), ops.sqrt(ops.sigmoid(2.0 * log_snrs))


def dpmpp_first_order_step(noisy_images, pred_images, noise_rates, next_noise_rates,
                           next_signal_rates, h):
    """DPM-Solver++(1) from lambda to lambda + h: equal to deterministic DDIM.

    x_next = (sigma_next / sigma) x - alpha_next (exp(-h) - 1) D, with D the
    predicted images (the data prediction).
    """
    return (next_noise_rates / noise_rates) * noisy_images \
        - next_signal_rates * ops.expm1(-h) * pred_images


def dpmpp_2m_step(noisy_images, pred_images, previous_pred_images, noise_rates,
                  next_noise_rates, next_signal_rates, h, previous_h):
    """Multistep DPM-Solver++(2M): the data prediction extrapolated from the last two.

    With r = previous_h / h, D = (1 + 1 / (2r)) D_0 - 1 / (2r) D_1 replaces the
    data prediction of the first-order step (the paper's Algorithm 2).
    """
    ratio = previous_h / h
    first_difference = (pred_images - previous_pred_images) / ratio
    return dpmpp_first_order_step(noisy_images, pred_images, noise_rates, next_noise_rates,
                                  next_signal_rates, h) \
        - 0.5 * next_signal_rates * ops.expm1(-h) * first_difference


def dpmpp_3m_step(noisy_images, pred_images, previous_pred_images, earlier_pred_images,
                  noise_rates, next_noise_rates, next_signal_rates, h, previous_h, earlier_h):
    """Multistep DPM-Solver++(3M): first and second divided differences of D.

    phi_1 = exp(-h) - 1, phi_2 = phi_1 / h + 1, phi_3 = phi_2 / h - 1/2;
    x_next = (sigma_next / sigma) x - alpha_next (phi_1 D_0 - phi_2 D1 + phi_3 D2).
    """
    ratio_0, ratio_1 = previous_h / h, earlier_h / h
    difference_0 = (pred_images - previous_pred_images) / ratio_0
    difference_1 = (previous_pred_images - earlier_pred_images) / ratio_1
    first = difference_0 + ratio_0 / (ratio_0 + ratio_1) * (difference_0 - difference_1)
    second = (difference_0 - difference_1) / (ratio_0 + ratio_1)
    phi_1 = ops.expm1(-h)
    phi_2 = phi_1 / h + 1.0
    phi_3 = phi_2 / h - 0.5
    return (next_noise_rates / noise_rates) * noisy_images - next_signal_rates * (
        phi_1 * pred_images - phi_2 * first + phi_3 * second)


def euler_step(noisy_images, pred_noises, noise_rates, signal_rates, next_noise_rates,
               next_signal_rates):
    """Euler on EDM's probability-flow ODE: d(x / alpha) / d(sigma / alpha) = predicted noise.

    Written in this package's rates it is exactly deterministic DDIM.
    """
    sigma_change = next_noise_rates / next_signal_rates - noise_rates / signal_rates
    return next_signal_rates * (noisy_images / signal_rates + sigma_change * pred_noises)


def heun_step(noisy_images, pred_noises, next_pred_noises, noise_rates, signal_rates,
              next_noise_rates, next_signal_rates):
    """EDM's Heun correction: the mean of the noise predicted at both ends of an Euler step.

    ``next_pred_noises`` is the network's noise prediction at the Euler step's
    end point (a second call).
    """
    sigma_change = next_noise_rates / next_signal_rates - noise_rates / signal_rates
    return next_signal_rates * (noisy_images / signal_rates
                                + sigma_change * 0.5 * (pred_noises + next_pred_noises))


def network_calls(sampler, diffusion_steps):
    """Network calls of ``diffusion_steps`` steps: one per step, Heun two per step but the last."""
    steps = int(diffusion_steps)
    return 2 * steps - 1 if sampler == "heun" else steps


def steps_for_calls(sampler, calls):
    """The most steps of ``sampler`` that ``calls`` network calls allow (at least 1)."""
    calls = int(calls)
    return max(1, (calls + 1) // 2) if sampler == "heun" else max(1, calls)


def solver_order(sampler, transition, transitions):
    """Order of DPM-Solver++ transition ``transition`` (0-based) of ``transitions``.

    Warm-up: the first transitions have no history, so transition n uses at
    most order n + 1. Final: with fewer than 10 transitions the last ones use at
    most order ``transitions - n``, which the reference implementation found
    more stable for few steps. Works on Python ints and tensors alike.
    """
    order = {"dpmpp_2m": 2, "dpmpp_3m": 3}.get(sampler, 1)
    order = ops.minimum(order, transition + 1)
    final = ops.minimum(order, transitions - transition)
    return ops.where(transitions < 10, final, order)


# -- step spacings ------------------------------------------------------------------

#: EDM's rho for the karras spacing.
KARRAS_RHO = 7.0


def grid_rates(schedule_fn, spacing, index, diffusion_steps):
    """(noise_rate, signal_rate) of the ``index``-th network call of ``diffusion_steps``.

    ``time`` (the example's): t = 1 - index / K, so the calls run from t = 1 to
    t = 1/K and the schedule's t = 0 end is never evaluated. ``logsnr`` and
    ``karras`` spread the K calls over the whole range, the first at t = 1 and
    the last at t = 0 (the least noise the model was trained on), like a solver
    integrating to its end point before the final denoising. ``index`` and
    ``diffusion_steps`` may be tensors (no retrace per step count); an index
    past the last call gives the last call's rates.
    """
    if spacing == "time":
        return schedule_fn(1.0 - ops.cast(index, "float32")
                           / ops.cast(diffusion_steps, "float32"))
    intervals = ops.maximum(ops.cast(diffusion_steps, "float32") - 1.0, 1.0)
    fraction = ops.minimum(ops.cast(index, "float32") / intervals, 1.0)
    start_noise, start_signal = schedule_fn(ops.ones(()))
    end_noise, end_signal = schedule_fn(ops.zeros(()))
    if spacing == "logsnr":
        start, end = log_snr(start_noise, start_signal), log_snr(end_noise, end_signal)
        return rates_from_log_snr(start + fraction * (end - start))
    if spacing == "karras":
        inverse_rho = 1.0 / KARRAS_RHO
        start = ops.power(start_noise / start_signal, inverse_rho)
        end = ops.power(end_noise / end_signal, inverse_rho)
        sigmas = ops.power(start + fraction * (end - start), KARRAS_RHO)
        signal_rates = 1.0 / ops.sqrt(1.0 + ops.square(sigmas))
        return sigmas * signal_rates, signal_rates
    raise ValueError(f"unknown step spacing {spacing!r}")


def step_times(step, diffusion_steps):
    """Diffusion time at the start of step ``step`` of ``diffusion_steps`` (1 -> 0)."""
    return 1.0 - ops.cast(step, "float32") / ops.cast(diffusion_steps, "float32")


# -- the reverse process ----------------------------------------------------------
#
# ``denoise_fn(noisy_images, noise_rates, signal_rates) -> (pred_noises, pred_images)``
# and ``schedule_fn(diffusion_times) -> (noise_rates, signal_rates)`` are passed in,
# so the loops below know neither the network nor the schedule.


def fresh_noise(shape, seed, first_image, step):
    """The fresh noise of one stochastic step: keyed by (seed, step, image index).

    Drawn by :func:`ddim_keras.keyed_noise.keyed_normal`, the same on every
    backend and in the graph loop and the Python loop alike, which makes
    seeded DDPM sampling repeatable; image ``first_image + i`` gets the same
    noise whatever chunk it is sampled in.
    """
    return keyed_normal(shape, seed, step, first_image)


def _reverse_step_at(denoise_fn, schedule_fn, noisy_images, step, diffusion_steps, eta, seed,
                     first_image=0):
    """Separate the noisy images at step ``step`` and remix them one step on."""
    shape = ops.shape(noisy_images)
    step_size = 1.0 / ops.cast(diffusion_steps, "float32")
    # At the first step the "noisy image" is pure noise, but its signal rate is
    # taken as min_signal_rate: the schedule never reaches zero signal.
    diffusion_times = ops.full((shape[0], 1, 1, 1),
                               1.0 - ops.cast(step, "float32") * step_size, dtype="float32")
    noise_rates, signal_rates = schedule_fn(diffusion_times)
    pred_noises, pred_images = denoise_fn(noisy_images, noise_rates, signal_rates)
    next_noise_rates, next_signal_rates = schedule_fn(diffusion_times - step_size)
    fresh_noises = fresh_noise(shape, seed, first_image, step)
    next_noisy_images = ddim_step(noisy_images, pred_noises, pred_images, noise_rates,
                                  signal_rates, next_noise_rates, next_signal_rates, eta,
                                  fresh_noises)
    return next_noisy_images, pred_images


def reverse_diffusion_loop(denoise_fn, schedule_fn, initial_noise, diffusion_steps,
                           eta=0.0, seed=0, first_image=0):
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


def reverse_diffusion_graph(denoise_fn, schedule_fn, initial_noise, diffusion_steps,
                            eta=0.0, seed=0, record=False, first_image=0, sampler="ddim",
                            spacing="time"):
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
    num_images = ops.shape(initial_noise)[0]

    def rates(index):
        noise_rates, signal_rates = grid_rates(schedule_fn, spacing, index, diffusion_steps)
        # One rate per image, shaped like the network's noise-variance input.
        return (ops.full((num_images, 1, 1, 1), noise_rates, dtype="float32"),
                ops.full((num_images, 1, 1, 1), signal_rates, dtype="float32"))

    def step_rule(step, noisy_images, history):
        """(next noisy images, predicted images, new history) of step ``step``."""
        if sampler == "ddim" and spacing == "time":
            next_noisy_images, pred_images = _reverse_step_at(
                denoise_fn, schedule_fn, noisy_images, step, diffusion_steps, eta, seed,
                first_image)
            return next_noisy_images, pred_images, history
        noise_rates, signal_rates = rates(step)
        next_noise_rates, next_signal_rates = rates(step + 1)
        pred_noises, pred_images = denoise_fn(noisy_images, noise_rates, signal_rates)
        if sampler == "ddim":
            fresh_noises = fresh_noise(ops.shape(noisy_images), seed, first_image, step)
            return ddim_step(noisy_images, pred_noises, pred_images, noise_rates, signal_rates,
                             next_noise_rates, next_signal_rates, eta,
                             fresh_noises), pred_images, history
        if sampler == "heun":
            def corrected():
                euler = euler_step(noisy_images, pred_noises, noise_rates, signal_rates,
                                   next_noise_rates, next_signal_rates)
                next_pred_noises, _ = denoise_fn(euler, next_noise_rates, next_signal_rates)
                return heun_step(noisy_images, pred_noises, next_pred_noises, noise_rates,
                                 signal_rates, next_noise_rates, next_signal_rates)

            # The last step's images are the output: no correction (no extra call).
            next_noisy_images = ops.cond(step < diffusion_steps - 1, corrected,
                                         lambda: noisy_images)
            return next_noisy_images, pred_images, history
        # DPM-Solver++: transitions 0 .. K-2 run between the K evaluated points.
        previous_images, earlier_images, previous_h, earlier_h = history
        # The step in lambda: one number for the whole batch.
        h = (log_snr(*grid_rates(schedule_fn, spacing, step + 1, diffusion_steps))
             - log_snr(*grid_rates(schedule_fn, spacing, step, diffusion_steps)))
        order = solver_order(sampler, step, diffusion_steps - 1)
        first = lambda: dpmpp_first_order_step(  # noqa: E731
            noisy_images, pred_images, noise_rates, next_noise_rates, next_signal_rates, h)
        second = lambda: dpmpp_2m_step(  # noqa: E731
            noisy_images, pred_images, previous_images, noise_rates, next_noise_rates,
            next_signal_rates, h, previous_h)
        third = lambda: dpmpp_3m_step(  # noqa: E731
            noisy_images, pred_images, previous_images, earlier_images, noise_rates,
            next_noise_rates, next_signal_rates, h, previous_h, earlier_h)
        branches = [first, second, third][:{"dpmpp_2m": 2, "dpmpp_3m": 3}[sampler]]
        # The last step's transition is never used (its predicted images are the
        # output); order 0 there is raised to 1.
        index = ops.maximum(ops.cast(order, "int32"), 1) - 1
        next_noisy_images = ops.switch(index, branches)
        return next_noisy_images, pred_images, (pred_images, previous_images, h, previous_h)

    def body(step, noisy_images, pred_images, history, recording):
        next_noisy_images, pred_images, history = step_rule(step, noisy_images, history)
        if record:
            noisy_trajectory, pred_trajectory = recording
            at = (step, 0, 0, 0, 0)
            recording = (ops.slice_update(noisy_trajectory, at, noisy_images[None]),
                         ops.slice_update(pred_trajectory, at, pred_images[None]))
        return step + 1, next_noisy_images, pred_images, history, recording

    # Multistep history: the previous two predicted images and lambda steps
    # (placeholders until the warm-up steps fill them; never read before).
    one = ops.ones((), "float32")
    history = (initial_noise, initial_noise, one, one)
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
