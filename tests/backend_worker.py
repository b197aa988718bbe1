"""One Keras backend's half of test_backends.py.

Run as ``KERAS_BACKEND=B python backend_worker.py PHASE DIR``.

A process has one Keras backend, so each backend runs this script in a
process of its own, reading what the parent test wrote into DIR and writing
NumPy files back for the parent to compare:

* ``write``: load the shared initial weights; sample from them with a seed
  (three samplers); train two steps on the shared images with the shared
  random draws injected; save the trained model as ``.weights.h5`` and
  ``.keras``, and what it computes (``outputs_B.npz``);
* ``load``: load every backend's checkpoints (both formats) and the keras.io
  example's, and compute the same outputs (``loaded_B.npz``).
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
from conftest import TINY, injected_draws  # noqa: E402
from keras import ops  # noqa: E402

from ddim_keras.core.config import DiffusionConfig
from ddim_keras.model.diffusion_model import DiffusionModel

BACKENDS = ("tensorflow", "jax", "torch")
#: (sampler, spacing, eta) of the seeded-sampling comparison.
SAMPLERS = (("ddim", "time", 0.0), ("ddim", "time", 1.0), ("dpmpp_2m", "logsnr", 0.0))


def tiny_model():
    return DiffusionModel(DiffusionConfig(**TINY), kid_weights=None)


def samples(model):
    return {
        f"samples_{sampler}_{spacing}_{eta}": model.generate(
            4, 3, eta=eta, seed=11, sampler=sampler, spacing=spacing
        )
        for sampler, spacing, eta in SAMPLERS
    }


def outputs(model, folder):
    """What a trained model computes: both networks on fixed inputs, and seeded samples."""
    shared = np.load(os.path.join(folder, "shared.npz"))
    inputs = [ops.convert_to_tensor(shared["noisy"]), ops.convert_to_tensor(shared["variances"])]
    result = {
        name: ops.convert_to_numpy(getattr(model, name)(inputs, training=False))
        for name in ("network", "ema_network")
    }
    result["samples"] = model.generate(3, 3, seed=5)
    return result


def write(folder, backend):
    shared = np.load(os.path.join(folder, "shared.npz"))
    model = tiny_model()
    model.load_weights(os.path.join(folder, "initial.weights.h5"))
    result = {f"initial_{key}": value for key, value in samples(model).items()}

    model.compile(run_eagerly=True)
    steps = len(shared["times"])
    with injected_draws(list(shared["noises"]), list(shared["times"])) as queues:
        history = model.fit(
            shared["images"], batch_size=TINY["batch_size"], epochs=1, shuffle=False, verbose=0
        )
    assert not queues["normal"] and not queues["uniform"], "every injected draw is used"
    assert int(ops.convert_to_numpy(model.optimizer.iterations)) == steps
    result["n_loss"] = np.array(history.history["n_loss"])
    for index, weight in enumerate(model.network.get_weights()):
        result[f"trained_{index}"] = weight
    for index, weight in enumerate(model.ema_network.get_weights()):
        result[f"ema_{index}"] = weight

    model.save_weights(os.path.join(folder, f"{backend}.weights.h5"))
    model.save(os.path.join(folder, f"{backend}.keras"))
    result.update({f"out_{key}": value for key, value in outputs(model, folder).items()})
    np.savez(os.path.join(folder, f"outputs_{backend}.npz"), **result)


def load(folder, backend):
    result = {}
    for source in BACKENDS:
        model = tiny_model()
        model.load_weights(os.path.join(folder, f"{source}.weights.h5"))
        for key, value in outputs(model, folder).items():
            result[f"weights_{source}_{key}"] = value
        loaded = keras.saving.load_model(os.path.join(folder, f"{source}.keras"))
        assert isinstance(loaded, DiffusionModel)
        assert int(ops.convert_to_numpy(loaded.optimizer.iterations)) == 2
        for key, value in outputs(loaded, folder).items():
            result[f"keras_{source}_{key}"] = value

    example = np.load(os.path.join(folder, "example_inputs.npz"))
    model = DiffusionModel(DiffusionConfig(), kid_weights=None)
    model.load_weights(os.path.join(folder, "example.weights.h5"))
    inputs = [ops.convert_to_tensor(example["images"]), ops.convert_to_tensor(example["variances"])]
    result["example_network"] = ops.convert_to_numpy(model.network(inputs, training=False))
    result["example_ema_network"] = ops.convert_to_numpy(model.ema_network(inputs, training=False))
    samples = model.reverse_diffusion(ops.convert_to_tensor(example["noise"]), 5)
    result["example_samples"] = ops.convert_to_numpy(samples)
    result["example_denormalized"] = ops.convert_to_numpy(model.denormalize(samples))
    np.savez(os.path.join(folder, f"loaded_{backend}.npz"), **result)


if __name__ == "__main__":
    phase, folder = sys.argv[1], sys.argv[2]
    {"write": write, "load": load}[phase](folder, keras.backend.backend())
