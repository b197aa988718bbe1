"""Training objectives (ddim_keras.model.objectives and the model's use of them).

Every expected value is computed here independently, in NumPy float64, from the
papers' formulas: the velocity of Salimans & Ho 2022, the min-SNR-gamma weights
of Hang et al. 2023, diffusers' EMA warm-up; the samplers against the float64
reference of ``reference_samplers.py`` on its Gaussian toy.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
import numpy as np
import pytest
import reference_samplers as reference
from conftest import TINY, compiled
from keras import ops

from ddim_keras.core.config import DiffusionConfig, architecture_differences, preset
from ddim_keras.core.errors import ConfigError
from ddim_keras.core.schedules import cosine_schedule
from ddim_keras.model import objectives
from ddim_keras.model.diffusion_model import DiffusionModel
from ddim_keras.sampling import loops

pytestmark = pytest.mark.backends  # the core suite: `make test` runs it on every backend

PREDICTIONS = ("noise", "velocity", "image")
RNG = np.random.default_rng(21)
IMAGES = RNG.standard_normal((5, 4, 4, 3))
NOISES = RNG.standard_normal((5, 4, 4, 3))
# Angles across the schedule's whole range (signal rates 0.95 .. 0.02).
ANGLES = np.linspace(np.arccos(0.95), np.arccos(0.02), 5).reshape(5, 1, 1, 1)
SIGNAL, NOISE = np.cos(ANGLES), np.sin(ANGLES)


def numpy(tensor):
    return np.asarray(ops.convert_to_numpy(tensor), dtype="float64")


def tensors(*arrays):
    return [ops.convert_to_tensor(np.asarray(a, "float32")) for a in arrays]


def expected_output(prediction, images, noises, signal, noise):
    """What each kind of network should output, from the papers' definitions."""
    return {
        "noise": noises,
        "velocity": signal * noises - noise * images,  # Salimans & Ho 2022, eq. (10)
        "image": images,
    }[prediction]


# -- the formulas ---------------------------------------------------------------------------


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_target_is_the_papers_definition(prediction):
    got = objectives.target(prediction, *tensors(IMAGES, NOISES, NOISE, SIGNAL))
    want = expected_output(prediction, IMAGES, NOISES, SIGNAL, NOISE)
    np.testing.assert_allclose(numpy(got), want, atol=1e-5)


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_an_exact_output_gives_back_the_noise_and_the_image(prediction):
    noisy = SIGNAL * IMAGES + NOISE * NOISES
    exact = expected_output(prediction, IMAGES, NOISES, SIGNAL, NOISE)
    pred_noises, pred_images = objectives.components(
        prediction, *tensors(exact, noisy, NOISE, SIGNAL)
    )
    # The noise model divides by a signal rate as small as 0.02: float32 loses ~50x there.
    np.testing.assert_allclose(numpy(pred_images), IMAGES, atol=2e-4)
    np.testing.assert_allclose(numpy(pred_noises), NOISES, atol=2e-5)


def test_the_velocity_is_the_angular_derivative_of_the_noisy_image():
    """v = d(noisy)/d(angle) where signal = cos(angle), noise = sin(angle) (the paper's view)."""
    step = 1e-6
    derivative = (
        (np.cos(ANGLES + step) * IMAGES + np.sin(ANGLES + step) * NOISES)
        - (np.cos(ANGLES - step) * IMAGES + np.sin(ANGLES - step) * NOISES)
    ) / (2 * step)
    got = objectives.target("velocity", *tensors(IMAGES, NOISES, NOISE, SIGNAL))
    np.testing.assert_allclose(numpy(got), derivative, atol=1e-5)


@pytest.mark.parametrize(
    "prediction, formula",
    [
        ("noise", lambda snr, gamma: min(snr, gamma) / snr),
        ("velocity", lambda snr, gamma: min(snr, gamma) / (snr + 1)),
        ("image", lambda snr, gamma: min(snr, gamma)),
    ],
)
@pytest.mark.parametrize("gamma", [1.0, 5.0])
def test_min_snr_weights_follow_the_papers_formula_for_each_target(prediction, formula, gamma):
    got = numpy(objectives.min_snr_weights(prediction, *tensors(NOISE, SIGNAL), gamma))
    for i, (s, n) in enumerate(zip(SIGNAL.ravel(), NOISE.ravel())):
        snr = s**2 / n**2
        assert got[i, 0, 0, 0] == pytest.approx(formula(snr, gamma), rel=1e-5)


def test_min_snr_weights_make_every_target_the_same_capped_image_loss():
    """The weights' purpose: weighted squared errors of each target are the same loss.

    An error e in the predicted image is, in the noise, e * signal / noise and, in the
    velocity, e / noise; their weighted squares all equal min(snr, gamma) * e**2.
    """
    error = 0.1
    squared = {
        "image": error**2,
        "noise": (error * SIGNAL / NOISE) ** 2,
        "velocity": (error / NOISE) ** 2,
    }
    weighted = {
        prediction: numpy(objectives.min_snr_weights(prediction, *tensors(NOISE, SIGNAL), 5.0))
        * squared[prediction]
        for prediction in PREDICTIONS
    }
    np.testing.assert_allclose(weighted["noise"], weighted["image"], rtol=1e-5)
    np.testing.assert_allclose(weighted["velocity"], weighted["image"], rtol=1e-5)


def diffusers_decay(optimization_step, max_decay, inv_gamma=1.0, power=2 / 3):
    """diffusers' ``EMAModel.get_decay`` with ``use_ema_warmup=True``, restated."""
    step = max(0, optimization_step - 1)
    if step <= 0:
        return 0.0
    return min(1 - (1 + step / inv_gamma) ** -power, max_decay)


def test_ema_warmup_follows_diffusers_schedule_capped_by_the_configs_ema():
    for updates in (1, 2, 3, 10, 31, 100, 1000, 10_000, 100_000):
        got = float(numpy(objectives.ema_decay(ops.convert_to_tensor(updates, "int64"), 0.999)))
        assert got == pytest.approx(diffusers_decay(updates, 0.999), abs=1e-6), updates
    assert float(numpy(objectives.ema_decay(10**6, 0.99))) == pytest.approx(0.99)


# -- the config -----------------------------------------------------------------------------


def test_defaults_are_the_examples_objective():
    config = DiffusionConfig()
    assert (config.prediction, config.loss_weighting, config.augment) == ("noise", "none", "none")
    assert config.ema_warmup is False and config.snr_gamma == 5.0


@pytest.mark.parametrize(
    "field, value",
    [
        ("prediction", "epsilon"),
        ("loss_weighting", "snr"),
        ("augment", "rotate"),
        ("snr_gamma", 0.0),
        ("snr_gamma", float("inf")),
    ],
)
def test_bad_objective_values_are_refused_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        DiffusionConfig(**{field: value})


def test_prediction_is_an_architecture_field_and_old_configs_mean_noise():
    old = DiffusionConfig().to_dict()
    del old["prediction"]  # a config.json written before the field existed
    assert architecture_differences(old, DiffusionConfig()) == []
    assert architecture_differences(old, DiffusionConfig(prediction="velocity")) == [
        "prediction 'noise' vs 'velocity'"
    ]


def test_train_flags_set_the_objective_fields():
    from ddim_keras.cli import train

    args = train.build_parser().parse_args(
        [
            "--dataset",
            "shapes",
            "--prediction",
            "velocity",
            "--loss-weighting",
            "min_snr",
            "--snr-gamma",
            "3",
            "--augment",
            "flip",
            "--ema-warmup",
        ]
    )
    config = train.resolve_config(args)
    assert (config.prediction, config.loss_weighting) == ("velocity", "min_snr")
    assert config.snr_gamma == 3.0
    assert (config.augment, config.ema_warmup) == ("flip", True)
    plain = train.resolve_config(train.build_parser().parse_args(["--dataset", "shapes"]))
    assert plain == preset("shapes")  # no flag, no change


# -- the model ------------------------------------------------------------------------------


def tiny_model(**fields):
    keras.utils.set_random_seed(3)
    model = DiffusionModel(DiffusionConfig(**{**TINY, **fields}))
    model.compile()
    model.normalizer.adapt(np.random.default_rng(0).uniform(size=(8, 16, 16, 3)).astype("float32"))
    return model


def tiny_batch(model, seed=5):
    images = np.random.default_rng(seed).uniform(size=(4, 16, 16, 3)).astype("float32")
    keras.utils.set_random_seed(seed)
    return images, model.noisy_batch(images, training=True)


@pytest.mark.parametrize("weighting", ["none", "min_snr"])
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_the_objective_is_the_loss_of_the_output_against_its_target(prediction, weighting):
    model = tiny_model(prediction=prediction, loss_weighting=weighting, snr_gamma=2.0)
    _, batch = tiny_batch(model)
    images, noises, noisy, noise_rates, signal_rates = (numpy(t) for t in batch)
    outputs = numpy(model.network_outputs(*tensors(noisy, noise_rates), training=True))
    objective, noise_loss, image_loss = (numpy(t) for t in model.step_losses(batch, model.network))
    target = expected_output(prediction, images, noises, signal_rates, noise_rates)
    want = np.mean(np.abs(target - outputs), axis=-1)  # the example's MAE, per pixel
    if weighting == "min_snr":
        snr = (signal_rates / noise_rates) ** 2
        capped = np.minimum(snr, 2.0)
        weights = {"noise": capped / snr, "velocity": capped / (snr + 1), "image": capped}
        want = want * weights[prediction][..., 0]
    np.testing.assert_allclose(objective, want, rtol=1e-4, atol=1e-6)
    # The reported losses stay the example's noise and image errors, for every target.
    if prediction == "image":
        pred_images = outputs
    elif prediction == "velocity":
        pred_images = signal_rates * noisy - noise_rates * outputs
    else:
        pred_images = (noisy - noise_rates * outputs) / signal_rates
    np.testing.assert_allclose(
        image_loss, np.mean(np.abs(images - pred_images), axis=-1), rtol=1e-4, atol=1e-5
    )
    assert noise_loss.shape == objective.shape == (4, 16, 16)


def test_the_default_objective_is_the_noise_loss_itself():
    model = tiny_model()
    _, batch = tiny_batch(model)
    objective, noise_loss, _ = model.step_losses(batch, model.network)
    assert objective is noise_loss


def test_flips_mirror_some_images_and_leave_the_examples_draws_alone():
    plain, flipping = tiny_model(batch_size=32), tiny_model(batch_size=32, augment="flip")
    images = np.random.default_rng(1).uniform(size=(32, 16, 16, 3)).astype("float32")
    keras.utils.set_random_seed(9)
    expected = [numpy(t) for t in plain.noisy_batch(images, training=True)]
    keras.utils.set_random_seed(9)
    got = [numpy(t) for t in flipping.noisy_batch(images, training=True)]
    for name, index in (("noises", 1), ("noise rates", 3), ("signal rates", 4)):
        np.testing.assert_array_equal(got[index], expected[index], err_msg=name)
    normalized = expected[0]
    mirrored = normalized[:, :, ::-1, :]
    same = np.all(got[0] == normalized, axis=(1, 2, 3))
    flipped = np.all(got[0] == mirrored, axis=(1, 2, 3))
    assert np.all(same | flipped)
    assert 4 <= flipped.sum() <= 28  # a fair coin per image (P(outside) < 1e-4)
    # The noisy images are made from the flipped images.
    np.testing.assert_allclose(got[2], got[4] * got[0] + got[3] * got[1], rtol=1e-5, atol=1e-5)
    # Validation batches are never flipped.
    keras.utils.set_random_seed(9)
    validation = numpy(flipping.noisy_batch(images, training=False)[0])
    np.testing.assert_array_equal(validation, numpy(plain.normalizer(images)))


def test_ema_warmup_copies_the_network_first_then_follows_the_schedule():
    model = tiny_model(ema_warmup=True, ema=0.999)
    images = np.random.default_rng(2).uniform(size=(4, 16, 16, 3)).astype("float32")
    before = [numpy(w) for w in model.ema_network.weights]
    model.train_on_batch(images)
    network = [numpy(w) for w in model.network.weights]
    ema = [numpy(w) for w in model.ema_network.weights]
    for got, want in zip(ema, network):
        np.testing.assert_allclose(got, want, atol=1e-6)  # decay 0: a copy
    # ... of weights the step really moved (a fixed 0.999 would have stayed near these).
    assert max(np.max(np.abs(a - b)) for a, b in zip(network, before)) > 1e-4
    model.train_on_batch(images)
    decay = diffusers_decay(2, 0.999)  # 0.370
    for got, new, old in zip(
        [numpy(w) for w in model.ema_network.weights],
        [numpy(w) for w in model.network.weights],
        ema,
    ):
        np.testing.assert_allclose(got, decay * old + (1 - decay) * new, atol=1e-6)


# -- sampling from every kind of model ----------------------------------------------------------

STEPS = 5
INITIAL = np.random.default_rng(2).standard_normal((3, 2, 2, 3)).astype("float32")


def toy_network(prediction):
    """A stand-in network that outputs the Gaussian toy's exact noise, velocity or image.

    Its input is ``[noisy_images, noise_rates**2]``, as the U-Net's.
    """

    def network(inputs, training=False):
        noisy, noise_variances = inputs
        noise = ops.sqrt(noise_variances)
        signal = ops.sqrt(1.0 - noise_variances)
        images = reference.denoise(noisy, signal, noise)
        noises = (noisy - signal * images) / noise
        return {
            "noise": noises,
            "velocity": signal * noises - noise * images,
            "image": images,
        }[prediction]

    return network


def schedule(times):
    return cosine_schedule(times, reference.MIN_SIGNAL, reference.MAX_SIGNAL)


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp_2m", "dpmpp_3m", "heun"])
@pytest.mark.parametrize("prediction", ["velocity", "image"])
def test_every_sampler_draws_the_same_ode_solution_from_any_prediction(prediction, sampler):
    """The model's denoise turns any kind of output into the same (noise, image) pair, so
    each sampler solves the same ODE: the float64 reference's, on the Gaussian toy."""
    model = DiffusionModel(DiffusionConfig(**{**TINY, "prediction": prediction}))
    network = toy_network(prediction)

    def denoise(noisy, noise_rates, signal_rates):
        return model.denoise(noisy, noise_rates, signal_rates, training=False, network=network)

    function = compiled(
        lambda x: loops.reverse_diffusion_graph(
            denoise, schedule, x, STEPS, sampler=sampler, spacing="karras"
        )
    )
    got = numpy(function(ops.convert_to_tensor(INITIAL)))
    want = reference.sample(sampler, "karras", STEPS, INITIAL)
    # sqrt of the noise variance costs a few float32 roundings more than the reference test's.
    tolerance = 20 * reference.float32_tolerance(sampler, "karras", STEPS)
    np.testing.assert_allclose(got, want, rtol=0, atol=tolerance)
