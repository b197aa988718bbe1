"""Measuring a trained model's KID against validation images (evaluate and sweep).

The validation images are taken as whole batches and encoded once
(:func:`validation_batches`, :func:`make_encoder`, :func:`encode_batches`);
:func:`compute_kid` then generates images through the one sampling path
(``ddim_keras.sampling.chunks.sample_chunks``) and estimates KID per batch.
Keras, TensorFlow and the data pipeline are imported only when used.
"""

import os
import warnings

from ddim_keras.core import checks
from ddim_keras.core.errors import DataError, UsageError


def check_kid_settings(num_images, batch_size, seed):
    """The settings every KID measurement shares (``--num-images``, ``--batch-size``,
    ``--seed`` of evaluate and sweep)."""
    if num_images < 2:
        raise UsageError(
            f"--num-images must be at least 2 (KID compares pairs of images), got {num_images}."
        )
    if batch_size is not None and batch_size < 2:
        raise UsageError(
            f"--batch-size must be at least 2 (KID is estimated within a batch), got {batch_size}."
        )
    checks.check_seed(seed, "--seed")


#: What evaluate and sweep say of a class-conditional run measured without --guidance:
#: its samples are its unconditional ("no class") ones.
UNCONDITIONAL_KID_NOTE = (
    "This run is class-conditional: without --guidance, KID is measured on its "
    "unconditional samples (no class). Pass --guidance W for samples of the validation "
    "images' classes, with per-class numbers."
)


#: The ``kid_weights`` recorded for ``--kid-encoder shapes`` (its weights ship with the package).
SHAPES_WEIGHTS_LABEL = "shapes_classifier"


def weights_label(kid_weights, encoder_name="inception"):
    """How the KID weights are recorded in a result."""
    if encoder_name == "shapes":
        return SHAPES_WEIGHTS_LABEL
    if kid_weights is None:
        return "none"
    if kid_weights == "imagenet":
        return kid_weights
    return os.path.abspath(kid_weights)


def validation_batches(
    dataset,
    config,
    data_dir,
    data_seed,
    requested,
    batch_size,
    say,
    background=None,
    conditional=False,
    attribute=None,
):
    """The validation images as whole batches: (batched dataset, images used, batch size).

    N is lowered to the validation set's size (with a notice) and rounded down to
    whole batches of ``batch_size`` (default: the config's). ``background`` is the
    colour under transparent pixels (default white; see
    :func:`ddim_keras.io.run_info.training_background`). ``conditional``: the
    batches are (images, labels), the classes a conditional run trained on
    (``attribute``: celeba's).
    """
    from ddim_keras.data.loaders import counted_images, image_batches, load_images

    real_images = load_images(
        dataset,
        config,
        split="validation",
        data_dir=data_dir,
        seed=data_seed,
        background=background,
        conditional=conditional,
        attribute=attribute,
    )
    # A tf.data folder has no known length (unreadable files are skipped): then up to
    # `requested` images are counted while they are cached, so they are decoded once.
    real_images, available = counted_images(real_images, requested)
    num_images = requested
    if available >= 0 and available < requested:
        if available < 2:
            raise DataError(
                f"the {dataset} validation set has {available} image(s); KID needs at least 2."
            )
        say(
            f"The {dataset} validation set has only {available} images, fewer than "
            f"--num-images {requested}: using all {available}."
        )
        num_images = available
    batch_size = min(batch_size or config.batch_size, num_images)
    if batch_size < 2:
        raise UsageError(f"the config's batch_size is {batch_size}; pass --batch-size 2 or more.")
    num_batches = num_images // batch_size
    if num_batches * batch_size < num_images:
        say(
            f"Using {num_batches * batch_size} images: {num_batches} whole batches of "
            f"{batch_size} (KID is estimated per batch)."
        )
    num_images = num_batches * batch_size
    return image_batches(real_images, batch_size, num_batches), num_images, batch_size


def make_encoder(config, kid_weights, say, debug=False, encoder_name="inception", dataset=None):
    """The feature extractor of KID: InceptionV3 (``kid_weights`` from kid.resolve_weights)
    or, with ``encoder_name`` "shapes", the shapes classifier's features."""
    from ddim_keras.metrics.kid import build_encoder

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        encoder = build_encoder(
            config.image_size, config.kid_image_size, kid_weights, encoder_name=encoder_name
        )
    if encoder_name == "shapes":
        if dataset not in (None, "shapes"):
            say(
                f"--kid-encoder shapes was trained on the shapes dataset only: on {dataset} "
                "images its KID says little."
            )
    elif kid_weights is None:
        say(
            "KID encoder has random weights (--kid-weights none): the value is only a smoke "
            "test, not comparable with published KIDs."
        )
    elif debug:
        for warning in caught:
            say(f"warning: {warning.message}")
    return encoder


def encode_batches(encoder, batches):
    """Features of each batch of real images (computed once, reusable across samplers)."""
    return [encoder(real, training=False) for real in batches]


#: How the floor (training images against the validation images, no sampler) is labelled
#: in sweeps and reports.
FLOOR_LABEL = "real images (training vs validation)"


def real_floor(
    encoder,
    real_features,
    dataset,
    config,
    data_dir,
    data_seed,
    batch_size,
    background=None,
    on_images=None,
):
    """KID of training images against the validation features, batch by batch: what a
    perfect generator would score (the floor a sampler's KID is read against).
    ``on_images(images)`` sees every batch of training images."""
    from keras import ops

    from ddim_keras.data.loaders import image_batches, load_images
    from ddim_keras.metrics.kid import kernel_inception_distance

    training = load_images(
        dataset, config, split="train", data_dir=data_dir, seed=data_seed, background=background
    )
    batches = image_batches(training, batch_size, len(real_features))
    values = []
    for real, images in zip(real_features, batches):
        if on_images is not None:
            on_images(ops.convert_to_numpy(images))
        values.append(
            float(
                ops.convert_to_numpy(
                    kernel_inception_distance(real, encoder(images, training=False))
                )
            )
        )
    return values


def compute_kid(
    model,
    encoder,
    real_features,
    batch_size,
    steps,
    eta,
    seed,
    num_noise=None,
    on_batch=None,
    sampler="ddim",
    spacing="time",
    on_generated=None,
    labels=None,
    guidance=1.0,
    on_features=None,
):
    """KID of each batch: ``batch_size`` images generated with ``steps`` of ``sampler``
    (``spacing``, ``eta``) against one batch of ``real_features``; returns the list of
    per-batch values.

    The generated images are those of ``model.generate(num_noise, steps, eta=eta,
    seed=seed, batch_size=batch_size, sampler=sampler, spacing=spacing)`` (the one
    sampling path), batch i being
    images [i * batch_size, (i + 1) * batch_size), so a result does not depend on
    how many batches are evaluated. ``on_generated(images)`` sees every generated batch
    (in [0, 1]), e.g. to classify it, ``on_features(features)`` their encoder features.
    A conditional model's ``labels`` (one per generated image) and ``guidance``
    are passed on to the sampler.
    """
    from keras import ops

    from ddim_keras.metrics.kid import kernel_inception_distance
    from ddim_keras.sampling.chunks import sample_chunks

    num_noise = num_noise or len(real_features) * batch_size
    noise = model.initial_noise(num_noise, seed)[: len(real_features) * batch_size]
    values = []
    chunks = sample_chunks(
        model,
        noise,
        steps,
        eta=eta,
        seed=seed,
        batch_size=batch_size,
        sampler=sampler,
        spacing=spacing,
        labels=None if labels is None else labels[: len(noise)],
        guidance=guidance,
    )
    for real, (_, generated) in zip(real_features, chunks):
        if on_generated is not None:
            on_generated(generated)
        features = encoder(generated, training=False)
        if on_features is not None:
            on_features(features)
        value = kernel_inception_distance(real, features)
        values.append(float(ops.convert_to_numpy(value)))
        if on_batch is not None:
            on_batch()
    return values
