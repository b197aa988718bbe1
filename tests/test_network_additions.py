"""Tests for the U-Net's optional additions: attention_heads and block_embedding.

Off (the defaults) the network is the example's layer for layer (test_network and the
parity test); on, each must do what it says: attention lets every pixel see every
other, and the embedding reaches every residual block.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
import numpy as np
import pytest
from conftest import TINY

from ddim_keras.core.config import ARCHITECTURE_FIELDS, DiffusionConfig, architecture_differences
from ddim_keras.core.errors import ConfigError
from ddim_keras.model.network import build_network, build_unet

pytestmark = pytest.mark.backends  # the core suite: `make test` runs it on every backend


def randomize(network, seed=0, scale=0.1):
    """Random weights everywhere (the output convolution starts at zero)."""
    rng = np.random.default_rng(seed)
    for weight in network.trainable_weights:
        weight.assign(rng.normal(scale=scale, size=weight.shape).astype("float32"))


def far_pixel_change(network, size):
    """How much the output at the far corner moves when the input's top-left quarter does."""
    rng = np.random.default_rng(1)
    images = rng.standard_normal((1, size, size, 3)).astype("float32")
    variances = np.full((1, 1, 1, 1), 0.5, dtype="float32")
    moved = images.copy()
    moved[0, : size // 2, : size // 2] += 3.0
    before = keras.ops.convert_to_numpy(network([images, variances]))
    after = keras.ops.convert_to_numpy(network([moved, variances]))
    return float(np.max(np.abs(after - before)[0, -1, -1]))


def test_attention_lets_the_far_corner_see_the_other_quarter():
    # One level at full resolution, one block: the convolutions reach 2 pixels,
    # so without attention the far corner cannot depend on the top-left quarter.
    size = 12
    plain = build_unet(size, [8], 1, embedding_dims=8)
    attending = build_unet(size, [8], 1, embedding_dims=8, attention_heads=2)
    randomize(plain, scale=0.3)
    randomize(attending, scale=0.3)
    assert far_pixel_change(plain, size) == 0.0
    assert far_pixel_change(attending, size) > 1e-4
    attention = [
        layer for layer in attending.layers if isinstance(layer, keras.layers.MultiHeadAttention)
    ]
    assert len(attention) == 1
    assert attention[0].get_config()["num_heads"] == 2


def test_attention_sits_after_each_block_of_the_lowest_resolution_only():
    network = build_network(DiffusionConfig(**TINY).replace(block_depth=2, attention_heads=4))
    attention = [
        layer for layer in network.layers if isinstance(layer, keras.layers.MultiHeadAttention)
    ]
    assert len(attention) == 2  # block_depth blocks in the middle
    lowest = TINY["image_size"] // 2 ** (len(TINY["widths"]) - 1)
    for layer in attention:
        assert tuple(layer.input[0].shape[1:]) == (lowest * lowest, TINY["widths"][-1])


def block_embedding_parameters(config):
    """Parameters block_embedding adds, counted by hand: one swish projection of the
    embedding to 4*dims, then a Dense from it to each residual block's width."""
    dims = config.embedding_dims
    widths, depth = list(config.widths), config.block_depth
    block_widths = [w for w in widths[:-1] for _ in range(depth)]  # down
    block_widths += [widths[-1]] * depth  # middle
    block_widths += [w for w in reversed(widths[:-1]) for _ in range(depth)]  # up
    projection = dims * 4 * dims + 4 * dims
    return projection + sum(4 * dims * width + width for width in block_widths)


@pytest.mark.parametrize("changes", [{}, {"block_depth": 2}, {"widths": (8, 16, 24)}])
def test_block_embedding_adds_one_projection_per_residual_block(changes):
    config = DiffusionConfig(**TINY).replace(**changes)
    plain = build_network(config).count_params()
    with_embedding = build_network(config.replace(block_embedding=True)).count_params()
    assert with_embedding - plain == block_embedding_parameters(config)


def test_block_embedding_tells_the_middle_blocks_the_noise_level():
    # Cut the input path: with zero weights on the input's embedding channels the
    # noise level can reach the network only through the blocks' projections.
    config = DiffusionConfig(**TINY)
    for block_embedding, expect_change in ((False, False), (True, True)):
        network = build_network(config.replace(block_embedding=block_embedding))
        randomize(network)
        # The first block's two convolutions that read the concatenated input (the
        # 3x3 and the 1x1 shortcut; the batch norm between keeps channels apart).
        readers = [
            layer
            for layer in network.layers
            if isinstance(layer, keras.layers.Conv2D) and layer.input.shape[-1] > config.widths[0]
        ][:2]
        assert {r.kernel_size for r in readers} == {(1, 1), (3, 3)}
        for reader in readers:
            kernel = keras.ops.convert_to_numpy(reader.kernel).copy()
            kernel[:, :, config.widths[0] :, :] = 0.0  # the embedding's input channels
            reader.kernel.assign(kernel)
        images = np.random.default_rng(2).standard_normal((1, 16, 16, 3)).astype("float32")
        low = keras.ops.convert_to_numpy(network([images, np.full((1, 1, 1, 1), 0.1, "float32")]))
        high = keras.ops.convert_to_numpy(network([images, np.full((1, 1, 1, 1), 0.9, "float32")]))
        changed = float(np.max(np.abs(high - low))) > 1e-5
        assert changed is expect_change


def test_both_additions_round_trip_a_keras_file_in_safe_mode(tmp_path):
    network = build_network(
        DiffusionConfig(**TINY).replace(attention_heads=2, block_embedding=True, num_classes=3)
    )
    randomize(network)
    rng = np.random.default_rng(3)
    inputs = [
        rng.standard_normal((2, 16, 16, 3)).astype("float32"),
        rng.uniform(size=(2, 1, 1, 1)).astype("float32"),
        np.array([0, 2], dtype="int32"),
    ]
    path = str(tmp_path / "network.keras")
    network.save(path)
    loaded = keras.models.load_model(path)  # safe mode
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(inputs)),
        keras.ops.convert_to_numpy(network(inputs)),
        rtol=1e-5,
        atol=1e-6,
    )


def test_the_additions_are_architecture_fields_and_old_runs_had_neither():
    assert "attention_heads" in ARCHITECTURE_FIELDS and "block_embedding" in ARCHITECTURE_FIELDS
    old = DiffusionConfig().to_dict()
    del old["attention_heads"], old["block_embedding"]  # a config.json from before them
    assert architecture_differences(old, DiffusionConfig()) == []
    assert architecture_differences(old, DiffusionConfig(attention_heads=4)) == [
        "attention_heads 0 vs 4"
    ]
    assert architecture_differences(old, DiffusionConfig(block_embedding=True)) == [
        "block_embedding False vs True"
    ]


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"attention_heads": -1}, "must be 0"),
        ({"attention_heads": 3}, "must divide the lowest resolution's width 128"),
        ({"block_embedding": 1}, "true or false"),
    ],
)
def test_bad_values_are_refused_with_the_field_named(changes, words):
    with pytest.raises(ConfigError, match=words):
        DiffusionConfig(**changes)
