"""``python -m ddim_keras.report`` on synthetic run directories (no training needed)."""

import csv
import glob
import json
import os

import pytest

from ddim_keras.cli import report
from ddim_keras.cli.runner import run_cli
from ddim_keras.core.config import DiffusionConfig, preset
from ddim_keras.io import experiments as report_tables
from ddim_keras.io.sweep_results import COLUMNS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_run(root, name, dataset, config, sweep_rows=(), kid_json=None, final=True):
    path = root / name
    (path / "samples").mkdir(parents=True)
    config.save(str(path / "config.json"))
    (path / "run.json").write_text(
        json.dumps({"dataset": dataset, "data_dir": None, "kid_weights": "imagenet", "seed": 0})
    )
    (path / "state.json").write_text(json.dumps({"epoch": config.epochs, "best": 0.5}))
    (path / "history.csv").write_text("epoch,n_loss\n0,0.5\n")
    config_time = os.path.getmtime(path / "config.json")
    os.utime(path / "history.csv", (config_time + 600, config_time + 600))  # 10 min later
    if final:
        (path / "samples" / "final.png").write_bytes(b"\x89PNG fake")
    if sweep_rows:
        (path / "sweep").mkdir()
        with open(path / "sweep" / "sweep.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
            writer.writeheader()
            for row in sweep_rows:
                writer.writerow(row)
        (path / "sweep" / "kid_vs_steps.png").write_bytes(b"\x89PNG fake plot")
    if kid_json is not None:
        (path / "kid_flowers_5steps_eta0.json").write_text(json.dumps(kid_json))
    return path


def sweep_row(name, dataset, steps, eta, kid, weights, machine="Test CPU (2 cores); no GPU"):
    return {
        "run": name,
        "dataset": dataset,
        "config": name,
        "loss": "mae",
        "schedule": "cosine",
        "steps": steps,
        "eta": eta,
        "sampler": "DDIM" if eta == 0 else "DDPM",
        "kid": kid,
        "kid_std": 0.01,
        "num_images": 200,
        "kid_weights": weights,
        "seconds": 1.5,
        "machine": machine,
        "batch_size": 50,
        "seed": 0,
        "num_images_requested": 200,
        "checkpoint": "checkpoints/best.weights.h5",
        "checkpoint_size": 1,
        "checkpoint_mtime": 1.0,
    }


@pytest.fixture
def results(tmp_path):
    experiments = tmp_path / "experiments"
    experiments.mkdir()
    flowers = DiffusionConfig()
    for name, config in (
        ("flowers", flowers),
        ("flowers_mse", flowers.replace(loss="mse")),
        ("flowers_linear", flowers.replace(schedule="linear")),
        ("celeba", preset("celeba")),
        ("shapes", preset("shapes")),
    ):
        config.save(str(experiments / f"{name}.json"))
    readme = experiments / "README.md"
    readme.write_text("# Experiments\n\nIntro kept.\n\n## Benchmark\n\nBenchmark kept.\n")
    runs = tmp_path / "runs"
    # shapes: a sweep with random KID weights.
    make_run(
        runs,
        "shapes",
        "shapes",
        preset("shapes"),
        sweep_rows=[
            sweep_row("shapes", "shapes", 5, 0, 0.0123, "none"),
            sweep_row("shapes", "shapes", 5, 1, 0.0456, "none"),
            sweep_row("shapes", "shapes", 20, 0, 0.0078, "none"),
        ],
    )
    # flowers: trained, evaluated with imagenet weights by ddim_keras.evaluate, no sweep.
    make_run(
        runs,
        "flowers",
        "flowers",
        flowers,
        kid_json={
            "kid": 0.2718,
            "num_images": 1000,
            "steps": 5,
            "eta": 0.0,
            "kid_weights": "imagenet",
        },
    )
    # flowers_mse: trained, never measured.
    make_run(runs, "flowers_mse", "flowers", flowers.replace(loss="mse"), final=False)
    # demo: no experiment, no measurement: not listed.
    make_run(runs, "demo", "shapes", preset("shapes"))
    return tmp_path


def run_report(capsys, root):
    code = run_cli(
        report.main,
        [
            "--runs-dir",
            str(root / "runs"),
            "--experiments-dir",
            str(root / "experiments"),
            "--output",
            str(root / "experiments" / "README.md"),
        ],
    )
    out, err = capsys.readouterr()
    return code, out, err


def table_rows(text, dataset):
    lines = text.split(f"### {dataset}\n", 1)[1].strip().splitlines()
    table = []
    for line in lines:
        if not line.startswith("|"):
            break
        table.append(line)
    rows = {}
    for line in table[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = dict(zip(report_tables.HEADER, cells))
    return rows


def test_report_tables(results, capsys):
    code, out, err = run_report(capsys, results)
    assert code == 0, err
    text = (results / "experiments" / "README.md").read_text()
    assert text.startswith("# Experiments\n\nIntro kept.\n")
    assert text.rstrip().endswith("## Benchmark\n\nBenchmark kept.")
    assert text.index(report.START) < text.index(report.END) < text.index("## Benchmark")

    flowers = table_rows(text, "flowers")
    assert list(flowers) == ["flowers", "flowers_linear", "flowers_mse"]
    row = flowers["flowers"]
    assert row["KID, 5 DDIM steps (lower is better)"] == "0.2718"
    assert row["KID measured on"] == "1000 images, ImageNet weights"
    assert row[f"{report_tables.ANCHOR_SOURCE} KID"] == "0.259 (mae)"
    assert row["training time"] == "≈10 min, 50/50 epochs (file times)"
    assert row["machine (sweep)"] == "not recorded"
    assert row["KID vs steps"] == "not run yet"
    assert row["samples"] == "[final.png](results/flowers/final.png)"
    assert (results / "experiments" / "results" / "flowers" / "final.png").is_file()

    # Trained but not measured: no KID is made up.
    row = flowers["flowers_mse"]
    assert row["KID, 5 DDIM steps (lower is better)"] == "not run yet"
    assert row["KID measured on"] == "not run yet"
    assert row[f"{report_tables.ANCHOR_SOURCE} KID"] == "0.399 (mse)"
    assert row["samples"] == "not run yet"
    # Never run: every measured cell says so; no anchor for another schedule.
    row = flowers["flowers_linear"]
    assert row["config (loss, schedule)"] == "mae, linear, 50 epochs, 64 px"
    assert row[f"{report_tables.ANCHOR_SOURCE} KID"] == "—"
    for column in report_tables.HEADER[2:4] + report_tables.HEADER[5:]:
        assert row[column] == "not run yet"

    celeba = table_rows(text, "celeba")
    assert celeba["celeba"][f"{report_tables.ANCHOR_SOURCE} KID"] == "0.148 (mae)"
    assert celeba["celeba"]["KID, 5 DDIM steps (lower is better)"] == "not run yet"

    shapes = table_rows(text, "shapes")
    assert list(shapes) == ["shapes"]
    row = shapes["shapes"]
    assert row["KID, 5 DDIM steps (lower is better)"] == "0.0123 (random weights, not comparable)"
    assert row["KID measured on"] == "200 images, random weights, not comparable"
    assert row["machine (sweep)"] == "Test CPU (2 cores); no GPU"
    assert row["KID vs steps"] == (
        "[csv](results/shapes/sweep.csv), [plot](results/shapes/kid_vs_steps.png)"
    )
    assert "| 5 | 0.0123 (1.5 s) | 0.0456 (1.5 s) |" in text
    assert "| 20 | 0.0078 (1.5 s) | not run yet |" in text
    assert "`demo`" in text.split("### KID against")[1]  # named as not listed

    # Every KID-like number in the report comes from the files or the anchors.
    import re

    section = text[text.index(report.START) : text.index(report.END)]
    numbers = set(re.findall(r"\b0\.\d+", section))
    assert numbers == {"0.2718", "0.0123", "0.0456", "0.0078", "0.259", "0.399", "0.148"}

    # A second run replaces the section instead of adding one.
    code, _, err = run_report(capsys, results)
    assert code == 0, err
    again = (results / "experiments" / "README.md").read_text()
    assert again.count(report.START) == 1 and again == text


def test_report_without_runs(tmp_path, capsys):
    experiments = tmp_path / "experiments"
    experiments.mkdir()
    preset("celeba").replace(loss="mse").save(str(experiments / "celeba_mse.json"))
    code, _, err = run_report(capsys, tmp_path)
    assert code == 0, err
    text = (experiments / "README.md").read_text()
    row = table_rows(text, "celeba")["celeba_mse"]
    assert row[f"{report_tables.ANCHOR_SOURCE} KID"] == "0.104 (mse)"
    assert row["KID, 5 DDIM steps (lower is better)"] == "not run yet"


def test_bad_input(tmp_path, capsys):
    code = run_cli(report.main, ["--experiments-dir", str(tmp_path / "missing")])
    err = capsys.readouterr().err
    assert code == 2 and "does not exist" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "path", sorted(glob.glob(os.path.join(REPO, "experiments", "*.json"))), ids=os.path.basename
)
def test_experiment_configs_load(path):
    config = DiffusionConfig.load(path)
    name = os.path.basename(path)
    if "_mse" in name:
        assert config.loss == "mse"
    if "_linear" in name:
        assert config.schedule == "linear"


def test_variants_exist():
    names = {os.path.basename(p) for p in glob.glob(os.path.join(REPO, "experiments", "*.json"))}
    assert {
        "flowers.json",
        "celeba.json",
        "shapes.json",
        "flowers_mse.json",
        "flowers_linear.json",
        "celeba_mse.json",
    } <= names


def test_objective_experiment_files_hold_only_what_they_change():
    """experiments/shapes_*.json are the shapes preset with KID on and one objective change
    (but for the GAN baseline's, the guidance experiments' and the network options')."""
    shapes = preset("shapes")
    for path in glob.glob(os.path.join(REPO, "experiments", "shapes_*.json")):
        config = report_tables.load_experiments(os.path.dirname(path))[
            os.path.splitext(os.path.basename(path))[0]
        ]["config"]
        if config.model == "gan":  # the GAN baseline (shapes_gan*.json): the demo's budget
            assert (config.image_size, config.batch_size, config.kid) == (32, 32, False)
            continue
        base = shapes
        if config.attention_heads:  # the network options: the demo's config, as the demo
            base = shapes.replace(attention_heads=4, block_embedding=True)
        if config.num_classes:  # the guidance experiments: the demo's config, conditional
            assert config == base.replace(num_classes=3, label_dropout=0.1)
            continue
        if config.attention_heads:
            assert config == base
            continue
        assert config.kid and (config.image_size, config.epochs) == (32, 24)
        assert config.widths == shapes.widths and config.learning_rate == shapes.learning_rate


def test_objectives_table_reads_history_and_sweep(tmp_path, capsys):
    experiments = tmp_path / "experiments"
    experiments.mkdir()
    (experiments / "README.md").write_text("# Experiments\n")
    (experiments / "shapes_velocity.json").write_text('{"kid": true, "prediction": "velocity"}')
    (experiments / "shapes_image.json").write_text('{"kid": true, "prediction": "image"}')
    config = preset("shapes").replace(kid=True, prediction="velocity", loss_weighting="min_snr")
    run = make_run(
        tmp_path / "runs",
        "shapes_velocity",
        "shapes",
        config,
        sweep_rows=[
            {**sweep_row("shapes_velocity", "shapes", 20, 0, 0.25, "shapes_classifier")},
            {
                **sweep_row("shapes_velocity", "shapes", 10, 0, 0.5, "shapes_classifier"),
                "sampler": "dpmpp_2m/logsnr",
            },
        ],
    )
    # The sweep's recognised share of the DDIM 20-step cell.
    rows = list(csv.DictReader(open(run / "sweep" / "sweep.csv")))
    rows[0]["recognised"] = "0.64"
    with open(run / "sweep" / "sweep.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    kids = {6: 3.5, 12: 1.25, 24: 0.75}
    (run / "history.csv").write_text(
        "epoch,n_loss,val_kid\n"
        + "".join(f"{epoch},0.1,{kids.get(epoch + 1, 9.0)}\n" for epoch in range(24))
    )
    code, _, _ = run_report(capsys, tmp_path)
    assert code == 0
    text = (experiments / "README.md").read_text()
    section = text.split("### Training objectives")[1]
    velocity = next(line for line in section.splitlines() if "`shapes_velocity`" in line)
    cells = [cell.strip() for cell in velocity.strip("|").split("|")]
    assert cells[1] == "velocity prediction, min-SNR γ=5"
    assert cells[2:7] == ["3.5", "1.25", "0.75", "0.5", "0.25 (64%)"]
    image = next(line for line in section.splitlines() if "`shapes_image`" in line)
    assert image.count("not run yet") == 6
    # Swept at 10 and 20 steps only: the main table says so rather than "not run yet".
    main_row = table_rows(text, "shapes")["shapes_velocity"]
    assert main_row["KID, 5 DDIM steps (lower is better)"] == "not swept at 5 steps"

    # The run directory stays on the machine that trained it: the copied history and
    # state keep every cell of the row, the training time included.
    state = json.loads((run / "state.json").read_text())
    (run / "state.json").write_text(json.dumps({**state, "train_seconds": 1500.0}))
    code, _, _ = run_report(capsys, tmp_path)
    assert code == 0
    import shutil

    shutil.rmtree(run)
    code, _, _ = run_report(capsys, tmp_path)
    assert code == 0
    section = (experiments / "README.md").read_text().split("### Training objectives")[1]
    velocity = next(line for line in section.splitlines() if "`shapes_velocity`" in line)
    cells = [cell.strip() for cell in velocity.strip("|").split("|")]
    assert cells[2:] == ["3.5", "1.25", "0.75", "0.5", "0.25 (64%)", "25 min, 24/24 epochs"]


def test_results_saved_by_an_earlier_report_are_kept_without_the_run(results, capsys):
    code, _, _ = run_report(capsys, results)
    assert code == 0
    first = (results / "experiments" / "README.md").read_text()
    assert "0.0123" in first
    import shutil

    shutil.rmtree(results / "runs" / "shapes")  # the run stays on another machine
    code, _, _ = run_report(capsys, results)
    assert code == 0
    again = (results / "experiments" / "README.md").read_text()
    shapes_row = table_rows(again, "shapes")["shapes"]
    assert shapes_row["KID, 5 DDIM steps (lower is better)"].startswith("0.0123")
    assert shapes_row["training time"] == "not recorded"
    assert "results/shapes/final.png" in shapes_row["samples"]


def test_gan_table_puts_the_gan_beside_diffusion(tmp_path, capsys):
    from ddim_keras.core.config import as_gan

    experiments = tmp_path / "experiments"
    experiments.mkdir()
    (experiments / "README.md").write_text("# Experiments\n")
    (experiments / "shapes.json").write_text("{}")
    (experiments / "shapes_gan.json").write_text('{"model": "gan", "kid": false}')
    gan_row = {**sweep_row("shapes_gan", "shapes", 1, 0, 7.5, "shapes_classifier")}
    gan_row.update(sampler="GAN (1 call)", network_calls=1, recognised="0.2")
    make_run(tmp_path / "runs", "shapes_gan", "shapes", as_gan(preset("shapes")), [gan_row])
    rows = []
    for sampler in ("DDIM", "dpmpp_2m/logsnr"):
        for calls, kid in ((1, 4000.0), (5, 10.0), (10, 2.5), (20, 1.25)):
            row = {**sweep_row("shapes", "shapes", calls, 0, kid, "shapes_classifier")}
            row.update(sampler=sampler, network_calls=calls, recognised="0.3")
            rows.append(row)
    make_run(tmp_path / "runs", "shapes", "shapes", preset("shapes"), rows)
    code, _, _ = run_report(capsys, tmp_path)
    assert code == 0
    text = (experiments / "README.md").read_text()
    section = text.split("### GAN baseline against diffusion (shapes)")[1].split("###")[0]
    lines = {
        line.split("|")[1].strip(): [cell.strip() for cell in line.strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("| GAN") or line.startswith("| diffusion")
    }
    assert lines["GAN `shapes_gan`"][1:4] == ["1", "7.5", "20%"]
    assert lines["GAN `shapes_gan`"][4] == "48,000 (24 epochs)"
    # The GAN is no training-objective row: with no other shapes_* file there is no table.
    assert "### Training objectives" not in text
    # Diffusion: one row per sampler and number of calls, read from its sweep.
    assert len([line for line in section.splitlines() if line.startswith("| diffusion")]) == 8
    rows = [line for line in section.splitlines() if line.startswith("| diffusion `shapes`, DDIM")]
    assert [row.split("|")[2:5] for row in rows] == [
        [" 1 ", " 4000 ", " 30% "],
        [" 5 ", " 10 ", " 30% "],
        [" 10 ", " 2.5 ", " 30% "],
        [" 20 ", " 1.25 ", " 30% "],
    ]
