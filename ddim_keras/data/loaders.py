"""The loaders: the batched pipelines of a source, tf.data where TensorFlow is installed.

:func:`load_datasets` gives the (train, validation) pipelines the example
trains on, :func:`load_images` the single images of one split (for KID).
Images are decoded, cropped and resized once and cached as uint8 (a quarter of
the memory of float32); they become float32 in [0, 1] after the cache.

TensorFlow is optional (``pip install ddim_keras[tensorflow]``): where it is not
installed, the loaders return the NumPy/Pillow pipelines of
:mod:`ddim_keras.data.numpy_pipeline` for ``shapes`` and ``folder`` (the same
images), and the TFDS sources stop with a
:class:`~ddim_keras.core.errors.DataError` that says what to install.
"""

import functools
import os
import sys

import numpy as np

from ddim_keras.core.datasets import CACHE_MODES
from ddim_keras.core.errors import UsageError
from ddim_keras.core.optional import tensorflow_installed
from ddim_keras.data.cache import cache_prefix
from ddim_keras.data.labels import SHAPES_CLASSES, folder_classes, split_sources_for
from ddim_keras.data.sources import LOCAL_SOURCES, checked_source
from ddim_keras.data.splits import SPLITS
from ddim_keras.data.tf_pipeline import (
    files_dataset,
    prepare_dataset,
    shapes_dataset,
    to_unit_range,
)
from ddim_keras.data.tfds_sources import tfds_classes, tfds_label, tfds_split_images


def load_datasets(
    name,
    config,
    data_dir=None,
    seed=0,
    shapes_count=None,
    background=None,
    cache="memory",
    cache_dir=None,
    conditional=False,
    attribute=None,
):
    """Batched, shuffled (train_ds, val_ds) pipelines for the source ``name``.

    ``conditional``: batches of (images, int32 labels), the classes of
    :func:`source_classes` (``attribute``: celeba's attribute, two classes).

    ``data_dir`` is the image folder for ``folder`` and TFDS's data directory for
    ``flowers``/``celeba``/``tfds:NAME``. ``seed`` and ``shapes_count`` (the number
    of train images) only affect ``shapes``; ``background`` (white, black or
    (R, G, B); default white) is the colour under transparent pixels.

    ``cache`` is "memory" (uint8 images, as the example caches them but a quarter
    of the size), "disk" (files in ``cache_dir``, named by a fingerprint of the
    images they hold and of :data:`ddim_keras.data.cache.PIPELINE_VERSION`, so a
    changed folder, size or pipeline never reads a stale cache; processes may
    share the folder, see :mod:`ddim_keras.data.cache`) or "none" (decode every epoch).

    Files of a folder that fail at decode time (damage the listing cannot see)
    are skipped by tf.data and replaced by the next image by the NumPy pipeline;
    either way each pass over the files ends with one
    :class:`~ddim_keras.core.errors.UnreadableImagesWarning` that counts them.

    Without TensorFlow the two are :class:`ddim_keras.data.numpy_pipeline.ImageBatches`
    (``keras.utils.PyDataset``) of the same images; ``shapes`` and ``folder`` only.
    """
    if cache not in CACHE_MODES:
        raise UsageError(f"unknown cache {cache!r}; choose one of {', '.join(CACHE_MODES)}.")
    if cache == "disk" and not cache_dir:
        raise UsageError("a disk cache needs a folder (--cache-dir).")
    pipeline = "tf.data" if tensorflow_installed() else "numpy"
    if pipeline == "tf.data":
        images, identities = _load_split_images(
            name, config, SPLITS, data_dir, seed, shapes_count, background, conditional, attribute
        )
        prepare = prepare_dataset
    else:
        from ddim_keras.data import numpy_pipeline as numpy_data

        images, identities = numpy_data.split_images(
            name, config, SPLITS, data_dir, seed, shapes_count, background, conditional
        )
        prepare = functools.partial(numpy_data.prepare_batches, seed=seed)
    caches = {split: cache for split in SPLITS}
    if cache == "disk":
        cache_dir = os.path.abspath(os.path.expanduser(os.fspath(cache_dir)))
        try:
            os.makedirs(cache_dir, exist_ok=True)
        except OSError as error:
            raise UsageError(
                f"cannot create the cache folder {cache_dir}: {error.strerror or error}."
            ) from None
        caches = {
            split: cache_prefix(cache_dir, split, identities[split], pipeline) for split in SPLITS
        }
    train_ds = prepare(images["train"], config, training=True, cache=caches["train"])
    val_ds = prepare(images["validation"], config, training=False, cache=caches["validation"])
    return train_ds, val_ds


def load_images(
    name,
    config,
    split="train",
    data_dir=None,
    seed=0,
    shapes_count=None,
    background=None,
    conditional=False,
    attribute=None,
):
    """Unbatched dataset of single preprocessed images of one split ("train" or "validation").

    float32 in [0, 1], shape (image_size, image_size, 3). Without TensorFlow, a
    :class:`ddim_keras.data.numpy_pipeline.SplitImages` of the same images (a sequence);
    :func:`counted_images` and :func:`image_batches` take either kind.
    ``conditional``: each image comes with its int32 class (as :func:`load_datasets`
    gives them), and :func:`image_batches` gives (images, labels) batches.
    """
    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}.")
    if not tensorflow_installed():
        from ddim_keras.data import numpy_pipeline as numpy_data

        images, _ = numpy_data.split_images(
            name, config, (split,), data_dir, seed, shapes_count, background, conditional
        )
        return images[split]
    import tensorflow as tf

    images, _ = _load_split_images(
        name, config, (split,), data_dir, seed, shapes_count, background, conditional, attribute
    )
    if conditional:
        return images[split].map(
            lambda image, label: (to_unit_range(image), label),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return images[split].map(to_unit_range, num_parallel_calls=tf.data.AUTOTUNE)


def counted_images(images, enough):
    """``(images, count)`` of a :func:`load_images` result, counting at most ``enough``.

    A folder's tf.data images have no known number (undecodable files are
    skipped): then the first ``enough`` are decoded once, cached and counted,
    and those are the images returned.
    """
    if not _is_tf_dataset(images):
        return images, len(images)
    count = int(images.cardinality())
    if count < 0:
        images = images.take(enough).cache()
        count = int(images.reduce(np.int64(0), lambda total, _: total + 1))
    return images, count


def image_batches(images, batch_size, num_batches):
    """The first ``num_batches`` whole batches of a :func:`load_images` result, in order
    (with a conditional result's labels: (images, labels) batches)."""
    if not _is_tf_dataset(images):
        from ddim_keras.data import numpy_pipeline as numpy_data

        return numpy_data.OrderedBatches(images, batch_size, num_batches)
    return images.batch(batch_size, drop_remainder=True).take(num_batches)


def adapt_normalizer(layer, dataset):
    """``layer.adapt(dataset)`` (a ``keras.layers.Normalization``) for either pipeline.

    Keras' own ``adapt`` needs TensorFlow for anything but an array, so the
    NumPy pipeline's statistics are computed here (see
    :func:`ddim_keras.data.numpy_pipeline.adapt_normalizer`).
    """
    if _is_tf_dataset(dataset):
        layer.adapt(dataset)
        return
    from ddim_keras.data import numpy_pipeline as numpy_data

    numpy_data.adapt_normalizer(layer, dataset)


def _is_tf_dataset(value):
    tf = sys.modules.get("tensorflow")  # a tf.data dataset means TensorFlow is loaded
    return tf is not None and isinstance(value, tf.data.Dataset)


def source_classes(name, data_dir=None, attribute=None):
    """The class names of a source for class-conditional training (index = label).

    ``shapes``: the main shape's kind; ``folder``: its sorted first-level
    subfolders (:mod:`ddim_keras.data.labels`); ``flowers`` and ``tfds:NAME``: the
    names of TFDS's ``label`` feature; ``celeba``: ``attribute``'s two values.
    """
    if name == "shapes":
        return list(SHAPES_CLASSES)
    if name == "folder":
        return folder_classes(data_dir)
    return tfds_classes(name, data_dir, attribute)


def _load_split_images(
    name,
    config,
    splits,
    data_dir,
    seed,
    shapes_count,
    background=None,
    conditional=False,
    attribute=None,
):
    """Map each requested split to its ``tf.data`` dataset of preprocessed uint8 images.

    Returns ``(datasets, identities)``: ``identities[split]`` describes what the
    split's images are made of (the fingerprint of a disk cache). Loading several
    splits in one call lets a folder be listed (and its bad files reported) once
    rather than once per split.
    """
    if name in LOCAL_SOURCES:
        sources, labels, identities, background = split_sources_for(
            conditional, name, config, splits, data_dir, seed, shapes_count, background
        )
        if name == "shapes":
            return (
                {
                    split: shapes_dataset(sources[split], config.image_size, labels[split])
                    for split in splits
                },
                identities,
            )
        folder = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
        return (
            {
                split: files_dataset(
                    sources[split],
                    config.image_size,
                    background,
                    split=split,
                    folder=folder,
                    labels=labels[split],
                )
                for split in splits
            },
            identities,
        )
    background, common = checked_source(name, config, background)
    return tfds_split_images(
        name,
        splits,
        config.image_size,
        data_dir,
        background,
        common,
        label=tfds_label(name, attribute) if conditional else None,
    )
