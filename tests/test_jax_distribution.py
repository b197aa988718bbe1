"""--strategy under JAX: keras.distribution.DataParallel over two devices trains as one device.

JAX on the CPU splits into two devices with
``XLA_FLAGS=--xla_force_host_platform_device_count=2``; each run happens in a
process of its own (a process has one backend and one device count). Both
runs start from the same seed, so they draw the same initial weights and the
same noise (JAX's random numbers do not depend on how an array is sharded);
the two-device run shards every batch over the devices and all-reduces the
gradients. The test compares the trained networks, and checks that the
batches really were sharded.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))

TRAIN = r"""
import json, os, sys
import numpy as np
sys.path.insert(0, sys.argv[3])
import jax, keras
from conftest import TINY
from ddim_keras.model import distribute
from ddim_keras.core.config import DiffusionConfig
from ddim_keras.model import DiffusionModel

placement = distribute.make_strategy(sys.argv[1])
keras.utils.set_random_seed(0)
model = DiffusionModel(DiffusionConfig(**dict(TINY, batch_size=8)), kid_weights=None)
model.compile()
images = np.random.default_rng(0).uniform(0.1, 0.9, (24, 16, 16, 3)).astype("float32")
model.normalizer.adapt(images)
history = model.fit(images, batch_size=8, epochs=1, shuffle=False, verbose=0)
kernel = model.network.trainable_weights[0]
np.savez(sys.argv[2], *model.network.get_weights())
print(json.dumps({"devices": len(jax.devices()), "replicas": placement.num_replicas_in_sync,
                  "kernel_devices": len(kernel.value.sharding.device_set),
                  "n_loss": history.history["n_loss"][0]}))
"""


def train(strategy, path):
    env = dict(
        os.environ,
        KERAS_BACKEND="jax",
        JAX_PLATFORMS="cpu",
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
    )
    done = subprocess.run(
        [sys.executable, "-c", TRAIN, strategy, str(path), HERE],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("jax_distribution")
    one = train("one-device", folder / "one.npz")
    two = train("mirrored", folder / "two.npz")
    return (one, np.load(folder / "one.npz")), (two, np.load(folder / "two.npz"))


def test_data_parallel_over_two_jax_devices_trains_as_one_device(runs):
    (one, one_weights), (two, two_weights) = runs
    assert one["devices"] == two["devices"] == 2
    assert one["replicas"] == 1 and two["replicas"] == 2
    # The weights live on both devices (replicated) only under the distribution.
    assert one["kernel_devices"] == 1 and two["kernel_devices"] == 2
    assert two["n_loss"] == pytest.approx(one["n_loss"], rel=1e-5)
    gaps = [float(np.abs(one_weights[key] - two_weights[key]).max()) for key in one_weights.files]
    # Three AdamW steps, each moving weights by ~1e-3: the two runs agree to float rounding
    # of the all-reduce.
    assert max(gaps) < 1e-5, max(gaps)


@pytest.mark.parametrize(
    "backend,argv,words",
    [
        ("torch", ["--strategy", "mirrored"], "trains on one device under the PyTorch backend"),
        ("jax", ["--strategy", "multi-worker"], "needs JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES"),
        ("jax", ["--strategy", "mirrored", "--devices", "gpu:7"], "which JAX does not see here"),
    ],
)
def test_strategies_a_backend_cannot_run_are_refused(tmp_path, backend, argv, words):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    env.update(KERAS_BACKEND=backend, JAX_PLATFORMS="cpu")
    output = tmp_path / "run"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ddim_keras.train",
            "--dataset",
            "shapes",
            "--epochs",
            "1",
            "--output",
            str(output),
            *argv,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert words in done.stderr and "Traceback" not in done.stderr
    assert not output.exists()  # nothing written for a run that cannot start
