"""Checkpoints written by the keras.io example load into DiffusionModel.

``example_layout.py`` restates the example's model (Lambda embedding, metrics
made in ``compile()``, the KID encoder tracked inside the metric). At the
example's own default hyperparameters we train it one step, save its
``.weights.h5`` the way the example does, and load that file into
``DiffusionModel(DiffusionConfig())``.
"""

import os
import warnings

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import example_layout
import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY

from ddim_keras.core.config import DiffusionConfig
from ddim_keras.core.errors import CheckpointError
from ddim_keras.io import loading
from ddim_keras.model.diffusion_model import DiffusionModel

SIZE = 64


@pytest.fixture(scope="module")
def example_checkpoint(tmp_path_factory):
    """(path, example model) after one training step, outputs made non-zero."""
    keras.utils.set_random_seed(2024)
    example = example_layout.ExampleDiffusionModel()
    example.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=1e-3, weight_decay=1e-4),
        loss=keras.losses.mean_absolute_error,
    )
    rng = np.random.default_rng(0)
    # Images in [0.3, 0.8]: a normalizer mean far from 0, variance far from 1.
    images = rng.uniform(0.3, 0.8, size=(4, SIZE, SIZE, 3)).astype("float32")
    images[..., 0] *= 0.5
    example.normalizer.adapt(images)
    # One step of the example's own train_step creates the optimizer's state.
    logs = example.train_step(tf.constant(images))
    assert np.isfinite(float(logs["n_loss"]))
    assert int(example.optimizer.iterations) == 1
    # The zero-initialised output convolution would make every output 0.
    for network in (example.network, example.ema_network):
        conv = network.layers[-1]
        conv.kernel.assign(rng.normal(scale=0.05, size=conv.kernel.shape).astype("float32"))
        conv.bias.assign(rng.normal(scale=0.05, size=conv.bias.shape).astype("float32"))
    example.built = True  # the example's workaround before saving
    path = tmp_path_factory.mktemp("example") / "example.weights.h5"
    example.save_weights(str(path))
    return str(path), example, example_outputs(example)


def example_outputs(example):
    """What the example model computes, once (the tests compare against it)."""
    images, variances = inputs()
    noise = inputs(seed=1)[0]
    samples = example.reverse_diffusion(noise, 5)
    return {
        "network": np.asarray(example.network([images, variances], training=False)),
        "ema_network": np.asarray(example.ema_network([images, variances], training=False)),
        "samples": np.asarray(samples),
        "denormalized": np.asarray(example.denormalize(samples)),
    }


def inputs(seed=0, batch=2):
    rng = np.random.default_rng(seed)
    images = tf.constant(rng.standard_normal((batch, SIZE, SIZE, 3)).astype("float32"))
    variances = tf.constant(rng.uniform(0.05, 0.95, size=(batch, 1, 1, 1)).astype("float32"))
    return images, variances


def assert_same_as_example(model, example, expected):
    images, variances = inputs()
    for name in ("network", "ema_network"):
        ours = np.asarray(getattr(model, name)([images, variances], training=False))
        assert np.abs(expected[name]).max() > 1e-3  # a real comparison, not 0 == 0
        np.testing.assert_allclose(ours, expected[name], rtol=0, atol=1e-6, err_msg=name)
    # The network and its EMA differ in the checkpoint, so they cannot be swapped.
    assert not np.allclose(expected["network"], expected["ema_network"])

    np.testing.assert_array_equal(
        np.asarray(model.normalizer.mean), np.asarray(example.normalizer.mean)
    )
    np.testing.assert_array_equal(
        np.asarray(model.normalizer.variance), np.asarray(example.normalizer.variance)
    )

    samples = np.asarray(model.reverse_diffusion(inputs(seed=1)[0], 5))
    # An untrained network's samples are far outside the data range (the first
    # step divides by min_signal_rate), so compare relative to their scale.
    scale = max(1.0, float(np.abs(expected["samples"]).max()))
    np.testing.assert_allclose(samples, expected["samples"], rtol=0, atol=1e-5 * scale)
    denormalized = expected["denormalized"]
    np.testing.assert_allclose(np.asarray(model.denormalize(samples)), denormalized, atol=1e-4)
    # Some pixels are inside (0, 1), so the comparison is not only of clipped values.
    assert np.mean((denormalized > 0.0) & (denormalized < 1.0)) > 0.01


def test_example_checkpoint_has_the_example_layout(example_checkpoint):
    path, example, expected = example_checkpoint
    assert sum(isinstance(layer, keras.layers.Lambda) for layer in example.network.layers) == 1
    assert example.network.count_params() == 1_953_507
    with h5py.File(path, "r") as handle:
        names = []
        handle.visit(names.append)
    # The example tracks its InceptionV3 inside the KID metric (ddim_keras does not).
    assert "kid/encoder" in names
    assert any(name.startswith("optimizer/vars/") for name in names)
    assert "ema_network" in names


def test_example_weights_load_into_diffusion_model(example_checkpoint):
    path, example, expected = example_checkpoint
    model = DiffusionModel(DiffusionConfig(), kid_weights=None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.load_weights(path)
    # Nothing skipped, nothing left freshly initialised.
    assert not [w for w in caught if issubclass(w.category, UserWarning)], [
        str(w.message) for w in caught
    ]
    assert_same_as_example(model, example, expected)


def test_example_weights_load_into_a_compiled_model(example_checkpoint):
    path, example, expected = example_checkpoint
    model = DiffusionModel(DiffusionConfig(), kid_weights=None)
    model.compile()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.load_weights(path)
    # The optimizer is not built yet, so Keras skips its state (and says so);
    # nothing else is skipped.
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert all("Skipping variable loading for optimizer" in m for m in messages), messages
    assert_same_as_example(model, example, expected)


def test_example_optimizer_state_loads_for_resuming(example_checkpoint):
    path, example, expected = example_checkpoint
    model = DiffusionModel(DiffusionConfig(), kid_weights=None)
    model.compile()
    # Built first (as a resumed training run does), the optimizer takes the state.
    model.optimizer.build(model.network.trainable_weights)
    loading.load_weights(model, path)
    assert int(model.optimizer.iterations) == 1
    ours = [np.asarray(v) for v in model.optimizer.variables]
    theirs = [np.asarray(v) for v in example.optimizer.variables]
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)
    assert_same_as_example(model, example, expected)


def test_run_dir_load_model_reads_an_example_checkpoint(example_checkpoint):
    path, example, expected = example_checkpoint
    # A bare .weights.h5 with no config: the example's default config.
    model = loading.load_model(checkpoint=path)
    assert model.diffusion_config == DiffusionConfig()
    assert_same_as_example(model, example, expected)


# Keras warns about every part of the file it cannot match before it fails.
@pytest.mark.filterwarnings("ignore:Skipping nested container")
def test_tiny_checkpoint_into_default_model_is_a_checkpoint_error(tmp_path):
    tiny = DiffusionModel(DiffusionConfig(**TINY))
    path = str(tmp_path / "tiny.weights.h5")
    tiny.save_weights(path)
    model = DiffusionModel(DiffusionConfig(), kid_weights=None)
    with pytest.raises(CheckpointError, match="config") as info:
        loading.load_weights(model, path)
    message = str(info.value)
    assert "tiny.weights.h5" in message
    assert "image_size 64" in message
