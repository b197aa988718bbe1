"""Where the network calls of a sampler fall: the step spacings, and the log-SNR they use."""

from keras import ops


def log_snr(noise_rates, signal_rates):
    """lambda = log(signal_rate / noise_rate), the half log signal-to-noise ratio."""
    return ops.log(signal_rates) - ops.log(noise_rates)


def rates_from_log_snr(log_snrs):
    """(noise_rates, signal_rates) of lambda: sqrt(sigmoid(-2 lambda)), sqrt(sigmoid(2 lambda))."""
    return ops.sqrt(ops.sigmoid(-2.0 * log_snrs)), ops.sqrt(ops.sigmoid(2.0 * log_snrs))


#: EDM's rho for the karras spacing.
KARRAS_RHO = 7.0


def time_grid(step, diffusion_steps):
    """(t, next t) of step ``step`` of ``diffusion_steps``: the example's time grid, 1 -> 0.

    The float32 values of the example's ``ones - step * step_size`` and
    ``diffusion_times - step_size`` (step_size = 1 / K in Python): t = 1 - step / K
    and next t = t - 1 / K, with float32's correctly rounded division standing in for
    Python's float64 product (the same float32 value for every K below 2**24).
    Next t is not the following step's t (it can differ by one float32 unit, and
    reaches 0 only up to rounding): the example takes it that way, and the
    ``ddim``/``time`` sampler is the example's. ``step`` and ``diffusion_steps``
    are scalars (Python ints or tensors).
    """
    steps = ops.cast(diffusion_steps, "float32")
    diffusion_times = 1.0 - ops.cast(step, "float32") / steps
    return diffusion_times, diffusion_times - 1.0 / steps


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
        return schedule_fn(time_grid(index, diffusion_steps)[0])
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
