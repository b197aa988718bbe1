"""The shapes generator's labels, the shipped shapes classifier and KID with its features."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
import pytest

from ddim_keras.core.errors import UsageError
from ddim_keras.data.shapes import (
    SHAPE_KINDS,
    draw_shapes,
    shapes_images,
    shapes_images_with_labels,
)
from ddim_keras.metrics import shapes_classifier
from ddim_keras.metrics.kid import build_encoder, kernel_inception_distance


@pytest.fixture(scope="module")
def classifier():
    return shapes_classifier.load_classifier()


# -- labels ---------------------------------------------------------------------------------


def test_labelled_images_are_the_shapes_images():
    images, labels = shapes_images_with_labels(40, 32, seed=7)
    np.testing.assert_array_equal(images, shapes_images(40, 32, seed=7))
    again_images, again = shapes_images_with_labels(40, 32, seed=7)
    np.testing.assert_array_equal(again_images, images)
    for name in labels:
        np.testing.assert_array_equal(again[name], labels[name])
    assert labels["kinds"].shape == (40, len(SHAPE_KINDS))
    assert set(labels["drawn"]) == {1, 2}
    assert np.all((labels["count"] >= 1) & (labels["count"] <= labels["drawn"]))
    assert np.all(labels["kinds"].sum(axis=1) >= 1)
    assert np.all(labels["kinds"].sum(axis=1) <= labels["count"])
    # The last shape drawn is never covered; a single shape is always whole.
    last = labels["visible"][np.arange(40), labels["drawn"] - 1]
    np.testing.assert_allclose(last, 1.0)
    assert np.all(labels["shape_kind"][labels["drawn"] == 1, 1] == -1)


def test_label_distribution():
    _, labels = shapes_images_with_labels(600, 16, seed=3)
    share = labels["kinds"].mean(axis=0)
    assert np.all((share > 0.3) & (share < 0.55)), share  # each kind in ~42% of images
    assert 0.4 < np.mean(labels["drawn"] == 2) < 0.6
    assert 0.25 < np.mean(labels["count"] == 2) < 0.5  # some first shapes are hidden


def _compactness(image):
    """Area / (pi * largest distance from the centroid ** 2) of the one shape on a plain
    background: ~0.9 for a circle, ~0.65 for a square, ~0.43 for a triangle."""
    corners = image[[0, 0, -1, -1], [0, -1, 0, -1]].astype(float)
    if np.abs(corners - corners[0]).max() > 0:
        return None  # a gradient background, or a shape over a corner
    inside = np.linalg.norm(image.astype(float) - corners[0], axis=-1) > 50
    rows, columns = np.nonzero(inside)
    radius = np.hypot(rows - rows.mean(), columns - columns.mean()).max() + 0.5
    return inside.sum() / (np.pi * radius**2)


def test_single_shape_labels_match_the_drawn_outline():
    images, labels = shapes_images_with_labels(200, 64, seed=5)
    checked = 0
    for image, drawn, kinds in zip(images, labels["drawn"], labels["kinds"]):
        compactness = _compactness(image) if drawn == 1 else None
        if compactness is None:
            continue
        measured = 0 if compactness > 0.76 else 1 if compactness > 0.53 else 2
        assert kinds[measured] == 1 and kinds.sum() == 1, (compactness, kinds)
        checked += 1
    assert checked > 50


# -- the classifier -------------------------------------------------------------------------


def test_shipped_weights_are_small():
    assert os.path.getsize(shapes_classifier.WEIGHTS_PATH) < 600_000


def test_held_out_accuracy(classifier):
    # Measured on 2000 images: exact 0.941 at 32 px (every output >= 0.97),
    # 0.921 at 16 px, 0.950 at 64 px. Errors are mostly half-hidden shapes.
    accuracy = shapes_classifier.held_out_accuracy(classifier, num_images=600)
    assert accuracy["exact"] >= 0.9, accuracy
    assert min(accuracy[name] for name in shapes_classifier.OUTPUTS) >= 0.95, accuracy
    assert (
        shapes_classifier.held_out_accuracy(classifier, num_images=300, image_size=16)["exact"]
        >= 0.85
    )


def test_recognised_fraction(classifier):
    real = shapes_images(200, 32, seed=11)
    assert shapes_classifier.recognised_fraction(real, classifier=classifier) > 0.8
    noise = np.random.default_rng(0).uniform(0, 1, (100, 32, 32, 3))
    assert shapes_classifier.recognised_fraction(noise, classifier=classifier) < 0.05
    assert (
        shapes_classifier.recognised_fraction(
            shapes_classifier.shapeless_images(60, 9), classifier=classifier
        )
        < 0.1
    )


def test_training_runs():
    model = shapes_classifier.train_classifier(num_images={32: 64, 16: 16}, epochs=1, negatives=12)
    probabilities = shapes_classifier.predict(shapes_images(4, 32, seed=1), model)
    assert probabilities.shape == (4, len(shapes_classifier.OUTPUTS))
    assert np.all((probabilities >= 0) & (probabilities <= 1))


# -- KID ------------------------------------------------------------------------------------


def _box_blur(images):
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    size = images.shape[1]
    return (
        sum(padded[:, dy : dy + size, dx : dx + size] for dy in range(3) for dx in range(3)) / 9.0
    )


def _kid(encoder, real, other, batch=50):
    real = encoder.predict(real.astype("float32"), verbose=0)
    other = encoder.predict(other.astype("float32"), verbose=0)
    return float(
        np.mean(
            [
                kernel_inception_distance(real[i : i + batch], other[i : i + batch])
                for i in range(0, len(real), batch)
            ]
        )
    )


@pytest.mark.parametrize("image_size", [32, 16, 64])
def test_kid_separates_real_from_degraded(classifier, image_size):
    # The floor: the run's validation images against its training images.
    train = shapes_images(200, image_size, seed=0) / 255.0
    validation = draw_shapes(np.random.default_rng([0, 1]), 200, image_size) / 255.0
    encoder = shapes_classifier.build_feature_encoder(image_size, classifier)
    assert encoder.output_shape == (None, shapes_classifier.FEATURE_DIMS)
    features = encoder.predict(validation[:8].astype("float32"), verbose=0)
    assert np.all(np.isfinite(features))

    rng = np.random.default_rng(0)
    floor = _kid(encoder, train, validation)
    noisy = _kid(encoder, train, np.clip(validation + rng.normal(0, 0.1, validation.shape), 0, 1))
    noise = _kid(encoder, train, rng.uniform(0, 1, validation.shape))
    # Measured (400 images): floor 0.008 / 0.010 / -0.003 at 32 / 16 / 64 px; noisy
    # (sigma 0.1) 1.2e3 / 666 / 8.7; uniform noise 1.8e5 / 2.2e3 / 537.
    assert abs(floor) < 0.1
    assert noisy > 5.0 and noise > 100.0
    if image_size <= 32:
        # Measured: 3x3 box blur 0.29 at 32 px, 0.36 at 16 px.
        assert _kid(encoder, train, _box_blur(validation)) > 0.15 > abs(floor) + 0.05


def test_build_encoder_dispatches_on_the_name():
    encoder = build_encoder(16, encoder_name="shapes")
    assert encoder.output_shape == (None, shapes_classifier.FEATURE_DIMS)
    with pytest.raises(UsageError, match="unknown KID encoder"):
        build_encoder(16, encoder_name="vgg")


# -- the commands ---------------------------------------------------------------------------


def test_evaluate_with_the_shapes_encoder(run_copy, capsys):
    import json
    import math

    from conftest import run_command

    from ddim_keras.cli import evaluate

    code, out, err = run_command(
        capsys,
        evaluate.main,
        "--run",
        run_copy,
        "--num-images",
        8,
        "--batch-size",
        4,
        "--steps",
        1,
        "--no-progress",
        "--kid-encoder",
        "shapes",
    )
    assert code == 0, err
    assert "random weights" not in err
    # Its own file: an Inception KID of the same settings is another measure.
    path = run_copy / "kid_shapes_1steps_eta0_shapes-encoder.json"
    assert out.strip().splitlines()[-1] == str(path)
    assert "shapes classifier features" in out
    result = json.loads(path.read_text())
    assert math.isfinite(result["kid"]) and result["num_batches"] == 2
    assert result["kid_encoder"] == "shapes" and result["kid_weights"] == "shapes_classifier"


def test_sweep_keeps_encoders_apart(run_copy, capsys):
    import csv

    from conftest import run_command

    from ddim_keras.cli import sweep

    common = [
        "--run",
        run_copy,
        "--steps",
        "1",
        "--etas",
        "0",
        "--num-images",
        "8",
        "--batch-size",
        "4",
    ]
    code, _, err = run_command(capsys, sweep.main, *common, "--kid-weights", "none")
    assert code == 0, err
    code, _, err = run_command(capsys, sweep.main, *common, "--kid-encoder", "shapes")
    assert code == 0, err
    assert "0 of 2 cells cached" in err  # the Inception cells (sample, floor) are not reused
    with open(run_copy / "sweep" / "sweep.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["kid_encoder"] for row in rows) == ["inception"] * 2 + ["shapes"] * 2
    code, _, err = run_command(capsys, sweep.main, *common, "--kid-encoder", "shapes")
    assert code == 0 and "2 of 2 cells cached" in err


def test_train_logs_val_kid_with_the_shapes_encoder(tmp_path):
    import csv
    import json
    import math

    from conftest import write_config

    from ddim_keras.cli import train

    config = write_config(tmp_path / "c.json", kid=True)
    run = tmp_path / "run"
    assert (
        train.main(
            [
                "--dataset",
                "shapes",
                "--config",
                config,
                "--output",
                str(run),
                "--steps-per-epoch",
                "2",
                "--verbose",
                "0",
                "--kid-encoder",
                "shapes",
            ]
        )
        == 0
    )
    with open(run / "history.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert math.isfinite(float(rows[-1]["val_kid"]))
    assert json.load(open(run / "run.json"))["kid_encoder"] == "shapes"
