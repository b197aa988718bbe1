"""ddim_keras.io.loading.load_model and the architecture check it shares with the CLIs."""

import json
import os
import shutil

import numpy as np
import pytest
from conftest import TINY, assert_not_saturated, refuse_opening, write_config

from ddim_keras.core.config import ARCHITECTURE_FIELDS, DiffusionConfig, architecture_differences
from ddim_keras.core.errors import CheckpointError
from ddim_keras.io import loading, run_dir


def best_of(run):
    return os.path.join(run, "checkpoints", "best.weights.h5")


# -- the list of architecture fields ----------------------------------------------------------


def test_architecture_differences_name_only_the_network_fields():
    tiny = DiffusionConfig(**TINY)
    assert architecture_differences(tiny, tiny) == []
    # Training and sampling fields do not change which weights fit.
    assert (
        architecture_differences(
            tiny, tiny.replace(epochs=9, learning_rate=0.1, batch_size=2, schedule="linear")
        )
        == []
    )
    other = tiny.replace(image_size=32, widths=(8, 32), embedding_max_frequency=500.0)
    assert architecture_differences(tiny, other) == [
        "image_size 16 vs 32",
        "widths [8, 16] vs [8, 32]",
        "embedding_max_frequency 1000.0 vs 500.0",
    ]
    # A config's dict (as in config.json) works too.
    assert architecture_differences(tiny.to_dict(), other) == architecture_differences(tiny, other)
    assert set(ARCHITECTURE_FIELDS) <= set(tiny.to_dict())


def test_owner_run_dir(tiny_run, tmp_path):
    assert run_dir.owner_run_dir(best_of(tiny_run)) == os.path.abspath(tiny_run)
    beside = tmp_path / "beside"
    beside.mkdir()
    (beside / "config.json").write_text("{}")
    assert run_dir.owner_run_dir(beside / "x.weights.h5") == str(beside)
    assert run_dir.owner_run_dir(tmp_path / "x.weights.h5") is None


# -- load_model refuses the weights of a run of another architecture ---------------------------


@pytest.mark.parametrize("how", ["config file", "DiffusionConfig", "run + config"])
def test_weights_of_a_16px_run_into_a_32px_config_are_refused(tiny_run, tmp_path, how):
    path = write_config(tmp_path / "tiny32.json", image_size=32)
    kwargs = {
        "config file": dict(checkpoint=best_of(tiny_run), config=path),
        "DiffusionConfig": dict(checkpoint=best_of(tiny_run), config=DiffusionConfig.load(path)),
        "run + config": dict(run=tiny_run, config=path),
    }[how]
    with pytest.raises(CheckpointError) as info:
        loading.load_model(kid_weights=None, **kwargs)
    message = str(info.value)
    assert "\n" not in message  # one paragraph
    for words in (
        "best.weights.h5",
        f"belongs to run {os.path.abspath(tiny_run)}",
        "image_size 16 vs 32",
        "would not fit",
        "the run's own config",
    ):
        assert words in message, message


def test_keras_alone_would_load_them(tiny_run, tmp_path):
    # What the check guards against: no error from Keras, a model that only makes noise.
    from ddim_keras.model.diffusion_model import DiffusionModel

    bare = tmp_path / "bare.weights.h5"  # outside any run directory: nothing to compare with
    shutil.copy(best_of(tiny_run), bare)
    model = loading.load_model(
        checkpoint=str(bare), kid_weights=None, config=DiffusionConfig(**dict(TINY, image_size=32))
    )
    assert isinstance(model, DiffusionModel) and model.image_size == 32


def test_weights_into_the_same_config_give_the_same_images(sampling_run, tmp_path):
    reference = loading.load_model(run=sampling_run, kid_weights=None)
    expected = reference.generate(3, 2, seed=4)
    assert_not_saturated(expected)
    same = write_config(tmp_path / "same.json", epochs=5, learning_rate=0.5)  # same network
    for kwargs in (
        dict(checkpoint=best_of(sampling_run), config=same),
        dict(checkpoint=best_of(sampling_run)),  # the run's own config.json
        dict(run=sampling_run, config=DiffusionConfig.load(same)),
    ):
        model = loading.load_model(kid_weights=None, **kwargs)
        assert model.image_size == TINY["image_size"]
        np.testing.assert_array_equal(model.generate(3, 2, seed=4), expected)


def test_a_config_json_that_is_not_a_run_is_no_reason_to_refuse(tiny_run, tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"tool": "something else"}))
    weights = folder / "model.weights.h5"
    shutil.copy(best_of(tiny_run), weights)
    model = loading.load_model(
        checkpoint=str(weights), config=DiffusionConfig(**TINY), kid_weights=None
    )
    assert model.image_size == TINY["image_size"]
    # Without a config it is needed, and the error says what is wrong with it.
    with pytest.raises(CheckpointError, match="config.json is unusable"):
        loading.load_model(checkpoint=str(weights), kid_weights=None)


def test_mismatch_message_lists_every_architecture_field(tmp_path):
    bare = tmp_path / "garbage.weights.h5"
    bare.write_bytes(b"not HDF5")
    with pytest.raises(CheckpointError) as info:
        loading.load_model(checkpoint=str(bare), config=DiffusionConfig(**TINY), kid_weights=None)
    message = str(info.value)
    for field in ARCHITECTURE_FIELDS:
        assert f"{field} " in message, message


def test_a_checkpoint_that_cannot_be_opened(tiny_run, tmp_path, monkeypatch):
    # os.access says yes to root for any file; the read itself may still be refused
    # (root-squashed NFS, ACLs). Then the error says so instead of blaming the file.
    locked = tmp_path / "locked.weights.h5"
    shutil.copy(best_of(tiny_run), locked)
    refuse_opening(monkeypatch, locked)
    with pytest.raises(CheckpointError, match="not readable") as info:
        loading.load_model(checkpoint=str(locked), config=DiffusionConfig(**TINY), kid_weights=None)
    assert "Permission denied" in str(info.value)
