"""Image files from arrays: grids, strips, numbered images, GIFs.

NumPy and Pillow only (no Keras), so these are cheap to test. Images are float
arrays in [0, 1] of shape (N, H, W, 3) unless said otherwise.
"""

import os

import numpy as np
from PIL import Image


def to_uint8(images):
    """[0, 1] floats -> uint8, rounding to the nearest level."""
    return np.clip(np.rint(np.asarray(images, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def image_grid(images, num_rows, num_cols, padding=2, pad_value=1.0):
    """Tile ``num_rows * num_cols`` images into one (H', W', 3) array.

    Missing cells (fewer images than cells) are left as padding colour.
    """
    images = np.asarray(images, dtype=np.float32)
    count, height, width, channels = images.shape
    grid = np.full(
        (num_rows * height + (num_rows + 1) * padding,
         num_cols * width + (num_cols + 1) * padding, channels),
        pad_value, dtype=np.float32,
    )
    for index in range(min(count, num_rows * num_cols)):
        row, col = divmod(index, num_cols)
        top = padding + row * (height + padding)
        left = padding + col * (width + padding)
        grid[top:top + height, left:left + width] = images[index]
    return grid


def save_png(array, path):
    """Save one (H, W, 3) float image in [0, 1] as PNG, byte-for-byte repeatable."""
    Image.fromarray(to_uint8(array)).save(path, format="PNG", optimize=False)
    return path


def save_grid(images, path, num_rows=3, num_cols=6):
    return save_png(image_grid(images, num_rows, num_cols), path)


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
    pil_frames[0].save(path, format="GIF", save_all=True, append_images=pil_frames[1:],
                       duration=duration_ms, loop=loop)
    return path
