"""Tests for ddim_keras.data: preprocessing, the four sources, and their failure messages.

Everything runs offline on tiny images: the TFDS sources use
``tfds.testing.mock_data`` and the network probe is replaced for every test.
"""

import os
import warnings

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from ddim_keras import data
from ddim_keras.core.config import DiffusionConfig
from ddim_keras.core.errors import DataError, UsageError
from ddim_keras.data import splits as data_splits
from ddim_keras.data import tf_pipeline as data_tf_pipeline
from ddim_keras.data import tfds_sources as data_tfds_sources

IMAGE_SIZE = 16
BATCH_SIZE = 4
# Enough folder images that the 20% validation split still fills one batch.
FOLDER_GOOD_IMAGES = 20


@pytest.fixture
def config():
    return DiffusionConfig(image_size=IMAGE_SIZE, batch_size=BATCH_SIZE, dataset_repetitions=1)


# Tests must never touch the network (conftest.no_network: the probe says "unreachable").
pytestmark = pytest.mark.usefixtures("no_network")


def first_batch(dataset):
    return next(iter(dataset)).numpy()


def assert_image_batch(batch, size=IMAGE_SIZE, batch_size=BATCH_SIZE):
    assert batch.shape == (batch_size, size, size, 3)
    assert batch.dtype == np.float32
    assert batch.min() >= 0.0 and batch.max() <= 1.0


def image_keys(dataset):
    """Hashable fingerprints of the images of an unbatched dataset, in order."""
    return [np.rint(image.numpy() * 255).astype(np.uint8).tobytes() for image in dataset]


# -- preprocess_image -----------------------------------------------------------


def test_preprocess_centre_crops_non_square_images():
    # 20 rows x 40 columns: red left quarter, green middle half, blue right quarter.
    image = np.zeros((20, 40, 3), dtype=np.uint8)
    image[:, :10] = (255, 0, 0)
    image[:, 10:30] = (0, 255, 0)
    image[:, 30:] = (0, 0, 255)

    result = data_tf_pipeline.preprocess_image(image, IMAGE_SIZE)

    assert result.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    assert result.dtype == tf.float32
    # The centred 20x20 square is all green; no red or blue bleeds in.
    np.testing.assert_allclose(
        result.numpy(), np.broadcast_to([0.0, 1.0, 0.0], result.shape), atol=1e-6
    )


def test_preprocess_scales_to_unit_range_and_upscales_tiny_images():
    image = np.random.default_rng(0).integers(0, 256, size=(5, 3, 3), dtype=np.uint8)
    result = data_tf_pipeline.preprocess_image(image, IMAGE_SIZE).numpy()
    assert result.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    assert result.min() >= 0.0 and result.max() <= 1.0
    assert result.max() > 0.2  # scaled by 1/255, not left at 0..255 nor zeroed


def test_preprocess_makes_grayscale_rgb():
    gray = np.full((8, 8, 1), 128, dtype=np.uint8)
    result = data_tf_pipeline.preprocess_image(gray, IMAGE_SIZE).numpy()
    assert result.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    np.testing.assert_allclose(result, 128 / 255, atol=1e-5)


# -- shapes ---------------------------------------------------------------------


def test_shapes_are_deterministic_by_seed():
    first = data.shapes_images(6, 32, seed=3)
    again = data.shapes_images(6, 32, seed=3)
    other = data.shapes_images(6, 32, seed=4)
    assert first.shape == (6, 32, 32, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_shapes_contain_shapes():
    images = data.shapes_images(20, 32, seed=0)
    for image in images:
        # A shape is a region of one colour that differs clearly from its surroundings.
        assert np.ptp(image.astype(int), axis=(0, 1)).max() > 40
        assert len(np.unique(image.reshape(-1, 3), axis=0)) > 5


def test_shapes_pipeline_yields_float_batches(config):
    train_ds, val_ds = data.load_datasets("shapes", config, shapes_count=12)
    assert_image_batch(first_batch(train_ds))
    assert_image_batch(first_batch(val_ds))
    # 12 images, batch 4, drop_remainder, 1 repetition: exactly 3 batches.
    assert sum(1 for _ in train_ds) == 3


def test_shapes_validation_differs_from_training(config):
    train = data.load_images("shapes", config, "train", shapes_count=8)
    validation = data.load_images("shapes", config, "validation")
    assert set(image_keys(train.take(8))).isdisjoint(image_keys(validation.take(8)))


# -- folder ---------------------------------------------------------------------


def _save(path, array, **save_args):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path, **save_args)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """A nested tree of assorted formats, plus one corrupt .jpg and a .txt file."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    # Each entry: file name, array-to-PIL conversion, extra save arguments.
    variants = [
        ("rgb.png", lambda a: a, {}),
        ("photo.jpg", lambda a: a, {"quality": 95}),
        ("bitmap.BMP", lambda a: a, {}),
        ("gray.png", lambda a: a[..., 0], {}),
        ("gray.jpeg", lambda a: a[..., 0], {}),
        ("alpha.png", lambda a: np.dstack([a, np.full(a.shape[:2], 200, np.uint8)]), {}),
        ("palette.gif", lambda a: a, {}),
    ]
    for index in range(FOLDER_GOOD_IMAGES):
        name, convert, save_args = variants[index % len(variants)]
        # Varied, non-square sizes; smooth random blocks survive JPEG and resizing.
        height, width = rng.integers(8, 40, size=2)
        blocks = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
        array = np.kron(blocks, np.ones((height // 4 + 1, width // 4 + 1, 1), np.uint8))
        subfolder = ["", "a", os.path.join("a", "b"), "c"][index % 4]
        _save(str(root / subfolder / f"{index:02d}_{name}"), convert(array), **save_args)
    # An animated GIF: the first frame is used.
    frames = [Image.fromarray(rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)) for _ in range(3)]
    frames[0].save(root / "c" / "animated.gif", save_all=True, append_images=frames[1:])
    (root / "a" / "broken.jpg").write_bytes(b"\xff\xd8 this is not really a JPEG")
    (root / "notes.txt").write_text("not an image")
    return root


FOLDER_IMAGE_COUNT = FOLDER_GOOD_IMAGES + 1  # plus the animated GIF


def _load_folder_quietly(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", data.UnreadableImagesWarning)
        return function(*args, **kwargs)


def test_folder_batches_are_rgb_in_unit_range(image_folder, config):
    with pytest.warns(data.UnreadableImagesWarning) as caught:
        train_ds, val_ds = data.load_datasets("folder", config, data_dir=image_folder)
    ours = [w for w in caught if issubclass(w.category, data.UnreadableImagesWarning)]
    assert len(ours) == 1  # one warning for the whole folder, not one per split
    message = str(ours[0].message)
    assert "skipping 1 of" in message and "broken.jpg" in message
    assert_image_batch(first_batch(train_ds))
    assert_image_batch(first_batch(val_ds))


def test_folder_split_is_deterministic_and_disjoint(image_folder, config):
    def split_keys():
        return {
            split: image_keys(
                _load_folder_quietly(
                    data.load_images, "folder", config, split, data_dir=image_folder
                )
            )
            for split in data.SPLITS
        }

    first, again = split_keys(), split_keys()
    assert first == again
    train, validation = set(first["train"]), set(first["validation"])
    assert train.isdisjoint(validation)
    assert len(train) + len(validation) == FOLDER_IMAGE_COUNT
    assert len(validation) == round(FOLDER_IMAGE_COUNT * data_splits.VALIDATION_FRACTION)


def test_folder_of_two_images_keeps_one_for_validation(tmp_path, config):
    for index in range(2):
        _save(str(tmp_path / f"{index}.png"), np.full((8, 8, 3), index * 200, np.uint8))
    one_batch = config.replace(batch_size=1, kid=False)
    train_ds, val_ds = data.load_datasets("folder", one_batch, data_dir=tmp_path)
    assert sum(1 for _ in train_ds) == 1
    assert sum(1 for _ in val_ds) == 1


@pytest.mark.parametrize("layout", ["missing", "file", "empty", "all_bad"])
def test_unusable_folders_raise_an_error_naming_the_folder(tmp_path, config, layout):
    folder = tmp_path / "pictures"
    if layout == "file":
        folder.write_text("a file, not a folder")
    elif layout == "empty":
        folder.mkdir()
        (folder / "readme.txt").write_text("no images here")
    elif layout == "all_bad":
        folder.mkdir()
        (folder / "broken.png").write_bytes(b"\x89PNG garbage")
        (folder / "broken.jpg").write_bytes(b"")
    # A wrong path is bad usage (exit 2); a folder without usable images is a data error.
    expected = UsageError if layout in ("missing", "file") else DataError
    with pytest.raises(expected) as raised:
        data.load_datasets("folder", config, data_dir=folder)
    assert str(folder) in str(raised.value)
    assert "--data-dir" in str(raised.value)


def test_folder_without_data_dir_is_a_usage_error(config):
    with pytest.raises(UsageError, match="--data-dir"):
        data.load_datasets("folder", config)


# -- TFDS sources (mocked) --------------------------------------------------------


@pytest.mark.parametrize("name", ["flowers", "celeba"])
def test_tfds_sources_with_mock_data(name, config, tmp_path, no_network):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=2 * BATCH_SIZE):
        train_ds, val_ds = data.load_datasets(name, config, data_dir=tmp_path)
        assert_image_batch(first_batch(train_ds))
        assert_image_batch(first_batch(val_ds))
        assert sum(1 for _ in train_ds) == 2
    assert no_network == []  # mocked TFDS downloads nothing, so nothing is probed


def test_unprepared_tfds_dataset_offline_fails_fast(config, tmp_path, no_network):
    with pytest.raises(DataError) as raised:
        data.load_datasets("flowers", config, data_dir=tmp_path)
    message = str(raised.value)
    assert no_network == ["www.robots.ox.ac.uk"]
    assert "--data-dir" in message and "shapes" in message and "folder" in message
    assert not any(tmp_path.iterdir())  # nothing was downloaded or created


def test_prepared_tfds_dataset_needs_no_network(tmp_path, no_network):
    import tensorflow_datasets as tfds

    # DummyMnist generates its data locally, standing in for a dataset prepared
    # elsewhere and passed with --data-dir.
    tfds.testing.DummyMnist(data_dir=tmp_path).download_and_prepare()
    prepared = tfds.testing.DummyMnist(data_dir=tmp_path)
    data_tfds_sources._ensure_prepared(prepared, "dummy", {"download_host": "unreachable.invalid"})
    assert no_network == []


def test_tfds_download_errors_become_data_errors(config, tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    def failing_download(self, *args, **kwargs):
        raise ConnectionError("connection reset by peer")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", failing_download)
    with pytest.raises(DataError, match="connection reset by peer") as raised:
        data.load_images("celeba", config, "validation", data_dir=tmp_path)
    assert "--dataset shapes" in str(raised.value)


# -- small or wrong inputs --------------------------------------------------------


def test_fewer_images_than_one_batch_is_a_data_error(config):
    with pytest.raises(DataError, match=r"only 3 image.*batch_size=4"):
        data.load_datasets("shapes", config, shapes_count=3)


def test_fewer_images_than_one_batch_with_unknown_cardinality(config):
    images = tf.data.Dataset.from_tensor_slices(np.zeros((2, 4, 4, 3), np.float32))
    images = images.filter(lambda image: True)  # cardinality becomes unknown
    with pytest.raises(DataError, match="validation set has only 2"):
        data_tf_pipeline.prepare_dataset(images, config, training=False)


def test_unknown_source_and_split_are_usage_errors(config):
    with pytest.raises(UsageError, match="shapes"):
        data.load_datasets("mnist", config)
    with pytest.raises(UsageError, match="validation"):
        data.load_images("shapes", config, split="test")
