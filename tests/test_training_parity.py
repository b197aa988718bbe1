"""Training is the example's: the same update for the same inputs.

The restated keras.io example (``example_layout.ExampleDiffusionModel``) and
``DiffusionModel`` start from identical network, EMA and normalizer weights and
take eager training steps on identical batches. The two random draws of a step
(the noises, then the diffusion times) are replaced by fixed tensors that both
models receive in the same order, through ``keras.random`` itself, which both
train steps call. After every step the distance between the two networks'
weights must stay a small fraction of the size of the example's own update.

Measured on the 2-core development machine at 64 px, batch 8: the networks'
weights are bit-identical after every step (ratio 0) and so is n_loss; the
EMA weights differ by float rounding only (the update is written as one
subtraction). With the loss reduced to its mean before the gradient (the code
before issue #11) the ratio is 0.73 at the second step and 1.9 at the sixth,
because AdamW's epsilon damps the ~200,000x smaller gradients; with the
schedule's end angles computed in float64 instead of the example's float32 it
drifted to ~1 % by the sixth step.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import example_layout
import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import injected_draws

from ddim_keras.core.config import DiffusionConfig
from ddim_keras.model.diffusion_model import DiffusionModel

SIZE = 64
BATCH = 8
STEPS = 6


def inputs():
    rng = np.random.default_rng(11)
    # Smooth-ish images in [0, 1] with per-channel offsets, like photos.
    base = rng.uniform(0.0, 1.0, (STEPS, BATCH, SIZE // 8, SIZE // 8, 3))
    images = np.repeat(np.repeat(base, 8, axis=2), 8, axis=3)
    images = np.clip(
        0.6 * images + 0.1 * rng.standard_normal(images.shape) + [0.1, 0.0, -0.1], 0.0, 1.0
    ).astype("float32")
    noises = rng.standard_normal((STEPS, BATCH, SIZE, SIZE, 3)).astype("float32")
    times = rng.uniform(0.0, 1.0, (STEPS, BATCH, 1, 1, 1)).astype("float32")
    return images, noises, times


def flat(weights):
    return np.concatenate([np.ravel(w) for w in weights])


@pytest.fixture(scope="module")
def trajectories():
    """Per step: network weights, EMA weights and metrics of both models."""
    images, noises, times = inputs()
    keras.utils.set_random_seed(3)
    ours = DiffusionModel(DiffusionConfig(image_size=SIZE, batch_size=BATCH), kid_weights=None)
    ours.compile()
    ours.normalizer.adapt(images.reshape((-1, SIZE, SIZE, 3)))

    example = example_layout.ExampleDiffusionModel(image_size=SIZE)
    example.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=1e-3, weight_decay=1e-4),
        loss=keras.losses.mean_absolute_error,
    )
    example.normalizer.adapt(images.reshape((-1, SIZE, SIZE, 3)))
    example.network.set_weights(ours.network.get_weights())
    example.ema_network.set_weights(ours.ema_network.get_weights())
    np.testing.assert_array_equal(
        np.asarray(example.normalizer.mean), np.asarray(ours.normalizer.mean)
    )

    records = {"ours": [], "example": []}
    for name, model in (("ours", ours), ("example", example)):
        records[name].append({"network": flat(model.network.get_weights())})
        with injected_draws(noises, times) as queues:
            for step in range(STEPS):
                logs = model.train_step(tf.constant(images[step]))
                records[name].append(
                    {
                        "network": flat(model.network.get_weights()),
                        "trainable": flat([w.numpy() for w in model.network.trainable_weights]),
                        "ema": flat(model.ema_network.get_weights()),
                        "n_loss": float(logs["n_loss"]),
                        "i_loss": float(logs["i_loss"]),
                    }
                )
            assert not queues["normal"] and not queues["uniform"]  # every draw was used
    return records


def test_weights_follow_the_example_step_by_step(trajectories):
    ours, example = trajectories["ours"], trajectories["example"]
    ratios = []
    for step in range(1, STEPS + 1):
        update = np.linalg.norm(example[step]["network"] - example[step - 1]["network"])
        assert update > 0
        ratios.append(np.linalg.norm(ours[step]["network"] - example[step]["network"]) / update)
    print("weight distance / example update per step:", [f"{r:.2g}" for r in ratios])
    assert max(ratios) < 0.01, ratios


def test_ema_weights_follow_the_example(trajectories):
    ours, example = trajectories["ours"], trajectories["example"]
    for step in range(1, STEPS + 1):
        ema_update = np.linalg.norm(example[step]["ema"] - example[0]["network"])
        gap = np.linalg.norm(ours[step]["ema"] - example[step]["ema"])
        assert gap < 0.01 * ema_update, (step, gap, ema_update)


def test_losses_are_the_examples_per_pixel_means(trajectories):
    ours, example = trajectories["ours"], trajectories["example"]
    for step in range(1, STEPS + 1):
        assert ours[step]["n_loss"] == pytest.approx(example[step]["n_loss"], abs=1e-5)
        assert ours[step]["i_loss"] == pytest.approx(example[step]["i_loss"], rel=1e-4)
