"""The one sampling path: initial noise -> chunks through the compiled sampler -> images.

``model.generate``, ``generate`` (every mode), ``evaluate``, ``sweep`` and the
callbacks all come through here, so the chunking and the seed rule live in
one place and the same seed gives the same images whatever the caller:

* the initial noise of N images is ``model.initial_noise(N, seed)``, drawn on
  the host, so image i's starting noise does not depend on the chunk size;
* the fresh noise of a stochastic step (``eta > 0``) is keyed by (seed, step,
  image index), see :func:`ddim_keras.sampling.loops.fresh_noise`, and drawn the same
  way on every backend.
So the images do not depend on the chunk size, and a seed gives the same images
on TensorFlow, JAX and PyTorch (up to float rounding). Inpainting and
image-to-image (:func:`edit`) follow the same rules.
"""

import numpy as np
from keras import ops

from ddim_keras.core import checks
from ddim_keras.sampling.editing import start_step


def sample_chunks(
    model,
    noise,
    diffusion_steps,
    eta=0.0,
    seed=0,
    batch_size=None,
    record=False,
    precision="float32",
    sampler="ddim",
    spacing="time",
    labels=None,
    guidance=1.0,
):
    """Decode ``noise`` chunk by chunk; yields ``(first_image, images)`` in [0, 1].

    ``images`` is a NumPy array (n, S, S, 3). With ``record`` each chunk is
    ``(first_image, (images, noisy, predicted))``, the last two (steps, n, S, S, 3)
    in [0, 1]: the noisy and predicted images of every step. A conditional
    model's ``labels`` (one per image of ``noise``, or None) and ``guidance``
    are passed on chunk by chunk.
    """
    checks.check_steps(diffusion_steps)
    sampler, spacing, eta = checks.check_sampler(sampler, spacing, eta)
    seed = checks.check_seed(seed)
    batch_size = checks.check_at_least(
        int(batch_size or model.diffusion_config.batch_size), 1, "batch_size"
    )
    for first_image in range(0, len(noise), batch_size):
        result = model.compiled_reverse_diffusion(
            noise[first_image : first_image + batch_size],
            diffusion_steps,
            eta=eta,
            seed=seed,
            first_image=first_image,
            record=record,
            precision=precision,
            sampler=sampler,
            spacing=spacing,
            **_condition(labels, guidance, first_image, batch_size),
        )
        if record:
            images, noisy, predicted = result
            yield (
                first_image,
                (_pixels(model, images), _pixels(model, noisy), _pixels(model, predicted)),
            )
        else:
            yield first_image, _pixels(model, result)


def sample(
    model,
    noise,
    diffusion_steps,
    eta=0.0,
    seed=0,
    batch_size=None,
    record=False,
    precision="float32",
    on_chunk=None,
    sampler="ddim",
    spacing="time",
    labels=None,
    guidance=1.0,
):
    """All chunks of :func:`sample_chunks` joined: images (N, S, S, 3) in [0, 1].

    With ``record`` returns ``(images, noisy, predicted)``, the last two
    (steps, N, S, S, 3). ``on_chunk(done)`` is called after each chunk with
    the number of images finished so far.
    """
    parts = []
    for first_image, chunk in sample_chunks(
        model,
        noise,
        diffusion_steps,
        eta,
        seed,
        batch_size,
        record,
        precision,
        sampler,
        spacing,
        labels,
        guidance,
    ):
        parts.append(chunk)
        if on_chunk is not None:
            count = len(chunk[0] if record else chunk)
            on_chunk(first_image + count)
    if not record:
        return np.concatenate(parts, axis=0)
    images, noisy, predicted = zip(*parts)
    return (
        np.concatenate(images, axis=0),
        np.concatenate(noisy, axis=1),
        np.concatenate(predicted, axis=1),
    )


def _condition(labels, guidance, first_image, batch_size):
    """The keyword arguments of one chunk's labels and guidance (none without labels)."""
    if labels is None:
        return {}
    return {"labels": labels[first_image : first_image + batch_size], "guidance": guidance}


def _pixels(model, normalized_images):
    return ops.convert_to_numpy(model.denormalize(normalized_images))


def edit(
    model,
    images,
    masks,
    noise,
    diffusion_steps,
    strength=1.0,
    resample=1,
    eta=0.0,
    seed=0,
    batch_size=None,
    precision="float32",
    on_chunk=None,
    sampler="ddim",
    spacing="time",
    labels=None,
    guidance=1.0,
):
    """``images`` (N, S, S, 3) in [0, 1] edited chunk by chunk: the results, in [0, 1].

    Inpainted where ``masks`` (N, S, S, 1) is 1, or, with ``masks`` None,
    image-to-image; ``noise`` is the initial noise, as in :func:`sample`, and
    ``strength`` the diffusion time the images are noised to (see
    :mod:`ddim_keras.sampling.editing`). Inpainted images take the known part
    from ``images`` itself, so it comes back exactly. The arrays are taken as
    checked (:func:`ddim_keras.core.checks.check_edit_images`). ``labels`` and
    ``guidance``: as in :func:`sample_chunks`.
    """
    diffusion_steps = checks.check_steps(diffusion_steps)
    sampler, spacing, eta = checks.check_sampler(sampler, spacing, eta)
    seed = checks.check_seed(seed)
    strength = checks.check_strength(strength)
    resample = checks.check_resample(resample, sampler)
    batch_size = checks.check_at_least(
        int(batch_size or model.diffusion_config.batch_size), 1, "batch_size"
    )
    start = start_step(model.diffusion_schedule, spacing, diffusion_steps, strength)
    if start >= diffusion_steps:  # no grid point at or below the strength's noise level
        if on_chunk is not None:
            on_chunk(len(images))
        return np.array(images, dtype=np.float32)
    parts = []
    for first_image in range(0, len(images), batch_size):
        chunk = images[first_image : first_image + batch_size]
        chunk_masks = (
            np.ones(chunk.shape[:3] + (1,), np.float32)
            if masks is None
            else masks[first_image : first_image + batch_size]
        )
        result = model.compiled_edit(
            noise[first_image : first_image + batch_size],
            chunk,
            chunk_masks,
            diffusion_steps,
            start,
            resample,
            eta=eta,
            seed=seed,
            first_image=first_image,
            precision=precision,
            sampler=sampler,
            spacing=spacing,
            paste=masks is not None,
            **_condition(labels, guidance, first_image, batch_size),
        )
        pixels = _pixels(model, result)
        if masks is not None:
            pixels = np.where(chunk_masks > 0.5, pixels, chunk)
        parts.append(pixels)
        if on_chunk is not None:
            on_chunk(first_image + len(chunk))
    return np.concatenate(parts, axis=0)
