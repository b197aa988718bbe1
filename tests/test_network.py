"""Tests for ddim_keras.model.network: the example's residual U-Net, layer for layer."""

import os
import zipfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import example_layout
import keras
import numpy as np
import pytest
from conftest import TINY

from ddim_keras.core.config import DiffusionConfig
from ddim_keras.model.network import SinusoidalEmbedding, build_network, build_unet


def numpy_embedding(x, dims, max_frequency):
    """The example's embedding written with NumPy."""
    frequencies = np.exp(np.linspace(np.log(1.0), np.log(max_frequency), dims // 2))
    angular_speeds = 2.0 * np.pi * frequencies
    return np.concatenate([np.sin(angular_speeds * x), np.cos(angular_speeds * x)], axis=-1)


def randomize_output_conv(network, seed=0, scale=0.05):
    """Give the zero-initialised output convolution random weights."""
    rng = np.random.default_rng(seed)
    conv = network.layers[-1]
    assert isinstance(conv, keras.layers.Conv2D)
    conv.kernel.assign(rng.normal(scale=scale, size=conv.kernel.shape).astype("float32"))
    conv.bias.assign(rng.normal(scale=scale, size=conv.bias.shape).astype("float32"))


def network_inputs(batch, size, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((batch, size, size, 3)).astype("float32")
    variances = rng.uniform(0.0, 1.0, size=(batch, 1, 1, 1)).astype("float32")
    return images, variances


@pytest.fixture
def tiny_network():
    return build_network(DiffusionConfig(**TINY))


# -- size ----------------------------------------------------------------------------


def test_default_network_has_the_example_parameter_count():
    network = build_network(DiffusionConfig())
    assert network.count_params() == 1_953_507
    assert network.name == "residual_unet"
    # Everything is trainable but the batch-norm statistics (mean and variance
    # of the 14 residual blocks' inputs).
    non_trainable = sum(int(np.prod(w.shape)) for w in network.non_trainable_weights)
    batch_norms = [
        layer for layer in network.layers if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert len(batch_norms) == 14
    assert non_trainable == sum(2 * layer.input.shape[-1] for layer in batch_norms)


def test_parameter_count_follows_the_config():
    small = build_network(DiffusionConfig(**TINY)).count_params()
    deeper = build_network(DiffusionConfig(**TINY).replace(block_depth=2)).count_params()
    wider = build_network(DiffusionConfig(**TINY).replace(widths=(16, 32))).count_params()
    assert small < deeper
    assert small < wider


# -- outputs ---------------------------------------------------------------------------


def test_untrained_network_outputs_zeros(tiny_network):
    images, variances = network_inputs(3, 16)
    outputs = np.asarray(tiny_network([images, variances], training=False))
    assert outputs.shape == images.shape
    assert np.all(outputs == 0.0)
    conv = tiny_network.layers[-1]
    assert isinstance(conv, keras.layers.Conv2D)
    assert conv.filters == 3 and conv.kernel_size == (1, 1)
    assert np.all(np.asarray(conv.kernel) == 0.0)
    # The rest of the network is randomly initialised, not zero.
    first_conv = next(
        layer for layer in tiny_network.layers if isinstance(layer, keras.layers.Conv2D)
    )
    assert np.std(np.asarray(first_conv.kernel)) > 0


@pytest.mark.parametrize("size, widths", [(16, (8, 16)), (24, (8, 16, 24)), (8, (8,))])
def test_output_shape_equals_input_shape(size, widths):
    network = build_unet(size, list(widths), block_depth=1, embedding_dims=8)
    assert tuple(network.output.shape) == (None, size, size, 3)
    randomize_output_conv(network)
    images, variances = network_inputs(2, size)
    outputs = np.asarray(network([images, variances]))
    assert outputs.shape == (2, size, size, 3)
    assert np.all(np.isfinite(outputs))
    assert np.any(outputs != 0.0)


def test_network_depends_on_noise_variance(tiny_network):
    randomize_output_conv(tiny_network)
    images, _ = network_inputs(2, 16)
    low = np.asarray(tiny_network([images, np.full((2, 1, 1, 1), 0.1, "float32")]))
    high = np.asarray(tiny_network([images, np.full((2, 1, 1, 1), 0.9, "float32")]))
    assert np.abs(low - high).max() > 1e-4


# -- the embedding -----------------------------------------------------------------------


@pytest.mark.parametrize("dims, max_frequency", [(32, 1000.0), (8, 1000.0), (16, 50.0)])
def test_sinusoidal_embedding_matches_numpy(dims, max_frequency):
    x = np.array([0.0, 1e-4, 0.02, 0.3, 0.5, 0.9975], "float32").reshape(-1, 1, 1, 1)
    layer = SinusoidalEmbedding(dims, max_frequency)
    embedded = np.asarray(layer(x))
    assert embedded.shape == (6, 1, 1, dims)
    expected = numpy_embedding(x.astype("float64"), dims, max_frequency)
    # float32 angles of up to 2*pi*1000 rad carry a rounding error of about
    # 1e-7 relative, so the tolerance grows with the angle.
    frequencies = np.exp(np.linspace(0.0, np.log(max_frequency), dims // 2))
    angles = 2.0 * np.pi * np.concatenate([frequencies, frequencies]) * np.abs(x)
    tolerance = 1e-5 + 4e-7 * angles
    assert np.all(np.abs(embedded - expected) <= tolerance)
    # Low-frequency components (small angles) agree tightly.
    np.testing.assert_allclose(embedded[angles < 10.0], expected[angles < 10.0], atol=1e-5)
    # sin(0) = 0 and cos(0) = 1 for the first row.
    np.testing.assert_allclose(embedded[0, 0, 0, : dims // 2], 0.0, atol=1e-7)
    np.testing.assert_allclose(embedded[0, 0, 0, dims // 2 :], 1.0, atol=1e-7)


def test_sinusoidal_embedding_symbolic_shape_and_config():
    layer = SinusoidalEmbedding(embedding_dims=12, max_frequency=500.0)
    assert layer.compute_output_shape((None, 1, 1, 1)) == (None, 1, 1, 12)
    symbolic = layer(keras.Input(shape=(1, 1, 1)))
    assert tuple(symbolic.shape) == (None, 1, 1, 12)
    clone = SinusoidalEmbedding.from_config(layer.get_config())
    assert clone.embedding_dims == 12 and clone.max_frequency == 500.0
    assert not layer.weights


def test_network_embedding_matches_the_example_lambda():
    x = np.linspace(0.0, 1.0, 5, dtype="float32").reshape(-1, 1, 1, 1)
    ours = np.asarray(SinusoidalEmbedding(32, 1000.0)(x))
    theirs = np.asarray(example_layout.sinusoidal_embedding(x))
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


# -- layout ---------------------------------------------------------------------------------


def test_no_lambda_layers():
    network = build_network(DiffusionConfig(image_size=16))
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in network.layers)
    assert any(isinstance(layer, SinusoidalEmbedding) for layer in network.layers)


def test_layers_match_the_example_in_class_order_and_weight_shapes():
    """Keras addresses .weights.h5 entries by layer class and position."""
    ours = build_network(DiffusionConfig(image_size=16))
    theirs = example_layout.get_network(16, [32, 64, 96, 128], 2)
    our_classes = [type(layer).__name__ for layer in ours.layers]
    their_classes = [type(layer).__name__ for layer in theirs.layers]
    assert our_classes == [
        "SinusoidalEmbedding" if name == "Lambda" else name for name in their_classes
    ]
    assert [tuple(w.shape) for w in ours.weights] == [tuple(w.shape) for w in theirs.weights]
    assert ours.count_params() == theirs.count_params()


def test_residual_blocks_shortcut_then_unscaled_batch_norm():
    network = build_network(DiffusionConfig(image_size=16))
    layers = network.layers
    batch_norms = [
        i for i, layer in enumerate(layers) if isinstance(layer, keras.layers.BatchNormalization)
    ]
    # 2 per down block (3), 2 in the middle, 2 per up block (3).
    assert len(batch_norms) == 14
    for i in batch_norms:
        bn = layers[i]
        assert bn.center is False and bn.scale is False
        assert not bn.trainable_weights  # no gamma, no beta
        # BN -> 3x3 swish conv -> 3x3 linear conv (-> 1x1 shortcut conv) -> Add;
        # Keras lists layers in graph order, the shortcut after the main path.
        conv_a, conv_b = layers[i + 1], layers[i + 2]
        assert isinstance(conv_a, keras.layers.Conv2D) and conv_a.kernel_size == (3, 3)
        assert conv_a.get_config()["activation"] in ("swish", "silu")
        assert conv_a.padding == "same"
        assert isinstance(conv_b, keras.layers.Conv2D) and conv_b.kernel_size == (3, 3)
        assert conv_b.get_config()["activation"] == "linear" and conv_b.padding == "same"
        in_channels = bn.input.shape[-1]
        if in_channels == conv_a.filters:
            assert isinstance(layers[i + 3], keras.layers.Add)
        else:
            shortcut, add = layers[i + 3], layers[i + 4]
            assert isinstance(shortcut, keras.layers.Conv2D)
            assert shortcut.kernel_size == (1, 1) and shortcut.filters == conv_a.filters
            assert isinstance(add, keras.layers.Add)
            # ... but it was created before the batch norm (auto names count up).
            assert name_number(shortcut.name) < name_number(conv_a.name)
            assert name_number(shortcut.name) < name_number(conv_b.name)


def name_number(name):
    """The counter Keras appends to auto-generated layer names (none = 0)."""
    head, _, tail = name.rpartition("_")
    return int(tail) if tail.isdigit() else 0


def test_bare_network_keras_round_trip_in_safe_mode(tmp_path, tiny_network):
    randomize_output_conv(tiny_network)
    images, variances = network_inputs(2, 16)
    before = np.asarray(tiny_network([images, variances]))
    path = str(tmp_path / "network.keras")
    tiny_network.save(path)
    with zipfile.ZipFile(path) as archive:
        saved_config = archive.read("config.json").decode("utf-8")
    assert '"Lambda"' not in saved_config and "__lambda__" not in saved_config
    assert "SinusoidalEmbedding" in saved_config
    loaded = keras.models.load_model(path)  # safe_mode=True is the default
    after = np.asarray(loaded([images, variances]))
    np.testing.assert_array_equal(before, after)
    assert np.any(after != 0.0)
    assert loaded.count_params() == tiny_network.count_params()
    embedding = next(layer for layer in loaded.layers if isinstance(layer, SinusoidalEmbedding))
    assert embedding.embedding_dims == TINY["embedding_dims"]
