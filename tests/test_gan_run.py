"""The GAN baseline end to end: a tiny run on ``shapes`` learns, and the commands on a GAN run.

``train --model gan`` writes the run directory a diffusion run has (config, checkpoints,
history, state, samples, curves) and resumes it; ``generate`` (grid, images), ``evaluate``
and ``sweep`` work on it with one generator call per image; the diffusion-only flags and
modes are refused with one error paragraph.
"""

import csv
import json
import os

import numpy as np
import pytest

from tests.conftest import assert_one_error, run_command

GAN_CONFIG = {
    "model": "gan",
    "image_size": 16,
    "gan_width": 16,
    "gan_depth": 2,
    "gan_noise_size": 16,
    "batch_size": 16,
    "kid": False,
}


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    from ddim_keras.cli import train

    root = tmp_path_factory.mktemp("gan_run")
    config_path = root / "gan.json"
    config_path.write_text(json.dumps({**GAN_CONFIG, "epochs": 1}))
    run = root / "run"
    argv = ["--dataset", "shapes", "--config", str(config_path), "--output", str(run)]
    argv += ["--steps-per-epoch", "3", "--verbose", "0"]
    assert train.main(argv) == 0
    # The same command with more epochs resumes the run.
    assert train.main(argv + ["--epochs", "2"]) == 0
    return str(run)


def test_train_writes_and_resumes_a_gan_run(gan_run):
    with open(os.path.join(gan_run, "config.json"), encoding="utf-8") as handle:
        config = json.load(handle)
    assert config["model"] == "gan" and config["epochs"] == 2
    assert config["learning_rate"] == 2e-4 and config["ema"] == 0.99  # the GAN's defaults
    with open(os.path.join(gan_run, "state.json"), encoding="utf-8") as handle:
        assert json.load(handle)["epoch"] == 2
    with open(os.path.join(gan_run, "history.csv"), encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["0", "1"]
    assert {"g_loss", "d_loss", "real_acc", "aug_p"} <= set(rows[0])
    for name in (
        "checkpoints/best.weights.h5",
        "checkpoints/last.weights.h5",
        "samples/epoch_0002.png",
        "samples/final.png",
        "curves.png",
    ):
        assert os.path.isfile(os.path.join(gan_run, name)), name


def test_generate_and_evaluate_on_a_gan_run(gan_run, tmp_path, capsys):
    from ddim_keras.cli import evaluate, generate

    code, out, _ = run_command(
        capsys, generate.main, "--run", gan_run, "--seed", "0", "--output", tmp_path / "g.png"
    )
    assert code == 0 and os.path.isfile(tmp_path / "g.png")
    code, _, _ = run_command(
        capsys, generate.main, "--run", gan_run, "--mode", "images", "--num-images", "3",
        "--seed", "0", "--output", tmp_path / "images",
    )  # fmt: skip
    assert code == 0 and len(os.listdir(tmp_path / "images")) == 3
    code, out, _ = run_command(
        capsys, evaluate.main, "--run", gan_run, "--kid-encoder", "shapes", "--num-images",
        "32", "--batch-size", "16", "--no-progress", "--output", tmp_path / "kid.json",
    )  # fmt: skip
    assert code == 0
    assert "one generator call each" in out and "steps of" not in out
    with open(tmp_path / "kid.json", encoding="utf-8") as handle:
        result = json.load(handle)
    assert result["network_calls"] == 1 and result["steps"] == 1
    assert result["num_images"] == 32 and np.isfinite(result["kid"])


@pytest.mark.parametrize(
    "command, flags, words",
    [
        ("generate", ["--mode", "process"], ["--mode process", "GAN run", "--mode grid"]),
        ("generate", ["--steps", "20"], ["--steps 20", "one generator call"]),
        ("generate", ["--mode", "interpolation"], ["--mode interpolation", "GAN run"]),
        ("evaluate", ["--sampler", "dpmpp_2m"], ["--sampler dpmpp_2m", "GAN run"]),
        ("evaluate", ["--eta", "1"], ["--eta 1", "GAN run"]),
    ],
)
def test_diffusion_only_flags_are_refused_on_a_gan_run(gan_run, capsys, command, flags, words):
    from ddim_keras.cli import evaluate, generate

    main = {"generate": generate.main, "evaluate": evaluate.main}[command]
    code, _, err = run_command(capsys, main, "--run", gan_run, *flags)
    assert code != 0
    assert_one_error(err, words)


def test_sweep_of_a_gan_run_is_one_cell(gan_run, tmp_path, capsys):
    import shutil

    from ddim_keras.cli import sweep

    run = tmp_path / "run"
    shutil.copytree(gan_run, run)
    code, _, _ = run_command(
        capsys, sweep.main, "--run", run, "--kid-encoder", "shapes", "--num-images", "32",
        "--batch-size", "16", "--steps", "5,10",
    )  # fmt: skip
    assert code == 0
    with open(run / "sweep" / "sweep.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["sampler"], row["network_calls"]) for row in rows] == [
        ("GAN (1 call)", "1"),
        ("real images (training vs validation)", "0"),
    ]
    assert rows[0]["recognised"] != ""


def test_a_tiny_run_beats_chance_on_shapes():
    """A few hundred steps at 16 px: the discriminator tells unseen real shapes from the
    generator's images far better than chance, which drives the augmentation up."""
    import keras

    from ddim_keras.core.config import as_gan, preset
    from ddim_keras.data.shapes import shapes_images
    from ddim_keras.model.gan import GANModel

    keras.utils.set_random_seed(0)
    config = as_gan(preset("shapes")).replace(**{**GAN_CONFIG, "model": "gan"})
    model = GANModel(config, kid_weights=None)
    model.compile()
    train = shapes_images(512, 16, seed=1).astype("float32") / 255.0
    history = model.fit(train, batch_size=16, epochs=5, verbose=0, shuffle=True)
    assert history.history["aug_p"][-1] > 0.0  # the real accuracy went past its target
    unseen = shapes_images(128, 16, seed=2).astype("float32") / 255.0
    latents = model.initial_noise(128, seed=3)
    generated = model.generator(latents, training=True)  # the one the discriminator faced
    real_logits = keras.ops.convert_to_numpy(model.discriminator(unseen, training=True))
    fake_logits = keras.ops.convert_to_numpy(model.discriminator(generated, training=True))
    accuracy = (np.mean(real_logits > 0) + np.mean(fake_logits < 0)) / 2
    assert accuracy > 0.75, accuracy
