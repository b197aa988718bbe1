"""Checks of sampling arguments, shared by the library and every command.

Plain Python (no Keras import), so commands can check their flags before the
heavy imports. Each check raises :class:`~ddim_keras.core.errors.UsageError`,
which is a ``ValueError`` for library callers and exit code 2 in a command;
``name`` is how the value is called in the message (``"eta"`` in the
library, ``"--eta"`` in a command).
"""

import math
import numbers

from ddim_keras.core.errors import UsageError

#: Seeds are 31-bit: they travel as int32 into TensorFlow's stateless ops.
SEED_LIMIT = 2**31 - 1

#: Step rules and step spacings of ddim_keras.sampling (names only: no Keras
#: import, so commands list them in --help and check them before loading it).
SAMPLERS = ("ddim", "dpmpp_2m", "dpmpp_3m", "heun")
SPACINGS = ("time", "logsnr", "karras")
#: KID feature extractors (``--kid-encoder``; :func:`ddim_keras.metrics.kid.build_encoder`):
#: InceptionV3, and the classifier trained on the shapes dataset's labels
#: (:mod:`ddim_keras.metrics.shapes_classifier`), the offline measure for ``shapes`` runs.
KID_ENCODERS = ("inception", "shapes")


def check_eta(eta, name="eta"):
    """eta in [0, 1]: 0 is deterministic DDIM, 1 the DDPM posterior variance.

    Above 1 the fresh noise would need more variance than the next noise level
    has (the DDIM paper's sigma exceeds the next noise rate), which the sampler
    could only clamp silently; below 0 means nothing.
    """
    if not isinstance(eta, numbers.Real) or not math.isfinite(eta) or not 0 <= eta <= 1:
        raise UsageError(
            f"{name} must be between 0 (deterministic DDIM) and 1 (DDPM), got "
            f"{eta}; above 1 the added noise would exceed the next step's noise "
            "level."
        )
    return float(eta)


def check_at_least(value, minimum, name, why=""):
    """An integer count of at least ``minimum`` (steps, images, batch sizes)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise UsageError(f"{name} must be a whole number of at least {minimum}{why}, got {value}.")
    return int(value)


def check_steps(steps, name="diffusion_steps"):
    return check_at_least(steps, 1, name)


def check_seed(seed, name="seed"):
    if (
        isinstance(seed, bool)
        or not isinstance(seed, numbers.Integral)
        or not 0 <= seed < SEED_LIMIT
    ):
        raise UsageError(f"{name} must be between 0 and {SEED_LIMIT - 1}, got {seed}.")
    return int(seed)


def draw_seed():
    """A fresh random seed for a caller that gave none (printed, so it can be repeated)."""
    import numpy as np

    return int(np.random.SeedSequence().generate_state(1)[0] % SEED_LIMIT)


def check_sampler(sampler, spacing="time", eta=0.0, names=("sampler", "spacing", "eta")):
    """A known sampler and spacing; eta > 0 only with ``ddim`` (the others are ODE solvers)."""
    if sampler not in SAMPLERS:
        raise UsageError(f"unknown {names[0]} {sampler!r}; choose one of {', '.join(SAMPLERS)}.")
    if spacing not in SPACINGS:
        raise UsageError(f"unknown {names[1]} {spacing!r}; choose one of {', '.join(SPACINGS)}.")
    eta = check_eta(eta, names[2])
    if eta > 0 and sampler != "ddim":
        raise UsageError(
            f"{names[2]} {eta:g} needs the ddim sampler: {sampler} is a "
            f"deterministic solver; pass {names[2]} 0 or {names[0]} ddim."
        )
    return sampler, spacing, eta


def parse_samplers(text, flag="--samplers"):
    """``"ddim,dpmpp_2m/logsnr,heun/karras"`` -> [(sampler, spacing), ...] (spacing: time).

    Every item is SAMPLER or SAMPLER/SPACING; duplicates are dropped, order kept.
    """
    pairs = []
    for item in (part.strip() for part in str(text).split(",")):
        if not item:
            continue
        sampler, _, spacing = item.partition("/")
        pairs.append(
            check_sampler(
                sampler,
                spacing or "time",
                names=(f"sampler in {flag}", f"spacing in {flag}", "eta"),
            )[:2]
        )
    if not pairs:
        raise UsageError(f"{flag} is empty; give e.g. ddim,dpmpp_2m/logsnr.")
    return list(dict.fromkeys(pairs))


def sampler_label(sampler, spacing="time"):
    """How a (sampler, spacing) pair is written in files, tables and plots."""
    return sampler if spacing == "time" else f"{sampler}/{spacing}"


def parse_number_list(text, kind, flag):
    """``"1,2,5"`` -> [1, 2, 5] with ``kind`` (int or float): unique, in the given order."""
    try:
        values = [kind(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise UsageError(
            f"{flag} must be a comma-separated list of numbers, got {text!r}."
        ) from None
    if not values:
        raise UsageError(f"{flag} is empty.")
    return list(dict.fromkeys(values))


#: The step rules RePaint's resampling can redo: one-step rules, without a history.
RESAMPLING_SAMPLERS = ("ddim", "heun")


def check_strength(strength, name="strength"):
    """The diffusion time image-to-image noises its input to: in (0, 1]."""
    if (
        isinstance(strength, bool)
        or not isinstance(strength, numbers.Real)
        or not math.isfinite(strength)
        or not 0 < strength <= 1
    ):
        raise UsageError(
            f"{name} must be above 0 and at most 1, got {strength}: it is the diffusion "
            "time the input is noised to, 1 for pure noise (as generation), near 0 for "
            "the input almost unchanged."
        )
    return float(strength)


def check_resample(resample, sampler="ddim", names=("resample", "sampler")):
    """RePaint's repetitions per step: at least 1; above 1 only with a one-step rule."""
    resample = check_at_least(resample, 1, names[0], " (1: each step once)")
    if resample > 1 and sampler not in RESAMPLING_SAMPLERS:
        raise UsageError(
            f"{names[0]} {resample} needs a one-step sampler ({' or '.join(RESAMPLING_SAMPLERS)}): "
            f"{sampler} extrapolates from its earlier predictions, which a jump back to a "
            f"noisier state leaves behind; pass {names[1]} ddim or {names[0]} 1."
        )
    return resample


def check_edit_images(images, masks=None, image_size=None):
    """Images to edit and their masks, as float32 arrays: ((N, S, S, 3), (N, S, S, 1)).

    ``images``: (N, S, S, 3), or one (S, S, 3), finite values in [0, 1]; S the
    model's ``image_size``. ``masks`` (inpainting): one per image, (N, S, S) or
    (N, S, S, 1), or one for all, (S, S) or (S, S, 1); 1 where the image is
    regenerated, 0 where it is kept, nothing else. None: no masks.
    """
    import numpy as np

    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[np.newaxis]
    if image_size is not None:
        size = int(image_size)
    else:
        size = images.shape[1] if images.ndim == 4 else 0
    if images.ndim != 4 or images.shape[1:] != (size, size, 3) or len(images) == 0:
        raise UsageError(
            f"images must be an array (N, {size}, {size}, 3) of RGB images at the model's "
            f"resolution, got shape {images.shape}."
        )
    if not np.all(np.isfinite(images)) or images.min() < 0 or images.max() > 1:
        raise UsageError("images must hold values in [0, 1] (divide uint8 pixels by 255).")
    if masks is None:
        return images, None
    masks = np.asarray(masks, dtype=np.float32)
    if masks.ndim == 2 or masks.shape == (size, size, 1):
        masks = masks.reshape((1,) + masks.shape[:2] + (1,))  # one mask for all
    elif masks.ndim == 3:
        masks = masks[..., np.newaxis]
    if masks.ndim != 4 or masks.shape[1:] != (size, size, 1) or len(masks) not in (1, len(images)):
        raise UsageError(
            f"masks must be one (N, {size}, {size}) mask per image or one ({size}, {size}) "
            f"mask for all {len(images)}, got shape {masks.shape}."
        )
    if not np.all((masks == 0) | (masks == 1)):
        raise UsageError(
            "masks must hold 1 where the image is regenerated and 0 where it is kept, "
            "nothing else; threshold a soft mask first (mask >= 0.5)."
        )
    return images, np.broadcast_to(masks, (len(images), size, size, 1)).astype(np.float32)
