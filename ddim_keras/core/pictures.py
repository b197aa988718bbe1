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


# -- generate's animations and interpolations --------------------------------------------

#: The process strip shows at most this many steps (evenly spaced, first and last included).
STRIP_MAX_COLUMNS = 20
#: Milliseconds per GIF frame.
FRAME_DURATION_MS = 120


def slerp(start, end, fraction):
    """Spherical interpolation between two arrays of the same shape.

    Walks the great circle from ``start`` (fraction 0) to ``end`` (fraction 1),
    so that the norm is interpolated smoothly rather than shrinking in the
    middle as with a straight line: the interpolated Gaussian noise still looks
    like Gaussian noise to the model. Nearly parallel inputs fall back to a
    straight line.
    """
    start = np.asarray(start, dtype=np.float64)
    end = np.asarray(end, dtype=np.float64)
    if start.shape != end.shape:
        raise ValueError(f"slerp needs arrays of one shape, got {start.shape} and {end.shape}")
    norms = np.linalg.norm(start) * np.linalg.norm(end)
    cosine = float(np.clip(np.vdot(start, end) / norms, -1.0, 1.0)) if norms > 0 else 1.0
    angle = math.acos(cosine)
    if math.sin(angle) < 1e-6:
        return (1.0 - fraction) * start + fraction * end
    return (
        math.sin((1.0 - fraction) * angle) * start + math.sin(fraction * angle) * end
    ) / math.sin(angle)


def strip_columns(num_steps, max_columns=STRIP_MAX_COLUMNS):
    """Indices of the steps shown in a strip: all, or evenly spaced with first and last."""
    if num_steps <= max_columns:
        return list(range(num_steps))
    return sorted({int(round(i)) for i in np.linspace(0, num_steps - 1, max_columns)})


def with_progress_line(frame, fraction, height=2, colour=0.25):
    """A frame with a thin bar below it, filled to ``fraction`` of the width.

    It shows where an animation is, and keeps consecutive frames distinct:
    GIF writers merge identical frames, which would break frame counts.
    """
    width = frame.shape[1]
    bar = np.ones((height, width, frame.shape[2]), dtype=frame.dtype)
    bar[:, : int(round(fraction * width))] = colour
    return np.concatenate([frame, bar], axis=0)


def grid_shape(count, cols):
    cols = max(1, min(cols, count))
    return math.ceil(count / cols), cols
