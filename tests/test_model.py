"""Tests for ddim_keras.model.diffusion_model.DiffusionModel on a tiny config (16 px, batch 4)."""

import math
import os
import warnings

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
import numpy as np
import pytest
from conftest import TINY, assert_not_saturated, unsaturate

from ddim_keras.core.config import DiffusionConfig
from ddim_keras.model.diffusion_model import DiffusionModel

pytestmark = pytest.mark.backends  # the core suite: `make test` runs it on every backend

SIZE = TINY["image_size"]
BATCH = TINY["batch_size"]


def tiny_images(num, seed=0, mean=None):
    """Squares of random colours on a gradient, in [0, 1]: easy to learn."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.0, 1.0, SIZE, dtype="float32")
    images = np.empty((num, SIZE, SIZE, 3), "float32")
    for i in range(num):
        images[i] = 0.5 * ramp[None, :, None] + 0.25
        x, y = rng.integers(0, SIZE // 2, size=2)
        images[i, y : y + SIZE // 2, x : x + SIZE // 2] = rng.uniform(0.0, 1.0, size=3)
    if mean is not None:
        images = np.clip(images - images.mean() + mean, 0.0, 1.0)
    return images


class _Batches(keras.utils.PyDataset):
    def __init__(self, images, batch_size, drop_remainder):
        super().__init__()
        self.images, self.batch_size = images, batch_size
        count = len(images) // batch_size if drop_remainder else -(-len(images) // batch_size)
        self.count = count

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        return self.images[index * self.batch_size : (index + 1) * self.batch_size]


def dataset(images, batch_size=BATCH, drop_remainder=False):
    """Batches of ``images`` in order, a dataset every Keras backend takes."""
    return _Batches(images, batch_size, drop_remainder)


def fit(model, data, **kwargs):
    """model.fit without Keras' warning that a Dataset is not shuffled by fit."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*shuffle=True.*")
        return model.fit(data, verbose=0, **kwargs)


def randomize_outputs(model, seed=0, scale=0.05):
    """Non-zero output convolutions, so that sampling has something to compare."""
    rng = np.random.default_rng(seed)
    for network in (model.network, model.ema_network):
        conv = network.layers[-1]
        conv.kernel.assign(rng.normal(scale=scale, size=conv.kernel.shape).astype("float32"))
        conv.bias.assign(rng.normal(scale=scale, size=conv.bias.shape).astype("float32"))


def network_outputs(network, seed=0, batch=3):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((batch, SIZE, SIZE, 3)).astype("float32")
    variances = rng.uniform(size=(batch, 1, 1, 1)).astype("float32")
    return keras.ops.convert_to_numpy(network([images, variances], training=False))


def weights_of(model):
    return [keras.ops.convert_to_numpy(w) for w in model.weights]


@pytest.fixture
def model(tiny_config):
    keras.utils.set_random_seed(1234)
    return DiffusionModel(tiny_config)


# -- construction -----------------------------------------------------------------------


def test_model_is_built_on_construction(model, tiny_config):
    assert model.built
    assert model.diffusion_config == tiny_config
    assert model.image_size == SIZE
    normalizer = model.normalizer
    assert normalizer.built
    assert tuple(normalizer.mean.shape)[-1] == 3
    assert tuple(normalizer.variance.shape)[-1] == 3
    # Before adapt() the normalizer is the identity.
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(normalizer.mean).ravel(), 0.0)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(normalizer.variance).ravel(), 1.0)
    # The EMA network starts as a copy of the network.
    for weight, ema_weight in zip(model.network.weights, model.ema_network.weights):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(weight), keras.ops.convert_to_numpy(ema_weight)
        )
    assert model.network is not model.ema_network
    assert model.network.count_params() == model.ema_network.count_params()


def test_config_may_be_a_dict(tiny_config):
    assert DiffusionModel(config=tiny_config.to_dict()).diffusion_config == tiny_config


def test_save_and_load_weights_before_fit(tmp_path, tiny_config):
    keras.utils.set_random_seed(1)
    first = DiffusionModel(tiny_config)
    randomize_outputs(first, seed=1)
    first.normalizer.adapt(tiny_images(8, mean=0.7))
    path = str(tmp_path / "before_fit.weights.h5")
    first.save_weights(path)

    keras.utils.set_random_seed(2)
    second = DiffusionModel(tiny_config)
    assert not np.array_equal(network_outputs(first.network), network_outputs(second.network))
    second.load_weights(path)
    for a, b in zip(weights_of(first), weights_of(second)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(network_outputs(first.network), network_outputs(second.network))
    np.testing.assert_array_equal(
        network_outputs(first.ema_network), network_outputs(second.ema_network)
    )


# -- compile ---------------------------------------------------------------------------------


def test_compile_defaults_to_adamw_from_the_config(tiny_config):
    config = tiny_config.replace(learning_rate=3e-3, weight_decay=2e-4)
    model = DiffusionModel(config)
    model.compile()
    optimizer = model.optimizer
    assert isinstance(optimizer, keras.optimizers.AdamW)
    assert math.isclose(
        float(keras.ops.convert_to_numpy(optimizer.learning_rate)), 3e-3, rel_tol=1e-6
    )
    assert math.isclose(float(optimizer.weight_decay), 2e-4, rel_tol=1e-6)


def test_compile_accepts_another_optimizer(model):
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    assert isinstance(model.optimizer, keras.optimizers.SGD)


@pytest.mark.parametrize("loss, expected", [("mae", 2.0), ("mse", 4.0)])
def test_loss_is_selected_by_the_config(tiny_config, loss, expected):
    model = DiffusionModel(tiny_config.replace(loss=loss))
    model.compile()
    function = {"mae": keras.losses.mean_absolute_error, "mse": keras.losses.mean_squared_error}[
        loss
    ]
    assert model.loss_fn is function
    zeros = np.zeros((2, 4, 4, 3), "float32")
    twos = np.full((2, 4, 4, 3), 2.0, "float32")
    per_pixel = keras.ops.convert_to_numpy(model.loss_fn(zeros, twos))
    assert per_pixel.shape == (2, 4, 4)  # unreduced: the train step sums it, as the example
    np.testing.assert_allclose(per_pixel, expected)


# -- training ---------------------------------------------------------------------------------


def test_training_lowers_the_noise_loss(tiny_config):
    keras.utils.set_random_seed(42)
    model = DiffusionModel(tiny_config.replace(learning_rate=2e-3))
    model.compile()
    images = tiny_images(8, seed=3)
    model.normalizer.adapt(images)
    # 2 batches per epoch, 20 epochs: 40 steps on the same 8 images.
    history = fit(model, dataset(images), epochs=20)
    losses = history.history["n_loss"]
    assert len(losses) == 20
    assert all(math.isfinite(value) for value in losses)
    assert "i_loss" in history.history
    # Zero-output start: n_loss is the mean |noise|, about sqrt(2/pi) ~ 0.8.
    assert losses[0] == pytest.approx(0.8, abs=0.15)
    # About 0.8 -> 0.6 here; without learning it stays at 0.8.
    assert np.mean(losses[-3:]) < 0.9 * np.mean(losses[:3])
    assert losses[-1] < losses[0]
    assert int(model.optimizer.iterations) == 40


def test_partial_last_batch(model):
    model.compile()
    images = tiny_images(6)  # batches of 4 and 2
    model.normalizer.adapt(images)
    history = fit(model, dataset(images), epochs=1)
    assert math.isfinite(history.history["n_loss"][0])
    assert int(model.optimizer.iterations) == 2
    results = model.evaluate(dataset(images), verbose=0, return_dict=True)
    assert math.isfinite(results["n_loss"]) and math.isfinite(results["i_loss"])


def test_ema_update_follows_the_momentum(tiny_config):
    keras.utils.set_random_seed(7)
    model = DiffusionModel(tiny_config.replace(ema=0.5))
    model.compile()
    # Gradients reach every layer only once the output convolution is non-zero.
    randomize_outputs(model, seed=5)
    # Make the EMA differ from the network so that the average is visible.
    rng = np.random.default_rng(0)
    for ema_weight in model.ema_network.weights:
        ema_weight.assign(rng.normal(size=ema_weight.shape).astype("float32"))
    old_ema = [keras.ops.convert_to_numpy(w).copy() for w in model.ema_network.weights]
    old_network = [keras.ops.convert_to_numpy(w).copy() for w in model.network.weights]

    fit(model, dataset(tiny_images(4)), epochs=1)
    new_network = [keras.ops.convert_to_numpy(w) for w in model.network.weights]
    new_ema = [keras.ops.convert_to_numpy(w) for w in model.ema_network.weights]

    paths = [w.path for w in model.network.weights]
    # The first convolution's kernel: (1, 1, 3, widths[0]).
    kernel = next(
        i
        for i, w in enumerate(model.network.weights)
        if w.trainable and tuple(w.shape) == (1, 1, 3, TINY["widths"][0])
    )
    moving = next(i for i, path in enumerate(paths) if path.endswith("moving_mean"))
    for i in (kernel, moving):
        # The step changed the network's weight (the BN statistic included) ...
        assert not np.allclose(new_network[i], old_network[i]), paths[i]
        # ... and the EMA moved halfway from its old value to the new weight.
        np.testing.assert_allclose(
            new_ema[i],
            0.5 * old_ema[i] + 0.5 * new_network[i],
            rtol=1e-5,
            atol=1e-6,
            err_msg=paths[i],
        )
    # Every other weight too.
    for i in range(len(paths)):
        np.testing.assert_allclose(
            new_ema[i],
            0.5 * old_ema[i] + 0.5 * new_network[i],
            rtol=1e-5,
            atol=1e-6,
            err_msg=paths[i],
        )


def test_model_checkpoint_callback_saves_weights(tmp_path, model):
    """The keras.io example fails here with 'model has not yet been built'."""
    model.compile()
    images = tiny_images(8)
    model.normalizer.adapt(images)
    path = str(tmp_path / "ckpt.weights.h5")
    fit(
        model,
        dataset(images),
        epochs=1,
        callbacks=[keras.callbacks.ModelCheckpoint(path, save_weights_only=True)],
    )
    assert os.path.isfile(path)
    other = DiffusionModel(model.diffusion_config)
    other.load_weights(path)
    np.testing.assert_array_equal(
        network_outputs(model.ema_network), network_outputs(other.ema_network)
    )
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model.normalizer.mean),
        keras.ops.convert_to_numpy(other.normalizer.mean),
    )


# -- saving ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_model():
    """A compiled model after one step, with data statistics and samples that are
    not clipped flat (conftest.unsaturate).

    Shared by the tests below, which only read it.
    """
    keras.utils.set_random_seed(4321)
    model = DiffusionModel(DiffusionConfig(**TINY))
    model.compile()
    images = tiny_images(8, mean=0.7)
    model.normalizer.adapt(images)
    fit(model, dataset(images), epochs=1, steps_per_epoch=1)
    return unsaturate(model, seed=3, mean=None, variance=None)


def assert_same_model(a, b):
    np.testing.assert_array_equal(network_outputs(a.network), network_outputs(b.network))
    np.testing.assert_array_equal(network_outputs(a.ema_network), network_outputs(b.ema_network))
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(a.normalizer.mean), keras.ops.convert_to_numpy(b.normalizer.mean)
    )
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(a.normalizer.variance),
        keras.ops.convert_to_numpy(b.normalizer.variance),
    )
    generated_a = a.generate(5, 3, seed=11)
    generated_b = b.generate(5, 3, seed=11)
    assert generated_a.shape == (5, SIZE, SIZE, 3)
    np.testing.assert_array_equal(generated_a, generated_b)
    assert generated_a.min() >= 0.0 and generated_a.max() <= 1.0
    assert_not_saturated(generated_a)


def test_keras_file_round_trip_in_safe_mode(tmp_path, trained_model):
    path = str(tmp_path / "model.keras")
    trained_model.save(path)
    with warnings.catch_warnings():
        # Keras: "compile() was not called as part of model loading" (see below).
        warnings.filterwarnings("ignore", message=".*compile.*")
        loaded = keras.models.load_model(path)  # safe_mode=True by default
    assert isinstance(loaded, DiffusionModel)
    assert loaded.diffusion_config == trained_model.diffusion_config
    assert_same_model(trained_model, loaded)
    assert not np.array_equal(
        network_outputs(trained_model.ema_network),
        network_outputs(DiffusionModel(trained_model.diffusion_config).ema_network),
    )
    uncompiled = keras.models.load_model(path, compile=False)
    np.testing.assert_array_equal(
        network_outputs(trained_model.ema_network), network_outputs(uncompiled.ema_network)
    )


def test_loaded_keras_model_can_resume_training(tmp_path, trained_model):
    path = str(tmp_path / "model.keras")
    trained_model.save(path)
    loaded = keras.models.load_model(path)
    # The optimizer state came back with the weights.
    assert int(loaded.optimizer.iterations) == int(trained_model.optimizer.iterations) > 0
    history = fit(loaded, dataset(tiny_images(4)), epochs=1)
    assert math.isfinite(history.history["n_loss"][0])
    assert isinstance(loaded.optimizer, keras.optimizers.AdamW)


def test_weights_file_round_trip(tmp_path, trained_model):
    path = str(tmp_path / "model.weights.h5")
    trained_model.save_weights(path)
    keras.utils.set_random_seed(99)
    loaded = DiffusionModel(trained_model.diffusion_config)
    loaded.load_weights(path)
    assert_same_model(trained_model, loaded)


def test_normalizer_statistics_survive_saving(tmp_path, model):
    images = tiny_images(16, mean=0.7)
    model.normalizer.adapt(images)
    mean = keras.ops.convert_to_numpy(model.normalizer.mean).ravel()
    variance = keras.ops.convert_to_numpy(model.normalizer.variance).ravel()
    np.testing.assert_allclose(mean, images.reshape(-1, 3).mean(axis=0), rtol=1e-4)
    np.testing.assert_allclose(variance, images.reshape(-1, 3).var(axis=0), rtol=1e-3)
    assert np.all(np.abs(mean) > 0.3)

    weights_path = str(tmp_path / "n.weights.h5")
    model.save_weights(weights_path)
    other = DiffusionModel(model.diffusion_config)
    other.load_weights(weights_path)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(other.normalizer.mean).ravel(), mean)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(other.normalizer.variance).ravel(), variance
    )

    keras_path = str(tmp_path / "n.keras")
    model.save(keras_path)
    loaded = keras.models.load_model(keras_path)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded.normalizer.mean).ravel(), mean)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded.normalizer.variance).ravel(), variance
    )
    # denormalize() uses them: normalized zero is the data mean.
    zeros = np.zeros((1, SIZE, SIZE, 3), "float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded.denormalize(zeros))[0, 0, 0], mean, rtol=1e-6
    )


# -- sampling ---------------------------------------------------------------------------------


def test_generate_is_seeded_and_independent_of_chunking(trained_model):
    a = trained_model.generate(6, 3, seed=5)
    b = trained_model.generate(6, 3, seed=5, batch_size=4)
    c = trained_model.generate(6, 3, seed=6)
    assert_not_saturated(a)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert not np.allclose(a, c)


def test_compiled_sampler_matches_the_python_loop(trained_model):
    noise = trained_model.initial_noise(3, seed=2)
    loop = keras.ops.convert_to_numpy(
        trained_model.reverse_diffusion(keras.ops.convert_to_tensor(noise), 4)
    )
    graph = keras.ops.convert_to_numpy(trained_model.compiled_reverse_diffusion(noise, 4))
    np.testing.assert_allclose(loop, graph, rtol=1e-5, atol=1e-5)


# -- KID ---------------------------------------------------------------------------------------


def test_evaluate_reports_a_finite_kid_with_a_random_encoder(tiny_config):
    keras.utils.set_random_seed(3)
    config = tiny_config.replace(kid=True)
    assert config.kid_image_size == 75
    model = DiffusionModel(config, kid_weights=None)
    model.compile()
    images = tiny_images(8)
    model.normalizer.adapt(images)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*random weights.*")
        results = model.evaluate(dataset(images), verbose=0, return_dict=True)
    assert set(results) >= {"n_loss", "i_loss", "kid"}
    assert math.isfinite(results["kid"])
    assert [m.name for m in model.metrics] == ["n_loss", "i_loss", "kid"]
    # Training does not measure KID.
    history = fit(model, dataset(images), epochs=1, steps_per_epoch=1)
    assert "kid" not in history.history


OBJECTIVES = {
    "example": {},
    "velocity_all": dict(
        prediction="velocity", loss_weighting="min_snr", augment="flip", ema_warmup=True
    ),
    "image_min_snr": dict(prediction="image", loss_weighting="min_snr", snr_gamma=2.0),
    # Not an objective but the network's optional layers (attention, per-block embedding).
    "attention_block_embedding": dict(attention_heads=2, block_embedding=True),
}


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_training_follows_float32(tiny_config, policy, objective):
    """Two steps under a mixed policy move the weights as float32 does, on every backend
    (float16 through the LossScaleOptimizer that compile() adds), for the example's
    objective and the others (config.prediction, loss_weighting, augment, ema_warmup)."""
    images = tiny_images(8)
    tiny_config = tiny_config.replace(**OBJECTIVES[objective])

    def two_steps(policy_name):
        previous = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(policy_name)
        try:
            keras.utils.set_random_seed(4)
            model = DiffusionModel(tiny_config, kid_weights=None)
            model.compile()
            model.normalizer.adapt(images)
            before = [keras.ops.convert_to_numpy(w) for w in model.network.trainable_weights]
            history = fit(model, dataset(images), epochs=1)
            after = [keras.ops.convert_to_numpy(w) for w in model.network.trainable_weights]
        finally:
            keras.mixed_precision.set_global_policy(previous)
        return model, history, [b - a for a, b in zip(before, after)]

    _, _, exact = two_steps("float32")
    model, history, mixed = two_steps(policy)
    assert model.network.layers[-1].compute_dtype == policy.split("_")[1]
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) == (
        policy == "mixed_float16"
    )
    assert math.isfinite(history.history["n_loss"][0])
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 2
    exact_flat = np.concatenate([u.ravel() for u in exact])
    mixed_flat = np.concatenate([u.ravel() for u in mixed])
    assert np.abs(exact_flat).max() > 1e-4  # the steps did move the weights
    # Same direction, similar size: reduced precision only rounds the gradients.
    cosine = exact_flat @ mixed_flat / np.linalg.norm(exact_flat) / np.linalg.norm(mixed_flat)
    assert cosine > 0.9, cosine
