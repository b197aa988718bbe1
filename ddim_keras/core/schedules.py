"""Diffusion schedules: diffusion_times in [0, 1] -> (noise_rates, signal_rates).

Pure ``keras.ops`` functions of the time, with no model inside. A time of 0 is
the (almost) clean image, 1 is (almost) pure noise. Every schedule returns rates
whose squares sum to one, so a noisy image keeps unit variance, and keeps the
signal rate inside ``[min_signal_rate, max_signal_rate]`` so the image estimate
``(noisy - noise_rate * noise) / signal_rate`` never divides by zero. Both
schedules reach those bounds exactly at t = 0 and t = 1 and are strictly monotone
in between, so every step of a sampler or training draw sees its own noise level.
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

    The end angles are computed in float32, as the example computes them:
    ``math.acos`` in float64 rounds some of them one unit in the last place
    away, and that alone made a training run drift from the example's by ~1 %
    of a step's update within six steps (AdamW normalizes each weight's
    gradient, so tiny differences in small gradients become visible).
    """
    diffusion_times = ops.convert_to_tensor(diffusion_times, dtype="float32")
    start_angle = ops.arccos(ops.convert_to_tensor(max_signal_rate, dtype="float32"))
    end_angle = ops.arccos(ops.convert_to_tensor(min_signal_rate, dtype="float32"))
    diffusion_angles = start_angle + diffusion_times * (end_angle - start_angle)
    signal_rates = ops.cos(diffusion_angles)
    noise_rates = ops.sin(diffusion_angles)
    return noise_rates, signal_rates


def _ddpm_time(signal_rate):
    """The continuous DDPM time s (step s * N) at which sqrt(alpha_bar(s)) == signal_rate.

    Solves N * (beta_start * s + (beta_end - beta_start) * s**2 / 2) = -2 ln(signal_rate),
    the quadratic behind ``linear_schedule``, for its non-negative root.
    """
    slope = LINEAR_BETA_END - LINEAR_BETA_START
    c = -2.0 * math.log(signal_rate) / LINEAR_NUM_STEPS
    return (-LINEAR_BETA_START + math.sqrt(LINEAR_BETA_START**2 + 2.0 * slope * c)) / slope


def linear_schedule(diffusion_times, min_signal_rate, max_signal_rate):
    """The DDPM paper's linear betas, stretched so that all of [0, 1] is used.

    With beta rising linearly from beta_start to beta_end over N = 1000 steps,
    log(alpha_bar) = sum log(1 - beta_i) is approximated by the integral over the
    DDPM time s in [0, 1] (step i sits at s = i / N):
    log(alpha_bar(s)) = -N * (beta_start * s + (beta_end - beta_start) * s**2 / 2).

    That curve passes the signal bounds at closed-form times: s_start, where
    sqrt(alpha_bar) == max_signal_rate, and s_end, where it == min_signal_rate
    (the positive root of the quadratic, see ``_ddpm_time``). Our diffusion time
    t in [0, 1] maps linearly onto s = s_start + t * (s_end - s_start), so t = 0
    gives exactly max_signal_rate, t = 1 exactly min_signal_rate, and the signal
    rate falls strictly in between: no part of [0, 1] repeats a noise level.

    At the default bounds (0.02, 0.95), s_start = 0.09664 and s_end = 0.88175:
    t covers the DDPM paper's discrete steps 96.6 .. 881.7 of 1000 (whole steps
    97 .. 881), and step i sits at t = (i / N - s_start) / (s_end - s_start). The
    integral differs from the discrete product prod(1 - beta_i) mostly by the
    dropped -beta**2 / 2 terms of log(1 - beta); over steps 97 .. 881 the two
    alpha_bars differ by at most 4.6 % relative to the product (worst at step
    881, where the integral is the higher; under 1 % while alpha_bar > 0.05),
    and the signal rates by at most 1e-3.
    Other bounds cover other steps; a min_signal_rate below about 0.0066
    extrapolates the curve past step 1000.
    """
    diffusion_times = ops.convert_to_tensor(diffusion_times, dtype="float32")
    start, end = _ddpm_time(max_signal_rate), _ddpm_time(min_signal_rate)
    ddpm_times = start + diffusion_times * (end - start)
    log_alpha_bar = -LINEAR_NUM_STEPS * (
        LINEAR_BETA_START * ddpm_times
        + 0.5 * (LINEAR_BETA_END - LINEAR_BETA_START) * ops.square(ddpm_times)
    )
    # The clip only absorbs float32 rounding at t = 0 and t = 1 (about 1e-7).
    signal_rates = ops.clip(ops.exp(0.5 * log_alpha_bar), min_signal_rate, max_signal_rate)
    noise_rates = ops.sqrt(1.0 - ops.square(signal_rates))
    return noise_rates, signal_rates


SCHEDULES = {"cosine": cosine_schedule, "linear": linear_schedule}


def get_schedule(name):
    try:
        return SCHEDULES[name]
    except KeyError:
        raise ValueError(
            f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}"
        ) from None
