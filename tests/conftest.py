"""Shared fixtures: tiny configs and one tiny trained run for the whole session."""

import contextlib
import json
import os
import shutil

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from ddim_keras.core.config import DiffusionConfig

#: The Keras backend these tests run on (`make test` runs the modules marked
#: `backends` once more on jax and on torch).
BACKEND = os.environ["KERAS_BACKEND"]

if BACKEND == "jax":
    # What the commands do on JAX, before JAX starts: XLA:CPU's YNNPACK kernels.
    from ddim_keras import use_xla_cpu_libraries

    use_xla_cpu_libraries()


def compiled(function):
    """``function`` compiled as the backend compiles a sampler: tf.function, jax.jit, or
    as is on PyTorch (eager). Lets a test run a graph loop the way production does."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(function)
    if BACKEND == "jax":
        import jax

        return jax.jit(function)
    return function


#: A ``sitecustomize`` that makes Python's path finder blind to TensorFlow (and
#: TensorBoard, tf_keras): ``import tensorflow`` fails and ``find_spec`` says it is not
#: installed, as on a machine without it. (``sys.modules["tensorflow"] = None`` would
#: not do: Keras takes a name in ``sys.modules`` for a loaded TensorFlow.)
HIDE_TENSORFLOW = """
import importlib.machinery

_HIDDEN = ("tensorflow", "tensorboard", "tf_keras")
_find_spec = importlib.machinery.PathFinder.find_spec.__func__


def _find_spec_without_tensorflow(cls, fullname, path=None, target=None):
    if fullname.partition(".")[0].startswith(_HIDDEN):
        return None
    return _find_spec(cls, fullname, path, target)


importlib.machinery.PathFinder.find_spec = classmethod(_find_spec_without_tensorflow)
"""


def without_tensorflow_env(folder, backend="jax"):
    """Environment for a subprocess that runs this checkout as if TensorFlow were not
    installed, on ``backend`` (CPU); writes its ``sitecustomize.py`` into ``folder``."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    (folder / "sitecustomize.py").write_text(HIDE_TENSORFLOW)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("TF_CPP_MIN_LOG_LEVEL", "PYTHONPATH")
    }
    env.update(
        PYTHONPATH=os.pathsep.join([str(folder), root]), KERAS_BACKEND=backend, JAX_PLATFORMS="cpu"
    )
    return env


# Small enough for a 2-core CPU: 16 px, two resolutions, batch 4.
TINY = dict(
    image_size=16,
    widths=(8, 16),
    block_depth=1,
    batch_size=4,
    dataset_repetitions=1,
    epochs=1,
    kid=False,
    plot_diffusion_steps=3,
    kid_diffusion_steps=2,
    embedding_dims=8,
)


@pytest.fixture
def tiny_config():
    return DiffusionConfig(**TINY)


def write_config(path, **overrides):
    data = DiffusionConfig(**TINY).to_dict()
    data.update(overrides)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    return str(path)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A run directory trained for 2 short epochs on `shapes` (read-only for tests)."""
    from ddim_keras.cli import train

    root = tmp_path_factory.mktemp("tiny_run")
    config_path = write_config(root / "tiny.json", epochs=2)
    run = root / "run"
    code = train.main(
        [
            "--dataset",
            "shapes",
            "--config",
            config_path,
            "--output",
            str(run),
            "--steps-per-epoch",
            "3",
            "--verbose",
            "0",
        ]
    )
    assert code == 0
    return str(run)


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    """A writable copy of the tiny run (commands write results beside a run)."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    return run


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _noise_predicting_weights(network, rng, perturbation):
    """Weights that make ``network`` output its noisy input plus a small random function.

    A channel path carries the input's 3 channels unchanged to the output at
    full resolution: through the 1x1 convolutions (identity on those channels),
    the shortcuts of the residual blocks and the U-Net's skips. Every other
    weight is random; the weights that add to that path (the last convolution
    of each residual block, the rest of the 1x1 convolutions on it) are scaled
    by ``perturbation``.
    """
    from keras import layers

    carried = {id(network.inputs[0]): 0}  # tensor -> channel offset of the input image
    added = {
        id(t)
        for layer in network.layers
        if isinstance(layer, layers.Add)
        for t in _as_list(layer.input)
    } | {id(t) for t in network.outputs}
    for layer in network.layers:
        if isinstance(layer, layers.InputLayer):
            continue
        inputs, output = _as_list(layer.input), layer.output
        if isinstance(layer, layers.Conv2D):
            shape = tuple(layer.kernel.shape)
            kernel = rng.normal(0.0, 1.0 / np.sqrt(np.prod(shape[:-1])), shape)
            offset = carried.get(id(inputs[0]))
            if offset is not None and shape[:2] == (1, 1):
                kernel *= perturbation
                kernel[0, 0, offset : offset + 3, :3] += np.eye(3)
                carried[id(output)] = 0
            elif id(output) in added:
                kernel *= perturbation
            layer.kernel.assign(kernel.astype("float32"))
            layer.bias.assign(
                rng.normal(0.0, perturbation, tuple(layer.bias.shape)).astype("float32")
            )
        elif isinstance(layer, layers.Concatenate):
            start = 0
            for tensor in inputs:
                if id(tensor) in carried:
                    carried[id(output)] = start + carried[id(tensor)]
                    break
                start += tensor.shape[-1]
        elif isinstance(layer, layers.Add):
            offsets = [carried[id(t)] for t in inputs if id(t) in carried]
            if offsets:
                carried[id(output)] = offsets[0]
    assert carried.get(id(network.outputs[0])) == 0, "the network layout has changed"


def unsaturate(
    model, seed=0, perturbation=0.005, mean=0.5, variance=0.05, networks=("network", "ema_network")
):
    """Give an untrained model weights whose samples are spread inside (0, 1).

    A fresh network predicts zero noise (its output convolution is zero), and
    random weights predict noise unrelated to the input: either way the first
    step's predicted image is the noise divided by min_signal_rate (x50), and
    nearly every pixel clips to 0 or 1, so comparisons of samples compare
    constant images. Here the networks predict the noisy input itself plus a
    small seeded random function of the input and the noise level (what a
    trained network does at high noise), and the normalizer has ``mean`` and
    ``variance`` (None keeps the adapted ones). See :func:`assert_not_saturated`.
    """
    rng = np.random.default_rng(seed)
    first = getattr(model, networks[0])
    _noise_predicting_weights(first, rng, perturbation)
    for name in networks[1:]:
        for target, source in zip(getattr(model, name).weights, first.weights):
            target.assign(source)
    normalizer = model.normalizer
    if mean is not None:
        normalizer.adapt_mean.assign(np.full(normalizer.adapt_mean.shape, mean, "float32"))
    if variance is not None:
        normalizer.adapt_variance.assign(
            np.full(normalizer.adapt_variance.shape, variance, "float32")
        )
    normalizer.finalize_state()
    return model


def assert_not_saturated(images, max_fraction=0.05, min_std=0.02):
    """Images in [0, 1] (or uint8) that are not clipped flat: comparing them means something."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        images = images / 255.0
    clipped = np.mean((images <= 0.0) | (images >= 1.0))
    assert clipped < max_fraction, f"{clipped:.1%} of the pixels are clipped to 0 or 1"
    stds = images.reshape(len(images), -1).std(axis=1)
    assert stds.min() > min_std, f"an image is nearly flat (std {stds.min():.4f})"


@pytest.fixture(scope="session")
def sampling_run(tiny_run, tmp_path_factory):
    """A copy of the tiny run whose best checkpoint samples unsaturated images.

    Two short epochs leave the EMA network near its zero-output start, so the
    tiny run's own samples are ~97 % clipped pixels (read-only for tests).
    """
    from ddim_keras.io.loading import load_model
    from ddim_keras.io.run_dir import RunDir

    run = tmp_path_factory.mktemp("sampling_run") / "run"
    shutil.copytree(tiny_run, run)
    model = unsaturate(load_model(run=str(run), kid_weights=None))
    model.save_weights(RunDir(run).best_checkpoint)
    return str(run)


def run_command(capsys, main, *argv):
    """Run a CLI's ``main`` as ``python -m`` would; returns (exit code, stdout, stderr)."""
    from ddim_keras.cli.runner import run_cli

    code = run_cli(main, [str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error(err, words):
    """stderr holds exactly one ``error:`` paragraph, no traceback, naming ``words``."""
    assert "Traceback" not in err
    assert err.count("error: ") == 1
    message = " ".join(err[err.index("error: ") :].split())
    for word in words:
        assert word in message, message


@contextlib.contextmanager
def injected_draws(noises, times):
    """``keras.random.normal`` / ``uniform`` return the given arrays, in order.

    A train step draws its noises and then its diffusion times through them (the
    example's and ours alike): two models given the same queues train on the
    same random numbers. Yields the queues, so a test can check all were used.
    """
    import keras
    from keras import ops

    queues = {"normal": list(noises), "uniform": list(times)}
    originals = {name: getattr(keras.random, name) for name in queues}

    def fake(name):
        def draw(shape, *args, **kwargs):
            value = queues[name].pop(0)
            assert tuple(value.shape) == tuple(int(d) for d in shape), (name, shape)
            return ops.convert_to_tensor(value)

        return draw

    for name in queues:
        setattr(keras.random, name, fake(name))
    try:
        yield queues
    finally:
        for name, original in originals.items():
            setattr(keras.random, name, original)


def refuse_opening(monkeypatch, path):
    """Make ``open(path)`` fail with EACCES, as for root on a root-squashed NFS share.

    Root reads any file whatever its mode, so a chmod alone cannot make a file
    unreadable in CI (which runs as root).
    """
    import builtins
    import errno

    real_open = builtins.open

    def refusing_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and os.path.abspath(file) == str(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing_open)


@pytest.fixture
def no_network(monkeypatch):
    """``tfds_sources.network_reachable`` always answers 'unreachable'; yields the hosts probed."""
    from ddim_keras.data import tfds_sources

    probed = []

    def unreachable(host, port=443, timeout=None):
        probed.append(host)
        return False

    monkeypatch.setattr(tfds_sources, "network_reachable", unreachable)
    return probed


def pytest_collection_modifyitems(config, items):
    """On JAX or PyTorch only the core suite (marked `backends`) runs; the other tests use
    TensorFlow itself (tf.data, tf.distribute, the restated example) or start their own
    backends in subprocesses, and run in the TensorFlow pass of `make test`."""
    if BACKEND == "tensorflow":
        return
    skip = pytest.mark.skip(
        reason=f"a TensorFlow-pass test; on {BACKEND} only the tests marked `backends` run"
    )
    for item in items:
        if "backends" not in item.keywords:
            item.add_marker(skip)
