"""The GAN baseline (model/gan*.py): outputs, augmentation, losses, one train step.

Each check compares with an independent computation (NumPy, or a closed form):
the augmentation against NumPy's flips, rotations and symmetric padding, the
losses against the cross-entropy written out, the EMA after one step against
``ema * before + (1 - ema) * after``. Marked ``backends``: `make test` runs them
on TensorFlow, JAX and PyTorch. The training run on ``shapes`` and the commands
are in tests/test_gan_run.py.
"""

import math

import keras
import numpy as np
import pytest

from ddim_keras.core.config import DiffusionConfig, architecture_differences, as_gan, preset
from ddim_keras.core.errors import ConfigError
from ddim_keras.model.gan import GANModel, discriminator_loss, generator_loss
from ddim_keras.model.gan_augment import AdaptiveAugmenter, affine_resample

pytestmark = pytest.mark.backends

TINY = dict(image_size=16, gan_width=8, gan_depth=2, gan_noise_size=8, batch_size=4, kid=False)


def tiny_gan(**changes):
    keras.utils.set_random_seed(0)
    return GANModel(as_gan(preset("shapes")).replace(**{**TINY, **changes}), kid_weights=None)


def resample(images, flips=1.0, angle=0.0, zoom=1.0, shift_y=0.0, shift_x=0.0):
    batch = len(images)

    def column(value):
        return np.full((batch,), value, np.float32)

    out = affine_resample(
        keras.ops.convert_to_tensor(images),
        column(flips),
        column(angle),
        column(zoom),
        column(shift_y),
        column(shift_x),
    )
    return keras.ops.convert_to_numpy(out)


def test_config_kind_and_diffusion_config_unchanged():
    gan = as_gan(preset("shapes"))
    assert gan.model == "gan" and gan.learning_rate == 2e-4 and gan.ema == 0.99
    # 4 x 4 doubled up to the image size: 3 times at 32 px, 4 at 64 px (the example's depth).
    assert gan.gan_depth == 3 and as_gan(DiffusionConfig()).gan_depth == 4
    # A diffusion config's dict (config.json) has no GAN key; a GAN's round-trips.
    assert "model" not in DiffusionConfig().to_dict()
    assert not any(key.startswith("gan_") for key in DiffusionConfig().to_dict())
    assert DiffusionConfig.from_json(gan.to_json()) == gan
    assert "model 'diffusion' vs 'gan'" in architecture_differences(preset("shapes"), gan)
    with pytest.raises(ConfigError, match="'gan_depth'"):
        gan.replace(image_size=20)  # 20 is not divisible by 2**3
    with pytest.raises(ConfigError, match="'model'"):
        DiffusionConfig(model="vae")


def test_generator_and_discriminator_shapes_and_one_call_per_image():
    model = tiny_gan()
    images = model.generate(5, seed=3, batch_size=2)
    assert images.shape == (5, 16, 16, 3) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    # The same images as one EMA generator call on the seed's latent vectors, drawn here.
    latents = np.random.default_rng(3).standard_normal((5, 8), dtype=np.float32)
    direct = keras.ops.convert_to_numpy(model.ema_generator(latents, training=False))
    np.testing.assert_allclose(images, direct, atol=1e-6)
    logits = model.discriminator(images, training=False)
    assert tuple(logits.shape) == (5, 1)
    assert model.initial_noise(7, seed=0).shape == (7, 8)


def test_losses_are_the_cross_entropies_written_out():
    real = np.array([[2.0], [-1.0], [0.5]], np.float32)
    fake = np.array([[-3.0], [0.2], [1.5]], np.float32)

    def sigmoid(x):
        return 1.0 / (1.0 + np.exp(-x))

    expected_g = -np.mean(np.log(sigmoid(fake)))
    expected_d = -np.mean(np.concatenate([np.log(sigmoid(real)), np.log(1.0 - sigmoid(fake))]))
    got_g = float(keras.ops.convert_to_numpy(generator_loss(fake)))
    got_d = float(keras.ops.convert_to_numpy(discriminator_loss(real, fake)))
    assert got_g == pytest.approx(expected_g, rel=1e-5)
    assert got_d == pytest.approx(expected_d, rel=1e-5)


def test_affine_resample_against_numpy():
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(resample(images), images)
    np.testing.assert_array_equal(resample(images, flips=-1.0), images[:, :, ::-1])
    # A quarter turn counter-clockwise is NumPy's rot90 over the pixel axes.
    np.testing.assert_array_equal(
        resample(images, angle=math.pi / 2), np.rot90(images, 1, axes=(1, 2))
    )
    # Whole-pixel translations: the image moves, the uncovered edge mirrors the image.
    padded = np.pad(images, ((0, 0), (0, 0), (2, 0), (0, 0)), mode="symmetric")
    np.testing.assert_array_equal(resample(images, shift_x=2.0), padded[:, :, :8])
    padded = np.pad(images, ((0, 0), (0, 3), (0, 0), (0, 0)), mode="symmetric")
    np.testing.assert_array_equal(resample(images, shift_y=-3.0), padded[:, 3:])
    # Zooming in by 2 shows the central half, each pixel twice.
    zoomed = resample(images, zoom=0.5)
    np.testing.assert_array_equal(zoomed[:, 1::2, 1::2], images[:, 2:6, 2:6])


def test_augmentation_probability_moves_toward_its_target():
    augmenter = AdaptiveAugmenter(target_accuracy=0.85, integration_steps=10, seed=1)

    def probability():
        return float(keras.ops.convert_to_numpy(augmenter.probability))

    assert probability() == 0.0
    # The discriminator right on every real image: p rises by (1 - 0.85) / 10 a step.
    for step in range(1, 4):
        accuracy = augmenter.update(np.ones((8, 1), np.float32))
        assert float(keras.ops.convert_to_numpy(accuracy)) == 1.0
        assert probability() == pytest.approx(0.015 * step, abs=1e-6)
    # Right on a quarter: p falls by (0.85 - 0.25) / 10, and never below 0.
    augmenter.update(np.array([[1.0], [-1.0], [-2.0], [-0.5]], np.float32))
    assert probability() == 0.0
    # 0.85 exactly: p stays where it is.
    augmenter.probability.assign(0.4)
    augmenter.update(np.array([1.0] * 17 + [-1.0] * 3, np.float32))
    assert probability() == pytest.approx(0.4, abs=1e-6)
    for _ in range(200):
        augmenter.update(np.ones((4, 1), np.float32))
    assert probability() == 1.0


def test_augmentation_is_applied_with_its_probability():
    images = np.random.default_rng(1).uniform(size=(64, 16, 16, 3)).astype(np.float32)
    augmenter = AdaptiveAugmenter(seed=2)
    keep = keras.ops.convert_to_numpy(augmenter(images, training=True))
    np.testing.assert_array_equal(keep, images)  # p = 0
    augmenter.probability.assign(1.0)
    changed = keras.ops.convert_to_numpy(augmenter(images, training=True))
    assert np.mean(np.any(changed != images, axis=(1, 2, 3))) > 0.9
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(augmenter(images, training=False)), images
    )
    augmenter.probability.assign(0.5)
    half = keras.ops.convert_to_numpy(augmenter(images, training=True))
    share = np.mean(np.any(half != images, axis=(1, 2, 3)))
    assert 0.25 < share < 0.75


def test_one_train_step_moves_both_networks_and_the_ema():
    model = tiny_gan()
    model.compile()
    images = np.random.default_rng(0).uniform(size=(4, 16, 16, 3)).astype(np.float32)
    generator_before = [np.array(w) for w in model.generator.get_weights()]
    discriminator_before = [np.array(w) for w in model.discriminator.get_weights()]
    history = model.fit(images, batch_size=4, epochs=1, verbose=0, shuffle=False)
    assert set(history.history) == {"g_loss", "d_loss", "real_acc", "gen_acc", "aug_p"}
    assert all(math.isfinite(v[0]) for v in history.history.values())
    generator_after = model.generator.get_weights()
    discriminator_after = model.discriminator.get_weights()
    assert not np.allclose(generator_before[0], generator_after[0])
    assert not np.allclose(discriminator_before[0], discriminator_after[0])
    # The EMA started at the generator's weights and moved 1 - ema of the way.
    for before, after, ema in zip(
        generator_before, generator_after, model.ema_generator.get_weights()
    ):
        np.testing.assert_allclose(ema, 0.99 * before + 0.01 * after, rtol=1e-4, atol=1e-6)
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 1


def test_get_config_round_trip():
    model = tiny_gan()
    clone = GANModel.from_config(model.get_config())
    assert clone.diffusion_config == model.diffusion_config
    assert clone.get_config() == model.get_config()
