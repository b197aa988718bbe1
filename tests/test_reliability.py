"""What a run survives (issue #5): SIGKILL mid-epoch, a crash while a checkpoint is
being written, a diverging loss, and images of awkward sizes.

The resume checks compare the model's complete training state (network, EMA
network, normalizer statistics, every optimizer variable including the step
counter and the Adam moments) at the start of the resumed ``fit`` with what the
interrupted run left behind.
"""

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import TINY, write_config
from PIL import Image

from ddim_keras.cli import train
from ddim_keras.cli.runner import run_cli
from ddim_keras.core.config import DiffusionConfig

#: Batches per epoch in the SIGKILL test: 4 epochs x 125 batches of 4 use the
#: 2000 `shapes` training images once, and an epoch lasts a few seconds.
KILL_STEPS = 125


# -- helpers ---------------------------------------------------------------------------


def read_state(run):
    with open(os.path.join(run, "state.json"), encoding="utf-8") as handle:
        return json.load(handle)


def read_history(run):
    with open(os.path.join(run, "history.csv"), newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def file_bytes(path):
    with open(path, "rb") as handle:
        return handle.read()


def to_numpy(values):
    from keras import ops

    return [np.array(ops.convert_to_numpy(value)) for value in values]


def snapshot(model):
    """Everything a resumed run must get back, as NumPy arrays."""
    optimizer = model.optimizer
    return {
        "network": to_numpy(model.network.weights),
        "ema_network": to_numpy(model.ema_network.weights),
        # adapt_mean, adapt_variance, count, and the tensors the layer uses.
        "normalizer": to_numpy(model.normalizer.weights)
        + to_numpy([model.normalizer.mean, model.normalizer.variance]),
        # iteration, learning_rate, then a momentum and a velocity per weight.
        "optimizer": to_numpy(optimizer.variables) if optimizer and optimizer.built else [],
        "iterations": int(optimizer.iterations) if optimizer and optimizer.built else 0,
    }


def checkpoint_snapshot(path, config):
    """Load a run's checkpoint into a model built the way train builds one."""
    from ddim_keras.io.loading import load_weights
    from ddim_keras.model.diffusion_model import DiffusionModel

    model = DiffusionModel(config, kid_weights=None)
    model.compile()
    model.optimizer.build(model.network.trainable_weights)
    load_weights(model, path)
    return snapshot(model)


def assert_same_state(got, expected):
    for part in ("network", "ema_network", "normalizer", "optimizer"):
        assert len(got[part]) == len(expected[part]) > 0, part
        for index, (a, b) in enumerate(zip(got[part], expected[part])):
            np.testing.assert_array_equal(a, b, err_msg=f"{part} variable {index}")
    assert got["iterations"] == expected["iterations"]


class FitSpy:
    """Wraps DiffusionModel.fit to record the model's state when fit starts and ends."""

    def __init__(self, monkeypatch):
        from ddim_keras.model.diffusion_model import DiffusionModel

        self.calls = []
        real_fit = DiffusionModel.fit
        calls = self.calls

        def fit(model, *args, **kwargs):
            call = {
                "initial_epoch": kwargs.get("initial_epoch", 0),
                "best": [
                    c.best
                    for c in kwargs.get("callbacks", [])
                    if getattr(c, "monitor", None) and hasattr(c, "best")
                ],
                "before": snapshot(model),
            }
            calls.append(call)
            history = real_fit(model, *args, **kwargs)
            call["after"] = snapshot(model)
            return history

        monkeypatch.setattr(DiffusionModel, "fit", fit)


def train_argv(config, run, steps, *extra):
    return [
        "--dataset",
        "shapes",
        "--config",
        str(config),
        "--output",
        str(run),
        "--steps-per-epoch",
        str(steps),
        "--verbose",
        "0",
        *extra,
    ]


# -- resume ----------------------------------------------------------------------------


def test_resume_restores_the_whole_training_state(tmp_path, monkeypatch, capsys):
    config = write_config(tmp_path / "tiny.json")
    run = tmp_path / "run"
    spy = FitSpy(monkeypatch)
    assert run_cli(train.main, train_argv(config, run, 3, "--epochs", "1")) == 0
    state = read_state(run)
    assert state["epoch"] == 1 and math.isfinite(state["best"])
    capsys.readouterr()

    assert run_cli(train.main, train_argv(config, run, 3, "--epochs", "2")) == 0
    err = capsys.readouterr().err
    assert "Resuming" in err and "Adapting the normalizer" not in err
    first, second = spy.calls
    # The model at the start of the resumed fit is the model at the end of the first.
    assert_same_state(second["before"], first["after"])
    before = second["before"]
    assert before["iterations"] == 3
    assert any(np.any(v) for v in before["optimizer"][2:])  # Adam moments, not fresh zeros
    assert not all(np.array_equal(a, b) for a, b in zip(before["network"], before["ema_network"]))
    assert second["initial_epoch"] == 1
    assert second["best"] == [state["best"]]  # best-so-far carried over
    assert second["after"]["iterations"] == 6  # the step counter went on
    assert [row["epoch"] for row in read_history(run)] == ["0", "1"]
    assert read_state(run)["epoch"] == 2


def test_sigkill_mid_epoch_then_rerun_resumes(tmp_path, monkeypatch, capsys):
    config_path = write_config(tmp_path / "tiny.json", epochs=4)
    config = DiffusionConfig.load(config_path)
    run = tmp_path / "run"
    argv = train_argv(config_path, run, KILL_STEPS, "--epochs", "4")
    with open(tmp_path / "killed.log", "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "ddim_keras.train", *argv], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 120
            while True:
                assert process.poll() is None, (
                    "training ended before it could be killed:\n"
                    + (tmp_path / "killed.log").read_text()
                )
                assert time.monotonic() < deadline, "no epoch completed within 120 s"
                if os.path.isfile(run / "state.json") and read_state(run)["epoch"] >= 1:
                    break
                time.sleep(0.05)
            time.sleep(0.3)  # into the next epoch's batches
        finally:
            process.kill()
            process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL

    killed = read_state(run)
    assert 1 <= killed["epoch"] < 4, "the kill did not land mid-run"
    last = run / "checkpoints" / "last.weights.h5"
    saved = checkpoint_snapshot(str(last), config)
    # The checkpoint is exactly the completed epochs' training: nothing of the
    # epoch in progress, nothing lost before it.
    assert saved["iterations"] == killed["epoch"] * KILL_STEPS

    spy = FitSpy(monkeypatch)
    capsys.readouterr()
    assert run_cli(train.main, argv) == 0  # the same command again
    assert f"Resuming {run} after epoch {killed['epoch']}" in capsys.readouterr().err
    (call,) = spy.calls
    assert call["initial_epoch"] == killed["epoch"]
    assert call["best"] == [killed["best"]]
    assert_same_state(call["before"], saved)
    assert call["after"]["iterations"] == 4 * KILL_STEPS
    assert [row["epoch"] for row in read_history(run)] == ["0", "1", "2", "3"]
    assert read_state(run)["epoch"] == 4


# -- checkpoints are never half-written --------------------------------------------------


def test_a_crash_while_writing_a_checkpoint_keeps_the_previous_one(
    tmp_path, monkeypatch, tiny_config
):
    import keras

    from ddim_keras import callbacks
    from ddim_keras.model.diffusion_model import DiffusionModel

    model = DiffusionModel(tiny_config, kid_weights=None)
    path = str(tmp_path / "last.weights.h5")
    callbacks.save_weights_atomic(model, path)
    good_bytes = file_bytes(path)
    good_weights = model.get_weights()
    model.network.set_weights([w + 1.0 for w in model.network.get_weights()])

    def crash(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as handle:  # half a file, then the "power cut"
            handle.write(good_bytes[: len(good_bytes) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(keras.Model, "save_weights", crash)
    with pytest.raises(OSError, match="No space left"):
        callbacks.save_weights_atomic(model, path)
    monkeypatch.undo()

    assert file_bytes(path) == good_bytes
    fresh = DiffusionModel(tiny_config, kid_weights=None)
    fresh.load_weights(path)
    for got, expected in zip(fresh.get_weights(), good_weights):
        np.testing.assert_array_equal(got, expected)


WRITER = """
import sys
import numpy as np
import keras
from ddim_keras.callbacks import save_weights_atomic

model = keras.Sequential([keras.Input((1024,)), keras.layers.Dense(2048)])  # 8 MB
for value in range(1, 100):
    model.set_weights([np.full(w.shape, value, np.float32) for w in model.get_weights()])
    print("writing", value, flush=True)
    save_weights_atomic(model, sys.argv[1])
"""


def test_sigkill_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path):
    import keras

    path = tmp_path / "model.weights.h5"
    tmp = tmp_path / "model.tmp.weights.h5"
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        for line in process.stdout:
            if line.split() == ["writing", "3"]:
                break
        deadline = time.monotonic() + 30
        while not tmp.exists() and time.monotonic() < deadline:
            pass  # kill as soon as the third write has begun
    finally:
        process.kill()
        process.wait(timeout=30)
        process.stdout.close()
    assert tmp.exists(), "the kill did not land during a write"

    model = keras.Sequential([keras.Input((1024,)), keras.layers.Dense(2048)])
    model.load_weights(str(path))
    values = {float(v) for w in model.get_weights() for v in np.unique(w)}
    assert values in ({2.0}, {3.0})  # the second write, or the third had just completed


# -- divergence ------------------------------------------------------------------------------


def test_divergence_stops_training_and_keeps_the_checkpoints(tmp_path, capsys):
    good = write_config(tmp_path / "good.json")
    run = tmp_path / "run"
    assert run_cli(train.main, train_argv(good, run, 3, "--epochs", "1")) == 0
    checkpoints = run / "checkpoints"
    before = {
        name: file_bytes(checkpoints / name) for name in ("best.weights.h5", "last.weights.h5")
    }
    state = read_state(run)
    capsys.readouterr()

    # Resumed with a learning rate that makes the weights explode.
    bad = write_config(tmp_path / "bad.json", learning_rate=1e30)
    code = run_cli(train.main, train_argv(bad, run, 3, "--epochs", "2"))
    err = " ".join(capsys.readouterr().err.split())
    assert code == 1
    assert "learning_rate 0.001 -> 1e+30" in err  # the resume took the new rate
    assert "training diverged" in err and "in epoch 2" in err
    assert "from epoch 1, the last good one, and were not replaced" in err
    assert "Lower learning_rate" in err and "Traceback" not in err
    assert {name: file_bytes(checkpoints / name) for name in before} == before
    assert read_state(run) == state

    # The way out the message gives: a lower rate, the same command.
    assert run_cli(train.main, train_argv(good, run, 3, "--epochs", "2")) == 0
    rows = read_history(run)
    assert [row["epoch"] for row in rows] == ["0", "1"]
    assert all(math.isfinite(float(row["n_loss"])) for row in rows)
    assert read_state(run)["epoch"] == 2


# -- awkward images --------------------------------------------------------------------------


def test_folder_run_with_tiny_and_huge_images(tmp_path, recwarn):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 3000, dtype=np.float32)
    for index in range(5):
        # 3000 x 2000 photos (a smooth JPEG stays small on disk) ...
        huge = np.stack(
            [
                np.broadcast_to(ramp, (2000, 3000)),
                np.broadcast_to(ramp[::-1], (2000, 3000)),
                np.full((2000, 3000), 50.0 * index),
            ],
            axis=-1,
        ).astype(np.uint8)
        Image.fromarray(huge).save(folder / f"huge_{index}.jpg", quality=80)
        # ... and 4 x 4 icons, which are upscaled.
        Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).save(
            folder / f"tiny_{index}.png"
        )
    config = write_config(tmp_path / "c.json", batch_size=2)
    run = tmp_path / "run"
    code = train.main(
        [
            "--dataset",
            "folder",
            "--data-dir",
            str(folder),
            "--config",
            config,
            "--output",
            str(run),
            "--steps-per-epoch",
            "3",
            "--verbose",
            "0",
        ]
    )
    assert code == 0
    assert not [w for w in recwarn if "skipping" in str(w.message)]
    rows = read_history(run)
    assert len(rows) == 1 and math.isfinite(float(rows[0]["val_n_loss"]))

    from ddim_keras import data

    images = np.stack(
        list(
            data.load_images(
                "folder", DiffusionConfig(**TINY), "train", data_dir=str(folder)
            ).as_numpy_iterator()
        )
    )
    assert images.shape == (8, 16, 16, 3)
    assert np.isfinite(images).all() and images.min() >= 0.0 and images.max() <= 1.0
