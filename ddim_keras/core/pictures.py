"""Pictures as arrays: pixel levels, whole-factor enlargement, grids of samples.

NumPy only. Images are float arrays in [0, 1] of shape (N, H, W, 3) unless said
otherwise. Pictures meant to be looked at (grids, strips, GIF frames) are
enlarged by a whole factor, nearest neighbour (:func:`upscale`), so that 32 px
samples are not 32 screen pixels: by default each tile gets at least
:data:`MIN_TILE_PIXELS` pixels a side (:func:`default_scale`). The tiles are
enlarged before they are assembled, so the separators between them stay
``padding`` pixels wide whatever the factor.
"""

import math

import numpy as np


def to_uint8(images):
    """[0, 1] floats -> uint8, rounding to the nearest level."""
    return np.clip(np.rint(np.asarray(images, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


#: The default enlargement gives each tile at least this many pixels a side.
MIN_TILE_PIXELS = 128


def default_scale(image_size, min_pixels=MIN_TILE_PIXELS):
    """The default enlargement of ``image_size`` px images: ceil(128 / size), at least 1.

    16 px -> 8, 32 px -> 4, 64 px -> 2, 128 px and more -> 1 (native).
    """
    image_size = int(image_size)
    if image_size < 1:
        raise ValueError(f"image_size must be at least 1, got {image_size}")
    return max(1, math.ceil(min_pixels / image_size))


def upscale(images, factor):
    """Nearest-neighbour enlargement by a whole ``factor``: each pixel becomes a block.

    Works on one image (H, W, C) or a batch (..., H, W, C); factor 1 returns
    the input unchanged.
    """
    if isinstance(factor, bool) or int(factor) != factor or factor < 1:
        raise ValueError(f"factor must be a whole number of at least 1, got {factor!r}")
    factor = int(factor)
    images = np.asarray(images)
    if factor == 1:
        return images
    return np.repeat(np.repeat(images, factor, axis=-3), factor, axis=-2)


def image_grid(images, num_rows, num_cols, padding=2, pad_value=1.0, scale=1):
    """Tile ``num_rows * num_cols`` images into one (H', W', 3) array.

    Missing cells (fewer images than cells) are left as padding colour. With
    ``scale`` > 1 every image is first enlarged ``scale`` times
    (:func:`upscale`); the ``padding`` between them is not.
    """
    images = upscale(np.asarray(images, dtype=np.float32), scale)
    count, height, width, channels = images.shape
    grid = np.full(
        (
            num_rows * height + (num_rows + 1) * padding,
            num_cols * width + (num_cols + 1) * padding,
            channels,
        ),
        pad_value,
        dtype=np.float32,
    )
    for index in range(min(count, num_rows * num_cols)):
        row, col = divmod(index, num_cols)
        top = padding + row * (height + padding)
        left = padding + col * (width + padding)
        grid[top : top + height, left : left + width] = images[index]
    return grid
