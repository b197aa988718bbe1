"""The numbers of a conditional run's guided samples (evaluate and sweep ``--guidance``).

Expected values come from independent computations: KID as the unbiased MMD of
the cubic polynomial kernel written out in NumPy on each class's images picked
by hand, the requested-kind share counted from the probabilities, and the
validation labels from the shapes generator's own record.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
import pytest

from ddim_keras.metrics import guidance

CLASSES = ["circle", "square", "triangle"]


def numpy_kid(real, generated):
    """Unbiased squared MMD with k(x, y) = (x.y / d + 1)^3, in float64."""
    real, generated = np.asarray(real, np.float64), np.asarray(generated, np.float64)
    dims = real.shape[1]

    def kernel(a, b):
        return (a @ b.T / dims + 1.0) ** 3

    def within(a):
        values = kernel(a, a)
        return (values.sum() - np.trace(values)) / (len(a) * (len(a) - 1))

    return within(real) + within(generated) - 2 * kernel(real, generated).mean()


def test_class_kids_compare_each_classs_images_only():
    rng = np.random.default_rng(5)
    labels = np.array([0, 1, 0, 2, 1, 0, 0, 1, 2, 0, 1, 1], np.int32)
    real = rng.normal(size=(12, 6)).astype("float32")
    generated = (rng.normal(size=(12, 6)) + labels[:, None]).astype("float32")
    # Three batches of 4, as the measurement hands them over.
    kids = guidance.class_kids(
        [real[i : i + 4] for i in range(0, 12, 4)],
        [generated[i : i + 4] for i in range(0, 12, 4)],
        labels,
        CLASSES + ["star"],
        batch_size=2,
    )
    for index, name in enumerate(CLASSES):
        chosen = np.flatnonzero(labels == index)
        # Whole batches of 2 of the class's images, in order, averaged.
        pairs = [chosen[i : i + 2] for i in range(0, len(chosen) - 1, 2)]
        want = np.mean([numpy_kid(real[pair], generated[pair]) for pair in pairs])
        assert kids[name] == pytest.approx(want, rel=1e-4, abs=1e-6)
    assert kids["star"] is None  # nobody asked for it: no KID
    # A class with fewer images than a batch is measured on all of them.
    few = guidance.class_kids([real], [generated], labels, CLASSES, batch_size=50)
    chosen = np.flatnonzero(labels == 2)
    assert few["triangle"] == pytest.approx(
        numpy_kid(real[chosen], generated[chosen]), rel=1e-4, abs=1e-6
    )


def test_requested_shares_count_samples_showing_the_asked_kind():
    probabilities = np.array(
        [
            [0.9, 0.1, 0.1, 0.0],  # asked circle: shown
            [0.9, 0.2, 0.1, 0.0],  # asked square: not shown
            [0.1, 0.6, 0.7, 0.9],  # asked triangle: shown (two shapes)
            [0.4, 0.4, 0.4, 0.1],  # asked circle: not shown
        ]
    )
    share, per_class = guidance.requested_shares(probabilities, [0, 1, 2, 0], CLASSES)
    assert share == 0.5
    assert per_class == {"circle": 0.5, "square": 0.0, "triangle": 1.0}
    _, none_asked = guidance.requested_shares(probabilities[:1], [0], CLASSES)
    assert none_asked["square"] is None


def test_per_class_cells_read_back():
    values = {"circle": 0.125, "square": None, "a=b": 2.0}
    assert guidance.parse_per_class(guidance.format_per_class(values)) == values


@pytest.mark.parametrize("pipeline", ["tf.data", "numpy"])
def test_validation_batches_carry_the_generators_labels(pipeline, monkeypatch):
    from conftest import TINY

    from ddim_keras.core.config import DiffusionConfig
    from ddim_keras.data import loaders
    from ddim_keras.data.shapes import shapes_validation_with_labels
    from ddim_keras.metrics import evaluation

    if pipeline == "numpy":
        monkeypatch.setattr(loaders, "tensorflow_installed", lambda: False)
    config = DiffusionConfig(**TINY)
    batches, count, size = evaluation.validation_batches(
        "shapes", config, None, 0, 12, 4, print, conditional=True
    )
    images, labels = guidance.split_labelled(batches)
    want_images, record = shapes_validation_with_labels(config.image_size, seed=0)
    # The main shape is the last one drawn.
    drawn = record["drawn"][:12]
    want_labels = record["shape_kind"][np.arange(12), drawn - 1]
    assert (count, size, len(images)) == (12, 4, 3)
    np.testing.assert_array_equal(labels, want_labels)
    np.testing.assert_allclose(
        np.concatenate([np.asarray(b) for b in images]),
        np.asarray(want_images[:12], np.float32) / 255.0,
        atol=1e-6,
    )


def test_the_report_tables_each_guided_cell():
    from ddim_keras.io.guidance_table import guidance_table

    def row(w, requested, kid):
        return {
            "sampler": f"DDIM w={w}",
            "steps": "20",
            "guidance": str(w),
            "requested": requested,
            "recognised": "0.5",
            "kid": str(kid),
            "class_kids": f"circle={kid};square=;triangle=2",
        }

    runs = {
        "shapes_conditional": {"sweep": [row(3, "0.97", 0.5), row(0, "0.34", 0.25)]},
        "shapes": {"sweep": [{"sampler": "DDIM", "steps": "20", "kid": "1", "guidance": ""}]},
    }
    lines = guidance_table(runs, lambda value: f"{value:.2f}")
    text = "\n".join(lines)
    assert "`shapes_conditional`" in text and "`shapes`:" not in text
    body = [line for line in lines if line.startswith("| DDIM")]
    # Ordered by guidance; per-class KIDs in the class columns, "-" where none.
    assert body == [
        "| DDIM, 20 | 0 | 34% | 50% | 0.25 | 0.25 | - | 2.00 |",
        "| DDIM, 20 | 3 | 97% | 50% | 0.50 | 0.50 | - | 2.00 |",
    ]
    assert guidance_table({"shapes": runs["shapes"]}, str) == []
