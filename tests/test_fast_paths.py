"""Fast paths: the EMA update, train flags reaching compile, mixed precision,
reduced-precision sampling."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import assert_not_saturated, injected_draws, unsaturate, write_config

from ddim_keras.cli import train
from ddim_keras.core import devices
from ddim_keras.core.config import DiffusionConfig
from ddim_keras.model.diffusion_model import DiffusionModel
from ddim_keras.model.network import SinusoidalEmbedding, build_network


@pytest.fixture(autouse=True)
def float32_policy():
    """Every test starts and ends with the default float32 policy."""
    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")


def _images(config, count=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 1.0, (count, config.image_size, config.image_size, 3)).astype("float32")


def test_ema_update_equals_the_reference_formula_on_every_weight(tiny_config):
    model = DiffusionModel(tiny_config, kid_weights=None)
    rng = np.random.default_rng(1)
    # Different network and EMA values everywhere, batch-norm statistics included.
    for weight in model.network.weights + model.ema_network.weights:
        weight.assign(rng.normal(size=weight.shape).astype("float32") + 1.0)
    names = [weight.path for weight in model.network.weights]
    assert any("moving_mean" in name for name in names)
    assert any("moving_variance" in name for name in names)
    network = [weight.numpy() for weight in model.network.weights]
    ema_before = [weight.numpy() for weight in model.ema_network.weights]
    ema = tiny_config.ema

    model.update_ema()
    for w, e, new in zip(network, ema_before, model.ema_network.weights):
        np.testing.assert_allclose(new.numpy(), ema * e + (1.0 - ema) * w, rtol=1e-6, atol=1e-6)
    # The network itself is untouched.
    for w, weight in zip(network, model.network.weights):
        np.testing.assert_array_equal(weight.numpy(), w)

    # The same inside a compiled function (the train step's case).
    ema_before = [weight.numpy() for weight in model.ema_network.weights]

    @tf.function(autograph=False)  # the Python loop unrolls while tracing
    def compiled_update():
        model.update_ema()

    compiled_update()
    for w, e, new in zip(network, ema_before, model.ema_network.weights):
        np.testing.assert_allclose(new.numpy(), ema * e + (1.0 - ema) * w, rtol=1e-6, atol=1e-6)


class _Stop(Exception):
    pass


def _compiled_model(monkeypatch, tmp_path, *flags):
    """Run train.main up to fit and return what fit would have trained."""
    seen = {}

    def fake_fit(self, *args, **kwargs):
        seen["model"] = self
        seen["policy"] = keras.mixed_precision.global_policy().name
        raise _Stop

    monkeypatch.setattr(DiffusionModel, "fit", fake_fit)
    config = write_config(tmp_path / "tiny.json")
    with pytest.raises(_Stop):
        train.main(
            [
                "--dataset",
                "shapes",
                "--config",
                config,
                "--output",
                str(tmp_path / "run"),
                "--verbose",
                "0",
                *flags,
            ]
        )
    return seen


def test_train_flags_reach_model_compile(monkeypatch, tmp_path):
    seen = _compiled_model(
        monkeypatch, tmp_path, "--steps-per-execution", "2", "--jit-compile", "false"
    )
    model = seen["model"]
    assert model.steps_per_execution == 2
    assert model.jit_compile is False
    assert seen["policy"] == "float32"


def test_train_defaults_keep_keras_choices(monkeypatch, tmp_path):
    model = _compiled_model(monkeypatch, tmp_path)["model"]
    assert model.steps_per_execution == 1
    # auto: Keras' choice, off on this CPU-only machine.
    assert model.jit_compile is (len(tf.config.list_physical_devices("GPU")) > 0)
    assert not isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)


def test_train_mixed_precision_flag_sets_and_restores_the_policy(monkeypatch, tmp_path):
    seen = _compiled_model(monkeypatch, tmp_path, "--mixed-precision", "float16")
    model = seen["model"]
    assert seen["policy"] == "mixed_float16"
    assert model.network.dtype_policy.name == "mixed_float16"
    assert model.normalizer.dtype_policy.name == "float32"
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert keras.mixed_precision.global_policy().name == "float32"  # set back


MIXED_STEPS = 4
#: Distance from the float32 weights after MIXED_STEPS, relative to the distance
#: float32 travelled. Measured: bfloat16 0.19, float16 0.13 (Adam normalizes each
#: weight's gradient, so rounding in small gradients shows in the weights).
GAP_LIMITS = {"mixed_bfloat16": 0.35, "mixed_float16": 0.35}


def _train_steps(config, policy, initial_weights, images, noises, times):
    """Eager train steps under ``policy`` from given weights and random draws.

    Returns (model, network weights after each step, n_loss after each step).
    """
    keras.mixed_precision.set_global_policy(policy)
    model = DiffusionModel(config, kid_weights=None)
    model.compile()
    model.set_weights(initial_weights)
    model.normalizer.finalize_state()
    weights, losses = [], []
    with injected_draws(noises, times) as queues:
        for batch in images:
            logs = model.train_step(tf.constant(batch))
            weights.append(
                np.concatenate([np.ravel(w.numpy()) for w in model.network.trainable_weights])
            )
            losses.append(float(logs["n_loss"]))
        assert not queues["normal"]
    keras.mixed_precision.set_global_policy("float32")
    return model, weights, losses


def _first_moments(model):
    """Adam's first moments (proportional to the gradients), as one vector."""
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    moments = [v for v in optimizer.variables if "momentum" in v.path]
    assert len(moments) == len(model.network.trainable_weights)
    return np.concatenate([np.ravel(v.numpy()) for v in moments])


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_training_follows_float32(policy):
    """The same steps (weights, batches, noises, times) in float32 and in mixed
    precision: the losses and the weights' path agree to the precision's rounding.

    Measured at 32 px, batch 8, after 4 steps: Adam's first moments (the
    gradients) within 1.4 % (bfloat16) and 0.5 % (float16) of float32's, n_loss
    within 0.15 %. A mixed path that skipped steps, or left its gradients scaled
    by the loss scale or the pixel count, fails: summed gradients overflow
    float16 (every step was skipped before the train step took the mean's
    gradients under loss scaling).
    """
    config = DiffusionConfig(
        image_size=32, widths=(8, 16), block_depth=1, batch_size=8, kid=False, embedding_dims=8
    )
    rng = np.random.default_rng(7)
    images = rng.uniform(0.0, 1.0, (MIXED_STEPS, 8, 32, 32, 3)).astype("float32")
    noises = rng.standard_normal(images.shape).astype("float32")
    times = rng.uniform(0.0, 1.0, (MIXED_STEPS, 8, 1, 1, 1)).astype("float32")
    keras.utils.set_random_seed(3)
    start = DiffusionModel(config, kid_weights=None)
    start.normalizer.adapt(images.reshape((-1, 32, 32, 3)))
    unsaturate(start, seed=1, mean=None, variance=None)  # a non-zero output layer
    initial = start.get_weights()
    origin = np.concatenate([np.ravel(w.numpy()) for w in start.network.trainable_weights])

    reference, exact, exact_losses = _train_steps(config, "float32", initial, images, noises, times)
    model, mixed, mixed_losses = _train_steps(config, policy, initial, images, noises, times)

    assert model.network.layers[-1].compute_dtype == policy.split("_")[1]
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) == (
        policy == "mixed_float16"
    )
    for weight in model.network.weights + model.ema_network.weights:
        assert weight.dtype == "float32"
        assert np.all(np.isfinite(weight.numpy()))
    travelled = np.linalg.norm(exact[-1] - origin)
    assert travelled > 0.1
    # Every step moved the mixed weights as far as float32's (none was skipped).
    for step in range(MIXED_STEPS):
        before = origin if step == 0 else mixed[step - 1]
        exact_before = origin if step == 0 else exact[step - 1]
        assert np.linalg.norm(mixed[step] - before) == pytest.approx(
            np.linalg.norm(exact[step] - exact_before), rel=0.1
        )
    gap = np.linalg.norm(mixed[-1] - exact[-1]) / travelled
    # The gradients themselves, through Adam's first moments: a gradient left
    # scaled by the loss scale or the pixel count would be off by orders of
    # magnitude (Adam's steps, nearly scale-invariant, would not show it).
    exact_moments = _first_moments(reference)
    moment_gap = np.linalg.norm(_first_moments(model) - exact_moments) / np.linalg.norm(
        exact_moments
    )
    print(policy, "gap / travelled", gap, "moment gap", moment_gap)
    assert gap < GAP_LIMITS[policy]
    assert moment_gap < 0.1
    np.testing.assert_allclose(mixed_losses, exact_losses, rtol=0.01)
    # The sampler (float32 signature) works under the mixed policy.
    keras.mixed_precision.set_global_policy(policy)
    generated = model.generate(2, diffusion_steps=2, seed=0)
    assert generated.dtype == np.float32 and np.all(np.isfinite(generated))


def test_compiled_sampler_equals_python_loop_under_the_default_policy(tiny_config):
    keras.utils.set_random_seed(4)
    model = DiffusionModel(tiny_config, kid_weights=None)
    # The output layer starts at zero; unsaturated weights make the comparison meaningful.
    unsaturate(model, seed=5, networks=("ema_network",))
    noise = model.initial_noise(3, seed=6)
    loop = keras.ops.convert_to_numpy(model.reverse_diffusion(noise, 4))
    compiled = keras.ops.convert_to_numpy(model.compiled_reverse_diffusion(noise, 4))
    assert compiled.dtype == np.float32
    assert_not_saturated(keras.ops.convert_to_numpy(model.denormalize(compiled)))
    np.testing.assert_allclose(compiled, loop, rtol=1e-4, atol=1e-4 * np.abs(loop).max())


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_embedding_computes_in_float32_under_mixed_policies(tiny_config, policy):
    # Angles reach 2*pi*1000 rad; in float16/bfloat16 they would be off by whole
    # radians and the embedding would no longer encode the noise level.
    network = build_network(tiny_config, dtype=policy)
    embedding = next(layer for layer in network.layers if isinstance(layer, SinusoidalEmbedding))
    assert embedding.compute_dtype == "float32"
    assert network.layers[-1].compute_dtype == policy.split("_")[1]
    variances = np.array([0.013, 0.37, 0.91], "float32").reshape(3, 1, 1, 1)
    frequencies = np.exp(
        np.linspace(
            0.0, np.log(tiny_config.embedding_max_frequency), tiny_config.embedding_dims // 2
        )
    )
    angles = 2.0 * np.pi * frequencies * variances
    expected = np.concatenate([np.sin(angles), np.cos(angles)], axis=-1)
    np.testing.assert_allclose(np.asarray(embedding(variances)), expected, atol=2e-3)


@pytest.fixture(scope="module")
def sampling_model():
    """A tiny model with distinct network and EMA outputs, whose samples are not
    clipped flat (conftest.unsaturate)."""
    from conftest import TINY

    from ddim_keras.core.config import DiffusionConfig

    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(7)
    config = DiffusionConfig(**TINY)
    model = DiffusionModel(config, kid_weights=None)
    model.normalizer.adapt(_images(config))
    return unsaturate(model, seed=8, networks=("ema_network",), mean=None, variance=None)


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_reduced_precision_sampling_is_close_to_float32_but_not_equal(sampling_model, precision):
    model = sampling_model
    exact = model.generate(4, 3, seed=2)
    reduced = model.generate(4, 3, seed=2, precision=precision)
    assert reduced.dtype == np.float32 and reduced.shape == exact.shape
    assert_not_saturated(exact)
    difference = np.abs(reduced - exact)
    # It really ran in the lower precision ...
    assert difference.max() > 0
    # ... and stays within a few grey levels of the float32 images.
    assert difference.mean() < 0.01 and difference.max() < 0.1
    network = model.sampling_network(precision)
    assert network is not model.ema_network
    assert network.layers[-1].compute_dtype == precision
    assert all(weight.dtype == "float32" for weight in network.weights)
    # Repeatable: the same seed gives the same images.
    np.testing.assert_array_equal(model.generate(4, 3, seed=2, precision=precision), reduced)


def test_reduced_precision_copy_follows_the_ema_weights_and_stays_out_of_checkpoints(
    sampling_model, tmp_path
):
    model = sampling_model
    weight_count = len(model.weights)
    model.generate(2, 2, seed=0, precision="bfloat16")
    assert len(model.weights) == weight_count  # the copy is not one of the model's weights
    path = str(tmp_path / "model.weights.h5")
    model.save_weights(path)
    fresh = DiffusionModel(model.diffusion_config, kid_weights=None)
    fresh.load_weights(path)  # same layout as a model that never sampled in bfloat16

    output_kernel = model.ema_network.layers[-1].kernel
    original = output_kernel.numpy()
    before = model.generate(2, 2, seed=0, precision="bfloat16")
    try:
        output_kernel.assign(original * 2.0)  # e.g. an EMA update while training
        after = model.generate(2, 2, seed=0, precision="bfloat16")
        copy = model.sampling_network("bfloat16")
        for source, target in zip(model.ema_network.weights, copy.weights):
            np.testing.assert_array_equal(source.numpy(), target.numpy())
    finally:
        output_kernel.assign(original)
    assert np.abs(after - before).max() > 0.01


def test_unknown_sampling_precision_is_refused(sampling_model):
    with pytest.raises(ValueError, match="float64"):
        sampling_model.generate(1, 1, precision="float64")


def test_sampling_precision_choices(tmp_path):
    with_bf16 = tmp_path / "cpuinfo_bf16"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n")
    without = tmp_path / "cpuinfo"
    without.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n")
    assert devices.cpu_has_bfloat16(str(with_bf16))
    assert not devices.cpu_has_bfloat16(str(without))
    assert not devices.cpu_has_bfloat16(str(tmp_path / "missing"))
    resolve = devices.resolve_precision_name
    assert resolve("off", cpuinfo=str(with_bf16)) == "float32"
    assert resolve("bfloat16", cpuinfo=str(without)) == "bfloat16"
    assert resolve("float16", cpuinfo=str(without)) == "float16"
    if not tf.config.list_logical_devices("GPU"):
        assert resolve("auto", cpuinfo=str(with_bf16)) == "bfloat16"
        assert resolve("auto", cpuinfo=str(without)) == "float32"
    else:
        assert resolve("auto", cpuinfo=str(without)) == "float16"
    assert resolve("auto", tpu=True, cpuinfo=str(without)) == "bfloat16"
    assert devices.POLICIES[resolve("float16")] == "mixed_float16"
