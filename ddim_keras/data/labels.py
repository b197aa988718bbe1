"""The class labels of ``shapes`` and ``folder`` images, for class-conditional training.

* ``shapes``: the kind of the main shape, :data:`SHAPES_CLASSES`. The main shape
  is the one drawn last: it is in front, so always whole (a first shape of two
  may be mostly covered), and one of one is its image's only shape.
* ``folder``: the name of the first-level subfolder an image is in; the classes
  are the folder's first-level subfolders (hidden ones aside) sorted by name,
  as Keras' ``image_dataset_from_directory`` numbers them. A folder without
  subfolders, or with images beside them, is refused: such images have no class.

The TFDS sources' labels are read in :mod:`ddim_keras.data.tfds_sources`.
"""

import os

import numpy as np

from ddim_keras.core.errors import UsageError
from ddim_keras.data.shapes import SHAPE_KINDS, shapes_split_images
from ddim_keras.data.sources import split_sources

#: The classes of ``shapes``: the kind of the main (last-drawn) shape.
SHAPES_CLASSES = SHAPE_KINDS


def folder_classes(data_dir):
    """The sorted names of the first-level subfolders of ``data_dir`` (its classes)."""
    folder = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
    try:
        names = sorted(
            entry.name
            for entry in os.scandir(folder)
            if entry.is_dir() and not entry.name.startswith(".")
        )
    except OSError as error:
        raise UsageError(f"cannot list the image folder {folder}: {error.strerror}.") from None
    if not names:
        raise UsageError(
            f"--conditional with --dataset folder takes each image's class from the "
            f"subfolder it is in, and {folder} has no subfolders. Put the images of each "
            "class in a subfolder named after it (e.g. DIR/cats/*.jpg, DIR/dogs/*.jpg), or "
            "train without --conditional."
        )
    return names


def folder_labels(entries, data_dir, classes):
    """int32 class of each ``(path, ...)`` entry: its first-level subfolder's index."""
    folder = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
    index = {name: position for position, name in enumerate(classes)}
    labels, loose = [], []
    for entry in entries:
        parts = os.path.relpath(entry[0], folder).split(os.sep)
        if len(parts) < 2 or parts[0] not in index:
            loose.append(parts[-1])
        else:
            labels.append(index[parts[0]])
    if loose:
        raise UsageError(
            f"--conditional with --dataset folder takes each image's class from its "
            f"subfolder, but {len(loose)} image(s) lie directly in {folder} (e.g. "
            f"{', '.join(loose[:3])}). Move them into a class subfolder, or train without "
            "--conditional."
        )
    return np.asarray(labels, np.int32)


def main_shape_kinds(record):
    """int32 kind code of each image's main (last-drawn) shape, from the drawing's record."""
    return np.asarray([shapes[-1][0] for shapes, _ in record], np.int32)


def shapes_split_labels(split, image_size, seed, shapes_count):
    """``(images, labels)`` of a ``shapes`` split: the same images, the main shape's kind."""
    record = []
    images = shapes_split_images(split, image_size, seed, shapes_count, record)
    return images, main_shape_kinds(record)


def labelled_split_sources(name, config, splits, data_dir, seed, shapes_count, background=None):
    """:func:`~ddim_keras.data.sources.split_sources` with labels.

    Returns ``(sources, labels, identities, background, classes)``: ``labels[split]``
    is the int32 class of each image of ``sources[split]``, ``classes`` the class
    names; the identities name the classes too (a disk cache of labelled images
    is another cache).
    """
    if name == "folder":
        classes = folder_classes(data_dir)  # refused before the folder is read
    record = {}
    sources, identities, background = split_sources(
        name, config, splits, data_dir, seed, shapes_count, background, record
    )
    if name == "shapes":
        classes = list(SHAPES_CLASSES)
        labels = {split: main_shape_kinds(record[split]) for split in splits}
    else:
        labels = {split: folder_labels(sources[split], data_dir, classes) for split in splits}
    identities = {split: dict(identities[split], classes=classes) for split in splits}
    return sources, labels, identities, background, classes


def split_sources_for(conditional, name, config, splits, data_dir, seed, shapes_count, background):
    """``(sources, labels, identities, background)`` of a local source: with labels
    (:func:`labelled_split_sources`) when ``conditional``, else ``labels[split]`` None."""
    if conditional:
        sources, labels, identities, background, _ = labelled_split_sources(
            name, config, splits, data_dir, seed, shapes_count, background
        )
        return sources, labels, identities, background
    sources, identities, background = split_sources(
        name, config, splits, data_dir, seed, shapes_count, background
    )
    return sources, dict.fromkeys(splits), identities, background
