"""Inpainting measured on `shapes`: the generator's shape coverage, the half masks, the
label agreement, and ``python -m ddim_keras.inpainting_check``."""

import json

import numpy as np
import pytest

from ddim_keras.cli import inpainting_check
from ddim_keras.data.shapes import (
    shapes_images,
    shapes_images_with_labels,
    shapes_split_images,
    shapes_validation_with_labels,
)
from ddim_keras.metrics import inpainting, shapes_classifier
from tests.conftest import assert_one_error, run_command


def test_labelled_images_are_the_plain_ones_and_the_validation_split():
    images, labels = shapes_images_with_labels(12, 24, seed=5)
    np.testing.assert_array_equal(images, shapes_images(12, 24, seed=5))
    assert labels["coverage"].shape == (12, 24, 24)
    validation, labels = shapes_validation_with_labels(16, seed=3)
    np.testing.assert_array_equal(validation, shapes_split_images("validation", 16, 3, None))
    assert labels["coverage"].shape == (len(validation), 16, 16)


def test_coverage_marks_exactly_the_pixels_that_differ_from_a_plain_background():
    """On plain backgrounds (3 in 4 images) every pixel a shape touches differs from the
    background colour, found here as the colour of the image's most common pixel."""
    images, labels = shapes_images_with_labels(60, 32, seed=1)
    checked = 0
    for image, coverage in zip(images, labels["coverage"]):
        colours, counts = np.unique(image.reshape(-1, 3), axis=0, return_counts=True)
        background = colours[np.argmax(counts)]
        differs = np.any(image != background, axis=-1)
        if np.mean(differs[coverage == 0]) > 0:
            continue  # a gradient background: its own pixels differ too
        checked += 1
        assert coverage.min() >= 0.0 and coverage.max() <= 1.0
        # Edge pixels covered by a sliver can round back to the background colour.
        touched = coverage > 0.05
        assert np.all(differs[touched])
        assert not np.any(differs[coverage == 0])
    assert checked >= 30


def test_half_masks_pick_the_half_with_the_most_shape():
    coverage = np.zeros((4, 8, 8), dtype=np.float32)
    coverage[0, 2:5, 0:3] = 1.0  # left
    coverage[1, 1:7, 5:8] = 1.0  # right
    coverage[2, 0:2, 1:7] = 1.0  # top
    coverage[3, 6:8, 0:8] = 1.0  # bottom
    masks, choices = inpainting.half_masks(coverage)
    assert [inpainting.HALVES[code] for code in choices] == ["left", "right", "top", "bottom"]
    assert masks.shape == (4, 8, 8) and set(np.unique(masks)) == {0.0, 1.0}
    assert np.all(masks.sum(axis=(1, 2)) == 32)
    np.testing.assert_array_equal(masks[0][:, :4], 1.0)
    np.testing.assert_array_equal(masks[0][:, 4:], 0.0)
    np.testing.assert_array_equal(masks[3][4:], 1.0)
    # Every pixel of shape lies in the hidden half here.
    assert np.all(coverage * (1.0 - masks) == 0.0)


def test_label_agreement_counts_rows_equal_after_thresholding():
    reference = np.array([[0.9, 0.1, 0.2, 0.8], [0.9, 0.9, 0.1, 0.1], [0.1, 0.1, 0.9, 0.1]])
    labels = np.array([[0.6, 0.4, 0.0, 0.7], [0.9, 0.2, 0.1, 0.1], [0.2, 0.3, 0.8, 0.4]])
    assert inpainting.label_agreement(reference, labels) == pytest.approx(2 / 3)


class _ShowingModel:
    """A stand-in whose inpainting returns the originals and whose samples are noise."""

    def __init__(self, images):
        self.images = images

    def inpaint(self, images, masks, diffusion_steps, **kwargs):
        assert masks.shape == images.shape[:3]
        return self.images

    def generate(self, num_images, diffusion_steps, **kwargs):
        rng = np.random.default_rng(kwargs["seed"])
        return rng.uniform(0.0, 1.0, (num_images,) + self.images.shape[1:]).astype("float32")


def test_agreement_is_one_for_a_perfect_inpainter_and_chance_for_noise():
    images, labels = shapes_images_with_labels(40, 32, seed=9)
    images = images.astype("float32") / 255.0
    model = _ShowingModel(images)
    result = inpainting.inpainting_agreement(model, images, labels["coverage"], 3, seed=4)
    assert result["inpainted"] == 1.0
    classifier = shapes_classifier.load_classifier()
    expected = inpainting.label_agreement(
        shapes_classifier.predict(images, classifier),
        shapes_classifier.predict(model.generate(40, 3, seed=4), classifier),
    )
    assert result["unconditional"] == pytest.approx(expected)
    assert result["recognised_inpainted"] == pytest.approx(
        shapes_classifier.recognised_fraction(images, classifier=classifier)
    )
    assert sum(result["halves"].values()) == 40


def test_command_writes_the_result_and_the_picture(run_copy, capsys):
    code, out, err = run_command(
        capsys,
        inpainting_check.main,
        "--run",
        run_copy,
        "--num-images",
        "8",
        "--steps",
        "2",
        "--resample",
        "2",
        "--no-progress",
    )
    assert code == 0, err
    result = json.loads((run_copy / "inpainting_check.json").read_text())
    assert result["num_images"] == 8 and result["resample"] == 2
    assert 0.0 <= result["inpainted"] <= 1.0 and sum(result["halves"].values()) == 8
    assert (run_copy / "inpainting_check.png").stat().st_size > 0
    assert "Labels match the original's" in out
    # Again without --overwrite: refused, the files kept.
    before = (run_copy / "inpainting_check.json").read_text()
    code, _, err = run_command(capsys, inpainting_check.main, "--run", run_copy, "--no-progress")
    assert code == 2
    assert_one_error(err, ["--overwrite"])
    assert (run_copy / "inpainting_check.json").read_text() == before


def test_command_refuses_a_run_not_trained_on_shapes(run_copy, capsys):
    info = json.loads((run_copy / "run.json").read_text())
    (run_copy / "run.json").write_text(json.dumps({**info, "dataset": "flowers"}))
    code, _, err = run_command(capsys, inpainting_check.main, "--run", run_copy)
    assert code == 2
    assert_one_error(err, ["'flowers'", "--dataset shapes", "--mode inpaint"])
    assert not (run_copy / "inpainting_check.json").exists()


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--resample", "0"], ["--resample"]),
        (["--resample", "2", "--sampler", "dpmpp_2m"], ["--resample", "dpmpp_2m"]),
        (["--num-images", "0"], ["--num-images"]),
        (["--steps", "0"], ["--steps"]),
    ],
)
def test_command_refuses_bad_flags(run_copy, capsys, flags, words):
    code, _, err = run_command(capsys, inpainting_check.main, "--run", run_copy, *flags)
    assert code == 2
    assert_one_error(err, words)
    assert not (run_copy / "inpainting_check.json").exists()
