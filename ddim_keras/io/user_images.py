"""A user's own picture and mask, read for inpainting and image-to-image.

The picture is prepared as training images are (:mod:`ddim_keras.data.decode`,
:func:`ddim_keras.data.numpy_pipeline.decode_file`): any format Pillow reads,
turned upright by its EXIF orientation, centre-cropped to a square, transparent
pixels composited onto the run's background, resized with the antialiased
bilinear filter. A mask (white = regenerate) is cropped the same way, resized
nearest-neighbour and thresholded at half brightness. Every problem is a
:class:`~ddim_keras.core.errors.UsageError` that names the file and what to do.
"""

import os

import numpy as np

from ddim_keras.core.errors import UsageError
from ddim_keras.data.decode import ORIENTATIONS, inspect_image, pillow_rgba

#: Mask pixels at least this bright (0..1, after compositing onto black) are regenerated.
MASK_THRESHOLD = 0.5
#: Luma weights of R, G, B (ITU-R 601, Pillow's "L" conversion).
LUMA = (0.299, 0.587, 0.114)


def check_picture(path, flag):
    """``(orientation, (height, width) upright or None)`` of an image file, or a UsageError."""
    if not os.path.exists(path):
        raise UsageError(f"{flag} {path} does not exist; give the path of an image file.")
    if not os.path.isfile(path):
        raise UsageError(f"{flag} {path} is not a file; give the path of an image file.")
    problem, _, orientation, size = inspect_image(path)
    if problem is not None:
        raise UsageError(
            f"{flag} {path} is not an image that can be read ({problem}); give a PNG, "
            "JPEG, WebP, GIF, BMP or TIFF file."
        )
    if size is None:
        return orientation, None
    width, height = size
    transposed = ORIENTATIONS[orientation][0]
    return orientation, ((width, height) if transposed else (height, width))


def read_picture(path, image_size, background=None, flag="--image"):
    """float32 (S, S, 3) in [0, 1]: the file as a training image of ``image_size`` px."""
    from ddim_keras.data.numpy_pipeline import decode_file, to_unit_range

    orientation, _ = check_picture(path, flag)
    try:
        pixels = decode_file(path, orientation, image_size, background)
    except Exception as error:  # Pillow raises many types for damaged files
        raise UsageError(
            f"{flag} {path} could not be decoded ({type(error).__name__}: {error}); "
            "save it again as PNG or JPEG."
        ) from None
    return to_unit_range(pixels)


def read_mask(path, image_size, picture_shape=None, flag="--mask", picture_flag="--image"):
    """float32 (S, S, 1) of 0 (keep) and 1 (regenerate) from a mask file (white = regenerate).

    The mask must have the picture's size (``picture_shape``, its upright
    (height, width)), and is then cropped as the picture is, or be square: it
    then covers the picture's centre square, which is what the model sees.
    Transparent pixels count as black (kept). A mask that marks nothing once
    resized is refused: it would give the picture back.
    """
    from PIL import Image

    orientation, shape = check_picture(path, flag)
    if (
        shape is not None
        and picture_shape is not None
        and shape != tuple(picture_shape)
        and shape[0] != shape[1]
    ):
        raise UsageError(
            f"{flag} {path} is {shape[1]}x{shape[0]} px but {picture_flag} is "
            f"{picture_shape[1]}x{picture_shape[0]} px; a mask must have the picture's size, "
            "or be square (it then covers the picture's centre square, what the model sees)."
        )
    try:
        with open(path, "rb") as handle:
            rgba = pillow_rgba(handle.read()).astype(np.float32)
    except Exception as error:  # Pillow raises many types for damaged files
        raise UsageError(
            f"{flag} {path} could not be decoded ({type(error).__name__}: {error}); "
            "save it again as PNG."
        ) from None
    transpose, axes = ORIENTATIONS[orientation]
    if transpose:
        rgba = np.swapaxes(rgba, 0, 1)
    if axes:
        rgba = np.flip(rgba, axes)
    # Brightness composited onto black: transparent pixels are kept.
    gray = (rgba[..., :3] @ np.asarray(LUMA, np.float32)) * (rgba[..., 3] / 255.0)
    height, width = gray.shape
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = np.clip(np.rint(gray[top : top + side, left : left + side]), 0, 255)
    resized = Image.fromarray(square.astype(np.uint8), "L").resize(
        (image_size, image_size), Image.Resampling.NEAREST
    )
    mask = (np.asarray(resized, np.float32) / 255.0 >= MASK_THRESHOLD).astype(np.float32)
    if not mask.any():
        raise UsageError(
            f"{flag} {path} marks nothing to regenerate once resized to {image_size}x"
            f"{image_size} px: paint the part to regenerate white (at least half "
            "brightness) on black, in strokes wider than the image's size divided by "
            f"{image_size}."
        )
    return mask[..., np.newaxis]


def read_edit_inputs(picture_path, mask_path, image_size, background=None):
    """``(picture, mask)`` of generate's ``--image`` and ``--mask`` (None: no mask).

    The mask is checked first: it needs no Keras, so a bad one is refused at once.
    """
    mask = None
    if mask_path is not None:
        picture_shape = check_picture(picture_path, "--image")[1]
        mask = read_mask(mask_path, image_size, picture_shape)
    return read_picture(picture_path, image_size, background), mask
