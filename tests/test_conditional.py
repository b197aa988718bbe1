"""Class-conditional models and classifier-free guidance (Ho & Salimans 2022).

Expected values are computed here independently: the guided prediction as a
NumPy mix of two separate network calls, the guided samplers as the plain
graph loop run with such a two-call denoiser, label dropout against its rate,
the labels of the data sources from the shapes generator's own record and the
folder's sorted subfolder names.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
import numpy as np
import pytest
from conftest import TINY
from keras import ops

from ddim_keras.core.checks import SAMPLERS
from ddim_keras.core.classes import check_guidance, check_labels, resolve_class
from ddim_keras.core.config import (
    DiffusionConfig,
    architecture_differences,
    architecture_fields,
)
from ddim_keras.core.errors import ConfigError, UsageError
from ddim_keras.model.diffusion_model import DiffusionModel
from ddim_keras.model.network import build_network
from ddim_keras.sampling.loops import reverse_diffusion_graph

backends = pytest.mark.backends  # `make test` runs these on every backend

CLASSES = 3
RNG = np.random.default_rng(22)
IMAGES = RNG.uniform(size=(4, 16, 16, 3)).astype("float32")


def numpy(tensor):
    return np.asarray(ops.convert_to_numpy(tensor), dtype="float64")


def tiny_model(**fields):
    keras.utils.set_random_seed(3)
    model = DiffusionModel(DiffusionConfig(**{**TINY, **fields}))
    model.compile()
    model.normalizer.adapt(np.random.default_rng(0).uniform(size=(8, 16, 16, 3)).astype("float32"))
    return model


def randomize(network, seed=1):
    """Random weights everywhere (the last convolution starts at zero: outputs would be 0)."""
    rng = np.random.default_rng(seed)
    for weight in network.trainable_weights:  # (batch-norm statistics stay as they are)
        weight.assign(rng.normal(scale=0.3, size=weight.shape).astype("float32"))


@pytest.fixture(scope="module")
def conditional():
    model = tiny_model(num_classes=CLASSES)
    randomize(model.ema_network)
    return model


class CountingNetwork:
    """Stands for a network: counts the calls and the batch size of each."""

    def __init__(self, network):
        self.network = network
        self.batch_sizes = []

    def __call__(self, inputs, training=False):
        self.batch_sizes.append(int(ops.shape(inputs[0])[0]))
        return self.network(inputs, training=training)


# -- config and network -------------------------------------------------------------------


def test_config_fields_are_validated():
    assert DiffusionConfig().num_classes == 0
    assert DiffusionConfig().label_dropout == 0.1
    for fields, word in (
        ({"num_classes": -1}, "num_classes"),
        ({"num_classes": 1}, "at least 2"),
        ({"num_classes": 3, "label_dropout": 1.0}, "label_dropout"),
        ({"num_classes": 3, "label_dropout": -0.1}, "label_dropout"),
    ):
        with pytest.raises(ConfigError, match=word):
            DiffusionConfig(**fields)


def test_num_classes_is_an_architecture_field_with_an_old_default():
    plain, conditional = DiffusionConfig(), DiffusionConfig(num_classes=5)
    assert architecture_differences(plain, conditional) == ["num_classes 0 vs 5"]
    # A config.json written before the field existed is unconditional.
    old = plain.to_dict()
    del old["num_classes"], old["label_dropout"]
    assert dict(architecture_fields(old))["num_classes"] == 0
    assert architecture_differences(old, plain) == []
    assert architecture_differences(old, conditional) == ["num_classes 0 vs 5"]


def test_the_unconditional_network_is_the_examples_layer_for_layer():
    config = DiffusionConfig(**TINY)
    network = build_network(config)
    assert len(network.inputs) == 2
    assert not any(isinstance(layer, keras.layers.Embedding) for layer in network.layers)
    conditional = build_network(config.replace(num_classes=CLASSES))
    assert len(conditional.inputs) == 3
    # The extra weights are the class embedding (one row per class and the "no class"),
    # and the wider input of the first block's convolutions (embedding_dims more channels).
    embeddings = [
        layer for layer in conditional.layers if isinstance(layer, keras.layers.Embedding)
    ]
    assert len(embeddings) == 1
    assert tuple(embeddings[0].embeddings.shape) == (CLASSES + 1, TINY["embedding_dims"])
    plain_shapes = [tuple(w.shape) for w in network.weights]
    conditional_shapes = [
        tuple(w.shape) for w in conditional.weights if w is not embeddings[0].embeddings
    ]
    assert len(plain_shapes) == len(conditional_shapes)
    wider = [(a, b) for a, b in zip(plain_shapes, conditional_shapes) if a != b]
    # (the first block's batch norm and convolutions: one axis, embedding_dims wider)
    dims = TINY["embedding_dims"]
    assert wider and all(sorted(np.subtract(b, a)) == [0] * (len(a) - 1) + [dims] for a, b in wider)


def test_the_class_embedding_starts_at_the_noise_embeddings_scale():
    """The class vectors start as large as the noise embedding's values (root mean square
    of sines and cosines of a uniform phase: 1/sqrt(2)), not Keras' +-0.05 default,
    which a demo-budget shapes model learned to ignore."""
    keras.utils.set_random_seed(0)
    network = build_network(DiffusionConfig(**{**TINY, "num_classes": 50, "embedding_dims": 64}))
    (table,) = [w for w in network.weights if w.path.endswith("embeddings")]
    values = numpy(table)
    assert values.shape == (51, 64)
    assert np.sqrt(np.mean(values**2)) == pytest.approx(np.sqrt(0.5), rel=0.05)
    # The noise embedding over the noise levels of training, computed by hand.
    variances = np.random.default_rng(0).uniform(0.0025, 0.9996, 4000)
    speeds = 2 * np.pi * np.exp(np.linspace(0, np.log(1000.0), 32))
    sinusoids = np.concatenate(
        [np.sin(np.outer(variances, speeds)), np.cos(np.outer(variances, speeds))], 1
    )
    assert np.sqrt(np.mean(sinusoids**2)) == pytest.approx(np.sqrt(0.5), rel=0.05)


@backends
def test_the_label_changes_the_prediction_only_where_the_network_is_conditional(conditional):
    noisy = ops.convert_to_tensor(RNG.standard_normal((2, 16, 16, 3)).astype("float32"))
    rates = ops.convert_to_tensor(np.full((2, 1, 1, 1), 0.5, "float32"))
    outputs = [
        numpy(conditional.network_outputs(noisy, rates, False, labels=np.array([k, k], "int32")))
        for k in range(CLASSES + 1)
    ]
    for k in range(1, CLASSES + 1):
        assert np.abs(outputs[k] - outputs[0]).max() > 1e-4
    # No labels means "no class" (the last embedding row).
    np.testing.assert_array_equal(
        numpy(conditional.network_outputs(noisy, rates, False)), outputs[-1]
    )


# -- training -----------------------------------------------------------------------------


@backends
def test_label_dropout_keeps_the_examples_draws_and_drops_at_its_rate():
    plain = tiny_model(batch_size=64)
    dropping = tiny_model(batch_size=64, num_classes=CLASSES, label_dropout=0.25)
    images = np.random.default_rng(1).uniform(size=(64, 16, 16, 3)).astype("float32")
    labels = np.arange(64, dtype="int32") % CLASSES
    if plain.seed_generator is not None:  # JAX: each model's own generator, from one state
        dropping.seed_generator.state.assign(plain.seed_generator.state.value)
    keras.utils.set_random_seed(9)
    expected = [numpy(t) for t in plain.noisy_batch(images, training=True)]
    keras.utils.set_random_seed(9)
    got = dropping.noisy_batch(images, training=True, labels=labels)
    assert len(got) == 6
    for index, name in enumerate(("images", "noises", "noisy", "noise rates", "signal rates")):
        np.testing.assert_array_equal(numpy(got[index]), expected[index], err_msg=name)
    dropped = 0
    for _ in range(40):
        drawn = numpy(dropping.noisy_batch(images, training=True, labels=labels)[5])
        kept = drawn != CLASSES
        np.testing.assert_array_equal(drawn[kept], labels[kept])  # kept labels unchanged
        dropped += int((~kept).sum())
    # 2,560 draws at p = 0.25: mean 640, standard deviation 22; 5 sigma either side.
    assert 530 <= dropped <= 750, dropped
    # Validation batches keep every label.
    validation = dropping.noisy_batch(images, training=False, labels=labels)
    np.testing.assert_array_equal(numpy(validation[5]), labels)


@backends
def test_a_conditional_model_trains_on_images_and_labels():
    model = tiny_model(num_classes=CLASSES)
    before = [numpy(w) for w in model.network.weights]
    labels = np.array([0, 1, 2, 1], "int32")
    logs = model.train_on_batch(IMAGES, labels, return_dict=True)
    assert np.isfinite(float(logs["n_loss"]))
    after = [numpy(w) for w in model.network.weights]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))
    with pytest.raises(ValueError, match="labels"):
        model.train_on_batch(IMAGES)


# -- guidance -----------------------------------------------------------------------------


def two_call_prediction(model, noisy, noise_rates, labels, guidance):
    """The guided noise from two SEPARATE network calls, mixed in NumPy float64."""
    network = model.ema_network
    variances = noise_rates**2
    nothing = np.full(len(labels), CLASSES, "int32")
    conditional = numpy(network([noisy, variances, labels], training=False))
    unconditional = numpy(network([noisy, variances, nothing], training=False))
    return unconditional + guidance * (conditional - unconditional)


@backends
@pytest.mark.parametrize("guidance", [0.0, 1.0, 3.5])
def test_guided_denoise_is_the_mix_of_two_predictions_from_one_doubled_call(conditional, guidance):
    noisy = RNG.standard_normal((3, 16, 16, 3)).astype("float32")
    noise_rates = np.array([0.3, 0.6, 0.9], "float32").reshape(3, 1, 1, 1)
    signal_rates = np.sqrt(1 - noise_rates**2).astype("float32")
    labels = np.array([0, 2, 1], "int32")
    counting = CountingNetwork(conditional.ema_network)
    pred_noises, pred_images = conditional.denoise(
        ops.convert_to_tensor(noisy),
        ops.convert_to_tensor(noise_rates),
        ops.convert_to_tensor(signal_rates),
        training=False,
        network=counting,
        labels=labels,
        guidance=guidance,
    )
    assert counting.batch_sizes == [6]  # one call, conditional and unconditional halves
    want = two_call_prediction(conditional, noisy, noise_rates, labels, guidance)
    np.testing.assert_allclose(numpy(pred_noises), want, rtol=1e-4, atol=1e-4)
    # The images follow from the mixed noise.
    want_images = (noisy - noise_rates * want) / signal_rates
    np.testing.assert_allclose(numpy(pred_images), want_images, rtol=1e-4, atol=1e-3)
    if guidance == 1.0:  # the plain conditional prediction
        plain = conditional.ema_network([noisy, noise_rates**2, labels], training=False)
        np.testing.assert_allclose(numpy(pred_noises), numpy(plain), rtol=1e-4, atol=1e-4)


@backends
@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("spacing", ["time", "karras"])
def test_every_sampler_guides_inside_the_compiled_loop(conditional, sampler, spacing):
    steps, guidance, seed = 3, 2.5, 11
    labels = np.array([2, 0, 1], "int32")
    eta = 0.5 if sampler == "ddim" else 0.0
    images = conditional.generate(
        3,
        steps,
        eta=eta,
        seed=seed,
        labels=labels,
        guidance=guidance,
        sampler=sampler,
        spacing=spacing,
    )

    def two_call_denoise(noisy_images, noise_rates, signal_rates):
        network = conditional.ema_network
        variances = noise_rates**2
        nothing = ops.full((3,), CLASSES, "int32")
        cond = network([noisy_images, variances, ops.convert_to_tensor(labels)], training=False)
        uncond = network([noisy_images, variances, nothing], training=False)
        pred_noises = uncond + guidance * (cond - uncond)
        return pred_noises, (noisy_images - noise_rates * pred_noises) / signal_rates

    expected = reverse_diffusion_graph(
        two_call_denoise,
        conditional.diffusion_schedule,
        conditional.initial_noise(3, seed),
        steps,
        eta=eta,
        seed=seed,
        sampler=sampler,
        spacing=spacing,
    )
    expected = numpy(conditional.denormalize(expected))
    np.testing.assert_allclose(images, expected, atol=2e-4)


@backends
def test_new_labels_and_guidance_reuse_the_compiled_loop(conditional):
    cache = conditional._samplers.value.functions
    first = conditional.generate(2, 2, seed=0, labels=0, guidance=1.5)
    keys = set(cache)
    second = conditional.generate(2, 2, seed=0, labels=1, guidance=4.0)
    assert set(cache) == keys
    assert not np.allclose(first, second)
    # Chunks do not change the images: labels travel with their images.
    labels = np.array([0, 1, 2, 1, 0], "int32")
    whole = conditional.generate(5, 2, seed=4, labels=labels, guidance=2.0)
    chunked = conditional.generate(5, 2, seed=4, labels=labels, guidance=2.0, batch_size=2)
    np.testing.assert_allclose(whole, chunked, atol=1e-5)


@backends
@pytest.mark.parametrize("guidance", [0.0, 1.0])
def test_guidance_0_and_1_call_the_network_once_on_the_batch(conditional, guidance):
    """w = 1 is the plain conditional prediction and w = 0 the unconditional one: the
    loop of these two calls the network on the batch alone (not doubled)."""
    steps, seed = 3, 5
    labels = np.array([1, 0, 2], "int32")
    images = conditional.generate(3, steps, seed=seed, labels=labels, guidance=guidance)
    used = [key for key in conditional._samplers.value.functions if key[-1] is False]
    assert used, "w = 0 and 1 compile the single-prediction loop"
    asked = labels if guidance == 1.0 else np.full(3, CLASSES, "int32")

    def one_call_denoise(noisy_images, noise_rates, signal_rates):
        pred_noises = conditional.ema_network(
            [noisy_images, noise_rates**2, ops.convert_to_tensor(asked)], training=False
        )
        return pred_noises, (noisy_images - noise_rates * pred_noises) / signal_rates

    expected = reverse_diffusion_graph(
        one_call_denoise,
        conditional.diffusion_schedule,
        conditional.initial_noise(3, seed),
        steps,
        seed=seed,
    )
    np.testing.assert_allclose(images, numpy(conditional.denormalize(expected)), atol=2e-4)


@backends
def test_inpainting_and_image_to_image_take_labels_and_guidance(conditional):
    masks = np.ones((16, 16), "float32")
    # An all-ones mask at strength 1 is generation: the same images.
    inpainted = conditional.inpaint(IMAGES[:2], masks, 3, seed=2, labels=[1, 2], guidance=3.0)
    generated = conditional.generate(2, 3, seed=2, labels=[1, 2], guidance=3.0)
    np.testing.assert_allclose(inpainted, generated, atol=2e-4)
    edited = conditional.image_to_image(IMAGES[:2], 0.5, 4, seed=2, labels=0, guidance=2.0)
    assert edited.shape == (2, 16, 16, 3)


def test_label_and_guidance_checks():
    np.testing.assert_array_equal(check_labels(None, 3, 4), [4, 4, 4])
    assert check_labels(None, 3, 0) is None
    np.testing.assert_array_equal(check_labels(2, 3, 4), [2, 2, 2])
    for labels, word in (([0, 1], "one per image"), ([0, 1, 5], "0 to 3"), ([0.5] * 3, "whole")):
        with pytest.raises(UsageError, match=word):
            check_labels(labels, 3, 4)
    with pytest.raises(UsageError, match="unconditional"):
        check_labels(1, 3, 0)
    assert check_guidance(0) == 0.0
    for bad in (-1, float("nan"), True, "2"):
        with pytest.raises(UsageError, match="at least 0"):
            check_guidance(bad)
    names = ["circle", "square", "triangle"]
    assert resolve_class("square", names) == 1
    assert resolve_class("Triangle", names) == 2
    assert resolve_class("0", names) == 0
    with pytest.raises(UsageError, match="circle, square, triangle"):
        resolve_class("hexagon", names)
    with pytest.raises(UsageError, match="unconditional"):
        resolve_class("circle", [])


def test_the_unconditional_model_refuses_labels():
    model = tiny_model()
    with pytest.raises(UsageError, match="unconditional"):
        model.generate(2, 2, seed=0, labels=[0, 1])


# -- labels from the sources --------------------------------------------------------------


def test_shapes_labels_are_the_kind_of_the_last_drawn_shape():
    from ddim_keras.data import numpy_pipeline
    from ddim_keras.data.labels import SHAPES_CLASSES
    from ddim_keras.data.shapes import SHAPE_KINDS, shapes_images_with_labels

    config = DiffusionConfig(**TINY)
    # The train split of seed 3 is shapes_images(count, size, 3): its generator's record.
    images, record = shapes_images_with_labels(24, 16, seed=3)
    expected = record["shape_kind"][np.arange(24), record["drawn"] - 1]
    assert set(expected) == {0, 1, 2}  # every kind occurs (the test means something)
    split, _ = numpy_pipeline.split_images(
        "shapes", config, ("train",), None, 3, 24, conditional=True
    )
    np.testing.assert_array_equal(split["train"].labels, expected)
    np.testing.assert_array_equal(split["train"].images, images)
    assert list(SHAPES_CLASSES) == list(SHAPE_KINDS) == ["circle", "square", "triangle"]


def make_class_folder(root, classes, per_class=3, loose=0):
    """A folder of one subfolder per class; each class's images one flat grey level."""
    from PIL import Image

    levels = {}
    for position, name in enumerate(classes):
        levels[name] = 20 + 70 * position
        os.makedirs(root / name)
        for index in range(per_class):
            pixels = np.full((20, 20, 3), levels[name], np.uint8)
            Image.fromarray(pixels).save(root / name / f"{index}.png")
    for index in range(loose):
        Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(root / f"loose{index}.png")
    return levels


def check_folder_pairs(images, labels, classes, levels):
    """Each image's grey level is its labelled class's: labels travel with their images."""
    images, labels = np.asarray(images), np.asarray(labels)
    want = np.array([levels[classes[label]] for label in labels]) / 255.0
    np.testing.assert_allclose(images.mean(axis=(1, 2, 3)), want, atol=1e-3)


@pytest.mark.parametrize("pipeline", ["numpy", "tf.data"])
def test_folder_labels_follow_sorted_subfolder_names(tmp_path, pipeline):
    from ddim_keras.data import numpy_pipeline
    from ddim_keras.data.loaders import _load_split_images, source_classes

    levels = make_class_folder(tmp_path / "images", ["zebra", "apple", "Mango"])
    folder = tmp_path / "images"
    classes = source_classes("folder", folder)
    assert classes == sorted(["zebra", "apple", "Mango"]) == ["Mango", "apple", "zebra"]
    config = DiffusionConfig(**TINY)
    splits = ("train", "validation")
    if pipeline == "numpy":
        split, _ = numpy_pipeline.split_images(
            "folder", config, splits, folder, 0, None, conditional=True
        )
        pairs = [(split[s].uint8(range(len(split[s]))) / 255.0, split[s].labels) for s in splits]
    else:
        datasets, _ = _load_split_images("folder", config, splits, folder, 0, None, None, True)
        pairs = []
        for s in splits:
            elements = list(datasets[s].as_numpy_iterator())
            pairs.append(
                (np.stack([e[0] for e in elements]) / 255.0, np.array([e[1] for e in elements]))
            )
    all_labels = np.concatenate([labels for _, labels in pairs])
    assert sorted(all_labels.tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for images, labels in pairs:
        check_folder_pairs(images, labels, classes, levels)


def test_a_folder_without_subfolders_or_with_loose_images_is_refused(tmp_path):
    from ddim_keras.data.loaders import load_datasets

    config = DiffusionConfig(**{**TINY, "batch_size": 2})
    flat = tmp_path / "flat"
    flat.mkdir()
    from PIL import Image

    for index in range(4):
        Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(flat / f"{index}.png")
    with pytest.raises(UsageError, match="no subfolders"):
        load_datasets("folder", config, data_dir=flat, conditional=True)
    mixed = tmp_path / "mixed"
    make_class_folder(mixed, ["cats", "dogs"], per_class=3, loose=2)
    with pytest.raises(UsageError, match="lie directly in"):
        load_datasets("folder", config, data_dir=mixed, conditional=True)


@pytest.mark.parametrize("name", ["tfds:cifar10", "flowers"])
def test_tfds_labels_come_from_the_label_feature(name, tmp_path, no_network):
    import tensorflow_datasets as tfds

    from ddim_keras.data.loaders import load_datasets, source_classes

    config = DiffusionConfig(**{**TINY, "batch_size": 2})
    with tfds.testing.mock_data(num_examples=8):
        classes = source_classes(name, tmp_path)
        train_ds, _ = load_datasets(name, config, data_dir=tmp_path, conditional=True)
        images, labels = next(iter(train_ds))
    assert len(classes) == {"tfds:cifar10": 10, "flowers": 102}[name]
    assert images.shape == (2, 16, 16, 3) and labels.dtype == "int32"
    assert all(0 <= int(label) < len(classes) for label in labels)


def test_celeba_classes_are_an_attributes_two_values(tmp_path, no_network):
    import tensorflow_datasets as tfds

    from ddim_keras.data.loaders import load_datasets, source_classes

    config = DiffusionConfig(**{**TINY, "batch_size": 2})
    assert source_classes("celeba", tmp_path, "Smiling") == ["not Smiling", "Smiling"]
    with pytest.raises(UsageError, match="--label ATTRIBUTE"):
        source_classes("celeba", tmp_path)
    with pytest.raises(UsageError, match="not a celeba attribute"):
        source_classes("celeba", tmp_path, "Grinning")
    with tfds.testing.mock_data(num_examples=8):
        train_ds, _ = load_datasets(
            "celeba", config, data_dir=tmp_path, conditional=True, attribute="Smiling"
        )
        _, labels = next(iter(train_ds))
    assert set(np.asarray(labels).tolist()) <= {0, 1}


# -- the commands -------------------------------------------------------------------------


def train_args(config_path, output, *more):
    return [
        "--dataset",
        "shapes",
        "--config",
        config_path,
        "--output",
        output,
        "--steps-per-epoch",
        "2",
        "--verbose",
        "0",
        *more,
    ]


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
    """A class-conditional run of `shapes`, one short epoch (read-only for tests)."""
    from conftest import write_config

    from ddim_keras.cli import train

    root = tmp_path_factory.mktemp("conditional_run")
    config_path = write_config(root / "tiny.json", batch_size=8)
    run = root / "run"
    assert train.main(train_args(config_path, str(run), "--conditional")) == 0
    return str(run), config_path


def test_a_conditional_run_records_its_classes(conditional_run):
    import json

    from ddim_keras.io.run_dir import RunDir
    from ddim_keras.io.run_info import run_classes

    run, _ = conditional_run
    assert run_classes(run) == ["circle", "square", "triangle"]
    config = RunDir(run).read_config()
    assert config.num_classes == 3 and config.label_dropout == 0.1
    with open(os.path.join(run, "config.json"), encoding="utf-8") as handle:
        assert json.load(handle)["num_classes"] == 3


def test_resuming_with_another_num_classes_is_refused(conditional_run, capsys):
    from conftest import assert_one_error, run_command

    from ddim_keras.cli import train

    run, config_path = conditional_run
    with open(os.path.join(run, "config.json"), encoding="utf-8") as handle:
        before = handle.read()
    code, _, err = run_command(capsys, train.main, *train_args(config_path, run))
    assert code == 2
    assert_one_error(err, ["num_classes: 3 -> 0", "Nothing was changed"])
    with open(os.path.join(run, "config.json"), encoding="utf-8") as handle:
        assert handle.read() == before


def test_train_refuses_label_flags_without_conditional(tmp_path, capsys):
    from conftest import assert_one_error, run_command, write_config

    from ddim_keras.cli import train

    config_path = write_config(tmp_path / "tiny.json")
    for flags, words in (
        (["--label", "Smiling"], ["--label", "--conditional"]),
        (["--label-dropout", "0.2"], ["--label-dropout", "--conditional"]),
    ):
        code, _, err = run_command(
            capsys, train.main, *train_args(config_path, str(tmp_path / "run"), *flags)
        )
        assert code == 2
        assert_one_error(err, words)
    assert not os.path.exists(tmp_path / "run")


@backends
def test_generate_class_and_guidance_sample_that_class(conditional_run, tmp_path, capsys):
    from conftest import run_command
    from PIL import Image

    from ddim_keras.cli import generate
    from ddim_keras.core.pictures import default_scale, image_grid
    from ddim_keras.io.loading import load_model

    run, _ = conditional_run
    output = tmp_path / "square.png"
    common = ["--run", run, "--steps", "2", "--seed", "5", "--rows", "1", "--cols", "3"]
    code, out, err = run_command(
        capsys, generate.main, *common, "--class", "square", "--guidance", "2.5", "--output", output
    )
    assert code == 0, err
    assert "class 1 (square), guidance 2.5" in err
    model = load_model(run=run)
    want = model.generate(3, 2, seed=5, labels=1, guidance=2.5)
    grid = image_grid(want, 1, 3, scale=default_scale(16))
    with Image.open(output) as image:
        got = np.asarray(image, np.float64) / 255.0
    np.testing.assert_allclose(got, grid, atol=1.5 / 255)
    # Without --class the grid has one row per class.
    code, out, err = run_command(
        capsys, generate.main, "--run", run, "--steps", "2", "--seed", "5", "--output", tmp_path
    )
    assert code == 0, err
    assert "one row per class, classes 0 to 2 of 3" in err


def test_generate_refuses_bad_classes_and_guidance(conditional_run, tiny_run, capsys):
    from conftest import assert_one_error, run_command

    from ddim_keras.cli import generate

    run, _ = conditional_run
    for flags, words in (
        (["--run", run, "--class", "hexagon"], ["hexagon", "circle, square, triangle"]),
        (["--run", run, "--class", "3"], ["0 to 2"]),
        (["--run", run, "--guidance", "-1"], ["--guidance", "at least 0"]),
        (["--run", tiny_run, "--class", "circle"], ["unconditional", "--conditional"]),
        (["--run", tiny_run, "--guidance", "3"], ["unconditional", "--guidance"]),
    ):
        code, _, err = run_command(capsys, generate.main, *flags, "--steps", "2")
        assert code == 2, flags
        assert_one_error(err, words)


def test_a_conditional_run_resumes(conditional_run, tmp_path, capsys):
    import shutil

    from conftest import run_command

    from ddim_keras.cli import train
    from ddim_keras.io.run_dir import RunDir

    source, config_path = conditional_run
    run = tmp_path / "run"
    shutil.copytree(source, run)
    code, _, err = run_command(
        capsys,
        train.main,
        *train_args(config_path, str(run), "--conditional", "--epochs", "2"),
    )
    assert code == 0, err
    assert "Resuming" in err and "3 classes: circle, square, triangle" in err
    assert RunDir(str(run)).read_state()["epoch"] == 2


@backends
def test_a_conditional_model_saves_and_loads_as_keras_in_safe_mode(conditional, tmp_path):
    path = str(tmp_path / "model.keras")
    conditional.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.diffusion_config.num_classes == CLASSES
    np.testing.assert_allclose(
        loaded.generate(2, 2, seed=1, labels=[0, 2], guidance=2.0),
        conditional.generate(2, 2, seed=1, labels=[0, 2], guidance=2.0),
        atol=1e-5,
    )


def test_evaluate_and_sweep_measure_guided_samples_of_the_validation_classes(
    conditional_run, tiny_run, tmp_path, capsys
):
    """--guidance W: samples of the validation images' classes; KID against those images,
    per class, and on shapes the share that shows the kind asked for, all recomputed
    here from model.generate, the shapes classifier and a NumPy KID."""
    import csv
    import json
    import shutil

    from conftest import assert_one_error, run_command
    from test_guidance_numbers import numpy_kid

    from ddim_keras.cli import evaluate, sweep
    from ddim_keras.data.shapes import shapes_validation_with_labels
    from ddim_keras.io.loading import load_model
    from ddim_keras.metrics.kid import build_encoder
    from ddim_keras.metrics.shapes_classifier import predict

    run, _ = conditional_run
    output = tmp_path / "kid.json"
    common = ["--kid-encoder", "shapes", "--num-images", "8", "--batch-size", "4", "--steps", "2"]
    code, out, err = run_command(
        capsys, evaluate.main, "--run", run, *common, "--guidance", "2", "--output", output
    )
    assert code == 0, err
    with open(output, encoding="utf-8") as handle:
        result = json.load(handle)
    model = load_model(run=run)
    config = model.diffusion_config
    images, record = shapes_validation_with_labels(config.image_size, seed=0)
    labels = record["shape_kind"][np.arange(8), record["drawn"][:8] - 1]
    generated = model.generate(8, 2, seed=0, labels=labels, guidance=2.0, batch_size=4)
    encoder = build_encoder(config.image_size, config.kid_image_size, None, "shapes")
    real = numpy(encoder(np.asarray(images[:8], "float32") / 255.0, training=False))
    fake = numpy(encoder(generated, training=False))
    want = np.mean([numpy_kid(real[i : i + 4], fake[i : i + 4]) for i in (0, 4)])
    assert result["kid"] == pytest.approx(want, rel=2e-3, abs=1e-4)
    assert result["guidance"] == 2.0 and result["classes"] == ["circle", "square", "triangle"]
    shown = predict(generated)[np.arange(8), labels] > 0.5
    assert result["requested"] == pytest.approx(shown.mean())
    for index, name in enumerate(result["classes"]):
        chosen = np.flatnonzero(labels == index)
        if len(chosen) >= 2:  # whole batches of the class's images (all, under 4)
            size = min(4, len(chosen))
            batches = [chosen[i : i + size] for i in range(0, len(chosen) - size + 1, size)]
            want = np.mean([numpy_kid(real[b], fake[b]) for b in batches])
            assert result["class_kids"][name] == pytest.approx(want, rel=2e-3, abs=1e-4)
    assert "show the requested kind" in out

    # The sweep measures every guidance as a cell of its own, with the same numbers.
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    code, _, err = run_command(
        capsys, sweep.main, "--run", str(copy), *common, "--etas", "0", "--guidance", "0,2"
    )
    assert code == 0, err
    with open(copy / "sweep" / "sweep.csv", newline="", encoding="utf-8") as handle:
        rows = {row["sampler"]: row for row in csv.DictReader(handle)}
    assert set(rows) >= {"DDIM w=0", "DDIM w=2"}
    guided = rows["DDIM w=2"]
    assert float(guided["kid"]) == pytest.approx(result["kid"], rel=1e-4, abs=1e-6)
    assert float(guided["requested"]) == pytest.approx(result["requested"], abs=1e-3)
    assert guided["class_kids"].startswith("circle=")

    # An unconditional run has no classes to guide towards.
    code, _, err = run_command(capsys, evaluate.main, "--run", tiny_run, *common, "--guidance", "2")
    assert code == 2
    assert_one_error(err, ["--guidance needs a class-conditional run"])
