"""tf.distribute: MirroredStrategy equals one device; multi-worker training on localhost.

Both tests run TensorFlow in subprocesses: logical devices and a multi-worker
cluster must be configured before TensorFlow initializes its devices, which the
pytest process has long done.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import TINY, write_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs in a fresh interpreter. Two logical CPU devices make a MirroredStrategy
# with two replicas on a CPU-only machine.
#
# Making the two runs comparable:
# - same initial weights (network, EMA network, normalizer) via set_weights;
# - the noise and diffusion times that train_step draws at random become
#   deterministic functions of each image (a subclass overrides noisy_batch;
#   the rest of train_step, the loss scaling, the optimizer's all-reduce and
#   update_ema are the code under test), so a replica's half of the global
#   batch gets exactly the noise the one-device run gives those images;
# - BatchNormalization normalizes with the statistics of the batch it sees: a
#   replica's 4 images have other statistics than the global 8, and Keras 3's
#   moving statistics are per replica. Each global batch is therefore 4 images
#   followed by the same 4 images in another order: both replicas see the same
#   set of images, whose statistics equal those of the global batch. Each
#   replica's summed loss is then half the global sum, and the optimizer sums
#   the replicas' gradients, which restores the global batch's gradient, as on
#   one device; any rescaling of the replicas' losses would be wrong. AdamW's
#   steps are nearly invariant to a gradient scale, so the optimizer's moments,
#   which are proportional to the gradients, are compared too (to 1e-5), and
#   so is the n_loss metric.
SCRIPT = textwrap.dedent("""
    import json, os, sys
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    import keras
    import numpy as np
    from ddim_keras.core.config import DiffusionConfig
    from ddim_keras.model import DiffusionModel

    class DeterministicNoise(DiffusionModel):
        def noisy_batch(self, images, training):
            pixels = images
            images = self.normalizer(images, training=training)
            noises = tf.sin(17.0 * images + 5.0 * tf.reverse(images, axis=[2]))
            diffusion_times = tf.reduce_mean(pixels, axis=[1, 2, 3], keepdims=True)
            noise_rates, signal_rates = self.diffusion_schedule(diffusion_times)
            noisy_images = signal_rates * images + noise_rates * noises
            return images, noises, noisy_images, noise_rates, signal_rates

    config = DiffusionConfig.from_dict(json.loads(sys.argv[1]))
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(3):
        half = rng.uniform(0.0, 1.0, (4, 16, 16, 3)).astype("float32")
        batches.append(np.concatenate([half, half[[2, 0, 3, 1]]], axis=0))
    data = np.concatenate(batches, axis=0)

    def dataset():
        return tf.data.Dataset.from_tensor_slices(data).batch(8, drop_remainder=True)

    keras.utils.set_random_seed(1)
    single = DeterministicNoise(config, kid_weights=None)
    single.compile()
    single.normalizer.adapt(dataset())
    initial = single.get_weights()
    initial_network = single.network.get_weights()

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        mirrored = DeterministicNoise(config, kid_weights=None)
        mirrored.compile()
    mirrored.set_weights(initial)
    # set_weights does not refresh Normalization's cached mean/variance (loading a
    # checkpoint does): without this the mirrored model would normalize with 0/1.
    mirrored.normalizer.finalize_state()

    single.fit(dataset(), epochs=1, verbose=0, shuffle=False)
    mirrored.fit(dataset(), epochs=1, verbose=0, shuffle=False)
    assert int(single.optimizer.iterations.numpy()) == 3
    assert int(mirrored.optimizer.iterations.numpy()) == 3

    # Attention's key bias gets a zero gradient in exact arithmetic (the softmax ignores
    # a shift shared by all keys), so its gradient, moments and AdamW steps are float
    # rounding alone, different in every run and inert: left out of the comparisons.
    inert = lambda name: "key" in name and "bias" in name
    kept = [not inert(w.path) for w in single.network.weights]

    worst = 0.0
    for a, b in zip(single.get_weights(), mirrored.get_weights()):
        worst = max(worst, float(np.max(np.abs(a - b))) if a.size else 0.0)
    # Adam's first and second moments scale with the gradients (relative gap).
    moments = 0.0
    for v, w in zip(single.optimizer.variables, mirrored.optimizer.variables):
        a, b = np.asarray(v), np.asarray(w)
        if a.dtype.kind == "f" and a.size and not inert(v.path):
            moments = max(moments, float(np.max(np.abs(a - b)) / (np.max(np.abs(a)) + 1e-30)))
    moved = max(float(np.max(np.abs(a - b))) for a, b in
                zip(single.network.get_weights(), initial_network))
    flat = lambda weights: np.concatenate(
        [np.ravel(w) for w, keep in zip(weights, kept) if keep])
    # The two runs' distance relative to how far training moved the weights (L2).
    relative_gap = float(np.linalg.norm(flat(single.network.get_weights())
                                        - flat(mirrored.network.get_weights()))
                         / np.linalg.norm(flat(single.network.get_weights())
                                          - flat(initial_network)))
    # Replica 1's copies too: the trained weights are mirrored.
    replica_gap = max(float(np.max(np.abs(v.value.values[0].numpy() - v.value.values[1].numpy())))
                      for v in mirrored.network.trainable_weights)
    print(json.dumps({"worst": worst, "moved": moved, "replica_gap": replica_gap,
                      "moments": moments, "relative_gap": relative_gap,
                      "count": len(single.weights),
                      "n_loss": [float(single.noise_loss_tracker.result()),
                                 float(mirrored.noise_loss_tracker.result())]}))
""")


# KID under two replicas: each replica encodes its half of the batch; the
# features are gathered, so the estimate is that of the whole batch on one device.
KID_SCRIPT = textwrap.dedent("""
    import json, os, warnings
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    import keras
    import numpy as np
    from ddim_keras.metrics.kid import KID, kernel_inception_distance
    warnings.simplefilter("ignore")

    rng = np.random.default_rng(0)
    real = rng.uniform(0.0, 1.0, (2, 8, 16, 16, 3)).astype("float32")
    generated = rng.uniform(0.0, 1.0, (2, 8, 16, 16, 3)).astype("float32") ** 2
    keras.utils.set_random_seed(2)
    # A small stand-in for InceptionV3 (whose random-weight features are nearly
    # constant): KID then takes clearly different values on different batches.
    encoder = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(16, 3),
                                keras.layers.GlobalAveragePooling2D()])
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        metric = KID(image_size=16, encoder=encoder)
    dataset = tf.data.Dataset.from_tensor_slices((real, generated))
    for real_batch, generated_batch in strategy.experimental_distribute_dataset(dataset):
        strategy.run(tf.function(metric.update_state), args=(real_batch, generated_batch))
    per_batch = [float(kernel_inception_distance(encoder(r), encoder(g)))
                 for r, g in zip(real, generated)]
    halves = [float(kernel_inception_distance(encoder(r[part]), encoder(g[part])))
              for r, g in zip(real, generated) for part in (slice(0, 4), slice(4, 8))]
    print(json.dumps({"mirrored": float(metric.result()), "one_device": float(np.mean(per_batch)),
                      "halves": float(np.mean(halves))}))
""")


# Validation noise under two replicas: every evaluation batch draws its own
# noise and times (they used to be seeded by optimizer.iterations, which does not
# move during evaluate), different from the next training step's and between
# the replicas. Checked on the draws themselves and through evaluate(): with
# the same images in every batch, repeated noise would keep the running
# val n_loss constant from batch to batch.
VALIDATION_NOISE_SCRIPT = textwrap.dedent("""
    import json, os, sys
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    import keras
    import numpy as np
    from ddim_keras.core.config import DiffusionConfig
    from ddim_keras.model import DiffusionModel

    config = DiffusionConfig.from_dict(json.loads(sys.argv[1]))
    keras.utils.set_random_seed(4)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = DiffusionModel(config, kid_weights=None)
        model.compile()
    images = np.random.default_rng(0).uniform(0.0, 1.0, (8, 16, 16, 3)).astype("float32")
    model.normalizer.adapt(images)
    batch = next(iter(strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensors(images))))

    def draw(training):
        fn = tf.function(lambda x: model._draw_noises(x, training))
        noises, times = strategy.run(fn, args=(batch,))
        return [np.concatenate([n.numpy().ravel(), t.numpy().ravel()])
                for n, t in zip(strategy.experimental_local_results(noises),
                                strategy.experimental_local_results(times))]

    train = draw(True)
    evaluations = [draw(False) for _ in range(3)]
    def same(a, b):
        return bool(np.array_equal(a, b))
    checks = {
        "eval_repeats": any(same(evaluations[i][r], evaluations[j][r]) for i in range(3)
                            for j in range(i + 1, 3) for r in range(2)),
        "eval_equals_train": any(same(e[r], train[r]) for e in evaluations for r in range(2)),
        "replicas_equal": any(same(e[0], e[1]) for e in evaluations + [train]),
        "eval_steps": int(model._replica_seeds.value.evaluation_steps.numpy()),
    }

    running = []
    class Running(keras.callbacks.Callback):
        def on_test_batch_end(self, batch, logs=None):
            running.append(float(logs["n_loss"]))
    same_images = tf.data.Dataset.from_tensors(images).repeat(4)
    model.evaluate(same_images, verbose=0, callbacks=[Running()])
    checks["running_val_n_loss"] = running
    print(json.dumps(checks))
""")


def _env():
    env = dict(os.environ)
    env.update(KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("TF_CONFIG", None)
    return env


@pytest.mark.parametrize(
    "objective",
    [
        {},
        {"prediction": "velocity", "loss_weighting": "min_snr", "ema_warmup": True},
        {"attention_heads": 2, "block_embedding": True},
    ],
    ids=["example", "velocity_min_snr_warmup", "attention_block_embedding"],
)
def test_mirrored_two_replicas_equals_one_device(objective):
    config = dict(TINY, batch_size=8, **objective)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(config)],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    numbers = json.loads(result.stdout.strip().splitlines()[-1])
    assert numbers["moved"] > 1e-4  # training did change the weights
    # Float rounding only (measured: 1e-4 and 4e-5; 1.2e-3 with attention and the
    # per-block embedding, most of it in one 3x3 convolution of the first block, while
    # their moments agree to 4e-4); halving or doubling the replicas' gradients would
    # move the moments by 50 % or more.
    assert numbers["relative_gap"] < (3e-3 if objective.get("attention_heads") else 1e-3), numbers
    assert numbers["moments"] < 1e-3, numbers
    assert numbers["replica_gap"] == 0.0
    assert numbers["n_loss"][0] == pytest.approx(numbers["n_loss"][1], rel=1e-5)


def test_validation_batches_draw_their_own_noise_under_two_replicas():
    config = dict(TINY, batch_size=8)
    result = subprocess.run(
        [sys.executable, "-c", VALIDATION_NOISE_SCRIPT, json.dumps(config)],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    checks = json.loads(result.stdout.strip().splitlines()[-1])
    assert not checks["eval_repeats"], "two evaluation steps drew the same noise"
    assert not checks["eval_equals_train"], "evaluation drew the next training step's noise"
    assert not checks["replicas_equal"], "both replicas drew the same noise"
    assert checks["eval_steps"] == 3
    running = checks["running_val_n_loss"]
    assert len(running) == 4
    # Same images in every batch: only fresh noise moves the running mean.
    assert len({round(value, 7) for value in running}) == 4, running


def test_kid_under_two_replicas_is_the_global_batch_estimate():
    result = subprocess.run(
        [sys.executable, "-c", KID_SCRIPT],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    numbers = json.loads(result.stdout.strip().splitlines()[-1])
    assert abs(numbers["one_device"]) > 1e-4  # the sets differ: a real value to compare
    assert numbers["mirrored"] == pytest.approx(numbers["one_device"], rel=1e-4, abs=1e-7)
    # Without the gather each replica would estimate on its 4 images: another number.
    assert (
        abs(numbers["halves"] - numbers["one_device"])
        > 10 * abs(numbers["mirrored"] - numbers["one_device"]) + 1e-9
    )


def test_train_command_mirrors_over_two_cpu_devices_with_kid(tmp_path):
    """The CLI path: two logical CPUs from --devices, batches split, KID gathered; with
    the objective switches on (each replica draws its own flips)."""
    import csv

    config = write_config(tmp_path / "tiny.json", batch_size=8, kid=True)
    run = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "ddim_keras.train",
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
        "--strategy",
        "mirrored",
        "--devices",
        "/cpu:0,/cpu:1",
        "--kid-weights",
        "none",
        "--prediction",
        "image",
        "--loss-weighting",
        "min_snr",
        "--augment",
        "flip",
        "--ema-warmup",
    ]
    result = subprocess.run(
        command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=400
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 replicas" in result.stderr and "4 per replica" in result.stderr
    with open(run / "history.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1
    for key in ("n_loss", "val_n_loss", "val_kid"):
        assert np.isfinite(float(rows[0][key])), key
    assert os.listdir(run / "checkpoints")


def test_unknown_mirrored_devices_are_a_usage_error(tmp_path):
    config = write_config(tmp_path / "tiny.json", batch_size=8)
    command = [
        sys.executable,
        "-m",
        "ddim_keras.train",
        "--dataset",
        "shapes",
        "--config",
        config,
        "--output",
        str(tmp_path / "run"),
        "--strategy",
        "mirrored",
        "--devices",
        "/gpu:0,/gpu:1",
    ]
    result = subprocess.run(
        command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "/gpu:0" in result.stderr and "does not have" in result.stderr


def _free_ports(count):
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def test_multi_worker_trains_and_only_the_chief_writes_the_run(tmp_path):
    config = write_config(tmp_path / "tiny.json", batch_size=8)
    run = tmp_path / "run"
    worker_dir = tmp_path / "worker1"
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes, logs = [], []
    try:
        for index in range(2):
            env = _env()
            env["TF_CONFIG"] = json.dumps(
                {"cluster": cluster, "task": {"type": "worker", "index": index}}
            )
            log = open(tmp_path / f"worker{index}.log", "w+")
            logs.append(log)
            command = [
                sys.executable,
                "-m",
                "ddim_keras.train",
                "--strategy",
                "multi-worker",
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
                "--worker-dir",
                str(worker_dir),
            ]
            processes.append(
                subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            )
        codes = [process.wait(timeout=240) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
        outputs = []
        for log in logs:
            log.seek(0)
            outputs.append(log.read()[-3000:])
            log.close()
    assert codes == [0, 0], outputs

    # The chief (worker 0) wrote the run; worker 1 wrote the same files into its folder.
    assert json.load(open(run / "state.json"))["epoch"] == 1
    assert sorted(os.listdir(run / "checkpoints")) == ["best.weights.h5", "last.weights.h5"]
    assert (run / "samples" / "final.png").is_file()
    assert (worker_dir / "checkpoints" / "last.weights.h5").is_file()
    assert not any(name.endswith(".tmp.weights.h5") for name in os.listdir(run / "checkpoints"))

    # Both workers ended with the same trained (and EMA) weights. Batch-norm moving
    # statistics are per replica in Keras 3 (each worker's from its own share of the
    # data), so only the trainable weights are compared.
    from ddim_keras.core.config import DiffusionConfig
    from ddim_keras.io.loading import load_weights
    from ddim_keras.model.diffusion_model import DiffusionModel

    models = []
    for path in (
        run / "checkpoints" / "last.weights.h5",
        worker_dir / "checkpoints" / "last.weights.h5",
    ):
        model = DiffusionModel(DiffusionConfig(**dict(TINY, batch_size=8)), kid_weights=None)
        load_weights(model, str(path))
        models.append(model)
    chief, other = models
    for network in ("network", "ema_network"):
        pairs = zip(
            getattr(chief, network).trainable_weights, getattr(other, network).trainable_weights
        )
        for a, b in pairs:
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-6)
    # ...and trained: the zero-initialised output layer moved.
    assert np.abs(chief.network.trainable_weights[-1].numpy()).max() > 0


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--strategy", "multi-worker"], "TF_CONFIG"),
        (["--jit-compile", "true", "--mixed-precision", "bfloat16"], "cannot be combined"),
        (["--devices", "/gpu:0"], "--devices is only used with --strategy mirrored"),
        (["--steps-per-execution", "0"], "--steps-per-execution must be at least 1"),
    ],
)
def test_bad_speed_flags_are_usage_errors(monkeypatch, tmp_path, capsys, flags, message):
    from ddim_keras.cli import train
    from ddim_keras.cli.runner import run_cli

    monkeypatch.delenv("TF_CONFIG", raising=False)
    config = write_config(tmp_path / "tiny.json")
    code = run_cli(
        train.main,
        ["--dataset", "shapes", "--config", config, "--output", str(tmp_path / "run"), *flags],
    )
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_chief_is_worker_zero_without_a_chief_task():
    from ddim_keras.model.distribute import is_chief

    def env(task_type, index, chief=False):
        cluster = {"worker": ["a:1", "b:2"]}
        if chief:
            cluster["chief"] = ["c:3"]
        return {
            "TF_CONFIG": json.dumps(
                {"cluster": cluster, "task": {"type": task_type, "index": index}}
            )
        }

    assert is_chief({})
    assert is_chief(env("worker", 0))
    assert not is_chief(env("worker", 1))
    assert not is_chief(env("worker", 0, chief=True))
    assert is_chief(env("chief", 0, chief=True))
