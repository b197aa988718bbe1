"""The step rules of the samplers, as pure ``keras.ops`` functions of rates and predictions.

See :mod:`ddim_keras.sampling` for the notation and the list of samplers.
"""

from keras import ops


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


def reverse_step(
    pred_noises, pred_images, next_noise_rates, next_signal_rates, sigmas=0.0, fresh_noises=None
):
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


def ddim_step(
    noisy_images,
    pred_noises,
    pred_images,
    noise_rates,
    signal_rates,
    next_noise_rates,
    next_signal_rates,
    eta=0.0,
    fresh_noises=None,
):
    """One full reverse step from time t to the next (smaller) time.

    ``noisy_images`` and ``noise_rates`` are accepted so the signature mirrors
    the paper's update; the prediction already carries what is needed from them.
    """
    del noisy_images, noise_rates
    sigmas = step_sigmas(signal_rates, next_signal_rates, eta)
    # Without fresh noise this is the mean of the eta-step (z = 0 in Eq. 12),
    # whose direction term still shrinks by sigma.
    return reverse_step(
        pred_noises, pred_images, next_noise_rates, next_signal_rates, sigmas, fresh_noises
    )


def dpmpp_first_order_step(
    noisy_images, pred_images, noise_rates, next_noise_rates, next_signal_rates, h
):
    """DPM-Solver++(1) from lambda to lambda + h: equal to deterministic DDIM.

    x_next = (sigma_next / sigma) x - alpha_next (exp(-h) - 1) D, with D the
    predicted images (the data prediction).
    """
    return (next_noise_rates / noise_rates) * noisy_images - next_signal_rates * ops.expm1(
        -h
    ) * pred_images


def dpmpp_2m_step(
    noisy_images,
    pred_images,
    previous_pred_images,
    noise_rates,
    next_noise_rates,
    next_signal_rates,
    h,
    previous_h,
):
    """Multistep DPM-Solver++(2M): the data prediction extrapolated from the last two.

    With r = previous_h / h, D = (1 + 1 / (2r)) D_0 - 1 / (2r) D_1 replaces the
    data prediction of the first-order step (the paper's Algorithm 2).
    """
    ratio = previous_h / h
    first_difference = (pred_images - previous_pred_images) / ratio
    return (
        dpmpp_first_order_step(
            noisy_images, pred_images, noise_rates, next_noise_rates, next_signal_rates, h
        )
        - 0.5 * next_signal_rates * ops.expm1(-h) * first_difference
    )


def dpmpp_3m_step(
    noisy_images,
    pred_images,
    previous_pred_images,
    earlier_pred_images,
    noise_rates,
    next_noise_rates,
    next_signal_rates,
    h,
    previous_h,
    earlier_h,
):
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
        phi_1 * pred_images - phi_2 * first + phi_3 * second
    )


def euler_step(
    noisy_images, pred_noises, noise_rates, signal_rates, next_noise_rates, next_signal_rates
):
    """Euler on EDM's probability-flow ODE: d(x / alpha) / d(sigma / alpha) = predicted noise.

    Written in this package's rates it is exactly deterministic DDIM.
    """
    sigma_change = next_noise_rates / next_signal_rates - noise_rates / signal_rates
    return next_signal_rates * (noisy_images / signal_rates + sigma_change * pred_noises)


def heun_step(
    noisy_images,
    pred_noises,
    next_pred_noises,
    noise_rates,
    signal_rates,
    next_noise_rates,
    next_signal_rates,
):
    """EDM's Heun correction: the mean of the noise predicted at both ends of an Euler step.

    ``next_pred_noises`` is the network's noise prediction at the Euler step's
    end point (a second call).
    """
    sigma_change = next_noise_rates / next_signal_rates - noise_rates / signal_rates
    return next_signal_rates * (
        noisy_images / signal_rates + sigma_change * 0.5 * (pred_noises + next_pred_noises)
    )


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

    ``transitions`` is K - 1 for K steps (the K-th network call's predicted images are
    the output). Warm-up: transition n has only n earlier predictions, so it uses at
    most order n + 1. Final: when ``transitions < 10``, i.e. for 10 steps or fewer,
    transition n uses at most order ``transitions - n`` (the last one first order),
    which the reference implementation found more stable for few steps; from 11 steps
    on, the order is not lowered. A ``transition`` of ``transitions`` or more (the
    loop's last step, whose result is never used) gets order 1, which does not divide
    by its step h (0 there with logsnr or karras spacing). Works on Python ints and
    tensors alike.
    """
    order = {"dpmpp_2m": 2, "dpmpp_3m": 3}.get(sampler, 1)
    order = ops.minimum(order, transition + 1)
    final = ops.minimum(order, transitions - transition)
    order = ops.where(transitions < 10, final, order)
    return ops.where(transition < transitions, order, 1)
