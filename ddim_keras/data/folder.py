"""A folder of the user's images: listed, checked, split 80/20 the same way every time."""

import os
import warnings

import numpy as np

from ddim_keras.core.errors import (
    DataError,
    SmallImagesWarning,
    UnreadableImagesWarning,
    UsageError,
)
from ddim_keras.data.decode import inspect_image
from ddim_keras.data.splits import VALIDATION_FRACTION

#: File name endings read from a folder (compared case-insensitively).
FOLDER_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff")


#: The formats of a folder's images, as messages name them.
FOLDER_FORMATS = "JPEG/PNG/GIF/BMP/WebP/TIFF"


# Fixed, not the run's seed: evaluation must see the same validation images as
# training did, whatever seed either run was given.
_FOLDER_SPLIT_SEED = 2022


def file_identities(entries):
    """(path, size, modification time) of each file: a changed file changes the fingerprint."""
    identities = []
    for path, _, _ in entries:
        try:
            stat = os.stat(path)
            identities.append((path, stat.st_size, stat.st_mtime_ns))
        except OSError:
            identities.append((path, None, None))
    return identities


def split_folder(data_dir, image_size=None):
    """List a folder's readable images and split them {"train": [...], "validation": [...]}.

    Each entry is ``(path, decoder, orientation)`` (see :func:`inspect_image`).
    """
    entries = _list_folder_images(data_dir, image_size)
    order = np.random.default_rng(_FOLDER_SPLIT_SEED).permutation(len(entries))
    validation_count = int(round(len(entries) * VALIDATION_FRACTION))
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
        raise UsageError(
            f"--dataset folder needs --data-dir DIR, a folder of {FOLDER_FORMATS} images."
        )
    folder = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
    if not os.path.exists(folder):
        raise UsageError(
            f"image folder {folder} does not exist; pass --data-dir with a folder "
            f"of {FOLDER_FORMATS} images."
        )
    if not os.path.isdir(folder):
        raise UsageError(
            f"{folder} is not a folder; --data-dir must be a folder (searched "
            f"recursively) of {FOLDER_FORMATS} images."
        )

    candidates = []
    for root, dirs, files in os.walk(folder):
        # Hidden entries are metadata (.git, macOS "._x.jpg" resource forks), not images.
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        candidates.extend(
            os.path.join(root, f)
            for f in files
            if not f.startswith(".") and f.lower().endswith(FOLDER_EXTENSIONS)
        )
    candidates.sort()
    if not candidates:
        raise DataError(
            f"image folder {folder} contains no images (looked for "
            f"{'/'.join(FOLDER_EXTENSIONS)} files in it and its subfolders); add "
            f"images or point --data-dir at another folder."
        )

    good, bad, small = [], [], []
    for path in candidates:
        problem, decoder, orientation, size = inspect_image(path)
        if problem is None:
            good.append((path, decoder, orientation))
            if image_size and size and min(size) < image_size:
                small.append((path, f"{size[0]}x{size[1]}"))
        else:
            bad.append((path, problem))
    if not good:
        raise DataError(
            f"none of the {len(bad)} image file(s) in {folder} can be decoded "
            f"(e.g. {_describe_bad(bad, folder)}); add readable {FOLDER_FORMATS} "
            f"images or point --data-dir at another folder."
        )
    if bad:
        warnings.warn(
            f"skipping {len(bad)} of {len(candidates)} image file(s) in {folder} that cannot "
            f"be decoded: {_describe_bad(bad, folder)}",
            UnreadableImagesWarning,
            stacklevel=6,
        )
    if small:
        warnings.warn(
            f"{len(small)} of {len(good)} image(s) in {folder} are smaller than image_size "
            f"{image_size} px on their shorter side and are upscaled (blurry): "
            f"{_describe_bad(small, folder)}",
            SmallImagesWarning,
            stacklevel=6,
        )
    return good


def _describe_bad(bad, folder, limit=3):
    shown = "; ".join(f"{os.path.relpath(path, folder)} ({why})" for path, why in bad[:limit])
    return shown + (f"; and {len(bad) - limit} more" if len(bad) > limit else "")


def file_entries(paths):
    """``(path, decoder, orientation)`` of each decodable file of ``paths``, as a folder
    listing makes them (the input of either pipeline); the others are left out."""
    entries = []
    for path in paths:
        problem, decoder, orientation, _ = inspect_image(os.fspath(path))
        if problem is None:
            entries.append((os.fspath(path), decoder, orientation))
    return entries
