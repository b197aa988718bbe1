"""Image datasets for diffusion training: where images come from and how they are batched.

Five kinds of source, all ending in the same kind of pipeline of square float32
RGB images in [0, 1] (a ``tf.data`` dataset where TensorFlow is installed, which
Keras feeds to every backend; else a NumPy/Pillow ``keras.utils.PyDataset``):

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

The modules, in the order they build on each other: :mod:`~ddim_keras.data.splits`,
:mod:`~ddim_keras.data.decode` (Pillow), :mod:`~ddim_keras.data.shapes`,
:mod:`~ddim_keras.data.folder`, :mod:`~ddim_keras.data.sources`,
:mod:`~ddim_keras.data.cache` (disk caches shared by processes),
:mod:`~ddim_keras.data.failures` (files that fail at decode time), then the pipelines
(:mod:`~ddim_keras.data.tf_passes`, :mod:`~ddim_keras.data.tf_pipeline`,
:mod:`~ddim_keras.data.tfds_sources`, :mod:`~ddim_keras.data.numpy_pipeline`) and the
loaders that choose between them (:mod:`~ddim_keras.data.loaders`). Nothing imports
TensorFlow until a pipeline is built.
"""

from ddim_keras.core.datasets import DATASETS as SOURCES
from ddim_keras.core.errors import SmallImagesWarning, UnreadableImagesWarning
from ddim_keras.data.folder import file_entries
from ddim_keras.data.loaders import (
    adapt_normalizer,
    counted_images,
    image_batches,
    load_datasets,
    load_images,
)
from ddim_keras.data.shapes import (
    SHAPE_KINDS,
    SHAPES_TRAIN_COUNT,
    SHAPES_VALIDATION_COUNT,
    VISIBLE_FRACTION,
    shapes_images,
    shapes_images_with_labels,
)
from ddim_keras.data.sources import LOCAL_SOURCES, check_source_available
from ddim_keras.data.splits import SPLITS

__all__ = [
    "SOURCES",
    "SPLITS",
    "LOCAL_SOURCES",
    "load_datasets",
    "load_images",
    "counted_images",
    "image_batches",
    "adapt_normalizer",
    "check_source_available",
    "shapes_images",
    "shapes_images_with_labels",
    "SHAPE_KINDS",
    "VISIBLE_FRACTION",
    "SHAPES_TRAIN_COUNT",
    "SHAPES_VALIDATION_COUNT",
    "file_entries",
    "UnreadableImagesWarning",
    "SmallImagesWarning",
]
