"""Tests for ddim_keras.metrics.kid: the KID estimator, the metric, and the encoder."""

import os
import warnings

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import h5py
import keras
import numpy as np
import pytest
from conftest import TINY

from ddim_keras.core.config import DiffusionConfig
from ddim_keras.core.errors import UsageError
from ddim_keras.metrics.kid import KID, build_encoder, kernel_inception_distance
from ddim_keras.model.diffusion_model import DiffusionModel


def numpy_kid(real, generated):
    """Unbiased MMD^2 with the kernel (x.y / d + 1)^3, in float64."""
    real = np.asarray(real, np.float64)
    generated = np.asarray(generated, np.float64)
    d = real.shape[1]

    def kernel(a, b):
        return (a @ b.T / d + 1.0) ** 3

    def within(a):
        k = kernel(a, a)
        n = len(a)
        return (k.sum() - np.trace(k)) / (n * (n - 1))

    return within(real) + within(generated) - 2.0 * kernel(real, generated).mean()


def features(seed, n=64, d=16, shift=0.0):
    return (np.random.default_rng(seed).standard_normal((n, d)) + shift).astype("float32")


# -- the estimator -------------------------------------------------------------------------


@pytest.mark.parametrize("n_real, n_generated, d", [(8, 8, 4), (64, 64, 16), (10, 7, 32)])
def test_kid_matches_numpy(n_real, n_generated, d):
    rng = np.random.default_rng(n_real * 100 + d)
    real = rng.normal(0.2, 1.0, size=(n_real, d)).astype("float32")
    generated = rng.normal(0.0, 1.3, size=(n_generated, d)).astype("float32")
    ours = float(kernel_inception_distance(real, generated))
    np.testing.assert_allclose(ours, numpy_kid(real, generated), rtol=1e-4, atol=1e-5)


def test_kid_excludes_the_diagonal():
    # With the diagonal included, identical sets would give a positive value;
    # unbiased, a set against a copy of itself gives exactly
    # 2 * (mean off-diagonal - mean all) < 0.
    real = features(0, n=16, d=8)
    value = float(kernel_inception_distance(real, real))
    k = (real.astype(np.float64) @ real.T.astype(np.float64) / 8 + 1.0) ** 3
    off_diagonal = (k.sum() - np.trace(k)) / (16 * 15)
    np.testing.assert_allclose(value, 2 * off_diagonal - 2 * k.mean(), rtol=1e-4)
    assert value < 0


def test_kid_near_zero_for_one_distribution_and_large_between_two():
    same = float(kernel_inception_distance(features(1), features(2)))
    shifted = float(kernel_inception_distance(features(1), features(2, shift=1.0)))
    # Unbiased: around zero (either sign) for one distribution; about 7-8 here
    # for a unit shift of the mean.
    assert abs(same) < 0.25
    assert shifted > 3.0
    assert shifted > 20 * abs(same)
    # Symmetric in its arguments.
    np.testing.assert_allclose(
        float(kernel_inception_distance(features(2, shift=1.0), features(1))), shifted, rtol=1e-5
    )


def test_kid_grows_with_the_shift():
    values = [
        float(kernel_inception_distance(features(1), features(2, shift=s)))
        for s in (0.0, 0.25, 0.5, 1.0)
    ]
    assert values == sorted(values)


# -- the metric ---------------------------------------------------------------------------------


def flatten_encoder(size=4):
    """A stand-in encoder: the pixels are the features."""
    return keras.Sequential([keras.Input(shape=(size, size, 3)), keras.layers.Flatten()])


def test_kid_metric_averages_over_batches_and_resets():
    metric = KID(name="kid", image_size=4, encoder=flatten_encoder())
    rng = np.random.default_rng(0)
    batches = [
        (
            rng.uniform(size=(6, 4, 4, 3)).astype("float32"),
            rng.uniform(0.2, 1.0, size=(6, 4, 4, 3)).astype("float32"),
        )
        for _ in range(3)
    ]
    expected = []
    for real, generated in batches:
        metric.update_state(real, generated)
        expected.append(numpy_kid(real.reshape(6, -1), generated.reshape(6, -1)))
        np.testing.assert_allclose(float(metric.result()), np.mean(expected), rtol=1e-4)
    assert len(set(np.round(expected, 6))) == 3  # the batches really differ
    metric.reset_state()
    assert float(metric.result()) == 0.0
    metric.update_state(*batches[1])
    np.testing.assert_allclose(float(metric.result()), expected[1], rtol=1e-4)


def test_kid_metric_config_round_trip():
    metric = KID(name="kid", image_size=16, kid_image_size=80, weights=None)
    clone = KID.from_config(metric.get_config())
    assert (clone.image_size, clone.kid_image_size, clone.weights) == (16, 80, None)


def test_constructing_the_metric_builds_no_encoder():
    metric = KID(name="kid", image_size=16, weights="imagenet")  # would need a download
    assert metric._holder.value is None


# -- the encoder ----------------------------------------------------------------------------


def test_missing_weights_file_is_a_usage_error_naming_the_path():
    with pytest.raises(UsageError, match="/nonexistent/inception.h5"):
        build_encoder(16, 75, weights="/nonexistent/inception.h5")
    with pytest.raises(UsageError, match="/nonexistent"):
        build_encoder(16, 75, weights="/nonexistent")


def test_random_encoder_warns_and_gives_inception_features():
    with pytest.warns(UserWarning, match="random weights"):
        encoder = build_encoder(16, 75, weights=None)
    images = np.random.default_rng(0).uniform(size=(2, 16, 16, 3)).astype("float32")
    outputs = np.asarray(encoder(images, training=False))
    assert outputs.shape == (2, 2048)
    assert np.all(np.isfinite(outputs))
    assert not encoder.trainable_weights


def test_encoder_is_not_saved_with_the_model(tmp_path):
    config = DiffusionConfig(**TINY).replace(kid=True)
    model = DiffusionModel(config, kid_weights=None)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*random weights.*")
        encoder = model.kid.get_encoder()
    assert encoder.count_params() > 20_000_000  # InceptionV3
    path = tmp_path / "with_kid.weights.h5"
    model.save_weights(str(path))

    with h5py.File(path, "r") as handle:
        groups, datasets = [], []
        handle.visititems(
            lambda name, obj: (datasets if isinstance(obj, h5py.Dataset) else groups).append(name)
        )
    assert "kid/encoder" not in groups
    assert not any("encoder" in name or "inception" in name for name in groups + datasets)
    # Exactly the model's own variables were written: the two networks and the
    # normalizer's statistics, nothing of the 22M-parameter encoder.
    own = (
        len(model.network.weights) + len(model.ema_network.weights) + len(model.normalizer.weights)
    )
    assert len(datasets) == own
    assert path.stat().st_size < 2_000_000
    # The model's weights still load back (and the encoder is still there).
    model.load_weights(str(path))
    assert model.kid.get_encoder() is encoder


def test_failed_imagenet_download_names_the_offline_options(monkeypatch):
    import keras

    from ddim_keras.core.errors import DdimError
    from ddim_keras.metrics.kid import build_encoder

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: Temporary failure in name resolution")

    monkeypatch.setattr(keras.applications, "InceptionV3", offline)
    with pytest.raises(DdimError) as raised:
        build_encoder(16, 75, "imagenet")
    message = str(raised.value)
    assert "--kid-weights PATH" in message and "--no-kid" in message
