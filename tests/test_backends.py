"""The same model on TensorFlow, JAX and PyTorch: training, seeded sampling and checkpoints.

This process (the suite's backend, TensorFlow in ``make test``) writes the
shared inputs: initial weights, images, the random draws of two training
steps, and a checkpoint of the keras.io example (``example_layout.py``). Each
backend then runs ``backend_worker.py`` in a process of its own (see there)
and the results are compared here:

* training: two steps from the same weights on the same draws give the same
  network on every backend, within float rounding of the update;
* sampling: a seed gives the same images on every backend (three samplers,
  the stochastic one included);
* checkpoints: ``.weights.h5`` and ``.keras`` written under any backend load
  under every other with the same outputs (all nine pairs, both formats);
* the example's checkpoint loads under every backend and computes what the
  example computes.
"""

import os
import subprocess
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
import numpy as np
import pytest
from conftest import TINY, unsaturate
from test_checkpoint_compat import example_checkpoint, inputs  # noqa: F401 (a fixture)

from ddim_keras.core.config import DiffusionConfig
from ddim_keras.model.diffusion_model import DiffusionModel

BACKENDS = ("tensorflow", "jax", "torch")
HERE = os.path.dirname(os.path.abspath(__file__))
SIZE = TINY["image_size"]
BATCH = TINY["batch_size"]
STEPS = 2


def run_workers(phase, folder):
    """``backend_worker.py PHASE FOLDER`` under every backend, the three processes at once
    (much of each is importing and compiling, which overlaps well even on two cores)."""
    processes = {}
    for backend in BACKENDS:
        environment = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        processes[backend] = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "backend_worker.py"), phase, str(folder)],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    failures = []
    for backend, process in processes.items():
        stdout, stderr = process.communicate(timeout=600)
        if process.returncode != 0:
            failures.append(f"{backend} {phase}:\n{stdout}\n{stderr[-4000:]}")
    assert not failures, "\n".join(failures)


@pytest.fixture(scope="module")
def results(tmp_path_factory, example_checkpoint):  # noqa: F811
    folder = tmp_path_factory.mktemp("backends")
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    model = unsaturate(DiffusionModel(DiffusionConfig(**TINY), kid_weights=None))
    images = rng.uniform(0.1, 0.9, size=(STEPS * BATCH, SIZE, SIZE, 3)).astype("float32")
    model.normalizer.adapt(images)
    model.save_weights(str(folder / "initial.weights.h5"))
    np.savez(
        folder / "shared.npz",
        images=images,
        noises=rng.standard_normal((STEPS, BATCH, SIZE, SIZE, 3)).astype("float32"),
        times=rng.uniform(size=(STEPS, BATCH, 1, 1, 1)).astype("float32"),
        noisy=rng.standard_normal((3, SIZE, SIZE, 3)).astype("float32"),
        variances=rng.uniform(0.05, 0.95, size=(3, 1, 1, 1)).astype("float32"),
    )

    path, example, expected = example_checkpoint
    os.link(path, folder / "example.weights.h5")
    example_images, variances = (np.asarray(a) for a in inputs())
    np.savez(
        folder / "example_inputs.npz",
        images=example_images,
        variances=variances,
        noise=np.asarray(inputs(seed=1)[0]),
    )

    for phase in ("write", "load"):
        run_workers(phase, folder)
    written = {b: dict(np.load(folder / f"outputs_{b}.npz")) for b in BACKENDS}
    loaded = {b: dict(np.load(folder / f"loaded_{b}.npz")) for b in BACKENDS}
    return written, loaded, expected, model.network.get_weights()


def test_two_training_steps_agree_on_every_backend(results):
    written, _, _, initial = results
    reference = written["tensorflow"]
    count = len(initial)
    for backend in ("jax", "torch"):
        np.testing.assert_allclose(written[backend]["n_loss"], reference["n_loss"], rtol=1e-4)
        for index in range(count):
            ours, theirs = written[backend][f"trained_{index}"], reference[f"trained_{index}"]
            # AdamW's first steps move each weight by about the learning rate (1e-3):
            # the backends agree to float rounding (measured: 3e-7).
            np.testing.assert_allclose(ours, theirs, atol=3e-6, err_msg=f"{backend} {index}")
            np.testing.assert_allclose(
                written[backend][f"ema_{index}"],
                reference[f"ema_{index}"],
                atol=3e-6,
                err_msg=f"{backend} ema {index}",
            )


def test_training_moved_the_weights(results):
    """The agreement above is not that of untouched weights."""
    written, _, _, initial = results
    moved = [
        np.abs(written["tensorflow"][f"trained_{i}"] - weight).max()
        for i, weight in enumerate(initial)
    ]
    assert max(moved) > 1e-4


def test_a_seed_gives_the_same_images_on_every_backend(results):
    written, _, _, _ = results
    keys = [key for key in written["tensorflow"] if key.startswith("initial_samples")]
    assert len(keys) == 3
    for key in keys:
        images = written["tensorflow"][key]
        assert images.std() > 0.05, key  # not a flat, saturated image
        for backend in ("jax", "torch"):
            # Measured: 1.3e-6 apart at most.
            np.testing.assert_allclose(
                written[backend][key], images, atol=2e-5, err_msg=f"{backend} {key}"
            )


@pytest.mark.parametrize("source", BACKENDS)
@pytest.mark.parametrize("target", BACKENDS)
@pytest.mark.parametrize("file_format", ["weights", "keras"])
def test_checkpoints_move_between_backends(results, source, target, file_format):
    written, loaded, _, _ = results
    for output in ("network", "ema_network", "samples"):
        expected = written[source][f"out_{output}"]
        got = loaded[target][f"{file_format}_{source}_{output}"]
        np.testing.assert_allclose(got, expected, atol=1e-4, err_msg=output)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_examples_checkpoint_loads_under_every_backend(results, backend):
    """The example's full network (64 px, 1000-frequency noise embedding): its outputs on
    another backend differ by float rounding, mostly of sin/cos at angles up to ~6,300 rad;
    the 5-step samples amplify that (the first step divides by the signal rate, 0.02)."""
    _, loaded, expected, _ = results
    # Measured: 4.4e-4 (network outputs) and 4.6e-3 (pixels in [0, 1]) at most.
    tolerances = {"network": 1e-3, "ema_network": 1e-3, "denormalized": 0.01}
    if backend == "tensorflow":
        tolerances = dict.fromkeys(tolerances, 1e-5)
    for name, tolerance in tolerances.items():
        assert np.abs(expected[name]).max() > 1e-3, name
        gap = np.abs(loaded[backend][f"example_{name}"] - expected[name]).max()
        assert gap < tolerance, (name, gap)
