"""The math of inpainting and image-to-image, as small pure functions.

Both edit a given image with a model that was trained only to denoise (no
retraining, any run):

* **image-to-image** (SDEdit, Meng et al. 2021): the input is noised to a
  diffusion time and the sampler runs from there down to the end of its grid,
  so the result keeps what the noise did not drown (layout, colours) and the
  model re-imagines the rest. ``strength`` S in (0, 1] is that time: the
  sampler's K-step grid (any sampler, any spacing) is computed as for
  generation, and the run starts at its first point whose noise rate is at or
  below the schedule's noise rate at time S (:func:`start_step`): never noisier
  than S asks. The input is noised to that point's rates
  (:func:`noised_images`) and the rest of the grid runs, K - start steps.
  S = 1 starts at the grid's first point from pure noise, exactly as generation
  does; where no grid point lies at or below S (``time`` spacing, S < 1/K) no
  step is left and the input comes back unchanged.
* **inpainting** (RePaint, Lugmayr et al. 2022): after every step the known
  part of the image (mask 0) is replaced by the input noised to the noise level
  the step has just reached (:func:`paste_known`), with fresh noise, so the
  regenerated part (mask 1) is denoised in agreement with it; the final
  images take the known part from the input itself. With ``resample`` N > 1,
  every step but the last is done N times: between two, its result jumps back
  to the step's own noise level by the forward process (:func:`jump_back`),
  which lets the regenerated part harmonise with the pasted one.

The noise of these draws is keyed like a stochastic step's
(:func:`ddim_keras.sampling.loops.fresh_noise`): by (seed, step, image index) and a
stream per use, so an edit is repeatable and the same on every backend.
"""

import numpy as np
from keras import ops

from ddim_keras.sampling.spacings import grid_rates

#: Keyed-noise streams of repetition r of a step: the step's own fresh noise (eta > 0;
#: 0 for r = 0, generation's stream), the pasted known images, the jump back.
STREAMS_PER_REPETITION = 3
PASTE_STREAM = 1
JUMP_BACK_STREAM = 2

#: Grid points within this of the target noise rate count as at it (float32 rounding
#: of 1 - i/K against S).
NOISE_RATE_TOLERANCE = 1e-6


def noised_images(images, noises, noise_rates, signal_rates):
    """The forward process: ``signal_rates * images + noise_rates * noises``.

    The start of image-to-image, and the known images pasted after each
    inpainting step (images normalized, as the network sees them).
    """
    return signal_rates * images + noise_rates * noises


def paste_known(noisy_images, known_noisy_images, masks):
    """The sampler's images where ``masks`` is 1, the noised known images where it is 0."""
    return ops.where(masks > 0.5, noisy_images, known_noisy_images)


def jump_back(
    next_noisy_images, noises, noise_rates, signal_rates, next_noise_rates, next_signal_rates
):
    """RePaint's jump back: from the next (less noisy) level to the step's own, by q(x_t | x_s).

    x_t = (a_t / a_s) x_s + sqrt(sigma_t**2 - (a_t / a_s)**2 sigma_s**2) z, with
    a = signal rate and sigma = noise rate at the step's level t and the next
    level s: if x_s = a_s x_0 + sigma_s e, then x_t = a_t x_0 + sigma_t e' with e'
    standard normal again, the marginal of the forward process at t.
    """
    ratios = signal_rates / next_signal_rates
    # Rounding can make the variance a hair below zero when the two levels are equal.
    variances = ops.maximum(ops.square(noise_rates) - ops.square(ratios * next_noise_rates), 0.0)
    return ratios * next_noisy_images + ops.sqrt(variances) * noises


def start_step(schedule_fn, spacing, diffusion_steps, strength):
    """The step of a ``diffusion_steps`` grid that image-to-image at ``strength`` starts at.

    The first grid point whose noise rate is at or below the schedule's at
    diffusion time ``strength``; ``diffusion_steps`` (no step left) where there
    is none. ``strength`` 1 is step 0. With ``time`` spacing the grid's points
    are t = 1 - i/K, so the start is t = floor(S K) / K and K - start = floor(S K)
    steps run; ``logsnr`` and ``karras`` place their points by noise level, and
    the count follows from where S's noise level falls among them (their last
    point is t = 0, so at least one step runs). A Python int, computed on the host.
    """
    steps = int(diffusion_steps)
    if strength >= 1:
        return 0
    indices = ops.arange(steps, dtype="int32")
    grid_noise_rates = ops.convert_to_numpy(grid_rates(schedule_fn, spacing, indices, steps)[0])
    target_noise_rate = ops.convert_to_numpy(
        schedule_fn(ops.convert_to_tensor(float(strength), "float32"))[0]
    )
    at_or_below = np.flatnonzero(
        np.reshape(grid_noise_rates, (-1,)) <= float(target_noise_rate) + NOISE_RATE_TOLERANCE
    )
    return int(at_or_below[0]) if at_or_below.size else steps


def edit_network_calls(sampler, diffusion_steps, start=0, resample=1):
    """Network calls of an edit: K - start steps, every one but the last done ``resample`` times.

    One call per step (Heun two, but the last step one); 0 when no step is left.
    """
    steps = int(diffusion_steps) - int(start)
    if steps <= 0:
        return 0
    per_step = 2 if sampler == "heun" else 1
    return (steps - 1) * int(resample) * per_step + 1
