"""core.pictures and io.images: nearest-neighbour enlargement and its default factor."""

import numpy as np
import pytest
from PIL import Image

from ddim_keras.core import pictures
from ddim_keras.io import images

PAD = 2  # image_grid's padding


@pytest.mark.parametrize(
    "size,factor", [(16, 8), (32, 4), (64, 2), (128, 1), (256, 1), (48, 3), (100, 2)]
)
def test_default_scale_gives_tiles_of_at_least_128_pixels(size, factor):
    assert pictures.default_scale(size) == factor
    assert size * factor >= pictures.MIN_TILE_PIXELS or factor == 1


def test_upscale_is_nearest_neighbour_by_a_whole_factor():
    rng = np.random.default_rng(0)
    native = rng.random((2, 5, 7, 3)).astype(np.float32)
    for factor in (1, 2, 3):
        big = pictures.upscale(native, factor)
        assert big.shape == (2, 5 * factor, 7 * factor, 3)
        assert big.dtype == native.dtype
        # Every factor x factor block is one native pixel.
        for row in range(5):
            for col in range(7):
                block = big[:, row * factor : (row + 1) * factor, col * factor : (col + 1) * factor]
                np.testing.assert_array_equal(
                    block, np.broadcast_to(native[:, row : row + 1, col : col + 1], block.shape)
                )
    # One image (H, W, C) too.
    assert pictures.upscale(native[0], 4).shape == (20, 28, 3)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError):
            pictures.upscale(native, bad)


def test_upscaled_grid_is_the_native_grid_times_the_factor():
    rng = np.random.default_rng(1)
    tiles = rng.random((6, 8, 8, 3)).astype(np.float32)
    native = pictures.image_grid(tiles, 2, 3)
    assert native.shape == (2 * 8 + 3 * PAD, 3 * 8 + 4 * PAD, 3)
    np.testing.assert_array_equal(
        pictures.upscale(native, 4).shape, np.array(native.shape) * (4, 4, 1)
    )


def test_scaled_grid_enlarges_the_tiles_and_keeps_thin_separators():
    rng = np.random.default_rng(2)
    tiles = rng.random((5, 8, 8, 3)).astype(np.float32)  # 5 images in a 2 x 3 grid
    factor, size = 4, 8 * 4
    grid = pictures.image_grid(tiles, 2, 3, scale=factor)
    assert grid.shape == (2 * size + 3 * PAD, 3 * size + 4 * PAD, 3)
    for index in range(6):
        row, col = divmod(index, 3)
        top, left = PAD + row * (size + PAD), PAD + col * (size + PAD)
        cell = grid[top : top + size, left : left + size]
        if index < 5:
            np.testing.assert_array_equal(cell, pictures.upscale(tiles[index], factor))
            # Constant blocks: nearest neighbour, no blur across native pixels.
            blocks = cell.reshape(8, factor, 8, factor, 3)
            assert np.all(blocks == blocks[:, :1, :, :1])
        else:
            assert np.all(cell == 1.0)  # a missing cell is padding colour
    # The separators stay PAD pixels of padding colour.
    assert np.all(grid[:PAD] == 1.0) and np.all(grid[PAD + size : 2 * PAD + size] == 1.0)
    assert np.all(grid[:, :PAD] == 1.0)


def test_save_grid_uses_the_default_scale(tmp_path):
    tiles = np.full((18, 32, 32, 3), 0.5, np.float32)
    images.save_grid(tiles, tmp_path / "default.png")
    images.save_grid(tiles, tmp_path / "native.png", scale=1)
    with Image.open(tmp_path / "default.png") as image:
        assert image.size == (6 * 128 + 7 * PAD, 3 * 128 + 4 * PAD)  # 32 px -> x4
    with Image.open(tmp_path / "native.png") as image:
        assert image.size == (6 * 32 + 7 * PAD, 3 * 32 + 4 * PAD)
