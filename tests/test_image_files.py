"""Image files as users have them (issue #14): formats, transparency, EXIF orientation,
small images, TFDS datasets by name, and the uint8 / disk caches.

Every file is written by Pillow into a temporary folder; the TFDS tests run on
``tfds.testing.mock_data`` or on data prepared locally, with the network probe replaced.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps

from ddim_keras import data
from ddim_keras.core.config import DiffusionConfig
from ddim_keras.core.datasets import dataset_slug, format_background, parse_background
from ddim_keras.core.errors import DataError, UsageError
from ddim_keras.data import cache as data_cache
from ddim_keras.data import decode as data_decode
from ddim_keras.data import loaders as data_loaders
from ddim_keras.data import tf_pipeline as data_tf_pipeline
from ddim_keras.io import resume

SIZE = 16
GARBAGE = [(197, 40, 40), (74, 74, 74)]  # colours seen under alpha 0 in real icon sets
OPAQUE = (20, 120, 220)


# Tests must never touch the network (conftest.no_network: the probe says "unreachable").
pytestmark = pytest.mark.usefixtures("no_network")


@pytest.fixture
def config():
    return DiffusionConfig(image_size=SIZE, batch_size=2, dataset_repetitions=1, kid=False)


def decode(path, background=None, size=SIZE):
    """The pipeline's uint8 image of one file (as a folder's files are decoded)."""
    (image,) = list(
        data_tf_pipeline.image_files_dataset([str(path)], size, background).as_numpy_iterator()
    )
    assert image.shape == (size, size, 3) and image.dtype == np.uint8
    return image


def reference(rgba, background=None, size=SIZE):
    """What the pipeline should make of decoded RGBA pixels."""
    return data_tf_pipeline.preprocess_image_uint8(
        np.asarray(rgba, np.uint8), size, background
    ).numpy()


def blocks(height, width, seed=0):
    """Smooth colour blocks of 8 x 8 pixels: exact in lossless formats, close in JPEG."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    return np.kron(cells, np.ones((8, 8, 1), np.uint8))


# -- transparency ---------------------------------------------------------------------


def half_transparent_rgba(garbage, height=32, width=32):
    """Left half fully transparent over a garbage colour, right half opaque OPAQUE."""
    rgba = np.zeros((height, width, 4), np.uint8)
    rgba[:, : width // 2, :3] = garbage
    rgba[:, width // 2 :, :3] = OPAQUE
    rgba[:, width // 2 :, 3] = 255
    return rgba


def _palette_image(garbage, transparent_index=0):
    rgba = half_transparent_rgba(garbage)
    indices = (rgba[..., 3] == 255).astype(np.uint8)  # 0 = transparent entry, 1 = OPAQUE
    image = Image.fromarray(indices, "P")
    image.putpalette(list(garbage) + list(OPAQUE) + [0] * (256 - 2) * 3)
    return image


def write_transparent(path, kind, garbage):
    """A file of ``kind`` whose transparent pixels hold ``garbage``; returns its path."""
    rgba = half_transparent_rgba(garbage)
    if kind == "png_rgba":
        Image.fromarray(rgba, "RGBA").save(path)
    elif kind == "png_la":
        gray = np.dstack(
            [np.where(rgba[..., 3] == 255, 90, garbage[0]).astype(np.uint8), rgba[..., 3]]
        )
        Image.fromarray(gray, "LA").save(path)
    elif kind == "png_palette":
        _palette_image(garbage).save(path, transparency=0)
    elif kind == "png_colour_key":  # RGB with a tRNS colour: that colour is transparent
        Image.fromarray(rgba[..., :3], "RGB").save(path, transparency=tuple(garbage))
    elif kind == "gif":
        _palette_image(garbage).save(path, transparency=0)
    elif kind == "webp":
        Image.fromarray(rgba, "RGBA").save(path, lossless=True)
    elif kind == "tiff":
        Image.fromarray(rgba, "RGBA").save(path)
    else:
        raise ValueError(kind)
    return path


TRANSPARENT_KINDS = {
    "png_rgba": ".png",
    "png_la": ".png",
    "png_palette": ".png",
    "png_colour_key": ".png",
    "gif": ".gif",
    "webp": ".webp",
    "tiff": ".tiff",
}


@pytest.mark.parametrize("garbage", GARBAGE)
@pytest.mark.parametrize("kind", sorted(TRANSPARENT_KINDS))
def test_transparent_pixels_become_exactly_the_background(tmp_path, kind, garbage):
    path = write_transparent(str(tmp_path / f"icon{TRANSPARENT_KINDS[kind]}"), kind, garbage)
    for background in ("white", "black", "0,128,255"):
        image = decode(path, background)
        rgb = parse_background(background)
        # Left of the edge (16 px -> 8 px, the resize kernel reaches one pixel over).
        assert (image[:, :6] == rgb).all(), (kind, background, image[0, :8])
        opaque = (90, 90, 90) if kind == "png_la" else OPAQUE
        assert (image[:, 10:] == opaque).all(), (kind, background, image[0, 8:])


def test_background_defaults_to_white(tmp_path):
    path = write_transparent(str(tmp_path / "icon.png"), "png_rgba", GARBAGE[0])
    assert (decode(path)[:, :6] == 255).all()


def test_half_transparent_pixels_blend_with_the_background(tmp_path):
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., :3] = (200, 100, 0)
    rgba[..., 3] = 51  # 20 % opaque
    Image.fromarray(rgba, "RGBA").save(tmp_path / "glass.png")
    image = decode(tmp_path / "glass.png", "black").astype(int)
    np.testing.assert_array_equal(image, np.broadcast_to((40, 20, 0), image.shape))


def test_training_batches_of_a_transparent_folder_have_clean_backgrounds(tmp_path, config):
    for index in range(10):  # 8 for training, 2 for validation
        write_transparent(str(tmp_path / f"{index}.png"), "png_rgba", GARBAGE[index % 2])
    train_ds, val_ds = data.load_datasets("folder", config, data_dir=tmp_path, background="black")
    for batch in list(train_ds) + list(val_ds):
        batch = batch.numpy()
        assert batch.dtype == np.float32
        assert (batch[:, :, :6] == 0.0).all()
        np.testing.assert_allclose(
            batch[:, :, 10:], np.broadcast_to(np.array(OPAQUE) / 255.0, (2, 16, 6, 3)), atol=1e-6
        )


# -- formats --------------------------------------------------------------------------


def _rgb(height=32, width=48):
    return blocks(height, width)


def write_format(folder, kind):
    """A file of each kind users have; returns (path, expected RGBA, tolerance)."""
    rgb = _rgb()
    gray = rgb[..., 0]
    rgba = np.dstack(
        [rgb, np.where(np.arange(48) < 24, 255, 128)[None, :].repeat(32, 0).astype(np.uint8)]
    )
    opaque = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    path = os.path.join(folder, kind)
    if kind == "rgb.jpg":
        Image.fromarray(rgb).save(path, quality=95)
    elif kind == "gray.jpg":
        Image.fromarray(gray).save(path, quality=95)
    elif kind == "cmyk.jpg":
        Image.fromarray(rgb).convert("CMYK").save(path, quality=95)
    elif kind == "progressive.jpeg":
        Image.fromarray(rgb).save(path, quality=95, progressive=True)
    elif kind == "rgb.png":
        Image.fromarray(rgb).save(path)
    elif kind == "gray.png":
        Image.fromarray(gray).save(path)
    elif kind == "gray16.png":
        Image.fromarray(gray.astype(np.uint16) * 257).save(path)
    elif kind == "gray_alpha.png":
        Image.fromarray(np.dstack([gray, rgba[..., 3]]), "LA").save(path)
    elif kind == "rgba.png":
        Image.fromarray(rgba, "RGBA").save(path)
    elif kind == "palette.png":
        Image.fromarray(rgb).quantize(64).save(path)
    elif kind == "first_frame.gif":
        frames = [Image.fromarray(rgb).quantize(64), Image.fromarray(255 - rgb).quantize(64)]
        frames[0].save(path, save_all=True, append_images=frames[1:])
    elif kind == "rgb.bmp":
        Image.fromarray(rgb).save(path)
    elif kind == "one_bit.bmp":
        Image.fromarray(gray > 127).save(path)
    elif kind == "palette.bmp":
        Image.fromarray(rgb).quantize(64).save(path)
    elif kind == "lossy.webp":
        Image.fromarray(rgb).save(path, quality=90)
    elif kind == "lossless_rgba.webp":
        Image.fromarray(rgba, "RGBA").save(path, lossless=True)
    elif kind == "rgb.tif":
        Image.fromarray(rgb).save(path)
    elif kind == "rgba_deflate.tiff":
        Image.fromarray(rgba, "RGBA").save(path, compression="tiff_adobe_deflate")
    elif kind == "gray16.tiff":
        Image.fromarray(gray.astype(np.uint16) * 257).save(path)
    else:
        raise ValueError(kind)
    # What each should decode to: Pillow's own reading where it is the reference, and
    # the pixels written where Pillow's conversion would clip (16-bit).
    if kind.startswith("gray16"):
        expected = np.dstack([gray, gray, gray, np.full_like(gray, 255)])
    else:
        with Image.open(path) as image:
            expected = np.asarray(image.convert("RGBA"))
    # TensorFlow's and Pillow's JPEG decoders upsample chroma a little differently.
    lossy = kind.endswith((".jpg", ".jpeg"))
    return path, expected, (6 if lossy else 0), opaque


FORMAT_KINDS = [
    "rgb.jpg",
    "gray.jpg",
    "cmyk.jpg",
    "progressive.jpeg",
    "rgb.png",
    "gray.png",
    "gray16.png",
    "gray_alpha.png",
    "rgba.png",
    "palette.png",
    "first_frame.gif",
    "rgb.bmp",
    "one_bit.bmp",
    "palette.bmp",
    "lossy.webp",
    "lossless_rgba.webp",
    "rgb.tif",
    "rgba_deflate.tiff",
    "gray16.tiff",
]


@pytest.mark.parametrize("kind", FORMAT_KINDS)
def test_every_format_decodes_like_pillow(tmp_path, kind):
    path, expected, tolerance, opaque = write_format(str(tmp_path), kind)
    image = decode(path, "black").astype(int)
    want = reference(expected, "black").astype(int)
    assert np.abs(image - want).max() <= tolerance, kind
    assert np.abs(image - want).mean() <= tolerance / 4, kind
    if kind in ("rgb.png", "rgb.bmp", "rgb.tif"):  # lossless RGB: exactly what was written
        np.testing.assert_array_equal(image, reference(opaque))


def test_gif_first_frame_is_used(tmp_path):
    path, _, _, opaque = write_format(str(tmp_path), "first_frame.gif")
    first = decode(path).astype(int)
    # The quantized first frame is close to the written pixels, the second is their negative.
    assert np.abs(first - reference(opaque).astype(int)).mean() < 10


def test_tensorflow_and_pillow_share_the_work(tmp_path):
    decoders = {}
    for kind in FORMAT_KINDS:
        path = write_format(str(tmp_path), kind)[0]
        decoders[kind] = data_decode.inspect_image(path)[1]
    for kind in (
        "rgb.jpg",
        "gray.jpg",
        "cmyk.jpg",
        "rgb.png",
        "gray16.png",
        "rgba.png",
        "palette.png",
        "first_frame.gif",
        "rgb.bmp",
    ):
        assert decoders[kind] in (data_decode.DECODE_TF_RGB, data_decode.DECODE_TF_RGBA), kind
    for kind in ("one_bit.bmp", "lossy.webp", "rgb.tif", "gray16.tiff"):
        assert decoders[kind] == data_decode.DECODE_PILLOW, kind


def test_a_folder_of_every_format_is_read_and_bad_files_are_counted(tmp_path, config):
    for kind in FORMAT_KINDS:
        write_format(str(tmp_path), kind)
    (tmp_path / "broken.webp").write_bytes(b"RIFF\x00\x00\x00\x00WEBPVP8 garbage")
    (tmp_path / "broken.tiff").write_bytes(b"II*\x00 not a tiff")
    with pytest.warns(data.UnreadableImagesWarning, match="skipping 2 of 21") as caught:
        splits = data.load_datasets("folder", config.replace(batch_size=1), data_dir=tmp_path)
    [message] = [
        str(w.message) for w in caught if issubclass(w.category, data.UnreadableImagesWarning)
    ]
    assert "broken.webp" in message and "broken.tiff" in message
    assert sum(1 for split in splits for _ in split) == len(FORMAT_KINDS)


# -- orientation ----------------------------------------------------------------------

# What Pillow's exif_transpose does to show an image of each EXIF orientation upright.
UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
INVERSE = {
    Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90,
    Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270,
}


def write_oriented_jpeg(path, upright, orientation):
    """A JPEG whose pixels are stored turned so that only its EXIF tag makes it ``upright``."""
    image = Image.fromarray(upright)
    if orientation != 1:
        method = UPRIGHT[orientation]
        image = image.transpose(INVERSE.get(method, method))
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.save(path, quality=95, exif=exif)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_to_jpegs(tmp_path, orientation):
    # Tall, with four distinct quarters: any wrong turn or mirror moves a colour.
    upright = np.zeros((48, 32, 3), np.uint8)
    upright[:24, :16] = (250, 10, 10)
    upright[:24, 16:] = (10, 250, 10)
    upright[24:, :16] = (10, 10, 250)
    upright[24:, 16:] = (250, 250, 10)
    path = str(tmp_path / f"phone_{orientation}.jpg")
    write_oriented_jpeg(path, upright, orientation)
    with Image.open(path) as stored:
        assert stored.size == ((32, 48) if orientation < 5 else (48, 32))
        assert stored.getexif()[0x0112] == orientation
        by_pillow = np.asarray(ImageOps.exif_transpose(stored).convert("RGBA"))
    image = decode(path).astype(int)
    assert np.abs(image - reference(by_pillow).astype(int)).max() <= 3
    # Centre crop of the upright picture: the 32 x 32 middle, top half red | green.
    want = reference(np.dstack([upright, np.full((48, 32), 255, np.uint8)])).astype(int)
    assert np.abs(image - want).mean() < 3, orientation
    np.testing.assert_allclose(image[2, 2], (250, 10, 10), atol=8)
    np.testing.assert_allclose(image[2, -3], (10, 250, 10), atol=8)


def test_orientation_op_matches_pillow_for_every_value():
    array = np.arange(5 * 3 * 4, dtype=np.uint8).reshape(5, 3, 4)
    for orientation in range(1, 9):
        want = (
            np.asarray(Image.fromarray(array, "RGBA").transpose(UPRIGHT[orientation]))
            if orientation != 1
            else array
        )
        got = data_tf_pipeline.apply_orientation(tf.constant(array), orientation).numpy()
        np.testing.assert_array_equal(got, want, err_msg=str(orientation))


# -- small images -----------------------------------------------------------------------


def test_small_images_are_upscaled_and_counted_in_one_warning(tmp_path, config):
    for index in range(5):
        Image.fromarray(blocks(8, 8, seed=index)).save(tmp_path / f"tiny_{index}.png")
    for index in range(5):
        Image.fromarray(blocks(32, 40, seed=index)).save(tmp_path / f"big_{index}.png")
    with pytest.warns(data.SmallImagesWarning) as caught:
        train_ds, _ = data.load_datasets("folder", config, data_dir=tmp_path)
    ours = [w for w in caught if issubclass(w.category, data.SmallImagesWarning)]
    assert len(ours) == 1
    assert "5 of 10 image(s)" in str(ours[0].message) and "tiny_0.png" in str(ours[0].message)
    assert next(iter(train_ds)).shape == (2, SIZE, SIZE, 3)


# -- TFDS datasets by name --------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["tfds:cifar10", "tfds:mnist", "tfds:mnist:train,test", "tfds:stanford_dogs:test"]
)
def test_any_tfds_image_dataset_with_mock_data(name, config, tmp_path, no_network):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=4):
        train_ds, val_ds = data.load_datasets(name, config, data_dir=tmp_path)
        for dataset in (train_ds, val_ds):
            batch = next(iter(dataset)).numpy()
            assert batch.shape == (2, SIZE, SIZE, 3) and batch.dtype == np.float32
            assert batch.min() >= 0.0 and batch.max() <= 1.0
    assert no_network == []


def test_tfds_gray_images_become_rgb(config, tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=2):
        image = next(iter(data.load_images("tfds:mnist", config, data_dir=tmp_path))).numpy()
    assert image.shape == (SIZE, SIZE, 3)
    np.testing.assert_array_equal(image[..., 0], image[..., 2])


def test_small_tfds_images_are_reported(tmp_path):
    import tensorflow_datasets as tfds

    config = DiffusionConfig(image_size=64, batch_size=2, dataset_repetitions=1, kid=False)
    with (
        tfds.testing.mock_data(num_examples=2),
        pytest.warns(data.SmallImagesWarning, match="32x32, smaller than image_size 64"),
    ):
        data.load_images("tfds:cifar10", config, data_dir=tmp_path)


def test_tfds_dataset_without_images_fails_before_downloading(config, tmp_path, no_network):
    with pytest.raises(UsageError, match="no 'image' feature.*text") as raised:
        data.load_datasets("tfds:imdb_reviews", config, data_dir=tmp_path)
    assert "tfds:cifar10" in str(raised.value)
    assert no_network == [] and not any(tmp_path.iterdir())


def test_unknown_tfds_dataset_is_a_usage_error(config, tmp_path):
    with pytest.raises(UsageError, match="no dataset 'not_a_dataset'"):
        data.load_datasets("tfds:not_a_dataset", config, data_dir=tmp_path)


def test_unprepared_tfds_dataset_offline_fails_fast(config, tmp_path, no_network):
    with pytest.raises(DataError) as raised:
        data.load_datasets("tfds:cifar10", config, data_dir=tmp_path)
    message = str(raised.value)
    assert no_network == ["www.cs.toronto.edu"]
    assert "tfds build cifar10 --data_dir DIR" in message and "--dataset shapes" in message


@pytest.fixture(scope="module")
def prepared_dummy_mnist(tmp_path_factory):
    """A TFDS dataset prepared on disk, as `tfds build` elsewhere and --data-dir would give."""
    import tensorflow_datasets as tfds

    root = tmp_path_factory.mktemp("tfds")
    tfds.testing.DummyMnist(data_dir=root).download_and_prepare()
    return root


def test_prepared_tfds_dataset_by_name_and_its_splits(prepared_dummy_mnist, config, no_network):
    train_ds, val_ds = data.load_datasets("tfds:dummy_mnist", config, data_dir=prepared_dummy_mnist)
    # 20 train images split 80/20 (16 / 4), batches of 2.
    assert sum(1 for _ in train_ds) == 8 and sum(1 for _ in val_ds) == 2
    given = data.load_images(
        "tfds:dummy_mnist:train,test", config, "validation", data_dir=prepared_dummy_mnist
    )
    assert sum(1 for _ in given) == 20  # the whole test split
    with pytest.raises(UsageError, match="no split 'valid'.*test, train"):
        data.load_datasets("tfds:dummy_mnist:train,valid", config, data_dir=prepared_dummy_mnist)
    assert no_network == []


@pytest.mark.parametrize(
    "name, slug",
    [
        ("tfds:cifar10", "tfds_cifar10"),
        ("tfds:mnist:train[:50%],test", "tfds_mnist_train_50_test"),
        ("folder", "folder"),
    ],
)
def test_dataset_names_become_file_names(name, slug):
    assert dataset_slug(name) == slug


# -- background values --------------------------------------------------------------------


def test_background_values():
    assert parse_background("white") == (255, 255, 255)
    assert parse_background(" Black ") == (0, 0, 0)
    assert parse_background("0, 128,255") == (0, 128, 255)
    assert parse_background([1, 2, 3]) == (1, 2, 3)
    assert format_background((255, 255, 255)) == "white"
    assert format_background("1,2,3") == "1,2,3"
    for bad in ("grey", "1,2", "0,0,256", "-1,0,0", "a,b,c"):
        with pytest.raises(ValueError, match="white, black or R,G,B"):
            parse_background(bad)


# -- cache ------------------------------------------------------------------------------


def test_cached_images_are_uint8_and_batches_float(config):
    images, _ = data_loaders._load_split_images("shapes", config, ("train",), None, 0, 8)
    assert images["train"].element_spec.dtype == tf.uint8
    train_ds, _ = data.load_datasets("shapes", config, shapes_count=8)
    assert train_ds.element_spec.dtype == tf.float32
    # The same images as the float pipeline gave, to the last bit.
    uint8 = np.stack(list(images["train"].as_numpy_iterator()))
    float_images = np.stack(
        list(data.load_images("shapes", config, "train", shapes_count=8).as_numpy_iterator())
    )
    np.testing.assert_array_equal(float_images, uint8.astype(np.float32) / 255.0)


def test_disk_cache_is_written_once_and_keyed_by_the_images(tmp_path, config):
    cache = tmp_path / "cache"

    def load(**changes):
        train_ds, val_ds = data.load_datasets(
            "shapes", config.replace(**changes), shapes_count=6, cache="disk", cache_dir=cache
        )
        return np.concatenate([b.numpy() for b in train_ds] + [b.numpy() for b in val_ds])

    first = load()
    index_files = sorted(name for name in os.listdir(cache) if name.endswith(".index"))
    assert [name.split("_")[0] for name in index_files] == ["train", "validation"]
    assert np.sort(load(), axis=None).tolist() == np.sort(first, axis=None).tolist()
    assert len([n for n in os.listdir(cache) if n.endswith(".index")]) == 2  # read, not rewritten
    load(image_size=8)  # other images: other files
    assert len([n for n in os.listdir(cache) if n.endswith(".index")]) == 4


def test_disk_cache_left_unfinished_by_a_killed_run_is_rebuilt(tmp_path, config):
    cache = tmp_path / "cache"
    data.load_datasets("shapes", config, shapes_count=4, cache="disk", cache_dir=cache)
    # What a process killed while filling the cache leaves behind (no .index yet): its
    # files and its lock file, which no process holds any more (tests/test_shared_caches.py
    # kills a real one).
    identities = data_loaders._load_split_images("shapes", config, data.SPLITS, None, 0, 4)[1]
    name = os.path.basename(data_cache.cache_prefix(cache, "train", identities["train"], "tf.data"))
    for leftover in (".lock", "_0.lockfile", "_0.data-00000-of-00001.tempstate123"):
        (cache / f"{name}.writer-99-dead{leftover}").write_text("")
    train_ds, _ = data.load_datasets(
        "shapes", config, shapes_count=4, cache="disk", cache_dir=cache
    )
    assert sum(1 for _ in train_ds) == 2
    assert os.path.exists(cache / f"{name}.index")
    assert not [n for n in os.listdir(cache) if ".writer-" in n or n.endswith(".lockfile")]


def test_cache_none_and_bad_cache_values(config, tmp_path):
    train_ds, _ = data.load_datasets("shapes", config, shapes_count=4, cache="none")
    assert sum(1 for _ in train_ds) == 2
    with pytest.raises(UsageError, match="cache"):
        data.load_datasets("shapes", config, cache="ssd")
    with pytest.raises(UsageError, match="--cache-dir"):
        data.load_datasets("shapes", config, cache="disk")


# -- the commands ---------------------------------------------------------------------------


def test_training_on_transparent_pngs_records_and_keeps_its_background(tmp_path, capsys):
    from conftest import write_config

    from ddim_keras.cli import train
    from ddim_keras.cli.runner import run_cli
    from ddim_keras.io import run_info
    from ddim_keras.io.run_dir import RunDir

    folder = tmp_path / "icons"
    folder.mkdir()
    for index in range(10):
        write_transparent(str(folder / f"{index}.png"), "png_rgba", GARBAGE[index % 2])
    config = write_config(tmp_path / "c.json", batch_size=2)
    run = tmp_path / "run"
    args = [
        "--dataset",
        "folder",
        "--data-dir",
        str(folder),
        "--config",
        config,
        "--output",
        str(run),
        "--steps-per-epoch",
        "1",
        "--verbose",
        "0",
    ]
    assert train.main(args + ["--background", "black", "--cache", "disk"]) == 0
    info = RunDir(run).read_run_info()
    assert info["background"] == "black"
    assert len([n for n in os.listdir(run / "cache") if n.endswith(".index")]) == 2
    # Resumed, evaluated and swept on the same background unless told otherwise.
    parsed = train.build_parser().parse_args(args)
    assert resume.resolve_background(parsed.background, RunDir(run), parsed.overwrite) == (0, 0, 0)
    assert run_info.training_background(None, str(run)) == (0, 0, 0)
    assert run_info.training_background((1, 2, 3), str(run)) == (1, 2, 3)
    assert run_cli(train.main, args + ["--background", "white", "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert "--background black" in err and "Nothing was changed" in err


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--dataset", "tfds:"], ["--dataset", "tfds:NAME"]),
        (["--dataset", "mnist"], ["unknown dataset 'mnist'", "tfds:NAME"]),
        (["--dataset", "shapes", "--background", "grey"], ["--background", "R,G,B"]),
        (["--dataset", "shapes", "--cache", "ssd"], ["--cache"]),
        (["--dataset", "shapes", "--cache", "memory", "--cache-dir", "x"], ["--cache-dir"]),
    ],
)
def test_train_refuses_bad_data_flags(argv, words, capsys):
    from ddim_keras.cli import train
    from ddim_keras.cli.runner import run_cli

    assert run_cli(train.main, argv) == 2
    err = capsys.readouterr().err
    for word in words:
        assert word in err


def test_commands_take_tfds_names_and_backgrounds():
    from ddim_keras.cli import evaluate, sweep, train

    args = train.build_parser().parse_args(
        ["--dataset", "tfds:cifar10", "--background", "10,20,30"]
    )
    assert args.dataset == "tfds:cifar10" and args.background == (10, 20, 30)
    args = evaluate.build_parser().parse_args(["--run", "r", "--dataset", "tfds:mnist"])
    assert args.dataset == "tfds:mnist" and args.background is None
    args = sweep.build_parser().parse_args(["--run", "r", "--background", "black"])
    assert args.background == (0, 0, 0)
    assert evaluate.default_output("r", None, "tfds:mnist:train,test", 5, 0.0) == os.path.join(
        "r", "kid_tfds_mnist_train_test_5steps_eta0.json"
    )
