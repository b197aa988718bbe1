"""The training command end to end on tiny configs, and its refusals."""

import csv
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import write_config
from PIL import Image

from ddim_keras.cli import train
from ddim_keras.cli.runner import run_cli
from ddim_keras.core.config import DiffusionConfig


def read_history(run):
    with open(os.path.join(run, "history.csv"), newline="") as handle:
        return list(csv.DictReader(handle))


def digest(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def test_run_directory_has_everything(tiny_run):
    config = DiffusionConfig.load(os.path.join(tiny_run, "config.json"))
    assert config.image_size == 16 and config.epochs == 2
    for name in (
        "checkpoints/best.weights.h5",
        "checkpoints/last.weights.h5",
        "samples/epoch_0001.png",
        "samples/epoch_0002.png",
        "samples/final.png",
        "history.csv",
        "run.json",
        "state.json",
    ):
        assert os.path.isfile(os.path.join(tiny_run, name)), name
    assert os.listdir(os.path.join(tiny_run, "logs"))
    rows = read_history(tiny_run)
    assert [row["epoch"] for row in rows] == ["0", "1"]
    assert {"n_loss", "i_loss", "val_n_loss", "val_i_loss"} <= set(rows[0])
    # A 3x6 grid of 16-px images enlarged 8 times (tiles of 128 px), with 2-px padding.
    with Image.open(os.path.join(tiny_run, "samples", "final.png")) as grid:
        assert grid.size == (6 * 128 + 7 * 2, 3 * 128 + 4 * 2)
    state = json.load(open(os.path.join(tiny_run, "state.json")))
    assert state["epoch"] == 2 and state["monitor"] == "val_n_loss"


def test_training_lowers_the_noise_loss(tmp_path):
    config = write_config(tmp_path / "c.json", epochs=3, learning_rate=3e-3)
    code = train.main(
        [
            "--dataset",
            "shapes",
            "--config",
            config,
            "--output",
            str(tmp_path / "run"),
            "--steps-per-epoch",
            "15",
            "--verbose",
            "0",
        ]
    )
    assert code == 0
    losses = [float(row["n_loss"]) for row in read_history(tmp_path / "run")]
    # An all-zero prediction of standard normal noise scores E|z| = 0.798.
    assert losses[-1] < losses[0]
    assert losses[-1] < 0.7


def test_rerun_resumes_and_continues_the_epoch_counter(tmp_path):
    config = write_config(tmp_path / "c.json")
    args = [
        "--dataset",
        "shapes",
        "--config",
        config,
        "--output",
        str(tmp_path / "run"),
        "--steps-per-epoch",
        "2",
        "--verbose",
        "0",
    ]
    assert train.main(args + ["--epochs", "1"]) == 0
    last = tmp_path / "run" / "checkpoints" / "last.weights.h5"
    first_digest = digest(last)
    assert train.main(args + ["--epochs", "2"]) == 0
    assert [row["epoch"] for row in read_history(tmp_path / "run")] == ["0", "1"]
    assert digest(last) != first_digest
    assert json.load(open(tmp_path / "run" / "state.json"))["epoch"] == 2


def run_train(argv, capsys):
    code = run_cli(train.main, argv)
    err = capsys.readouterr().err
    return code, err


def test_existing_run_with_other_config_is_refused_and_untouched(tiny_run, tmp_path, capsys):
    before = {
        name: digest(os.path.join(tiny_run, name))
        for name in ("config.json", "checkpoints/best.weights.h5", "history.csv")
    }
    other = write_config(tmp_path / "other.json", image_size=32)
    code, err = run_train(["--dataset", "shapes", "--config", other, "--output", tiny_run], capsys)
    assert code == 2
    assert "different config" in err and "image_size" in err and "--overwrite" in err
    assert "Traceback" not in err
    after = {name: digest(os.path.join(tiny_run, name)) for name in before}
    assert after == before


def test_overwrite_replaces_the_old_run(run_copy, tmp_path, capsys):
    old_history = (run_copy / "history.csv").read_text(encoding="utf-8")
    config = write_config(tmp_path / "other.json", epochs=1)
    code, err = run_train(
        [
            "--dataset",
            "shapes",
            "--config",
            config,
            "--output",
            str(run_copy),
            "--overwrite",
            "--steps-per-epoch",
            "1",
            "--verbose",
            "0",
        ],
        capsys,
    )
    assert code == 0, err
    assert [row["epoch"] for row in read_history(run_copy)] == ["0"]
    assert (run_copy / "history.csv").read_text(encoding="utf-8") != old_history
    assert json.load(open(run_copy / "state.json"))["epoch"] == 1
    assert not (run_copy / "samples" / "epoch_0002.png").exists()  # the old run's second epoch


def test_overwrite_that_fails_before_training_leaves_the_old_run_whole(run_copy, tmp_path, capsys):
    names = (
        "config.json",
        "state.json",
        "history.csv",
        "checkpoints/best.weights.h5",
        "checkpoints/last.weights.h5",
    )
    before = {name: digest(run_copy / name) for name in names}
    empty = tmp_path / "no_images"
    empty.mkdir()
    code, err = run_train(
        [
            "--dataset",
            "folder",
            "--data-dir",
            str(empty),
            "--config",
            str(run_copy / "config.json"),
            "--output",
            str(run_copy),
            "--overwrite",
        ],
        capsys,
    )
    assert code != 0 and "Traceback" not in err
    assert {name: digest(run_copy / name) for name in names} == before


@pytest.mark.parametrize(
    "config_overrides, needle",
    [
        ({"image_size": 15}, "image_size"),
        ({"min_signal_rate": 0.0}, "min_signal_rate"),
        ({"widths": []}, "widths"),
        ({"batch_size": 1, "kid": True}, "batch_size"),
        ({"learning_rat": 0.1}, "learning_rat"),
        ({"image_size": "64"}, "image_size"),
    ],
)
def test_bad_config_files_are_refused(tmp_path, capsys, config_overrides, needle):
    config = write_config(tmp_path / "bad.json", **config_overrides)
    code, err = run_train(
        ["--dataset", "shapes", "--config", config, "--output", str(tmp_path / "run")], capsys
    )
    assert code == 2
    assert needle in err and "Traceback" not in err
    assert not os.path.exists(tmp_path / "run")


@pytest.mark.parametrize(
    "argv, code, needle",
    [
        (["--dataset", "folder"], 2, "--data-dir"),
        (["--dataset", "folder", "--data-dir", "/nonexistent/images"], 2, "/nonexistent/images"),
        (["--dataset", "shapes", "--epochs", "0"], 2, "--epochs"),
        (["--dataset", "shapes", "--config", "/nonexistent/c.json"], 2, "/nonexistent/c.json"),
        (["--dataset", "shapes", "--kid-weights", "/nonexistent/w.h5"], 2, "/nonexistent/w.h5"),
    ],
)
def test_bad_flags(tmp_path, capsys, argv, code, needle):
    got, err = run_train(argv + ["--output", str(tmp_path / "run")], capsys)
    assert got == code
    assert needle in err and "Traceback" not in err


def test_empty_folder_is_an_error_naming_it(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    config = write_config(tmp_path / "c.json")
    code, err = run_train(
        [
            "--dataset",
            "folder",
            "--data-dir",
            str(empty),
            "--config",
            config,
            "--output",
            str(tmp_path / "run"),
        ],
        capsys,
    )
    assert code in (1, 2)
    assert str(empty) in err and "Traceback" not in err


def test_unknown_dataset_exits_2_without_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "ddim_keras.train", "--dataset", "imagenet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "imagenet" in result.stderr and "Traceback" not in result.stderr


def test_existing_run_on_another_dataset_is_refused(tiny_run, tmp_path, capsys):
    config = os.path.join(tiny_run, "config.json")
    code, err = run_train(
        [
            "--dataset",
            "folder",
            "--data-dir",
            str(tmp_path),
            "--config",
            config,
            "--output",
            tiny_run,
        ],
        capsys,
    )
    assert code == 2
    assert "--dataset shapes" in err and "Traceback" not in err


def test_run_records_training_time_and_machine(tiny_run):
    state = json.load(open(os.path.join(tiny_run, "state.json")))
    assert state["train_seconds"] > 0
    info = json.load(open(os.path.join(tiny_run, "run.json")))
    assert "cores" in info["machine"]


class _StopBeforeFit(Exception):
    pass


def _initial_network(monkeypatch, tmp_path, seed, *flags):
    """The network weights train would start fitting from, for ``--seed SEED FLAGS``."""
    from ddim_keras.model.diffusion_model import DiffusionModel

    seen = {}

    def fit(self, *args, **kwargs):
        seen["weights"] = [w.copy() for w in self.network.get_weights()]
        seen["encoder"] = self.kid._holder.value
        raise _StopBeforeFit

    monkeypatch.setattr(DiffusionModel, "fit", fit)
    config = write_config(tmp_path / f"kid{len(flags)}.json", kid=True)
    output = tmp_path / f"run_{seed}_{'_'.join(flags).replace('-', '')}"
    with pytest.raises(_StopBeforeFit):
        train.main(
            ["--dataset", "shapes", "--config", config, "--output", str(output)]
            + ["--verbose", "0", "--seed", str(seed), *flags]
        )
    return seen


def test_the_initial_network_depends_on_the_seed_alone(monkeypatch, tmp_path):
    """Issue #20: building the KID encoder (random InceptionV3 weights, or the shapes
    classifier) used to draw before the network did, so --no-kid changed the start."""
    without = _initial_network(monkeypatch, tmp_path, 5, "--no-kid")
    inception = _initial_network(monkeypatch, tmp_path, 5, "--kid-weights", "none")
    shapes = _initial_network(monkeypatch, tmp_path, 5, "--kid-encoder", "shapes")
    assert without["encoder"] is None
    assert inception["encoder"].name == "inception_encoder"
    assert shapes["encoder"] is not None and shapes["encoder"].name != "inception_encoder"
    for other in (inception, shapes):
        assert len(other["weights"]) == len(without["weights"])
        for ours, theirs in zip(other["weights"], without["weights"]):
            np.testing.assert_array_equal(ours, theirs)
    # The seed does decide it.
    reseeded = _initial_network(monkeypatch, tmp_path, 6, "--no-kid")
    assert any(np.any(a != b) for a, b in zip(reseeded["weights"], without["weights"]))


def test_train_says_where_it_trains(monkeypatch, tmp_path, capsys):
    """One line before training names the devices: on this machine the CPU."""
    from ddim_keras.core.devices import cpu_description

    _initial_network(monkeypatch, tmp_path, 5, "--no-kid")
    err = capsys.readouterr().err
    assert f"Training on the CPU ({cpu_description()}) with TensorFlow." in err


def test_placement_line_of_several_replicas(monkeypatch):
    from ddim_keras.core import devices
    from ddim_keras.model.distribute import describe_placement

    class TwoReplicas:
        num_replicas_in_sync = 2

    monkeypatch.setattr(devices, "gpu_names", lambda: ["NVIDIA H100", "NVIDIA H100"])
    line = describe_placement(TwoReplicas(), 64)
    assert line == (
        "Training on 2 replicas of NVIDIA H100 with TensorFlow (TwoReplicas); global batch 64, "
        "32 per replica."
    )


def test_a_run_resumes_with_another_weighting_but_not_another_prediction(tmp_path, capsys):
    config = write_config(tmp_path / "c.json")
    run = tmp_path / "run"
    base = ["--dataset", "shapes", "--config", config, "--output", str(run)]
    base += ["--steps-per-epoch", "2", "--verbose", "0", "--prediction", "velocity"]
    assert run_train(base + ["--epochs", "1", "--loss-weighting", "min_snr"], capsys)[0] == 0
    assert json.load(open(run / "config.json"))["loss_weighting"] == "min_snr"
    code, err = run_train(base + ["--epochs", "2", "--augment", "flip", "--ema-warmup"], capsys)
    assert code == 0, err
    recorded = json.load(open(run / "config.json"))
    assert (recorded["augment"], recorded["ema_warmup"], recorded["prediction"]) == (
        "flip",
        True,
        "velocity",
    )
    assert recorded["loss_weighting"] == "none"  # the config file's, as given this time
    assert json.load(open(run / "state.json"))["epoch"] == 2
    last = digest(run / "checkpoints" / "last.weights.h5")
    argv = ["--dataset", "shapes", "--config", config, "--output", str(run), "--epochs", "3"]
    code, err = run_train(argv + ["--prediction", "noise", "--verbose", "0"], capsys)
    assert code == 2 and "prediction: 'velocity' -> 'noise'" in err and "Traceback" not in err
    assert digest(run / "checkpoints" / "last.weights.h5") == last  # nothing lost
