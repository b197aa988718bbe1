"""The warning of a distilled student sampled otherwise than it was distilled for.

A student of progressive distillation (:mod:`ddim_keras.model.distillation`)
learned to take the DDIM steps of one time grid: ``distilled_steps`` calls,
``t = 1, 1 - 1/K, ..., 1/K``. Any other step count, sampler or spacing still
samples (the network is an ordinary velocity or image predictor), but off the
grid it was trained on, usually worse than its teacher would there.
"""

import warnings


def distilled_steps_message(config, diffusion_steps, sampler="ddim", spacing="time"):
    """The warning's text, or None when ``config``'s run is sampled as it was distilled."""
    distilled_steps = getattr(config, "distilled_steps", 0)
    if not distilled_steps:
        return None
    if int(diffusion_steps) == distilled_steps and (sampler, spacing) == ("ddim", "time"):
        return None
    return (
        f"this run is a student distilled for {distilled_steps} DDIM step(s) on the "
        f"example's time grid; sampling it with {int(diffusion_steps)} step(s) of "
        f"{sampler}/{spacing} works but is off the grid it learned, and usually worse "
        f"than its teacher there (sample with --steps {distilled_steps}, sampler ddim)."
    )


def warn_distilled_steps(config, diffusion_steps, sampler="ddim", spacing="time"):
    """Warn (a UserWarning) when a distilled run is sampled off its distilled grid."""
    message = distilled_steps_message(config, diffusion_steps, sampler, spacing)
    if message is not None:
        warnings.warn(message, UserWarning, stacklevel=3)
