"""``python -m ddim_keras.sweep`` on the tiny run, with a random-weight KID encoder."""

import csv
import math
import os

import numpy as np
import pytest
from conftest import assert_one_error, run_command

from ddim_keras.cli import sweep
from ddim_keras.io import sweep_results
from ddim_keras.metrics import evaluation

FAST = ["--kid-weights", "none", "--num-images", "8", "--batch-size", "4"]


def run_sweep(capsys, *argv):
    return run_command(capsys, sweep.main, *argv)


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_sweep_writes_csv_and_plot_and_reuses_the_cache(run_copy, capsys, monkeypatch):
    calls = []
    real_compute_kid = evaluation.compute_kid

    def counting_compute_kid(*args, **kwargs):
        calls.append(args[4:6])  # (steps, eta)
        return real_compute_kid(*args, **kwargs)

    monkeypatch.setattr(evaluation, "compute_kid", counting_compute_kid)
    code, out, err = run_sweep(capsys, "--run", run_copy, "--steps", "1,2", "--etas", "0,1", *FAST)
    assert code == 0, err
    assert "Traceback" not in err
    csv_path = run_copy / "sweep" / "sweep.csv"
    assert out.strip().splitlines()[-1] == str(csv_path)
    assert (run_copy / "sweep" / "kid_vs_steps.png").stat().st_size > 1000
    assert sorted(calls) == [(1, 0.0), (1, 1.0), (2, 0.0), (2, 1.0)]

    rows = read_csv(csv_path)
    assert len(rows) == 5  # the four cells and the floor (real images)
    for column in (
        "run",
        "dataset",
        "config",
        "loss",
        "schedule",
        "steps",
        "eta",
        "sampler",
        "kid",
        "kid_std",
        "num_images",
        "kid_weights",
        "seconds",
        "machine",
    ):
        assert column in rows[0]
    assert {(r["steps"], r["sampler"]) for r in rows} == {
        ("1", "DDIM"),
        ("1", "DDPM"),
        ("2", "DDIM"),
        ("2", "DDPM"),
        ("0", evaluation.FLOOR_LABEL),
    }
    for row in rows:
        assert row["dataset"] == "shapes" and row["kid_weights"] == "none"
        assert row["num_images"] == "8" and row["loss"] == "mae"
        assert row["schedule"] == "cosine" and row["machine"]
        assert math.isfinite(float(row["kid"])), row
        assert math.isfinite(float(row["kid_std"])) and float(row["kid_std"]) >= 0, row
        assert math.isfinite(float(row["seconds"])) and float(row["seconds"]) >= 0, row

    # A re-run computes nothing and leaves the measurements as they were.
    calls.clear()
    code, _, err = run_sweep(capsys, "--run", run_copy, "--steps", "1,2", "--etas", "0,1", *FAST)
    assert code == 0, err
    assert calls == []
    assert "5 of 5 cells cached" in err
    assert read_csv(csv_path) == rows

    # A new step count only measures the new cells; other seeds are new cells too.
    code, _, err = run_sweep(capsys, "--run", run_copy, "--steps", "1,3", "--etas", "0", *FAST)
    assert code == 0, err
    assert calls == [(3, 0.0)]
    assert len(read_csv(csv_path)) == 6

    # A changed checkpoint invalidates the cache.
    calls.clear()
    checkpoint = run_copy / "checkpoints" / "best.weights.h5"
    stat = checkpoint.stat()
    os.utime(checkpoint, (stat.st_atime, stat.st_mtime + 10))
    code, _, err = run_sweep(capsys, "--run", run_copy, "--steps", "1", "--etas", "0", *FAST)
    assert code == 0, err
    assert calls == [(1, 0.0)]


BAD_INPUT = [
    ("steps with 0", ["--steps", "0,1"], 2, ["--steps"]),
    ("steps not numbers", ["--steps", "a,b"], 2, ["--steps"]),
    ("negative eta", ["--etas", "0,-1"], 2, ["--etas"]),
    ("eta above 1", ["--etas", "0,1.2"], 2, ["--etas", "between 0", "and 1", "1.2"]),
    ("unknown sampler", ["--samplers", "ddim,euler"], 2, ["--samplers", "euler"]),
    ("unknown spacing", ["--samplers", "dpmpp_2m/cosine"], 2, ["--samplers", "cosine"]),
    ("one image", ["--num-images", "1"], 2, ["--num-images"]),
    ("batch of one", ["--batch-size", "1"], 2, ["--batch-size"]),
    ("missing run", ["--run", "{missing}"], 1, ["does not exist"]),
    ("no run", None, 2, ["--run"]),
]


@pytest.mark.parametrize("name,argv,code,words", BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input(tiny_run, tmp_path, capsys, name, argv, code, words):
    if argv is None:
        argv = FAST
    else:
        argv = [a.format(missing=tmp_path / "missing") for a in argv]
        if "--run" not in argv:
            argv = ["--run", tiny_run] + argv
        for flag, value in zip(FAST[::2], FAST[1::2]):
            if flag not in argv:
                argv += [flag, value]
    exit_code, _, err = run_sweep(capsys, *argv)
    assert exit_code == code, err
    assert_one_error(err, words)
    assert not os.path.exists(os.path.join(tiny_run, "sweep"))


def test_samplers_are_cells_of_their_own_plotted_by_network_calls(run_copy, capsys, monkeypatch):
    seen = []
    real_compute_kid = evaluation.compute_kid

    def recording_compute_kid(*args, **kwargs):
        seen.append((args[4], args[5], kwargs["sampler"], kwargs["spacing"]))
        return real_compute_kid(*args, **kwargs)

    monkeypatch.setattr(evaluation, "compute_kid", recording_compute_kid)
    argv = [
        "--run",
        run_copy,
        "--steps",
        "1,3",
        "--etas",
        "0,1",
        "--samplers",
        "ddim,dpmpp_2m/logsnr,heun/karras",
        *FAST,
    ]
    code, _, err = run_sweep(capsys, *argv)
    assert code == 0, err
    # ddim with every eta; the ODE solvers only with eta 0.
    assert sorted(seen) == sorted(
        [
            (1, 0.0, "ddim", "time"),
            (3, 0.0, "ddim", "time"),
            (1, 1.0, "ddim", "time"),
            (3, 1.0, "ddim", "time"),
            (1, 0.0, "dpmpp_2m", "logsnr"),
            (3, 0.0, "dpmpp_2m", "logsnr"),
            (1, 0.0, "heun", "karras"),
            (3, 0.0, "heun", "karras"),
        ]
    )
    rows = read_csv(run_copy / "sweep" / "sweep.csv")
    calls = {
        (r["sampler"], r["steps"]): r["network_calls"]
        for r in rows
        if r["sampler"] != evaluation.FLOOR_LABEL
    }
    assert calls == {
        ("DDIM", "1"): "1",
        ("DDIM", "3"): "3",
        ("DDPM", "1"): "1",
        ("DDPM", "3"): "3",
        ("dpmpp_2m/logsnr", "1"): "1",
        ("dpmpp_2m/logsnr", "3"): "3",
        ("heun/karras", "1"): "1",
        ("heun/karras", "3"): "5",
    }
    assert all(math.isfinite(float(r["kid"])) for r in rows)
    # Cached per sampler and spacing: a second run measures nothing, another spacing does.
    seen.clear()
    code, _, err = run_sweep(capsys, *argv)
    assert code == 0 and seen == []
    code, _, err = run_sweep(
        capsys,
        "--run",
        run_copy,
        "--steps",
        "1",
        "--etas",
        "0",
        "--samplers",
        "dpmpp_2m/karras",
        *FAST,
    )
    assert code == 0 and seen == [(1, 0.0, "dpmpp_2m", "karras")]


def test_offline_kid_on_shapes_ranks_real_images_first(run_copy, capsys):
    """With the shapes classifier's features: the floor row (training against validation
    images) scores lower KID than the tiny run's samples and is recognised more often."""
    code, _, err = run_sweep(
        capsys,
        "--run",
        run_copy,
        "--steps",
        "2",
        "--etas",
        "0",
        "--kid-encoder",
        "shapes",
        "--num-images",
        "16",
        "--batch-size",
        "8",
    )
    assert code == 0, err
    rows = {r["sampler"]: r for r in read_csv(run_copy / "sweep" / "sweep.csv")}
    floor, samples = rows[evaluation.FLOOR_LABEL], rows["DDIM"]
    assert samples["kid_encoder"] == floor["kid_encoder"] == "shapes"
    assert float(floor["kid"]) < float(samples["kid"])
    assert float(floor["recognised"]) > float(samples["recognised"])


def _key_row(**changes):
    row = {
        "dataset": "folder",
        "data_dir": "/data/cats",
        "steps": "2",
        "eta": "0",
        "num_images_requested": "8",
        "batch_size": "4",
        "seed": "0",
        "kid_weights": "none",
        "checkpoint": "checkpoints/best.weights.h5",
        "checkpoint_size": "1000",
        "checkpoint_mtime": "12.500000",
        "kid_encoder": "inception",
        "background": "white",
        "solver": "ddim",
        "spacing": "time",
    }
    row.update(changes)
    return {column: value for column, value in row.items() if value is not None}


def test_the_cache_key_names_the_data():
    key = sweep_results.cache_key(_key_row())
    assert sweep_results.cache_key(_key_row()) == key
    for changes in (
        {"data_dir": "/data/dogs"},
        {"dataset": "flowers"},
        {"background": "black"},
    ):
        assert sweep_results.cache_key(_key_row(**changes)) != key, changes
    # A row written before data_dir was recorded names no folder: it matches no folder's
    # cell, whichever folder that is...
    older = _key_row(data_dir=None)
    assert "data_dir" not in older
    assert sweep_results.cache_key(older) != key
    # ...while a shapes row (no folder to read) is still the same cell.
    shapes = dict(dataset="shapes", data_dir=None, background=None, kid_encoder=None)
    assert sweep_results.cache_key(_key_row(**shapes)) == sweep_results.cache_key(
        _key_row(dataset="shapes", data_dir="")
    )


def _image_folder(path, seed, count=40):
    from PIL import Image

    rng = np.random.default_rng(seed)
    path.mkdir()
    for index in range(count):
        pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path / f"{index:02d}.png")
    return path


def test_cells_measured_on_one_folder_are_not_reused_for_another(
    run_copy, tmp_path, capsys, monkeypatch
):
    calls = []
    real_compute_kid = evaluation.compute_kid

    def counting_compute_kid(*args, **kwargs):
        calls.append(args[4])
        return real_compute_kid(*args, **kwargs)

    monkeypatch.setattr(evaluation, "compute_kid", counting_compute_kid)
    cats, dogs = _image_folder(tmp_path / "cats", 1), _image_folder(tmp_path / "dogs", 2)

    def sweep_on(folder):
        calls.clear()
        argv = ["--run", run_copy, "--steps", "1", "--etas", "0", "--dataset", "folder"]
        code, _, err = run_sweep(capsys, *argv, "--data-dir", folder, *FAST)
        assert code == 0, err
        return list(calls)

    csv_path = run_copy / "sweep" / "sweep.csv"
    assert sweep_on(cats) == [1]
    assert sweep_on(dogs) == [1]  # another folder: measured again
    assert sweep_on(cats) == []  # each folder's cells are kept
    rows = read_csv(csv_path)
    assert sorted({row["data_dir"] for row in rows}) == [str(cats), str(dogs)]
    assert all(row["dataset"] == "folder" for row in rows)

    # A CSV of an older release has no data_dir column: its folder rows match no folder.
    columns = [column for column in sweep_results.COLUMNS if column != "data_dir"]
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(row for row in rows if row["data_dir"] == str(cats))
    assert sweep_on(dogs) == [1]
    assert sweep_on(cats) == [1]
    kept = read_csv(csv_path)
    assert len(kept) == 6  # the older rows stay, beside the new ones
    assert sorted(row["data_dir"] for row in kept).count("") == 2
