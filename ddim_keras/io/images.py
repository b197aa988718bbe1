"""Image files from arrays: PNGs of grids and numbered images, animated GIFs.

NumPy and Pillow only (no Keras); the arrays are made by
:mod:`ddim_keras.core.pictures`. Images are float arrays in [0, 1] of shape
(N, H, W, 3) unless said otherwise.
"""

import os

import numpy as np
from PIL import Image

from ddim_keras.core.pictures import default_scale, image_grid, to_uint8


def save_png(array, path):
    """Save one (H, W, 3) float image in [0, 1] as PNG, byte-for-byte repeatable."""
    Image.fromarray(to_uint8(array)).save(path, format="PNG", optimize=False)
    return path


def save_grid(images, path, num_rows=3, num_cols=6, scale=None):
    """A grid PNG; ``scale=None`` enlarges by :func:`default_scale` of the image size."""
    if scale is None:
        scale = default_scale(min(np.shape(images)[1:3]))
    return save_png(image_grid(images, num_rows, num_cols, scale=scale), path)


def save_images(images, directory, prefix="image", start=0):
    """One PNG per image, numbered ``prefix_0000.png`` ...; returns the paths."""
    os.makedirs(directory, exist_ok=True)
    digits = max(4, len(str(start + len(images) - 1)))
    paths = []
    for offset, image in enumerate(images):
        path = os.path.join(directory, f"{prefix}_{start + offset:0{digits}d}.png")
        paths.append(save_png(image, path))
    return paths


def save_gif(frames, path, duration_ms=100, loop=0):
    """Animated GIF from a list of (H, W, 3) float frames in [0, 1]."""
    pil_frames = [Image.fromarray(to_uint8(frame)) for frame in frames]
    pil_frames[0].save(
        path,
        format="GIF",
        save_all=True,
        append_images=pil_frames[1:],
        duration=duration_ms,
        loop=loop,
    )
    return path
