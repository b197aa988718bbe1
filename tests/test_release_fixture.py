"""Files written by release 0.1.0 (the flat layout) load into today's package (issue #20).

``tests/fixtures/release_0_1_0`` was written once by that release
(``make_fixture.py`` beside it): a tiny ``shapes`` run directory (config, run
info, state, history, best and last checkpoints), the trained model as a
``.keras`` file, and what that release computed from them (``expected.npz``):
network outputs on fixed inputs and a seeded 3-step sample. The module paths
recorded in the ``.keras`` file are the old ones (``ddim_keras.model``); the
registered names (``ddim_keras>DiffusionModel``, ...) are what Keras finds.
"""

import json
import os
import shutil
import zipfile

import numpy as np
import pytest
from keras import ops

from ddim_keras.io.loading import load_model

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "release_0_1_0")
EXPECTED = np.load(os.path.join(FIXTURE, "expected.npz"))


def _assert_computes_as_release(model, atol):
    noisy, variances = EXPECTED["noisy"], EXPECTED["variances"]
    for name in ("network", "ema_network"):
        outputs = ops.convert_to_numpy(getattr(model, name)([noisy, variances], training=False))
        np.testing.assert_allclose(outputs, EXPECTED[name], atol=atol, err_msg=name)
    np.testing.assert_allclose(
        ops.convert_to_numpy(model.normalizer.mean), EXPECTED["normalizer_mean"]
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(model.normalizer.variance), EXPECTED["normalizer_variance"]
    )
    np.testing.assert_allclose(model.generate(4, 3, seed=0), EXPECTED["samples"], atol=atol)


def test_the_fixture_is_the_old_layout():
    with zipfile.ZipFile(os.path.join(FIXTURE, "model.keras")) as archive:
        config = json.loads(archive.read("config.json"))
    assert config["module"] == "ddim_keras.model"
    assert config["registered_name"] == "ddim_keras>DiffusionModel"
    # Not a constant image: comparing samples means something.
    assert EXPECTED["samples"].std() > 0.01


@pytest.mark.backends  # the core suite: `make test` runs it on every backend
def test_keras_file_of_release_0_1_0_loads_in_safe_mode():
    # Float rounding only: the same kernels on TensorFlow; other backends round sin/cos
    # and convolutions their own way (see test_backends: 1e-6 on samples).
    model = load_model(checkpoint=os.path.join(FIXTURE, "model.keras"))
    _assert_computes_as_release(model, atol=1e-4)


@pytest.mark.backends
def test_run_directory_of_release_0_1_0_loads():
    model = load_model(run=os.path.join(FIXTURE, "run"))
    assert model.diffusion_config.image_size == 16
    _assert_computes_as_release(model, atol=1e-4)


def test_run_of_release_0_1_0_resumes(tmp_path):
    """Its last checkpoint (with optimizer state) resumes under today's train."""
    from ddim_keras.cli import train

    run = tmp_path / "run"
    shutil.copytree(os.path.join(FIXTURE, "run"), run)
    code = train.main(
        ["--dataset", "shapes", "--output", str(run), "--config", str(run / "config.json")]
        + ["--epochs", "2"]
        + ["--steps-per-epoch", "1", "--verbose", "0", "--seed", "7"]
    )
    assert code == 0
    with open(run / "state.json", encoding="utf-8") as handle:
        assert json.load(handle)["epoch"] == 2
