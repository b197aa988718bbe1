"""Image datasets for diffusion training: where images come from and how they are batched.

Five kinds of source, all ending in the same kind of ``tf.data`` pipeline of
square float32 RGB images in [0, 1] (Keras feeds it to every backend):

* ``flowers``: TFDS ``oxford_flowers102``. Its official splits are tiny for
  training, so, like the keras.io DDIM example, the first 80% of every split is
  used for training and the last 20% for validation.
* ``celeba``: TFDS ``celeb_a`` with its own train and validation splits.
* ``folder``: any directory tree of JPEG/PNG/GIF/BMP/WebP/TIFF files, split
  80/20 deterministically so that the same folder always gives the same split.
  TensorFlow decodes JPEG, PNG, BMP and GIF; Pillow (through
  ``tf.numpy_function``, in parallel) what TensorFlow gets wrong or cannot read.
  Transparent pixels are composited onto a background colour (white by
  default) and EXIF orientation is applied.
* ``tfds:NAME[:SPLITS]``: any TFDS dataset with an ``image`` feature, split
  80/20 unless the splits are given.
* ``shapes``: procedurally drawn coloured shapes; needs no download, so it is
  the offline demo and the source the tests use.

The TFDS sources never leave a user waiting on TFDS's own download retries
(minutes) without a network: before downloading, a few-second TCP probe checks
that the download host answers, and a failure becomes a :class:`DataError`
that names the offline alternatives.

Images are decoded, cropped and resized once and cached as uint8 (a quarter of
the memory of float32); they become float32 in [0, 1] after the cache.

TensorFlow is optional (``pip install ddim_keras[tensorflow]``). This module
imports it only inside the functions that build ``tf.data`` pipelines; where it
is not installed, :func:`load_datasets` and :func:`load_images` return the
NumPy/Pillow pipelines of :mod:`ddim_keras.numpy_data` for ``shapes`` and
``folder`` (the same images), and the TFDS sources stop with a
:class:`DataError` that says what to install.
"""

import functools
import hashlib
import io
import json
import os
import re
import socket
import sys
import threading
import urllib.parse
import urllib.request
import warnings

import numpy as np

from ddim_keras.config import DATASETS as SOURCES  # the one list of source names
from ddim_keras.config import (CACHE_MODES, TFDS_PREFIX, background_rgb,
                               check_dataset_name, parse_tfds_dataset)
from ddim_keras.errors import DataError, UsageError
from ddim_keras.optional import TENSORFLOW_EXTRA, tensorflow_installed, tfds_installed

SPLITS = ("train", "validation")
#: The sources read without TensorFlow Datasets (by either pipeline).
LOCAL_SOURCES = ("shapes", "folder")

#: The shapes demo's default sizes; ``shapes_count`` overrides the train count.
SHAPES_TRAIN_COUNT = 2000
SHAPES_VALIDATION_COUNT = 500

#: Share of a folder's images held out for validation.
FOLDER_VALIDATION_FRACTION = 0.2
#: File name endings read from a folder (compared case-insensitively).
FOLDER_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff")
#: The formats of a folder's images, as messages name them.
FOLDER_FORMATS = "JPEG/PNG/GIF/BMP/WebP/TIFF"
# Fixed, not the run's seed: evaluation must see the same validation images as
# training did, whatever seed either run was given.
_FOLDER_SPLIT_SEED = 2022

# How a folder's file is decoded, chosen from its header when the folder is listed.
# TensorFlow, 3 channels: JPEG (gray and CMYK too; MPO is the multi-picture JPEG some
# cameras write), GIF without a transparent colour (first frame), 24/32-bit BMP.
_DECODE_TF_RGB = 0
# TensorFlow, 4 channels: every PNG (alpha, gray+alpha, palette and colour-key
# transparency become alpha; 16-bit is scaled to 8).
_DECODE_TF_RGBA = 1
# Pillow: WebP, TIFF, GIF with a transparent colour (TensorFlow makes it black), the
# BMPs TensorFlow cannot read (1-bit, palette, alpha); any other format Pillow reads.
_DECODE_PILLOW = 2
# EXIF tag of the orientation (1 = upright; 2..8 mirror and/or rotate).
_EXIF_ORIENTATION = 0x0112

# How each TFDS source is read: dataset name, split strings, and the host its
# files download from (probed before a download is attempted).
_TFDS_SOURCES = {
    "flowers": {
        "tfds_name": "oxford_flowers102",
        # The keras.io example's 80/20 re-split across all three official splits.
        "splits": {
            "train": "train[:80%]+validation[:80%]+test[:80%]",
            "validation": "train[80%:]+validation[80%:]+test[80%:]",
        },
        "download_host": "www.robots.ox.ac.uk",
    },
    "celeba": {
        "tfds_name": "celeb_a",
        "splits": {"train": "train", "validation": "validation"},
        "download_host": "drive.google.com",
    },
}

NETWORK_PROBE_TIMEOUT_S = 5.0


class UnreadableImagesWarning(UserWarning):
    """Some files in an image folder could not be decoded and were skipped."""


class SmallImagesWarning(UserWarning):
    """Some images are smaller than image_size and are upscaled."""


# -- preprocessing ------------------------------------------------------------


def preprocess_image(image, image_size, background=None):
    """Centre-crop an HxWxC image (values 0..255) to a square and resize it.

    Returns a float32 tensor of shape (image_size, image_size, 3) in [0, 1]: the
    uint8 image of :func:`preprocess_image_uint8` (what the pipelines cache),
    scaled by 1/255.
    """
    return to_unit_range(preprocess_image_uint8(image, image_size, background))


def preprocess_image_uint8(image, image_size, background=None):
    """Centre-crop, composite onto ``background``, resize; uint8 (image_size, image_size, 3).

    ``image`` is HxWxC with C = 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA),
    uint8 or uint16 (scaled to 0..255), or float in 0..255. Alpha is composited
    onto ``background`` (white, black, (R, G, B) or "R,G,B"; default white), so a
    fully transparent pixel becomes exactly the background whatever colour it holds.
    """
    import tensorflow as tf

    image = tf.convert_to_tensor(image)
    if image.dtype == tf.uint16:
        pixels = tf.cast(image, tf.float32) * (255.0 / 65535.0)
    else:
        pixels = tf.cast(image, tf.float32)
    height = tf.shape(pixels)[0]
    width = tf.shape(pixels)[1]
    side = tf.minimum(height, width)
    pixels = tf.image.crop_to_bounding_box(
        pixels, (height - side) // 2, (width - side) // 2, side, side
    )
    pixels = composite(pixels, background)
    # Antialiasing matters when downsampling: without it, resized photos alias.
    pixels = tf.image.resize(pixels, (image_size, image_size), antialias=True)
    # Antialiased (Lanczos-like) kernels overshoot slightly beyond 0..255.
    pixels = tf.round(tf.clip_by_value(pixels, 0.0, 255.0))
    return tf.ensure_shape(tf.cast(pixels, tf.uint8), (image_size, image_size, 3))


def composite(pixels, background=None):
    """RGB float32 (0..255) of HxWxC ``pixels`` (C = 1, 2, 3 or 4), alpha over ``background``.

    Gray becomes RGB; alpha (the last of 2 or 4 channels) blends each pixel with
    the background: ``colour * a + background * (1 - a)``, exact at a = 0 and 1.
    """
    import tensorflow as tf

    pixels = tf.cast(pixels, tf.float32)
    channels = pixels.shape[-1]
    if channels in (2, 4):
        colour, alpha = pixels[..., :channels - 1], pixels[..., channels - 1:] / 255.0
    else:
        colour, alpha = pixels, None
    if colour.shape[-1] == 1:
        colour = tf.image.grayscale_to_rgb(colour)
    if alpha is None:
        return colour
    rgb = tf.constant(background_rgb(background), tf.float32)
    return colour * alpha + rgb * (1.0 - alpha)


def to_unit_range(images):
    """float32 in [0, 1] of uint8 images (any shape); float images pass unchanged."""
    import tensorflow as tf

    images = tf.convert_to_tensor(images)
    if images.dtype == tf.uint8:
        return tf.cast(images, tf.float32) / 255.0
    return images


def prepare_dataset(images_ds, config, training=True, cache="memory"):
    """Batch a dataset of single preprocessed images the way the keras.io example does.

    ``cache -> repeat(dataset_repetitions) -> shuffle(10 * batch_size) ->
    batch(batch_size, drop_remainder=True) -> prefetch``. Validation data goes
    through the same steps (shuffled too: KID is estimated per batch, so batch
    composition matters). ``training`` only names the split in error messages.

    ``cache`` is "memory" (the example's), "none", or a file name prefix for a
    cache on disk (its folder must exist). Images of dtype uint8 are cached as
    they are (a quarter of float32's memory) and become float32 in [0, 1] after
    batching; float images pass unchanged.

    Raises DataError when there are fewer images than one batch, because with
    ``drop_remainder`` such a dataset would silently yield nothing.
    """
    import tensorflow as tf

    batch_size = config.batch_size
    check_one_batch(_count_images(images_ds, batch_size), batch_size, training)
    if cache == "memory":
        images_ds = images_ds.cache()
    elif cache not in (None, "none"):
        _remove_stale_cache_lock(cache)
        images_ds = images_ds.cache(cache)
    batches = (
        images_ds.repeat(config.dataset_repetitions)
        .shuffle(10 * batch_size)
        .batch(batch_size, drop_remainder=True)
    )
    if batches.element_spec.dtype == tf.uint8:
        batches = batches.map(to_unit_range, num_parallel_calls=tf.data.AUTOTUNE)
    return batches.prefetch(tf.data.AUTOTUNE)


def check_one_batch(image_count, batch_size, training=True):
    """Raise DataError if ``0 <= image_count < batch_size``: such a split yields no batch."""
    if 0 <= image_count < batch_size:
        part = "training" if training else "validation"
        raise DataError(
            f"the {part} set has only {image_count} image(s), fewer than one batch of "
            f"batch_size={batch_size} (incomplete batches are dropped). Use a smaller "
            f"batch size or more images."
        )


def _remove_stale_cache_lock(prefix):
    """Delete what a killed process left of an unfinished disk cache at ``prefix``.

    TensorFlow writes ``PREFIX_0.lockfile`` and a temporary data file while it
    fills the cache and removes them when done; a process killed meanwhile leaves
    them, and the next run would stop with "concurrent caching iterator running".
    A cache folder belongs to one training process (its run directory), so an
    unfinished cache found at start-up is stale.
    """
    if os.path.exists(prefix + ".index"):
        return  # complete: read, not written
    folder, base = os.path.split(prefix)
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return
    for name in names:
        if name.startswith(base + "_") and (name.endswith(".lockfile") or ".tempstate" in name):
            try:
                os.remove(os.path.join(folder, name))
            except OSError:
                pass


def _count_images(images_ds, enough):
    """The number of images, or at least ``enough`` of them, without a full pass."""
    import tensorflow as tf

    count = int(images_ds.cardinality())
    if count >= 0 or count == int(tf.data.INFINITE_CARDINALITY):
        return count
    # Unknown cardinality (e.g. after skipping undecodable files): decoding
    # `enough` images settles whether one batch can be filled.
    return int(images_ds.take(enough).reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))


# -- public loaders -----------------------------------------------------------


def load_datasets(name, config, data_dir=None, seed=0, shapes_count=None, background=None,
                  cache="memory", cache_dir=None):
    """Batched, shuffled (train_ds, val_ds) pipelines for the source ``name``.

    ``data_dir`` is the image folder for ``folder`` and TFDS's data directory for
    ``flowers``/``celeba``/``tfds:NAME``. ``seed`` and ``shapes_count`` (the number
    of train images) only affect ``shapes``; ``background`` (white, black or
    (R, G, B); default white) is the colour under transparent pixels.

    ``cache`` is "memory" (uint8 images, as the example caches them but a quarter
    of the size), "disk" (files in ``cache_dir``, named by a fingerprint of the
    images they hold, so a changed folder or size never reads a stale cache) or
    "none" (decode every epoch).

    Without TensorFlow the two are :class:`ddim_keras.numpy_data.ImageBatches`
    (``keras.utils.PyDataset``) of the same images; ``shapes`` and ``folder`` only.
    """
    if cache not in CACHE_MODES:
        raise UsageError(f"unknown cache {cache!r}; choose one of {', '.join(CACHE_MODES)}.")
    if cache == "disk" and not cache_dir:
        raise UsageError("a disk cache needs a folder (--cache-dir).")
    if tensorflow_installed():
        images, identities = _load_split_images(name, config, SPLITS, data_dir, seed,
                                                shapes_count, background)
        prepare = prepare_dataset
    else:
        from ddim_keras import numpy_data

        images, identities = numpy_data.split_images(name, config, SPLITS, data_dir, seed,
                                                     shapes_count, background)
        prepare = functools.partial(numpy_data.prepare_batches, seed=seed)
    caches = {split: cache for split in SPLITS}
    if cache == "disk":
        cache_dir = os.path.abspath(os.path.expanduser(os.fspath(cache_dir)))
        try:
            os.makedirs(cache_dir, exist_ok=True)
        except OSError as error:
            raise UsageError(f"cannot create the cache folder {cache_dir}: "
                             f"{error.strerror or error}.") from None
        caches = {split: os.path.join(cache_dir, f"{split}_{_fingerprint(identities[split])}")
                  for split in SPLITS}
    train_ds = prepare(images["train"], config, training=True, cache=caches["train"])
    val_ds = prepare(images["validation"], config, training=False, cache=caches["validation"])
    return train_ds, val_ds


def load_images(name, config, split="train", data_dir=None, seed=0, shapes_count=None,
                background=None):
    """Unbatched dataset of single preprocessed images of one split ("train" or "validation").

    float32 in [0, 1], shape (image_size, image_size, 3). Without TensorFlow, a
    :class:`ddim_keras.numpy_data.SplitImages` of the same images (a sequence);
    :func:`counted_images` and :func:`image_batches` take either kind.
    """
    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}.")
    if not tensorflow_installed():
        from ddim_keras import numpy_data

        images, _ = numpy_data.split_images(name, config, (split,), data_dir, seed,
                                            shapes_count, background)
        return images[split]
    import tensorflow as tf

    images, _ = _load_split_images(name, config, (split,), data_dir, seed, shapes_count,
                                   background)
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
    """The first ``num_batches`` whole batches of a :func:`load_images` result, in order."""
    if not _is_tf_dataset(images):
        from ddim_keras import numpy_data

        return numpy_data.OrderedBatches(images, batch_size, num_batches)
    return images.batch(batch_size, drop_remainder=True).take(num_batches)


def adapt_normalizer(layer, dataset):
    """``layer.adapt(dataset)`` (a ``keras.layers.Normalization``) for either pipeline.

    Keras' own ``adapt`` needs TensorFlow for anything but an array, so the
    NumPy pipeline's statistics are computed here (see
    :func:`ddim_keras.numpy_data.adapt_normalizer`).
    """
    if _is_tf_dataset(dataset):
        layer.adapt(dataset)
        return
    from ddim_keras import numpy_data

    numpy_data.adapt_normalizer(layer, dataset)


def _is_tf_dataset(value):
    tf = sys.modules.get("tensorflow")  # a tf.data dataset means TensorFlow is loaded
    return tf is not None and isinstance(value, tf.data.Dataset)


def check_source_available(name):
    """Raise DataError if source ``name`` needs TensorFlow Datasets and it is not installed.

    Cheap (imports nothing): commands call it before building anything.
    """
    if name in LOCAL_SOURCES or tfds_installed():
        return
    if tensorflow_installed():
        raise DataError(
            f"--dataset {name} is read through TensorFlow Datasets, which is not installed "
            f"here: install it with `{TENSORFLOW_EXTRA}` (or `pip install tensorflow-datasets`). "
            f"--dataset shapes (the offline demo) and --dataset folder --data-dir DIR (your own "
            f"images) work without it."
        )
    raise DataError(
        f"--dataset {name} is read through TensorFlow Datasets, which needs TensorFlow, and "
        f"neither is installed here: install both with `{TENSORFLOW_EXTRA}`. Without "
        f"TensorFlow, --dataset shapes (the offline demo) and --dataset folder --data-dir DIR "
        f"(your own images) work."
    )


def split_sources(name, config, splits, data_dir, seed, shapes_count, background=None):
    """What the images of ``shapes`` or ``folder`` are made of, before any pipeline.

    Returns ``(sources, identities, background)``: ``sources[split]`` is a uint8
    array of (N, image_size, image_size, 3) drawn images for ``shapes`` and a
    list of ``(path, decoder, orientation)`` for ``folder`` (see
    :func:`_inspect_image`); ``identities[split]`` describes them (the
    fingerprint of a disk cache); ``background`` is the parsed (R, G, B). Both
    pipelines build on this, so they read the same images in the same order.
    Other sources raise (TFDS ones are read by :func:`_load_split_images`).
    """
    background, common = _checked_source(name, config, background)
    if name == "shapes":
        return ({split: _shapes_array(split, config.image_size, seed, shapes_count)
                 for split in splits},
                {split: dict(common, split=split, seed=seed, count=shapes_count)
                 for split in splits},
                background)
    if name == "folder":
        split_entries = _split_folder(data_dir, config.image_size)
        return ({split: split_entries[split] for split in splits},
                {split: dict(common, files=_file_identities(split_entries[split]))
                 for split in splits},
                background)
    raise ValueError(f"{name} is not a source of arrays or files")


def _checked_source(name, config, background):
    """(background as (R, G, B), the identity fields of every split) of a usable source."""
    try:
        check_dataset_name(name)
    except ValueError as error:
        raise UsageError(str(error)) from None
    check_source_available(name)
    background = background_rgb(background)
    return background, {"source": name, "image_size": config.image_size,
                        "background": background}


def _load_split_images(name, config, splits, data_dir, seed, shapes_count, background=None):
    """Map each requested split to its ``tf.data`` dataset of preprocessed uint8 images.

    Returns ``(datasets, identities)``: ``identities[split]`` describes what the
    split's images are made of (the fingerprint of a disk cache). Loading several
    splits in one call lets a folder be listed (and its bad files reported) once
    rather than once per split.
    """
    if name in LOCAL_SOURCES:
        sources, identities, background = split_sources(name, config, splits, data_dir, seed,
                                                        shapes_count, background)
        if name == "shapes":
            return ({split: _shapes_dataset(sources[split], config.image_size)
                     for split in splits},
                    identities)
        return ({split: _files_dataset(sources[split], config.image_size, background)
                 for split in splits},
                identities)
    background, common = _checked_source(name, config, background)
    return _tfds_split_images(name, splits, config.image_size, data_dir, background, common)


def _fingerprint(identity):
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _file_identities(entries):
    """(path, size, modification time) of each file: a changed file changes the fingerprint."""
    identities = []
    for path, _, _ in entries:
        try:
            stat = os.stat(path)
            identities.append((path, stat.st_size, stat.st_mtime_ns))
        except OSError:
            identities.append((path, None, None))
    return identities


# -- shapes ---------------------------------------------------------------------


def shapes_images(num_images, image_size, seed=0):
    """Draw ``num_images`` RGB images of 1-2 coloured circles, squares and triangles.

    Backgrounds are plain (3 in 4) or a linear gradient. The same seed gives the same
    images. Shapes are rasterised on a finer grid and averaged down, so their
    edges are antialiased. Returns uint8 of shape (N, image_size, image_size, 3).
    """
    return _draw_shapes(np.random.default_rng(seed), num_images, image_size)


#: The shape kinds the generator draws, in the order of its ``kind`` codes 0/1/2.
SHAPE_KINDS = ("circle", "square", "triangle")
#: A drawn shape counts as visible when at least this share of its area is not
#: painted over by a later shape.
VISIBLE_FRACTION = 0.5


def shapes_images_with_labels(num_images, image_size, seed=0):
    """:func:`shapes_images` plus what was drawn in each image.

    The images are exactly those of ``shapes_images(num_images, image_size,
    seed)`` (the labels are recorded without drawing any extra random numbers).
    Returns ``(images, labels)``; ``labels`` is a dict of arrays over images:

    * ``kinds``: (N, 3) uint8 multi-hot over :data:`SHAPE_KINDS`, the kinds of
      the *visible* shapes (at least :data:`VISIBLE_FRACTION` of the shape's area
      is not covered by the shape drawn after it);
    * ``count``: (N,) number of visible shapes (1 or 2; the first-drawn shape
      of two can be mostly covered, so at least 1);
    * ``drawn``: (N,) number of shapes drawn (1 or 2);
    * ``shape_kind``: (N, 2) kind code of each drawn shape, -1 where none;
    * ``visible``: (N, 2) visible share of each drawn shape's area, 0 where none;
    * ``colour``: (N, 2, 3) float32 RGB (0..255) of each drawn shape, 0 where none.
    """
    labels = []
    images = _draw_shapes(np.random.default_rng(seed), num_images, image_size, labels)
    shape_kind = np.full((num_images, 2), -1, dtype=np.int64)
    visible = np.zeros((num_images, 2), dtype=np.float32)
    colour = np.zeros((num_images, 2, 3), dtype=np.float32)
    for index, shapes in enumerate(labels):
        for slot, (kind, share, rgb) in enumerate(shapes):
            shape_kind[index, slot] = kind
            visible[index, slot] = share
            colour[index, slot] = rgb
    is_visible = visible >= VISIBLE_FRACTION
    kinds = np.zeros((num_images, len(SHAPE_KINDS)), dtype=np.uint8)
    for code in range(len(SHAPE_KINDS)):
        kinds[:, code] = np.any(is_visible & (shape_kind == code), axis=1)
    return images, {
        "kinds": kinds,
        "count": is_visible.sum(axis=1).astype(np.int64),
        "drawn": (shape_kind >= 0).sum(axis=1).astype(np.int64),
        "shape_kind": shape_kind,
        "visible": visible,
        "colour": colour,
    }


def _shapes_array(split, image_size, seed, shapes_count):
    """uint8 (N, image_size, image_size, 3): the drawn images of a split of ``shapes``."""
    if split == "train":
        count = SHAPES_TRAIN_COUNT if shapes_count is None else shapes_count
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
            raise UsageError(f"the shapes image count must be a positive integer, got {count!r}.")
        rng = np.random.default_rng(seed)
    else:
        count = SHAPES_VALIDATION_COUNT
        # An independent stream, so validation never repeats training images.
        rng = np.random.default_rng([seed, 1])
    return _draw_shapes(rng, count, image_size)


def _shapes_dataset(images, image_size):
    """The drawn images as a tf.data dataset (resized to themselves: exactly the same)."""
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices(images).map(
        lambda image: preprocess_image_uint8(image, image_size),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def _draw_shapes(rng, num_images, image_size, labels=None):
    """Draw the shapes images; ``labels``, a list, gets one entry per image.

    Each entry lists the drawn shapes as ``(kind, visible share, colour)``.
    Recording labels draws no random numbers, so the images do not change.
    """
    # Supersampling factor: enough sub-pixels per pixel for smooth edges while
    # keeping the fine grid around 128-256 pixels wide.
    factor = int(np.clip(256 // image_size, 2, 4))
    fine = image_size * factor
    # Pixel-centre coordinates in [0, 1) on the fine grid and the output grid.
    fine_coords = (np.arange(fine, dtype=np.float32) + 0.5) / fine
    fine_y, fine_x = np.meshgrid(fine_coords, fine_coords, indexing="ij")
    coarse_coords = (np.arange(image_size, dtype=np.float32) + 0.5) / image_size
    coarse_y, coarse_x = np.meshgrid(coarse_coords, coarse_coords, indexing="ij")

    images = np.empty((num_images, image_size, image_size, 3), dtype=np.uint8)
    for index in range(num_images):
        canvas = _background(rng, coarse_x, coarse_y)
        drawn = []  # (kind, coverage, colour) of each shape, for the labels
        # One or two large shapes: few enough that a small model trained for
        # minutes on a CPU learns to draw them.
        for _ in range(rng.integers(1, 3)):
            kind = rng.integers(3)
            radius = rng.uniform(0.18, 0.32)
            centre_x, centre_y = rng.uniform(radius * 0.8, 1.0 - radius * 0.8, size=2)
            angle = rng.uniform(0.0, 2.0 * np.pi)
            inside = _shape_mask(kind, fine_x - centre_x, fine_y - centre_y, radius, angle)
            # Fraction of each output pixel's sub-pixels inside the shape.
            coverage = inside.reshape(image_size, factor, image_size, factor).mean(axis=(1, 3))
            colour = _contrasting_colour(rng, canvas, coarse_x, coarse_y, centre_x, centre_y)
            coverage = coverage[..., None].astype(np.float32)
            canvas = canvas * (1.0 - coverage) + colour * coverage
            if labels is not None:
                drawn.append((int(kind), coverage[..., 0], colour))
        images[index] = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
        if labels is not None:
            labels.append(_visible_shares(drawn))
    return images


def _visible_shares(drawn):
    """``(kind, visible share of its area, colour)`` per drawn shape, later shapes on top."""
    shapes = []
    for position, (kind, coverage, colour) in enumerate(drawn):
        shown = coverage.copy()
        for _, later, _ in drawn[position + 1:]:
            shown *= 1.0 - later
        area = float(coverage.sum())
        shapes.append((kind, float(shown.sum()) / area if area > 0 else 0.0, colour))
    return shapes


def _background(rng, x, y):
    start = rng.uniform(0, 255, size=3).astype(np.float32)
    if rng.random() < 0.75:
        return np.broadcast_to(start, x.shape + (3,)).copy()
    end = rng.uniform(0, 255, size=3).astype(np.float32)
    direction = rng.uniform(0.0, 2.0 * np.pi)
    along = x * np.cos(direction) + y * np.sin(direction)
    # Rescale the projection to [0, 1] so the gradient spans the whole image.
    along = (along - along.min()) / max(float(np.ptp(along)), 1e-6)
    return start + (end - start) * along[..., None]


def _shape_mask(kind, dx, dy, radius, angle):
    """Boolean mask of a shape centred at offset (0, 0); kind 0/1/2 = circle/square/triangle."""
    if kind == 0:
        return dx * dx + dy * dy <= radius * radius
    cos, sin = np.cos(angle), np.sin(angle)
    if kind == 1:
        half_side = radius * 0.8  # a square of the same visual weight as the circle
        along = dx * cos + dy * sin
        across = -dx * sin + dy * cos
        return (np.abs(along) <= half_side) & (np.abs(across) <= half_side)
    # Equilateral triangle with circumradius `radius`: inside all three edges,
    # each at distance radius / 2 (the inradius) from the centre.
    inside = np.ones(dx.shape, dtype=bool)
    for edge in range(3):
        normal = angle + np.pi / 3 + edge * 2 * np.pi / 3
        inside &= dx * np.cos(normal) + dy * np.sin(normal) <= radius / 2
    return inside


def _contrasting_colour(rng, canvas, x, y, centre_x, centre_y):
    """A random colour that stands out from the background under the shape's centre."""
    row = int(np.argmin(np.abs(y[:, 0] - centre_y)))
    column = int(np.argmin(np.abs(x[0, :] - centre_x)))
    behind = canvas[row, column]
    colour = rng.uniform(0, 255, size=3).astype(np.float32)
    for _ in range(10):  # rejection sampling; gives up gracefully on bad luck
        if np.linalg.norm(colour - behind) > 100:
            break
        colour = rng.uniform(0, 255, size=3).astype(np.float32)
    return colour


# -- folder ---------------------------------------------------------------------


def _split_folder(data_dir, image_size=None):
    """List a folder's readable images and split them {"train": [...], "validation": [...]}.

    Each entry is ``(path, decoder, orientation)`` (see :func:`_inspect_image`).
    """
    entries = _list_folder_images(data_dir, image_size)
    order = np.random.default_rng(_FOLDER_SPLIT_SEED).permutation(len(entries))
    validation_count = int(round(len(entries) * FOLDER_VALIDATION_FRACTION))
    if len(entries) >= 2:
        # A handful of images still gets a (tiny) validation set.
        validation_count = min(max(validation_count, 1), len(entries) - 1)
    # The permuted order is kept (not re-sorted), so each split is already
    # shuffled across subfolders before the pipeline's local shuffle buffer.
    return {
        "validation": [entries[i] for i in order[:validation_count]],
        "train": [entries[i] for i in order[validation_count:]],
    }


def _list_folder_images(data_dir, image_size=None):
    """Sorted ``(path, decoder, orientation)`` of the decodable images under ``data_dir``.

    Warns once about files that cannot be decoded (they are skipped) and once
    about images smaller than ``image_size`` (they are upscaled).
    """
    if data_dir is None:
        raise UsageError(f"--dataset folder needs --data-dir DIR, a folder of {FOLDER_FORMATS} "
                         f"images.")
    folder = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
    if not os.path.exists(folder):
        raise UsageError(f"image folder {folder} does not exist; pass --data-dir with a folder "
                        f"of {FOLDER_FORMATS} images.")
    if not os.path.isdir(folder):
        raise UsageError(f"{folder} is not a folder; --data-dir must be a folder (searched "
                        f"recursively) of {FOLDER_FORMATS} images.")

    candidates = []
    for root, dirs, files in os.walk(folder):
        # Hidden entries are metadata (.git, macOS "._x.jpg" resource forks), not images.
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        candidates.extend(
            os.path.join(root, f) for f in files
            if not f.startswith(".") and f.lower().endswith(FOLDER_EXTENSIONS)
        )
    candidates.sort()
    if not candidates:
        raise DataError(f"image folder {folder} contains no images (looked for "
                        f"{'/'.join(FOLDER_EXTENSIONS)} files in it and its subfolders); add "
                        f"images or point --data-dir at another folder.")

    good, bad, small = [], [], []
    for path in candidates:
        problem, decoder, orientation, size = _inspect_image(path)
        if problem is None:
            good.append((path, decoder, orientation))
            if image_size and size and min(size) < image_size:
                small.append((path, f"{size[0]}x{size[1]}"))
        else:
            bad.append((path, problem))
    if not good:
        raise DataError(f"none of the {len(bad)} image file(s) in {folder} can be decoded "
                        f"(e.g. {_describe_bad(bad, folder)}); add readable {FOLDER_FORMATS} "
                        f"images or point --data-dir at another folder.")
    if bad:
        warnings.warn(
            f"skipping {len(bad)} of {len(candidates)} image file(s) in {folder} that cannot "
            f"be decoded: {_describe_bad(bad, folder)}",
            UnreadableImagesWarning, stacklevel=6,
        )
    if small:
        warnings.warn(
            f"{len(small)} of {len(good)} image(s) in {folder} are smaller than image_size "
            f"{image_size} px on their shorter side and are upscaled (blurry): "
            f"{_describe_bad(small, folder)}",
            SmallImagesWarning, stacklevel=6,
        )
    return good


def _inspect_image(path):
    """``(problem, decoder, orientation, (width, height))`` of an image file.

    ``problem`` is None if the file should decode, else a short reason. PIL's
    ``verify`` parses headers and checksums without decoding pixels, so this
    stays cheap even for large folders. ``decoder`` is one of the ``_DECODE_*``
    codes, ``orientation`` the EXIF orientation 1..8 (1 = upright).
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():
            # Large images and damaged metadata (e.g. EXIF) are not reasons to skip a file.
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                image_format, mode, size = image.format, image.mode, image.size
                transparent = "transparency" in image.info
                orientation = _exif_orientation(image)
                image.verify()
    except Image.DecompressionBombError:
        # Just very large: TensorFlow decodes the common formats and resize shrinks them.
        extension = os.path.splitext(path)[1].lower()
        decoder = {".png": _DECODE_TF_RGBA, ".jpg": _DECODE_TF_RGB, ".jpeg": _DECODE_TF_RGB,
                   ".bmp": _DECODE_TF_RGB, ".gif": _DECODE_TF_RGB}.get(extension)
        if decoder is None:
            return "an image too large for Pillow to decode safely", None, 1, None
        return None, decoder, 1, None
    except Exception as error:  # PIL raises many types for damaged files
        return f"{type(error).__name__}: {error}".strip(), None, 1, None
    return None, _decoder_for(image_format, mode, transparent), orientation, size


def _decoder_for(image_format, mode, transparent):
    """Which of TensorFlow's decoders, or Pillow, decodes a file of this kind correctly."""
    if image_format in ("JPEG", "MPO"):
        return _DECODE_TF_RGB
    if image_format == "PNG":
        return _DECODE_TF_RGBA
    if image_format == "GIF" and not transparent:
        return _DECODE_TF_RGB
    if image_format == "BMP" and mode == "RGB":
        return _DECODE_TF_RGB
    return _DECODE_PILLOW


def _exif_orientation(image):
    """The EXIF orientation (1..8) of an open PIL image; 1 when it has none."""
    # A PNG's EXIF may follow the pixels, and getexif would decode them to find it.
    if image.format not in ("JPEG", "MPO", "TIFF", "WEBP") and "exif" not in image.info:
        return 1
    try:
        value = int(image.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # malformed EXIF: treat the image as upright
        return 1
    return value if 1 <= value <= 8 else 1


def _describe_bad(bad, folder, limit=3):
    shown = "; ".join(f"{os.path.relpath(path, folder)} ({why})" for path, why in bad[:limit])
    return shown + (f"; and {len(bad) - limit} more" if len(bad) > limit else "")


def file_entries(paths):
    """``(path, decoder, orientation)`` of each decodable file of ``paths``, as a folder
    listing makes them (the input of either pipeline); the others are left out."""
    entries = []
    for path in paths:
        problem, decoder, orientation, _ = _inspect_image(os.fspath(path))
        if problem is None:
            entries.append((os.fspath(path), decoder, orientation))
    return entries


def image_files_dataset(paths, image_size, background=None):
    """Unbatched uint8 dataset of the image files ``paths``, preprocessed as a folder's are.

    Each file is decoded the way :func:`load_datasets` decodes a folder's (the
    benchmark times this); files that cannot be decoded are skipped.
    """
    return _files_dataset(file_entries(paths), image_size, background_rgb(background))


def _files_dataset(entries, image_size, background):
    """uint8 images of ``(path, decoder, orientation)`` entries, decoded in parallel."""
    import tensorflow as tf

    paths = tf.constant([path for path, _, _ in entries], dtype=tf.string)
    decoders = tf.constant([decoder for _, decoder, _ in entries], dtype=tf.int32)
    orientations = tf.constant([orientation for _, _, orientation in entries], dtype=tf.int32)

    def read(path, decoder, orientation):
        image = decode_image_file(path, decoder, orientation)
        return preprocess_image_uint8(image, image_size, background)

    images = tf.data.Dataset.from_tensor_slices((paths, decoders, orientations))
    images = images.map(read, num_parallel_calls=tf.data.AUTOTUNE)
    # Safety net for damage the listing-time check cannot see: skip (with a
    # TensorFlow warning) rather than crash mid-training.
    return images.ignore_errors(log_warning=True)


def decode_image_file(path, decoder, orientation):
    """uint8 HxWx4 (RGBA) of an image file, upright; for use inside ``tf.data``.

    ``decoder`` picks TensorFlow (3 or 4 channels) or Pillow, ``orientation`` is
    the file's EXIF orientation (1..8), applied here: TensorFlow ignores it.
    """
    import tensorflow as tf

    contents = tf.io.read_file(path)

    def tensorflow_rgb():
        rgb = tf.io.decode_image(contents, channels=3, expand_animations=False)
        opaque = tf.fill(tf.concat([tf.shape(rgb)[:2], [1]], 0), tf.constant(255, tf.uint8))
        return tf.concat([rgb, opaque], axis=-1)

    def tensorflow_rgba():
        return tf.io.decode_image(contents, channels=4, expand_animations=False)

    def pillow():
        rgba = tf.numpy_function(_pillow_rgba, [contents], tf.uint8, stateful=False)
        return tf.ensure_shape(rgba, (None, None, 4))

    image = tf.switch_case(tf.cast(decoder, tf.int32), [tensorflow_rgb, tensorflow_rgba, pillow])
    return apply_orientation(tf.ensure_shape(image, (None, None, 4)), orientation)


#: EXIF orientation (1..8) -> (transpose first, then the axes to reverse): what turns
#: an image upright, as Pillow's exif_transpose does. 1 upright, 2 mirrored left-right,
#: 3 rotated 180, 4 mirrored top-bottom, 5 transposed, 6 needs 90 degrees clockwise,
#: 7 transversed, 8 needs 90 degrees anticlockwise. (The tf.data and NumPy pipelines
#: both read it.)
ORIENTATIONS = {1: (False, ()), 2: (False, (1,)), 3: (False, (0, 1)), 4: (False, (0,)),
                5: (True, ()), 6: (True, (1,)), 7: (True, (0, 1)), 8: (True, (0,))}


def apply_orientation(image, orientation):
    """Turn an HxWxC image upright by its EXIF orientation (1..8), as Pillow's exif_transpose."""
    import tensorflow as tf

    def upright(transpose, axes):
        turned = tf.transpose(image, (1, 0, 2)) if transpose else image
        return tf.reverse(turned, list(axes)) if axes else turned

    branches = [lambda rule=ORIENTATIONS[key]: upright(*rule) for key in sorted(ORIENTATIONS)]
    index = tf.clip_by_value(tf.cast(orientation, tf.int32) - 1, 0, 7)
    return tf.switch_case(index, branches)


def _pillow_rgba(contents):
    """uint8 HxWx4 of an encoded image, decoded by Pillow (first frame; 16-bit scaled)."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(bytes(contents))) as image:
            if image.mode.startswith("I") or image.mode == "F":
                # 16/32-bit gray: converting would clip at 255, so scale 0..65535 instead.
                gray = np.asarray(image, dtype=np.float64)
                if image.mode != "F":
                    gray = gray / 257.0
                elif gray.size and gray.max() <= 1.0:
                    gray = gray * 255.0  # floating-point images usually hold 0..1
                gray = np.clip(np.rint(gray), 0, 255).astype(np.uint8)
                return np.dstack([gray, gray, gray, np.full_like(gray, 255)])
            # Palette and colour-key transparency become alpha here.
            return np.asarray(image.convert("RGBA"), dtype=np.uint8)


# -- TFDS sources ---------------------------------------------------------------


def network_reachable(host, port=443, timeout=NETWORK_PROBE_TIMEOUT_S):
    """True if a TCP connection to ``host:port`` (or the HTTPS proxy) opens within ``timeout``.

    The connection runs in a daemon thread so a slow DNS lookup cannot stretch
    the wait beyond ``timeout``. Tests replace this function.
    """
    target = _proxy_for(host) or (host, port)
    opened = []

    def connect():
        try:
            with socket.create_connection(target, timeout=timeout):
                opened.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(opened)


def _proxy_for(host):
    """(host, port) of the HTTPS proxy downloads would go through, or None."""
    proxy = urllib.request.getproxies().get("https")
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    parsed = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if not parsed.hostname:
        return None
    return parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)


def _tfds_split_images(name, splits, image_size, data_dir, background, common):
    """``(datasets, identities)`` of a TFDS source: flowers, celeba or ``tfds:NAME``."""
    import tensorflow as tf
    import tensorflow_datasets as tfds  # slow to import; only these sources need it

    if data_dir is not None:
        data_dir = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
    if name.startswith(TFDS_PREFIX):
        builder, source = _named_tfds_source(tfds, name, data_dir)
    else:
        source = _TFDS_SOURCES[name]
        builder = tfds.builder(source["tfds_name"], data_dir=data_dir)
    _ensure_prepared(builder, name, source)
    split_strings = source["splits"] or _default_tfds_splits(builder)
    if name.startswith(TFDS_PREFIX):
        _check_tfds_splits(builder, name, split_strings)
        _warn_small_tfds_images(name, source["image_shape"], image_size)
    datasets, identities = {}, {}
    for split in splits:
        try:
            examples = builder.as_dataset(split=split_strings[split], shuffle_files=True)
        except Exception as error:  # unknown split names and slicing errors come as several types
            raise DataError(f"cannot read split {split_strings[split]!r} of the {name} dataset "
                            f"(TFDS '{builder.name}'): {type(error).__name__}: {error}") from None
        datasets[split] = examples.map(
            lambda example: preprocess_image_uint8(example["image"], image_size, background),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        identities[split] = dict(common, tfds=builder.name, version=str(builder.version),
                                 data_dir=str(builder.data_dir), split=split_strings[split])
    return datasets, identities


def _named_tfds_source(tfds, name, data_dir):
    """(builder, source) of ``tfds:NAME[:SPLITS]``; fails before any download if unusable."""
    tfds_name, splits = parse_tfds_dataset(name)
    try:
        builder = tfds.builder(tfds_name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise UsageError(f"--dataset {name}: TFDS has no dataset {tfds_name!r} (see "
                         f"https://www.tensorflow.org/datasets/catalog for the names; a "
                         f"config or version is written NAME/CONFIG:1.0.0).") from None
    except Exception as error:  # a builder whose own requirements are missing
        raise DataError(f"--dataset {name}: TFDS cannot load the builder of {tfds_name!r}: "
                        f"{type(error).__name__}: {error}") from None
    features = builder.info.features
    feature = features["image"] if "image" in features.keys() else None
    if not isinstance(feature, tfds.features.Image):
        raise UsageError(f"--dataset {name}: TFDS dataset {builder.name!r} has no 'image' "
                         f"feature (its features: {', '.join(features.keys()) or 'none'}); "
                         f"choose an image dataset such as tfds:cifar10 or tfds:mnist.")
    shape = feature.shape
    if len(shape) == 3 and shape[-1] not in (None, 1, 2, 3, 4):
        raise UsageError(f"--dataset {name}: its images have {shape[-1]} channels; only gray, "
                         f"RGB and their alpha versions (1 to 4 channels) can be used.")
    source = {"tfds_name": tfds_name, "download_host": _download_host(builder),
              "image_shape": tuple(shape),
              "splits": _explicit_tfds_splits(splits)}
    return builder, source


def _explicit_tfds_splits(splits):
    """{"train": ..., "validation": ...} of the SPLITS of ``tfds:NAME:SPLITS``, or None."""
    if splits is None:
        return None
    if len(splits) == 2:
        return {"train": splits[0], "validation": splits[1]}
    return _eighty_twenty(splits[0].split("+"))


def _eighty_twenty(split_names):
    cut = int(round(100 * (1 - FOLDER_VALIDATION_FRACTION)))
    return {"train": "+".join(f"{split}[:{cut}%]" for split in split_names),
            "validation": "+".join(f"{split}[{cut}%:]" for split in split_names)}


def _default_tfds_splits(builder):
    """80/20 of the train split (of every split if there is no 'train'), once prepared."""
    known = list(builder.info.splits.keys())
    if known and "train" not in known:
        names = sorted(known)
    else:
        names = ["train"]  # also under tfds.testing.mock_data, which records no splits
    return _eighty_twenty(names)


def _check_tfds_splits(builder, name, split_strings):
    """Refuse split names the prepared dataset does not have, naming those it has."""
    known = list(builder.info.splits.keys())
    if not known:
        return
    for text in split_strings.values():
        for part in text.split("+"):
            split = re.split(r"[\[(]", part.strip(), maxsplit=1)[0]
            if split not in known:
                raise UsageError(f"--dataset {name}: TFDS dataset {builder.name!r} has no split "
                                 f"{split!r}; its splits are {', '.join(sorted(known))}.")


def _warn_small_tfds_images(name, shape, image_size):
    """One warning when a TFDS dataset's images (of a fixed size) are all upscaled."""
    if len(shape) == 3 and shape[0] and shape[1] and min(shape[0], shape[1]) < image_size:
        warnings.warn(f"the images of --dataset {name} are {shape[1]}x{shape[0]}, smaller "
                      f"than image_size {image_size} px: all of them are upscaled (blurry).",
                      SmallImagesWarning, stacklevel=5)


def _download_host(builder):
    """The host the dataset downloads from (from its checksums), or None if unknown."""
    try:
        urls = list(builder.url_infos or ())
    except Exception:  # no checksums file: the host is not known before downloading
        return None
    for url in urls:
        host = urllib.parse.urlsplit(url).hostname
        if host:
            return host
    return None


def _ensure_prepared(builder, name, source):
    """Download and prepare the dataset unless it is already there; fail fast offline."""
    if _is_prepared(builder):
        return
    host = source.get("download_host")  # None when unknown: the download itself tells
    tfds_name = source.get("tfds_name", builder.name)
    # Only probe when tfds's real download would run: under
    # tfds.testing.mock_data the download is a no-op and needs no network.
    if host and not _download_is_replaced(builder) and not network_reachable(host):
        raise DataError(
            f"the {name} dataset (TFDS '{builder.name}') is not prepared in "
            f"{builder.data_path} and {host}, which it downloads from, cannot be "
            f"reached (no internet access?). {_offline_alternatives(tfds_name)}"
        )
    try:
        builder.download_and_prepare()
    except Exception as error:  # network and checksum errors come in many types
        raise DataError(
            f"downloading the {name} dataset (TFDS '{builder.name}') failed: "
            f"{type(error).__name__}: {error}. {_offline_alternatives(tfds_name)}"
        ) from error


def _is_prepared(builder):
    # Checking the folder first avoids tfds logging a warning about a missing
    # dataset_info.json for a dataset that was simply never downloaded.
    try:
        if not builder.data_path.exists():
            return False
    except OSError:
        return False
    return builder.is_prepared()


def _download_is_replaced(builder):
    """True if ``download_and_prepare`` is not TFDS's own (e.g. tfds.testing.mock_data's no-op)."""
    method = type(builder).download_and_prepare
    return not getattr(method, "__module__", "").startswith("tensorflow_datasets.core")


def _offline_alternatives(tfds_name):
    return (
        f"Alternatives: prepare it on a machine with internet access (e.g. "
        f"`tfds build {tfds_name} --data_dir DIR`), copy DIR here and pass --data-dir DIR; "
        f"or train on your own images with --dataset folder --data-dir DIR; "
        f"or use the offline demo --dataset shapes."
    )
