"""The fused PyTorch layers against Keras' own Conv2D and BatchNormalization.

Keras' stock layers are the independent computation: each fused layer gets the
same weights and inputs as the stock one, and outputs, gradients and moving
statistics must agree. Runs in the PyTorch pass of ``make test`` (elsewhere the
fused classes are the stock code, so there is nothing to compare).
"""

import keras
import numpy as np
import pytest

from ddim_keras.model.fused_layers import BatchNormalization, Conv2D

pytestmark = [
    pytest.mark.backends,
    pytest.mark.skipif(
        keras.backend.backend() != "torch", reason="the fused path exists on PyTorch only"
    ),
]


def _pair(fused_class, stock_class, shape, **kwargs):
    fused, stock = fused_class(**kwargs), stock_class(**kwargs)
    fused.build(shape)
    stock.build(shape)
    rng = np.random.default_rng(7)
    for weight in stock.weights:
        values = rng.normal(0.5, 0.3, weight.shape)
        if "variance" in weight.path:
            values = np.abs(values) + 0.1  # a variance, so no NaN hides a difference
        weight.assign(values.astype("float32"))
    for source, target in zip(stock.weights, fused.weights):
        target.assign(source.value)
    return fused, stock


def _forward_and_gradients(layer, inputs, **call_kwargs):
    """Outputs, the input's gradient and the trainable weights' gradients of sum(outputs * w)."""
    import torch

    images = torch.tensor(inputs, requires_grad=True)
    outputs = layer(images, **call_kwargs)
    probe = torch.tensor(
        np.random.default_rng(3).normal(size=tuple(outputs.shape)), dtype=outputs.dtype
    )
    weights = [w.value for w in layer.trainable_weights]
    for weight in weights:
        weight.grad = None
    (outputs * probe).sum().backward()
    return (outputs.detach().numpy(), images.grad.numpy(), [w.grad.numpy() for w in weights])


def _assert_close(fused, stock, tolerance):
    scale = max(float(np.max(np.abs(stock))), 1.0)
    np.testing.assert_allclose(fused, stock, rtol=0, atol=tolerance * scale)


CONVOLUTIONS = [
    dict(filters=8, kernel_size=3, padding="same", activation="swish"),
    dict(filters=8, kernel_size=3, padding="same"),
    dict(filters=5, kernel_size=1),
    dict(filters=6, kernel_size=3, padding="valid", use_bias=False),
    dict(filters=4, kernel_size=(3, 5), padding="same", activation="relu"),
    # Not fused (stride 2, even kernel with "same"): Keras' own path.
    dict(filters=4, kernel_size=3, strides=2, padding="same"),
    dict(filters=4, kernel_size=2, padding="same"),
]


@pytest.mark.parametrize("kwargs", CONVOLUTIONS, ids=lambda kw: repr(sorted(kw.items())))
def test_conv2d_matches_keras_outputs_and_gradients(kwargs):
    shape = (3, 12, 10, 7)
    fused, stock = _pair(Conv2D, keras.layers.Conv2D, shape, **kwargs)
    inputs = np.random.default_rng(1).normal(size=shape).astype("float32")
    expected = _forward_and_gradients(stock, inputs)
    got = _forward_and_gradients(fused, inputs)
    assert got[0].shape == expected[0].shape
    for got_part, expected_part in zip(got[:2], expected[:2]):
        _assert_close(got_part, expected_part, 1e-5)
    assert len(got[2]) == len(expected[2])
    for got_gradient, expected_gradient in zip(got[2], expected[2]):
        _assert_close(got_gradient, expected_gradient, 1e-5)


def test_conv2d_fuses_only_what_pytorch_pads_like_keras():
    assert Conv2D(4, 3, padding="same")._fused_on_torch()
    assert Conv2D(4, 1)._fused_on_torch()
    assert not Conv2D(4, 2, padding="same")._fused_on_torch()
    assert not Conv2D(4, 3, strides=2)._fused_on_torch()
    assert not Conv2D(4, 3, dilation_rate=2)._fused_on_torch()


@pytest.mark.parametrize("center_scale", [False, True])
def test_batch_normalization_training_matches_keras(center_scale):
    shape = (4, 6, 5, 3)
    kwargs = dict(center=center_scale, scale=center_scale, momentum=0.9)
    fused, stock = _pair(BatchNormalization, keras.layers.BatchNormalization, shape, **kwargs)
    # An offset and a spread per channel, so the statistics matter.
    rng = np.random.default_rng(2)
    inputs = (rng.normal(size=shape) * [0.5, 2.0, 0.1] + [1.0, -3.0, 0.2]).astype("float32")
    initial = keras.ops.convert_to_numpy(fused.moving_variance).copy()
    for _ in range(2):  # the moving statistics move twice
        expected = _forward_and_gradients(stock, inputs, training=True)
        got = _forward_and_gradients(fused, inputs, training=True)
        for got_part, expected_part in zip(got[:2], expected[:2]):
            _assert_close(got_part, expected_part, 2e-5)
        for got_gradient, expected_gradient in zip(got[2], expected[2]):
            _assert_close(got_gradient, expected_gradient, 2e-5)
        for name in ("moving_mean", "moving_variance"):
            np.testing.assert_allclose(
                keras.ops.convert_to_numpy(getattr(fused, name)),
                keras.ops.convert_to_numpy(getattr(stock, name)),
                rtol=1e-5,
                atol=1e-6,
            )
    # And against the biased batch variance computed here: after two equal batches
    # from moving variance v0 at momentum 0.9, v = 0.81 v0 + 0.19 var.
    variance = inputs.reshape(-1, 3).astype("float64").var(axis=0)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(fused.moving_variance),
        0.81 * initial + 0.19 * variance,
        rtol=1e-5,
    )


def test_batch_normalization_inference_matches_keras():
    shape = (2, 5, 5, 4)
    fused, stock = _pair(BatchNormalization, keras.layers.BatchNormalization, shape)
    inputs = np.random.default_rng(4).normal(size=shape).astype("float32")
    expected = keras.ops.convert_to_numpy(stock(inputs, training=False))
    got = keras.ops.convert_to_numpy(fused(inputs, training=False))
    assert np.isfinite(expected).all()
    _assert_close(got, expected, 1e-6)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_fused_layers_follow_mixed_precision_policies(policy):
    shape = (2, 8, 8, 4)
    inputs = np.random.default_rng(5).normal(size=shape).astype("float32")
    for fused_class, stock_class, kwargs in [
        (
            Conv2D,
            keras.layers.Conv2D,
            dict(filters=6, kernel_size=3, padding="same", activation="swish"),
        ),
        (BatchNormalization, keras.layers.BatchNormalization, dict(center=False, scale=False)),
    ]:
        fused, stock = _pair(fused_class, stock_class, shape, dtype=policy, **kwargs)
        got = fused(inputs, training=True)
        expected = stock(inputs, training=True)
        assert keras.backend.standardize_dtype(got.dtype) == policy.split("_")[1]
        _assert_close(
            keras.ops.convert_to_numpy(keras.ops.cast(got, "float32")),
            keras.ops.convert_to_numpy(keras.ops.cast(expected, "float32")),
            2e-2,
        )


def test_fused_layers_save_under_keras_weight_paths(tmp_path):
    """`.weights.h5` keys come from class names: the fused layers write Keras' own."""
    import h5py

    def model(conv, norm):
        inputs = keras.Input((6, 6, 2))
        return keras.Model(inputs, conv(3, 3, padding="same")(norm()(inputs)))

    fused, stock = (
        model(Conv2D, BatchNormalization),
        model(keras.layers.Conv2D, keras.layers.BatchNormalization),
    )
    keys = []
    for network, name in [(fused, "fused"), (stock, "stock")]:
        path = tmp_path / f"{name}.weights.h5"
        network.save_weights(path)
        with h5py.File(path) as file:
            found = []
            file.visit(found.append)
            keys.append(sorted(found))
    assert keys[0] == keys[1]
    assert any("conv2d" in key for key in keys[0])
    # And the .keras file reloads as the fused classes, in safe mode.
    fused.save(tmp_path / "fused.keras")
    loaded = keras.saving.load_model(tmp_path / "fused.keras")
    assert {type(layer) for layer in loaded.layers[1:]} == {Conv2D, BatchNormalization}
