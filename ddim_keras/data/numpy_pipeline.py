"""NumPy/Pillow pipelines of ``shapes`` and ``folder``, for machines without TensorFlow.

:func:`ddim_keras.data.load_datasets` and :func:`~ddim_keras.data.load_images`
return these instead of ``tf.data`` pipelines when TensorFlow is not installed
(a JAX or PyTorch install without the ``tensorflow`` extra). The images are the
same as the tf.data path's: the same drawn shapes, the same folder listing and
80/20 split (:func:`ddim_keras.data.sources.split_sources`), and each file decoded by
the Pillow helpers of :mod:`ddim_keras.data`, turned upright by its EXIF
orientation, centre-cropped, composited onto the background and resized with
the same antialiased bilinear (triangle) filter, in float32 before one rounding
to uint8. Only where TensorFlow decodes a file itself (JPEG, PNG, GIF, BMP) can
a pixel differ, by the decoders' rounding and JPEG chroma upsampling (a few
levels of 255 at most; see tests/test_no_tensorflow.py).

What differs from the tf.data pipeline:

* :class:`ImageBatches` is a ``keras.utils.PyDataset``: an epoch is
  ``dataset_repetitions`` passes over the images, each a full permutation drawn
  from the run's seed and the epoch number (tf.data shuffles through a buffer
  of 10 batches, seeded by TensorFlow's global seed); the last incomplete batch
  is dropped in both.
* Decoding runs in a thread pool, one batch at a time, in the training loop's
  thread (no prefetching ahead of the model).
* A file that passed the listing-time check but still fails to decode is
  replaced by the next image of its split (tf.data drops it); once every file
  of the split has been tried, one warning counts them (as tf.data's does at
  the end of a pass).
* ``cache``: "memory" keeps the uint8 images once decoded, "none" decodes every
  time, and a disk cache is one ``.npy`` file per split (``PREFIX.npy``, filled
  through a writer's own ``PREFIX.writer-TOKEN.npy``, see
  :mod:`ddim_keras.data.cache`) that later runs memory-map. ``shapes`` images
  are drawn into memory whatever the cache.
* Keras' ``Normalization.adapt`` needs TensorFlow for anything but an array:
  :func:`adapt_normalizer` computes the same per-channel statistics with NumPy.
"""

import concurrent.futures
import os
import threading
import warnings

import numpy as np

from ddim_keras.core.datasets import background_rgb
from ddim_keras.core.errors import DataError, UnreadableImagesWarning
from ddim_keras.data.cache import CacheWriter
from ddim_keras.data.decode import ORIENTATIONS, pillow_rgba
from ddim_keras.data.failures import short_reason, undecodable_message
from ddim_keras.data.labels import split_sources_for
from ddim_keras.data.numpy_batches import (  # noqa: F401 (this module's names before the move)
    ImageBatches,
    OrderedBatches,
    adapt_normalizer,
    to_unit_range,
)
from ddim_keras.data.splits import check_one_batch


def split_images(
    name, config, splits, data_dir, seed, shapes_count, background=None, conditional=False
):
    """``(images, identities)``: the :class:`SplitImages` of each split in ``splits``.

    The NumPy counterpart of ``data._load_split_images`` (same arguments, same
    identities). The TFDS sources raise :class:`DataError`: they need TensorFlow.
    ``conditional``: the images carry their class labels
    (:mod:`ddim_keras.data.labels`), and their batches are (images, labels).
    """
    sources, labels, identities, background = split_sources_for(
        conditional, name, config, splits, data_dir, seed, shapes_count, background
    )
    if name == "shapes":
        images = {split: ImageArray(sources[split], labels[split]) for split in splits}
    else:
        folder = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
        images = {
            split: ImageFiles(
                sources[split],
                config.image_size,
                background,
                split=split,
                folder=folder,
                labels=labels[split],
            )
            for split in splits
        }
    return images, identities


def prepare_batches(images, config, training=True, cache="memory", seed=0):
    """Shuffled batches of ``images`` (a :class:`SplitImages`), as ``data.prepare_dataset``.

    ``cache`` is "memory", "none" or the path prefix of a disk cache (its folder
    must exist). Raises DataError when there are fewer images than one batch.
    """
    check_one_batch(len(images), config.batch_size, training)
    return ImageBatches(
        images.cached(cache),
        config.batch_size,
        repetitions=config.dataset_repetitions,
        seed=seed,
        stream=0 if training else 1,
    )


def preprocess_uint8(image, image_size, background=None):
    """What ``data.preprocess_image_uint8`` makes of an HxWxC image, with NumPy and Pillow.

    Centre crop, alpha composited onto ``background``, antialiased bilinear
    resize to (image_size, image_size), rounding to uint8. ``image`` is uint8 or
    uint16 (scaled to 0..255) or float in 0..255, with 1 to 4 channels.
    """
    from PIL import Image

    image = np.asarray(image)
    if image.dtype == np.uint16:
        pixels = image.astype(np.float32) * np.float32(255.0 / 65535.0)
    else:
        pixels = image.astype(np.float32)
    if pixels.ndim == 2:
        pixels = pixels[..., np.newaxis]
    height, width = pixels.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    pixels = composite(pixels[top : top + side, left : left + side], background)
    if side != image_size:
        # Pillow's BILINEAR widens its triangle filter by the scale when it shrinks:
        # tf.image.resize(antialias=True). Per channel in mode "F", so in float.
        pixels = np.stack(
            [
                np.asarray(
                    Image.fromarray(np.ascontiguousarray(pixels[..., channel]), "F").resize(
                        (image_size, image_size), Image.Resampling.BILINEAR
                    )
                )
                for channel in range(3)
            ],
            axis=-1,
        )
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def composite(pixels, background=None):
    """RGB float32 (0..255) of HxWxC ``pixels``: ``data.composite`` in NumPy."""
    pixels = np.asarray(pixels, np.float32)
    channels = pixels.shape[-1]
    if channels in (2, 4):
        colour = pixels[..., : channels - 1]
        alpha = pixels[..., channels - 1 :] / np.float32(255.0)
    else:
        colour, alpha = pixels, None
    if colour.shape[-1] == 1:
        colour = np.repeat(colour, 3, axis=-1)
    if alpha is None:
        return colour
    rgb = np.asarray(background_rgb(background), np.float32)
    return colour * alpha + rgb * (np.float32(1.0) - alpha)


def apply_orientation(image, orientation):
    """Turn an HxWxC array upright by its EXIF orientation (1..8): ``data.apply_orientation``."""
    transpose, axes = ORIENTATIONS.get(int(orientation), ORIENTATIONS[1])
    if transpose:
        image = np.swapaxes(image, 0, 1)
    return np.flip(image, axes) if axes else image


def decode_file(path, orientation, image_size, background):
    """uint8 (image_size, image_size, 3) of one image file: decoded by Pillow, upright."""
    with open(path, "rb") as handle:
        rgba = pillow_rgba(handle.read())
    return preprocess_uint8(apply_orientation(rgba, orientation), image_size, background)


# -- the images of a split ----------------------------------------------------------------


class SplitImages:
    """The preprocessed images of one split, in a fixed order.

    A sequence: ``images[i]`` is float32 (image_size, image_size, 3) in [0, 1];
    :meth:`uint8` gives several at once as uint8, the way the batches use them.
    """

    image_size = None
    #: int32 class per image of a class-conditional run, or None.
    labels = None

    def __len__(self):
        raise NotImplementedError

    def uint8(self, indices):
        """uint8 (len(indices), image_size, image_size, 3) of the images at ``indices``."""
        raise NotImplementedError

    def cached(self, cache):
        """These images kept as ``cache`` says ("memory", "none" or a disk path prefix)."""
        return self

    def __getitem__(self, index):
        if not -len(self) <= index < len(self):
            raise IndexError(f"image {index} of {len(self)}")
        return to_unit_range(self.uint8([index % len(self)])[0])

    def __iter__(self):
        for index in range(len(self)):
            yield self[index]


class ImageArray(SplitImages):
    """Images already in memory: a uint8 (N, S, S, 3) array (the drawn ``shapes``)."""

    def __init__(self, images, labels=None):
        self.images = np.asarray(images, np.uint8)
        self.image_size = self.images.shape[1]
        self.labels = labels

    def __len__(self):
        return len(self.images)

    def uint8(self, indices):
        return self.images[np.asarray(indices, dtype=np.int64)]


class ImageFiles(SplitImages):
    """A folder's images, decoded by Pillow when first asked for (in a thread pool).

    ``entries`` are ``(path, decoder, orientation)`` as ``data.split_folder``
    lists them (the decoder code is ignored: Pillow decodes every format);
    ``split`` and ``folder`` only name them in warnings.
    """

    def __init__(
        self,
        entries,
        image_size,
        background,
        cache="none",
        split=None,
        folder=None,
        labels=None,
    ):
        self.entries = list(entries)
        self.labels = labels
        self.image_size = image_size
        self.background = background
        self.cache = cache
        self.split = split
        self.folder = folder
        self._store = None  # uint8 (N, S, S, 3): an array, or a memory map of the disk cache
        self._filled = None  # which rows of the store hold their image
        self._writer = None  # the CacheWriter filling a disk cache
        self._lock = threading.Lock()
        # This pass over the files: which were tried, and why some failed.
        self._tried = np.zeros(len(self.entries), bool)
        self._failed = {}
        shape = (len(self.entries), image_size, image_size, 3)
        if cache == "memory":
            self._store = np.zeros(shape, np.uint8)
            self._filled = np.zeros(len(self.entries), bool)
        elif cache not in (None, "none"):
            self._path = cache + ".npy"
            if not self._open_finished(shape):
                self._filled = np.zeros(len(self.entries), bool)  # a writer starts when needed

    def __len__(self):
        return len(self.entries)

    def cached(self, cache):
        if cache == self.cache:
            return self
        return ImageFiles(
            self.entries,
            self.image_size,
            self.background,
            cache,
            self.split,
            self.folder,
            self.labels,
        )

    def uint8(self, indices):
        indices = [int(index) for index in indices]
        if self._filled is not None and self._store is None:
            self._start_disk_cache()
        if self._filled is None:
            # Read from a finished disk cache, or decoded every time.
            if self._store is not None:
                return self._store[np.asarray(indices, dtype=np.int64)]
            images = np.zeros((len(indices), self.image_size, self.image_size, 3), np.uint8)
            for row, image in enumerate(_pool().map(self._decode, indices)):
                images[row] = image
            self._end_pass_if_complete()
            return images
        missing = sorted({index for index in indices if not self._filled[index]})
        for index, image in zip(missing, _pool().map(self._decode, missing)):
            self._store[index] = image
            self._filled[index] = True
        self._end_pass_if_complete()
        if missing and self._filled.all() and self._writer is not None:
            self._finish_disk_cache()
        return self._store[np.asarray(indices, dtype=np.int64)]

    def _decode(self, index):
        """The image at ``index``, or the next one that decodes."""
        count = len(self.entries)
        for step in range(count):
            current = (index + step) % count
            path, _, orientation = self.entries[current]
            try:
                image = decode_file(path, orientation, self.image_size, self.background)
            except Exception as error:  # Pillow raises many types for damaged files
                self._note(current, short_reason(error))
                continue
            self._note(current)
            return image
        raise DataError(
            f"none of the {count} images of this split can be decoded any more "
            f"(e.g. {self.entries[index][0]}); check the folder."
        )

    def _note(self, index, problem=None):
        with self._lock:
            self._tried[index] = True
            if problem is not None:
                self._failed[index] = problem

    def _end_pass_if_complete(self):
        """Once every file has been tried since the last time: one warning for the failures."""
        with self._lock:
            if not self._tried.all():
                return
            failed, self._failed = self._failed, {}
            self._tried[:] = False
        if failed:
            named = [(self.entries[index][0], failed[index]) for index in sorted(failed)]
            warnings.warn(
                undecodable_message(
                    len(failed),
                    len(self.entries),
                    named,
                    "were replaced by the next image of the split",
                    self.split,
                    self.folder,
                ),
                UnreadableImagesWarning,
                stacklevel=3,
            )

    # -- disk cache: PREFIX.npy, written through the writer's PREFIX.writer-TOKEN.npy ---------

    def _start_disk_cache(self):
        shape = (len(self.entries), self.image_size, self.image_size, 3)
        prefix = self._path[: -len(".npy")]
        self._writer = CacheWriter.start(prefix, lambda: self._open_finished(shape))
        if self._writer is None:  # finished by another process meanwhile: read it
            self._filled = None
            return
        self._store = np.lib.format.open_memmap(
            self._writer.path(".npy"), mode="w+", dtype=np.uint8, shape=shape
        )

    def _open_finished(self, shape):
        """Memory-map the finished cache; False if there is none (or a damaged one)."""
        if not os.path.exists(self._path):
            return False
        try:
            store = np.load(self._path, mmap_mode="r")
        except (OSError, ValueError):  # damaged: replaced by the next one finished
            return False
        if store.shape != shape or store.dtype != np.uint8:
            return False
        self._store = store
        return True

    def _finish_disk_cache(self):
        shape = self._store.shape
        self._store.flush()
        self._store = None
        # Published unless another writer finished first (then its cache is read).
        self._writer.finish(lambda: self._open_finished(shape))
        if self._store is None:
            self._store = np.load(self._path, mmap_mode="r")
        self._writer = None
        self._filled = None


_POOL = None


def _pool():
    """The thread pool that decodes files (Pillow releases the GIL while it decodes)."""
    global _POOL
    if _POOL is None:
        _POOL = concurrent.futures.ThreadPoolExecutor(
            max_workers=os.cpu_count() or 1, thread_name_prefix="ddim-decode"
        )
    return _POOL
