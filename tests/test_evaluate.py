"""``python -m ddim_keras.evaluate``: KID of the tiny run against validation images.

All runs use ``--kid-weights none`` (a randomly initialised InceptionV3, no
download), which makes the values meaningless but exercises the whole path.
"""

import json
import math
import os
import shutil

import numpy as np
import pytest
from conftest import assert_one_error, run_command, write_config
from PIL import Image

from ddim_keras.cli import evaluate

FAST = ["--kid-weights", "none", "--steps", "1", "--no-progress"]


def run_evaluate(capsys, *argv):
    return run_command(capsys, evaluate.main, *argv)


def test_kid_of_the_tiny_run(run_copy, capsys):
    code, out, err = run_evaluate(
        capsys,
        "--run",
        run_copy,
        "--num-images",
        10,
        "--batch-size",
        4,
        "--kid-weights",
        "none",
        "--steps",
        2,
        "--seed",
        3,
    )
    assert code == 0, err
    assert "Traceback" not in err
    # The dataset comes from the run's run.json; the result lands beside the run.
    path = run_copy / "kid_shapes_2steps_eta0.json"
    lines = out.strip().splitlines()
    assert lines[-1] == str(path)
    assert lines[0].startswith("KID ")
    assert "KID" in err  # the progress bar
    assert "random weights" in err
    assert "8 images: 2 whole batches of 4" in err

    result = json.loads(path.read_text())
    assert result["num_images"] == 8
    assert result["num_images_requested"] == 10
    assert result["batch_size"] == 4 and result["num_batches"] == 2
    assert len(result["kid_per_batch"]) == 2
    assert math.isfinite(result["kid"])
    assert result["kid"] == pytest.approx(np.mean(result["kid_per_batch"]))
    assert result["steps"] == 2 and result["eta"] == 0.0 and result["seed"] == 3
    assert result["kid_weights"] == "none"
    assert result["dataset"] == "shapes" and result["split"] == "validation"
    assert result["run"] == str(run_copy)
    assert result["checkpoint"].endswith(os.path.join("checkpoints", "best.weights.h5"))

    # An existing result is kept unless --overwrite.
    before = path.read_bytes()
    code, _, err = run_evaluate(
        capsys, "--run", run_copy, "--num-images", 10, "--batch-size", 4, *FAST[:2], "--steps", 2
    )
    assert code == 2 and "already exists" in err and "--overwrite" in err
    assert path.read_bytes() == before


def test_small_validation_set_is_used_whole(tiny_run, tmp_path, capsys):
    # 10 images in a folder: 8 for training, 2 for validation.
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(10):
        pixels = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index}.png")
    output = tmp_path / "kid.json"
    code, out, err = run_evaluate(
        capsys,
        "--run",
        tiny_run,
        "--dataset",
        "folder",
        "--data-dir",
        folder,
        "--num-images",
        8,
        *FAST,
        "--eta",
        1,
        "--output",
        output,
    )
    assert code == 0, err
    assert "has only 2 images" in " ".join(err.split())
    result = json.loads(output.read_text())
    assert result["num_images"] == 2 and result["num_batches"] == 1
    assert result["batch_size"] == 2
    assert result["dataset"] == "folder" and result["data_dir"] == str(folder)
    assert result["eta"] == 1.0 and result["steps"] == 1


@pytest.fixture
def paths(tiny_run, tmp_path):
    existing = tmp_path / "existing.json"
    existing.write_text("{}")
    return {
        "run": tiny_run,
        "missing": str(tmp_path / "missing"),
        "existing": str(existing),
        "out": str(tmp_path / "out.json"),
        "missing_dir_out": str(tmp_path / "no" / "where" / "out.json"),
        "config32": write_config(tmp_path / "c32.json", image_size=32),
        "bare": str(tmp_path / "bare.weights.h5"),
    }


BAD_INPUT = [
    ("steps 0", ["--run", "{run}", "--steps", "0"], 2, ["--steps"]),
    ("negative eta", ["--run", "{run}", "--eta", "-1"], 2, ["--eta"]),
    ("eta above 1", ["--run", "{run}", "--eta", "2"], 2, ["--eta", "between 0", "and 1"]),
    (
        "eta with an ODE solver",
        ["--run", "{run}", "--sampler", "dpmpp_3m", "--eta", "0.5"],
        2,
        ["--eta", "ddim"],
    ),
    ("one image", ["--run", "{run}", "--num-images", "1"], 2, ["--num-images", "at least 2"]),
    ("batch of one", ["--run", "{run}", "--batch-size", "1"], 2, ["--batch-size", "at least 2"]),
    ("unknown dataset", ["--run", "{run}", "--dataset", "mnist"], 2, ["--dataset"]),
    ("missing run", ["--run", "{missing}"], 1, ["does not exist"]),
    ("no model", [], 2, ["--run"]),
    ("config mismatch", ["--run", "{run}", "--config", "{config32}"], 1, ["image_size 16 vs 32"]),
    ("no dataset known", ["--checkpoint", "{bare}", "--config", "{config32}"], 2, ["--dataset"]),
    ("missing KID weights", ["--run", "{run}", "--kid-weights", "{missing}"], 2, ["KID weights"]),
    (
        "output in a missing folder",
        ["--run", "{run}", "--output", "{missing_dir_out}"],
        2,
        ["does not exist"],
    ),
    ("existing output", ["--run", "{run}", "--output", "{existing}"], 2, ["already exists"]),
    ("folder without --data-dir", ["--run", "{run}", "--dataset", "folder"], 2, ["--data-dir"]),
]


@pytest.mark.parametrize("name,argv,code,words", BAD_INPUT, ids=[case[0] for case in BAD_INPUT])
def test_bad_input(paths, tiny_run, capsys, name, argv, code, words):
    shutil.copy(os.path.join(tiny_run, "checkpoints", "best.weights.h5"), paths["bare"])
    argv = [arg.format(**paths) for arg in argv]
    for flag, value in (
        ("--kid-weights", "none"),
        ("--steps", "1"),
        ("--num-images", "4"),
        ("--output", paths["out"]),
    ):
        if flag not in argv:
            argv += [flag, value]
    exit_code, _, err = run_evaluate(capsys, *argv)
    assert exit_code == code, err
    assert_one_error(err, words)
    assert not os.path.exists(paths["out"])
    assert open(paths["existing"]).read() == "{}"


def test_another_sampler_is_recorded_under_its_own_name(run_copy, capsys, monkeypatch):
    from ddim_keras.metrics import evaluation

    seen = []
    real_compute_kid = evaluation.compute_kid

    def recording_compute_kid(*args, **kwargs):
        seen.append((kwargs["sampler"], kwargs["spacing"]))
        return real_compute_kid(*args, **kwargs)

    monkeypatch.setattr(evaluation, "compute_kid", recording_compute_kid)
    code, out, err = run_evaluate(
        capsys,
        "--run",
        run_copy,
        "--num-images",
        8,
        "--batch-size",
        4,
        "--kid-weights",
        "none",
        "--steps",
        3,
        "--sampler",
        "heun",
        "--spacing",
        "karras",
        "--no-progress",
    )
    assert code == 0, err
    assert seen == [("heun", "karras")]
    path = run_copy / "kid_shapes_3steps_eta0_heun_karras.json"
    assert out.strip().splitlines()[-1] == str(path)
    assert "3 steps of heun/karras" in out
    result = json.loads(path.read_text())
    assert result["sampler"] == "heun" and result["spacing"] == "karras"
    assert result["network_calls"] == 5 and math.isfinite(result["kid"])
