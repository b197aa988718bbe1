"""Without TensorFlow (issue #15): the package imports, ``shapes`` and ``folder`` come
through NumPy/Pillow pipelines, and the TFDS sources say what to install.

The subprocesses run on the JAX backend with TensorFlow hidden as if it were not
installed (``conftest.without_tensorflow_env``: a ``sitecustomize`` makes the path
finder blind to it, so ``import tensorflow`` fails and ``find_spec`` finds nothing).
The in-process tests, with TensorFlow, compare the NumPy/Pillow pipeline with the
tf.data one and with Pillow itself.
"""

import json
import os
import subprocess
import sys
import warnings

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
import pytest
from conftest import assert_one_error, without_tensorflow_env
from PIL import Image, ImageOps

from ddim_keras import data
from ddim_keras.core.config import DiffusionConfig
from ddim_keras.core.errors import DataError
from ddim_keras.data import loaders as data_loaders
from ddim_keras.data import numpy_pipeline as numpy_data
from ddim_keras.data import tf_pipeline as data_tf_pipeline

SIZE = 16


@pytest.fixture(scope="module")
def without_tensorflow(tmp_path_factory):
    """Run ``python -c CODE ARGS...`` with TensorFlow hidden, on JAX; returns the result."""
    hide = tmp_path_factory.mktemp("hide_tensorflow")
    env = without_tensorflow_env(hide)

    def run(*argv):
        return subprocess.run(
            [sys.executable, *map(str, argv)],
            capture_output=True,
            text=True,
            env=env,
            cwd=str(hide),
            timeout=300,
        )

    return run


def config(**changes):
    return DiffusionConfig(image_size=SIZE, batch_size=4, dataset_repetitions=1, kid=False).replace(
        **changes
    )


def photo(rng, height, width):
    """Smooth colours plus noise: photo-like, so JPEG and resizing both have work."""
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    base = np.stack([128 + 100 * np.sin(6 * x + c) * np.cos(4 * y - c) for c in range(3)], -1)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """20 images (PNG, RGBA PNG, palette GIF, JPEG, gray JPEG, EXIF-turned JPEG) and a bad file."""
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(7)
    for index in range(20):
        height, width = (int(v) for v in rng.integers(12, 90, size=2))
        pixels = photo(rng, height, width)
        path = str(root / f"{index:02d}")
        kind = index % 6
        if kind == 0:
            Image.fromarray(pixels).save(path + ".png")
        elif kind == 1:
            alpha = rng.integers(0, 256, (height, width), dtype=np.uint8)
            Image.fromarray(np.dstack([pixels, alpha]), "RGBA").save(path + ".png")
        elif kind == 2:
            Image.fromarray(pixels).convert("P").save(path + ".gif")
        elif kind == 3:
            Image.fromarray(pixels).save(path + ".jpg", quality=90)
        elif kind == 4:
            Image.fromarray(pixels[..., 0]).save(path + ".jpeg", quality=85)
        else:
            exif = Image.Exif()
            exif[0x0112] = int(rng.integers(2, 9))
            Image.fromarray(pixels).save(path + ".jpg", quality=95, exif=exif)
    (root / "broken.png").write_bytes(b"not an image")
    return root


def quietly(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", data.UnreadableImagesWarning)
        warnings.simplefilter("ignore", data.SmallImagesWarning)
        return function(*args, **kwargs)


def as_uint8(images):
    return np.rint(np.asarray(images) * 255).astype(np.uint8)


# -- without TensorFlow: subprocesses ------------------------------------------------------

IMPORTS = r"""
import importlib.util, os, sys, warnings
import numpy as np
import ddim_keras.data, ddim_keras.callbacks, ddim_keras.cli.quiet, ddim_keras.data.numpy_pipeline
import ddim_keras.metrics.evaluation, ddim_keras.cli.train, ddim_keras.cli.evaluate
import ddim_keras.metrics.shapes_classifier
from ddim_keras import callbacks
from ddim_keras.cli import quiet

assert importlib.util.find_spec("tensorflow") is None
try:
    import tensorflow
except ImportError:
    pass
else:
    raise SystemExit("tensorflow could be imported")

os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
finders = list(sys.meta_path)
assert quiet.quiet_tensorflow([]) is True
assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ and sys.meta_path == finders

logs = os.path.join(sys.argv[1], "logs")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    first, second = callbacks.tensorboard(logs), callbacks.tensorboard(logs, write_graph=False)
    grid = callbacks.SampleGrid(None, log_dir=logs)
    grid.log_image(np.zeros((4, 4, 3), np.uint8), 0)
assert isinstance(first, callbacks.NoTensorBoard) and isinstance(second, callbacks.NoTensorBoard)
assert [w.category.__name__ for w in caught] == ["NoTensorBoardWarning"], caught
assert "ddim_keras[tensorflow]" in str(caught[0].message)
assert not os.path.exists(logs)
print(sorted(name for name in sys.modules
             if name.partition(".")[0].startswith(("tensorflow", "tensorboard"))))
"""


def test_modules_import_and_side_jobs_skip_tensorflow(without_tensorflow, tmp_path):
    result = without_tensorflow("-c", IMPORTS, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


PIPELINES = r"""
import json, sys, warnings
import keras
import numpy as np
from ddim_keras import data
from ddim_keras.core.config import DiffusionConfig
from ddim_keras.core.errors import DataError

out, folder = sys.argv[1], sys.argv[2]
config = DiffusionConfig(image_size=16, batch_size=4, dataset_repetitions=2, kid=False)
arrays, facts = {}, {}


def epochs(batches, count):
    seen = []
    for _ in range(count):
        seen.append(np.stack([batches[index] for index in range(batches.num_batches)]))
        batches.on_epoch_end()  # what Keras calls after each epoch
    return np.stack(seen)


train, val = data.load_datasets("shapes", config, seed=3, shapes_count=10)
facts["kind"] = [type(train).__name__, isinstance(train, keras.utils.PyDataset)]
facts["val_batches"] = val.num_batches
arrays["shapes"] = epochs(train, 2)
fresh, _ = data.load_datasets("shapes", config, seed=3, shapes_count=10)
arrays["shapes_again"] = epochs(fresh, 1)
endless = fresh.repeat()
arrays["shapes_endless"] = np.stack([endless[index] for index in range(10)])
layer = keras.layers.Normalization()
layer.build((None, 16, 16, 3))
data.adapt_normalizer(layer, fresh)
arrays["mean"] = keras.ops.convert_to_numpy(layer.mean)
arrays["variance"] = keras.ops.convert_to_numpy(layer.variance)

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    folder_train, _ = data.load_datasets("folder", config.replace(dataset_repetitions=1),
                                         data_dir=folder, seed=5)
    for split in data.SPLITS:
        images = data.load_images("folder", config, split, data_dir=folder)
        arrays["folder_" + split] = np.stack(list(images))
facts["warnings"] = sorted({w.category.__name__ for w in caught})
arrays["folder_epochs"] = epochs(folder_train, 2)
images, facts["counted"] = data.counted_images(images, 100)
arrays["kid_batches"] = np.stack(list(data.image_batches(images, 2, 2)))

for name in ("flowers", "tfds:mnist"):
    try:
        data.load_datasets(name, config)
    except DataError as error:
        facts[name] = str(error)
facts["tensorflow_loaded"] = any(name.startswith("tensorflow") for name in sys.modules)
np.savez(out + ".npz", **arrays)
with open(out + ".json", "w") as handle:
    json.dump(facts, handle)
"""


@pytest.fixture(scope="module")
def no_tf_results(without_tensorflow, image_folder, tmp_path_factory):
    """What the NumPy pipelines give in a process without TensorFlow."""
    out = tmp_path_factory.mktemp("no_tf_results") / "result"
    result = without_tensorflow("-c", PIPELINES, out, image_folder)
    assert result.returncode == 0, result.stderr
    with open(f"{out}.json", encoding="utf-8") as handle:
        facts = json.load(handle)
    return dict(np.load(f"{out}.npz")), facts


def multiset(images):
    return sorted(image.tobytes() for image in as_uint8(images))


def test_shapes_batches_without_tensorflow(no_tf_results):
    arrays, facts = no_tf_results
    assert facts["kind"] == ["ImageBatches", True] and not facts["tensorflow_loaded"]
    epochs = arrays["shapes"]
    # 10 images, 2 repetitions, batch 4: 5 whole batches an epoch, each image twice.
    assert epochs.shape == (2, 5, 4, SIZE, SIZE, 3) and epochs.dtype == np.float32
    assert epochs.min() >= 0.0 and epochs.max() <= 1.0
    drawn = data.shapes_images(10, SIZE, seed=3)  # the generator, without any pipeline
    for epoch in epochs:
        assert multiset(epoch.reshape(-1, SIZE, SIZE, 3)) == multiset(
            np.concatenate([drawn, drawn]) / 255.0
        )
    assert not np.array_equal(epochs[0], epochs[1])  # a new order every epoch
    np.testing.assert_array_equal(arrays["shapes_again"][0], epochs[0])  # same seed, same order
    # repeat(): epoch after epoch without end, the same orders.
    np.testing.assert_array_equal(arrays["shapes_endless"], epochs.reshape(10, 4, SIZE, SIZE, 3))
    assert facts["val_batches"] == data.SHAPES_VALIDATION_COUNT * 2 // 4


def test_normalizer_statistics_without_tensorflow(no_tf_results):
    import keras

    arrays, _ = no_tf_results
    reference = keras.layers.Normalization()
    # Keras' own adapt on the first epoch's batches (float64: the sum is exact to float32).
    reference.adapt(arrays["shapes"][0].reshape(-1, SIZE, SIZE, 3).astype(np.float64))
    np.testing.assert_allclose(
        arrays["mean"], keras.ops.convert_to_numpy(reference.mean), rtol=1e-6
    )
    np.testing.assert_allclose(
        arrays["variance"], keras.ops.convert_to_numpy(reference.variance), rtol=1e-6
    )


def test_folder_pipeline_without_tensorflow(no_tf_results, image_folder):
    arrays, facts = no_tf_results
    assert facts["warnings"] == ["SmallImagesWarning", "UnreadableImagesWarning"]
    train, validation = arrays["folder_train"], arrays["folder_validation"]
    assert train.shape == (16, SIZE, SIZE, 3) and validation.shape == (4, SIZE, SIZE, 3)
    # The same images as the tf.data pipeline reads from the same folder, in the same order.
    for split, images in (("train", train), ("validation", validation)):
        by_tf = np.stack(
            list(
                quietly(
                    data.load_images, "folder", config(), split, data_dir=image_folder
                ).as_numpy_iterator()
            )
        )
        assert np.abs(as_uint8(images).astype(int) - as_uint8(by_tf)).max() <= 8, split
    epochs = arrays["folder_epochs"]
    assert epochs.shape == (2, 4, 4, SIZE, SIZE, 3)
    for epoch in epochs:
        assert multiset(epoch.reshape(-1, SIZE, SIZE, 3)) == multiset(train)
    assert not np.array_equal(epochs[0], epochs[1])
    assert facts["counted"] == 4
    np.testing.assert_array_equal(arrays["kid_batches"], validation.reshape(2, 2, SIZE, SIZE, 3))


def test_tfds_sources_name_what_to_install(no_tf_results):
    _, facts = no_tf_results
    for name in ("flowers", "tfds:mnist"):
        message = facts[name]
        for words in (
            f"--dataset {name}",
            "TensorFlow Datasets",
            "pip install 'ddim_keras[tensorflow]'",
            "--dataset shapes",
            "--dataset folder",
        ):
            assert words in message, message


@pytest.mark.parametrize("dataset", ["flowers", "celeba"])
def test_train_cli_refuses_tfds_sources_without_tensorflow(without_tensorflow, tmp_path, dataset):
    run = tmp_path / "run"
    result = without_tensorflow("-m", "ddim_keras.train", "--dataset", dataset, "--output", run)
    assert result.returncode == DataError.exit_code != 0
    assert_one_error(
        result.stderr,
        [f"--dataset {dataset}", "ddim_keras[tensorflow]", "--dataset shapes", "--dataset folder"],
    )
    assert not run.exists()


# -- with TensorFlow: the NumPy/Pillow pipeline against tf.data and Pillow -----------------


def test_preprocessing_matches_tensorflow():
    rng = np.random.default_rng(0)
    cases = [
        ((37, 50, 3), np.uint8, None),
        ((64, 48, 4), np.uint8, "black"),
        ((9, 12, 1), np.uint8, None),
        ((120, 90, 2), np.uint8, (0, 128, 255)),
        ((50, 70, 3), np.uint16, None),
        ((16, 16, 3), np.uint8, None),
        ((255, 311, 4), np.uint8, "white"),
    ]
    differing = total = 0
    for shape, dtype, background in cases:
        image = rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
        for size in (SIZE, 32):
            ours = numpy_data.preprocess_uint8(image, size, background).astype(int)
            theirs = (
                data_tf_pipeline.preprocess_image_uint8(image, size, background).numpy().astype(int)
            )
            assert ours.shape == theirs.shape == (size, size, 3)
            assert np.abs(ours - theirs).max() <= 1, (shape, dtype, size)  # rounding at .5
            differing += int(np.count_nonzero(ours != theirs))
            total += ours.size
    assert differing / total < 0.005


def test_shapes_images_are_those_of_tf_data():
    for split in data.SPLITS:
        ours, _ = numpy_data.split_images("shapes", config(), (split,), None, 3, 12)
        theirs, _ = data_loaders._load_split_images("shapes", config(), (split,), None, 3, 12)
        np.testing.assert_array_equal(
            ours[split].uint8(range(len(ours[split]))),
            np.stack(list(theirs[split].as_numpy_iterator())),
        )


def test_orientation_matches_pillow():
    array = np.arange(5 * 3 * 4, dtype=np.uint8).reshape(5, 3, 4)
    with Image.fromarray(array, "RGBA") as image:
        for orientation in range(1, 9):
            exif = image.getexif()
            exif[0x0112] = orientation
            image.info["exif"] = exif.tobytes()
            upright = np.asarray(ImageOps.exif_transpose(image))
            np.testing.assert_array_equal(
                numpy_data.apply_orientation(array, orientation), upright, err_msg=str(orientation)
            )


def test_folder_images_match_tf_data_and_pillow(image_folder):
    """Per file: Pillow's decoding + TensorFlow's preprocessing is exact to the rounding;
    tf.data differs only where TensorFlow decodes a JPEG itself (its fast integer IDCT)."""
    for size in (SIZE, 48):
        cfg = config(image_size=size)
        ours, _ = quietly(
            numpy_data.split_images, "folder", cfg, data.SPLITS, image_folder, 0, None
        )
        theirs, _ = quietly(
            data_loaders._load_split_images, "folder", cfg, data.SPLITS, image_folder, 0, None
        )
        for split in data.SPLITS:
            images = ours[split]
            by_numpy = images.uint8(range(len(images))).astype(int)
            by_tf = np.stack(list(theirs[split].as_numpy_iterator())).astype(int)
            for (path, _, _), mine, tfs in zip(images.entries, by_numpy, by_tf):
                with Image.open(path) as opened:
                    upright = np.asarray(ImageOps.exif_transpose(opened).convert("RGBA"))
                pillow = data_tf_pipeline.preprocess_image_uint8(upright, size).numpy().astype(int)
                assert np.abs(mine - pillow).max() <= 1, path
                jpeg = path.endswith((".jpg", ".jpeg"))
                difference = np.abs(mine - tfs)
                assert difference.max() <= (8 if jpeg else 1), (path, difference.max())
                assert difference.mean() <= (1.5 if jpeg else 0.01), (path, difference.mean())


def test_load_datasets_without_tensorflow_in_process(image_folder, monkeypatch, tmp_path):
    monkeypatch.setattr(data_loaders, "tensorflow_installed", lambda: False)
    train, val = quietly(
        data.load_datasets,
        "folder",
        config(),
        data_dir=image_folder,
        cache="disk",
        cache_dir=tmp_path,
    )
    assert isinstance(train, numpy_data.ImageBatches) and train.num_batches == 4
    assert val.num_batches == 1
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".npy"]  # written when read
    train[0]
    partial = [p.name for p in tmp_path.iterdir() if p.suffix == ".npy"]
    assert len(partial) == 1 and ".writer-" in partial[0]  # this writer's own file
    first = np.concatenate([train[index] for index in range(train.num_batches)])
    files = sorted(p.name for p in tmp_path.iterdir() if p.name != "ddim_cache.lock")
    assert len(files) == 1 and files[0].startswith("train_") and files[0].endswith(".npy")
    assert ".writer-" not in files[0]  # finished: under its final name
    written = os.path.getmtime(tmp_path / files[0])
    again, _ = quietly(
        data.load_datasets,
        "folder",
        config(),
        data_dir=image_folder,
        cache="disk",
        cache_dir=tmp_path,
    )
    assert isinstance(again.images._store, np.memmap)  # read from the finished cache
    np.testing.assert_array_equal(
        np.concatenate([again[index] for index in range(again.num_batches)]), first
    )
    assert os.path.getmtime(tmp_path / files[0]) == written
    with pytest.raises(DataError, match="fewer than one batch"):
        quietly(data.load_datasets, "folder", config(batch_size=5), data_dir=image_folder)
    cached = quietly(data.load_images, "folder", config(), "train", data_dir=image_folder)
    uncached = numpy_data.prepare_batches(cached, config(), cache="none", seed=0)
    np.testing.assert_array_equal(
        np.concatenate([uncached[index] for index in range(uncached.num_batches)]), first
    )


def test_a_file_that_stops_decoding_is_replaced_with_a_warning(image_folder, tmp_path):
    folder = tmp_path / "copy"
    folder.mkdir()
    for name in sorted(os.listdir(image_folder))[:6]:
        (folder / name).write_bytes((image_folder / name).read_bytes())
    images, _ = quietly(numpy_data.split_images, "folder", config(), ("train",), folder, 0, None)
    files = images["train"].cached("memory")
    expected = files.uint8([1])
    path = files.entries[0][0]
    with open(path, "r+b") as handle:  # damaged after the folder was listed
        handle.truncate(20)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        np.testing.assert_array_equal(files.uint8([0]), expected)
        assert caught == []  # counted once every file of the pass has been tried
        files.uint8(range(1, len(files)))
    [warning] = caught
    assert issubclass(warning.category, data.UnreadableImagesWarning)
    assert str(warning.message).startswith(
        f"1 of {len(files)} image files of the training split could not be decoded and were "
        f"replaced by the next image of the split: {os.path.basename(path)} ("
    )


def test_kid_helpers_agree_between_pipelines(image_folder, monkeypatch):
    by_tf = quietly(data.load_images, "folder", config(), "validation", data_dir=image_folder)
    by_tf, tf_count = data.counted_images(by_tf, 3)
    monkeypatch.setattr(data_loaders, "tensorflow_installed", lambda: False)
    by_numpy = quietly(data.load_images, "folder", config(), "validation", data_dir=image_folder)
    by_numpy, numpy_count = data.counted_images(by_numpy, 3)
    assert isinstance(by_numpy, numpy_data.SplitImages)
    assert (tf_count, numpy_count) == (3, 4)  # tf.data counts up to what it was asked for
    tf_batches = [batch.numpy() for batch in data.image_batches(by_tf, 1, 3)]
    numpy_batches = list(data.image_batches(by_numpy, 1, 3))
    assert len(tf_batches) == len(numpy_batches) == 3
    for ours, theirs in zip(numpy_batches, tf_batches):
        assert ours.shape == theirs.shape == (1, SIZE, SIZE, 3) and ours.dtype == np.float32
        assert np.abs(as_uint8(ours).astype(int) - as_uint8(theirs)).max() <= 8


@pytest.mark.parametrize("backend,dataset", [("jax", "shapes"), ("torch", "folder")])
def test_train_and_generate_without_tensorflow(
    without_tensorflow, tmp_path, image_folder, backend, dataset
):
    """The whole command line on a machine without TensorFlow: train two short epochs
    (NumPy/Pillow pipeline, checkpoints, history, sample grids), then sample from the run."""
    config_path = tmp_path / "tiny.json"
    config_path.write_text(
        json.dumps(
            config(
                widths=[8, 16], block_depth=1, embedding_dims=8, epochs=2, plot_diffusion_steps=2
            ).to_dict()
        )
    )
    run = tmp_path / "run"
    code = (
        "import os, sys; os.environ['KERAS_BACKEND'] = sys.argv[1]; "
        "from ddim_keras import train, generate; import importlib.util; "
        "assert importlib.util.find_spec('tensorflow') is None; "
        "argv = sys.argv[2:]; cut = argv.index('--then'); "
        "code = train.main(argv[:cut]) or generate.main(argv[cut + 1:]); "
        "assert 'tensorflow' not in sys.modules; sys.exit(code)"
    )
    folder = ["--data-dir", image_folder] if dataset == "folder" else []
    done = without_tensorflow(
        "-c",
        code,
        backend,
        "--dataset",
        dataset,
        *folder,
        "--config",
        config_path,
        "--output",
        run,
        "--steps-per-epoch",
        2,
        "--verbose",
        0,
        "--then",
        "--run",
        run,
        "--mode",
        "grid",
        "--seed",
        0,
        "--steps",
        2,
        "--no-progress",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    state = json.loads((run / "state.json").read_text())
    assert state["epoch"] == 2
    assert (run / "checkpoints" / "last.weights.h5").is_file()
    assert len((run / "history.csv").read_text().strip().splitlines()) == 3  # header + 2 epochs
    assert (run / "samples" / "final.png").is_file()
    grids = list((run / "generated").glob("grid_seed0_steps2_eta0*.png"))
    assert len(grids) == 1
    pixels = np.asarray(Image.open(grids[0]))
    assert pixels.std() > 1.0  # an image, not a blank
