"""Diffusion schedules: diffusion_times in [0, 1] -> (noise_rates, signal_rates).

Pure ``keras.ops`` functions of the time, with no model inside. A time of 0 is
the (almost) clean image, 1 is (almost) pure noise. Every schedule returns rates
whose squares sum to one, so a noisy image keeps unit variance, and keeps the
signal rate inside ``[min_signal_rate, max_signal_rate]`` so the image estimate
``(noisy - noise_rate * noise) / signal_rate`` never divides by zero.
"""

import math

from keras import ops

# The DDPM paper's linear beta schedule: 1000 discrete steps, betas 1e-4 -> 0.02.
LINEAR_BETA_START = 1e-4
LINEAR_BETA_END = 0.02
LINEAR_NUM_STEPS = 1000


def cosine_schedule(diffusion_times, min_signal_rate, max_signal_rate):
    """The keras.io example's continuous cosine schedule.

    Angles grow linearly in time between arccos(max_signal_rate) and
    arccos(min_signal_rate); the signal rate is their cosine, the noise rate
    their sine.
    """
    diffusion_times = ops.convert_to_tensor(diffusion_times, dtype="float32")
    start_angle = math.acos(max_signal_rate)
    end_angle = math.acos(min_signal_rate)
    diffusion_angles = start_angle + diffusion_times * (end_angle - start_angle)
    signal_rates = ops.cos(diffusion_angles)
    noise_rates = ops.sin(diffusion_angles)
    return noise_rates, signal_rates


def linear_schedule(diffusion_times, min_signal_rate, max_signal_rate):
    """The DDPM paper's linear betas as a continuous function of time.

    With beta(t) rising linearly from beta_start to beta_end over N steps,
    log(alpha_bar) = sum log(1 - beta_i) is approximated by the integral
    -N * (beta_start * t + (beta_end - beta_start) * t**2 / 2), which at
    t = i / N matches the discrete product to well under 1%. The signal rate
    sqrt(alpha_bar) is then clipped to the same bounds as the cosine schedule.
    """
    diffusion_times = ops.convert_to_tensor(diffusion_times, dtype="float32")
    log_alpha_bar = -LINEAR_NUM_STEPS * (
        LINEAR_BETA_START * diffusion_times
        + 0.5 * (LINEAR_BETA_END - LINEAR_BETA_START) * ops.square(diffusion_times)
    )
    signal_rates = ops.clip(ops.exp(0.5 * log_alpha_bar), min_signal_rate, max_signal_rate)
    noise_rates = ops.sqrt(1.0 - ops.square(signal_rates))
    return noise_rates, signal_rates


SCHEDULES = {"cosine": cosine_schedule, "linear": linear_schedule}


def get_schedule(name):
    try:
        return SCHEDULES[name]
    except KeyError:
        raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}") from None
