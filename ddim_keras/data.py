"""Image datasets for diffusion training: where images come from and how they are batched.

Four sources, all ending in the same kind of ``tf.data`` pipeline of square
float32 RGB images in [0, 1]:

* ``flowers``: TFDS ``oxford_flowers102``. Its official splits are tiny for
  training, so, like the keras.io DDIM example, the first 80% of every split is
  used for training and the last 20% for validation.
* ``celeba``: TFDS ``celeb_a`` with its own train and validation splits.
* ``folder``: any directory tree of JPEG/PNG/BMP/GIF files, split 80/20
  deterministically so that the same folder always gives the same split.
* ``shapes``: procedurally drawn coloured shapes; needs no download, so it is
  the offline demo and the source the tests use.

The TFDS sources never leave a user waiting on TFDS's own download retries
(minutes) without a network: before downloading, a few-second TCP probe checks
that the download host answers, and a failure becomes a :class:`DataError`
that names the offline alternatives.
"""

import os
import socket
import threading
import urllib.parse
import urllib.request
import warnings

import numpy as np
import tensorflow as tf

from ddim_keras.errors import DataError, UsageError

SOURCES = ("flowers", "celeba", "folder", "shapes")
SPLITS = ("train", "validation")

#: The shapes demo's default sizes; ``shapes_count`` overrides the train count.
SHAPES_TRAIN_COUNT = 2000
SHAPES_VALIDATION_COUNT = 500

#: Share of a folder's images held out for validation.
FOLDER_VALIDATION_FRACTION = 0.2
#: File name endings read from a folder (compared case-insensitively).
FOLDER_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
# Fixed, not the run's seed: evaluation must see the same validation images as
# training did, whatever seed either run was given.
_FOLDER_SPLIT_SEED = 2022
# What PIL may report for a file that tf.io.decode_image can also decode
# (MPO is the multi-picture JPEG some cameras write).
_TF_DECODABLE_FORMATS = ("JPEG", "MPO", "PNG", "BMP", "GIF")

# How each TFDS source is read: dataset name, split strings, and the host its
# files download from (probed before a download is attempted).
_TFDS_SOURCES = {
    "flowers": {
        "tfds_name": "oxford_flowers102",
        # The keras.io example's 80/20 re-split across all three official splits.
        "splits": {
            "train": "train[:80%]+validation[:80%]+test[:80%]",
            "validation": "train[80%:]+validation[80%:]+test[80%:]",
        },
        "download_host": "www.robots.ox.ac.uk",
    },
    "celeba": {
        "tfds_name": "celeb_a",
        "splits": {"train": "train", "validation": "validation"},
        "download_host": "drive.google.com",
    },
}

NETWORK_PROBE_TIMEOUT_S = 5.0


class UnreadableImagesWarning(UserWarning):
    """Some files in an image folder could not be decoded and were skipped."""


# -- preprocessing ------------------------------------------------------------


def preprocess_image(image, image_size):
    """Centre-crop an HxWxC image (values 0..255) to a square and resize it.

    Returns a float32 tensor of shape (image_size, image_size, 3) in [0, 1].
    Grayscale (1 channel) is repeated to RGB and an alpha channel is dropped.
    """
    image = tf.convert_to_tensor(image)
    channels = image.shape[-1]
    if channels in (1, 2):  # gray or gray+alpha
        image = tf.image.grayscale_to_rgb(image[..., :1])
    elif channels == 4:  # RGBA
        image = image[..., :3]
    height = tf.shape(image)[0]
    width = tf.shape(image)[1]
    side = tf.minimum(height, width)
    image = tf.image.crop_to_bounding_box(
        image, (height - side) // 2, (width - side) // 2, side, side
    )
    # Antialiasing matters when downsampling: without it, resized photos alias.
    image = tf.image.resize(
        tf.cast(image, tf.float32), (image_size, image_size), antialias=True
    )
    # Antialiased (Lanczos-like) kernels overshoot slightly beyond 0..255.
    image = tf.clip_by_value(image / 255.0, 0.0, 1.0)
    return tf.ensure_shape(image, (image_size, image_size, 3))


def prepare_dataset(images_ds, config, training=True):
    """Batch a dataset of single preprocessed images the way the keras.io example does.

    ``cache -> repeat(dataset_repetitions) -> shuffle(10 * batch_size) ->
    batch(batch_size, drop_remainder=True) -> prefetch``. Validation data goes
    through the same steps (shuffled too: KID is estimated per batch, so batch
    composition matters). ``training`` only names the split in error messages.

    Raises DataError when there are fewer images than one batch, because with
    ``drop_remainder`` such a dataset would silently yield nothing.
    """
    batch_size = config.batch_size
    image_count = _count_images(images_ds, batch_size)
    if 0 <= image_count < batch_size:
        part = "training" if training else "validation"
        raise DataError(
            f"the {part} set has only {image_count} image(s), fewer than one batch of "
            f"batch_size={batch_size} (incomplete batches are dropped). Use a smaller "
            f"batch size or more images."
        )
    return (
        images_ds.cache()
        .repeat(config.dataset_repetitions)
        .shuffle(10 * batch_size)
        .batch(batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def _count_images(images_ds, enough):
    """The number of images, or at least ``enough`` of them, without a full pass."""
    count = int(images_ds.cardinality())
    if count >= 0 or count == int(tf.data.INFINITE_CARDINALITY):
        return count
    # Unknown cardinality (e.g. after skipping undecodable files): decoding
    # `enough` images settles whether one batch can be filled.
    return int(images_ds.take(enough).reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))


# -- public loaders -----------------------------------------------------------


def load_datasets(name, config, data_dir=None, seed=0, shapes_count=None):
    """Batched, shuffled (train_ds, val_ds) pipelines for the source ``name``.

    ``data_dir`` is the image folder for ``folder`` and TFDS's data directory for
    ``flowers``/``celeba``. ``seed`` and ``shapes_count`` (the number of train
    images) only affect ``shapes``.
    """
    images = _load_split_images(name, config, SPLITS, data_dir, seed, shapes_count)
    train_ds = prepare_dataset(images["train"], config, training=True)
    val_ds = prepare_dataset(images["validation"], config, training=False)
    return train_ds, val_ds


def load_images(name, config, split="train", data_dir=None, seed=0, shapes_count=None):
    """Unbatched dataset of single preprocessed images of one split ("train" or "validation")."""
    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}.")
    return _load_split_images(name, config, (split,), data_dir, seed, shapes_count)[split]


def _load_split_images(name, config, splits, data_dir, seed, shapes_count):
    """Map each requested split to its dataset of preprocessed images.

    Loading several splits in one call lets a folder be listed (and its bad
    files reported) once rather than once per split.
    """
    if name not in SOURCES:
        raise UsageError(f"unknown dataset {name!r}; choose one of {', '.join(SOURCES)}.")
    if name == "shapes":
        return {split: _shapes_dataset(split, config.image_size, seed, shapes_count)
                for split in splits}
    if name == "folder":
        split_paths = _split_folder(data_dir)
        return {split: _files_dataset(split_paths[split], config.image_size)
                for split in splits}
    return {split: _tfds_images(name, split, config.image_size, data_dir) for split in splits}


# -- shapes ---------------------------------------------------------------------


def shapes_images(num_images, image_size, seed=0):
    """Draw ``num_images`` RGB images of 1-2 coloured circles, squares and triangles.

    Backgrounds are plain (3 in 4) or a linear gradient. The same seed gives the same
    images. Shapes are rasterised on a finer grid and averaged down, so their
    edges are antialiased. Returns uint8 of shape (N, image_size, image_size, 3).
    """
    return _draw_shapes(np.random.default_rng(seed), num_images, image_size)


def _shapes_dataset(split, image_size, seed, shapes_count):
    if split == "train":
        count = SHAPES_TRAIN_COUNT if shapes_count is None else shapes_count
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
            raise UsageError(f"the shapes image count must be a positive integer, got {count!r}.")
        rng = np.random.default_rng(seed)
    else:
        count = SHAPES_VALIDATION_COUNT
        # An independent stream, so validation never repeats training images.
        rng = np.random.default_rng([seed, 1])
    images = _draw_shapes(rng, count, image_size)
    return tf.data.Dataset.from_tensor_slices(images).map(
        lambda image: preprocess_image(image, image_size),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def _draw_shapes(rng, num_images, image_size):
    # Supersampling factor: enough sub-pixels per pixel for smooth edges while
    # keeping the fine grid around 128-256 pixels wide.
    factor = int(np.clip(256 // image_size, 2, 4))
    fine = image_size * factor
    # Pixel-centre coordinates in [0, 1) on the fine grid and the output grid.
    fine_coords = (np.arange(fine, dtype=np.float32) + 0.5) / fine
    fine_y, fine_x = np.meshgrid(fine_coords, fine_coords, indexing="ij")
    coarse_coords = (np.arange(image_size, dtype=np.float32) + 0.5) / image_size
    coarse_y, coarse_x = np.meshgrid(coarse_coords, coarse_coords, indexing="ij")

    images = np.empty((num_images, image_size, image_size, 3), dtype=np.uint8)
    for index in range(num_images):
        canvas = _background(rng, coarse_x, coarse_y)
        # One or two large shapes: few enough that a small model trained for
        # minutes on a CPU learns to draw them.
        for _ in range(rng.integers(1, 3)):
            kind = rng.integers(3)
            radius = rng.uniform(0.18, 0.32)
            centre_x, centre_y = rng.uniform(radius * 0.8, 1.0 - radius * 0.8, size=2)
            angle = rng.uniform(0.0, 2.0 * np.pi)
            inside = _shape_mask(kind, fine_x - centre_x, fine_y - centre_y, radius, angle)
            # Fraction of each output pixel's sub-pixels inside the shape.
            coverage = inside.reshape(image_size, factor, image_size, factor).mean(axis=(1, 3))
            colour = _contrasting_colour(rng, canvas, coarse_x, coarse_y, centre_x, centre_y)
            coverage = coverage[..., None].astype(np.float32)
            canvas = canvas * (1.0 - coverage) + colour * coverage
        images[index] = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return images


def _background(rng, x, y):
    start = rng.uniform(0, 255, size=3).astype(np.float32)
    if rng.random() < 0.75:
        return np.broadcast_to(start, x.shape + (3,)).copy()
    end = rng.uniform(0, 255, size=3).astype(np.float32)
    direction = rng.uniform(0.0, 2.0 * np.pi)
    along = x * np.cos(direction) + y * np.sin(direction)
    # Rescale the projection to [0, 1] so the gradient spans the whole image.
    along = (along - along.min()) / max(float(np.ptp(along)), 1e-6)
    return start + (end - start) * along[..., None]


def _shape_mask(kind, dx, dy, radius, angle):
    """Boolean mask of a shape centred at offset (0, 0); kind 0/1/2 = circle/square/triangle."""
    if kind == 0:
        return dx * dx + dy * dy <= radius * radius
    cos, sin = np.cos(angle), np.sin(angle)
    if kind == 1:
        half_side = radius * 0.8  # a square of the same visual weight as the circle
        along = dx * cos + dy * sin
        across = -dx * sin + dy * cos
        return (np.abs(along) <= half_side) & (np.abs(across) <= half_side)
    # Equilateral triangle with circumradius `radius`: inside all three edges,
    # each at distance radius / 2 (the inradius) from the centre.
    inside = np.ones(dx.shape, dtype=bool)
    for edge in range(3):
        normal = angle + np.pi / 3 + edge * 2 * np.pi / 3
        inside &= dx * np.cos(normal) + dy * np.sin(normal) <= radius / 2
    return inside


def _contrasting_colour(rng, canvas, x, y, centre_x, centre_y):
    """A random colour that stands out from the background under the shape's centre."""
    row = int(np.argmin(np.abs(y[:, 0] - centre_y)))
    column = int(np.argmin(np.abs(x[0, :] - centre_x)))
    behind = canvas[row, column]
    colour = rng.uniform(0, 255, size=3).astype(np.float32)
    for _ in range(10):  # rejection sampling; gives up gracefully on bad luck
        if np.linalg.norm(colour - behind) > 100:
            break
        colour = rng.uniform(0, 255, size=3).astype(np.float32)
    return colour


# -- folder ---------------------------------------------------------------------


def _split_folder(data_dir):
    """List a folder's readable images and split them {"train": [...], "validation": [...]}."""
    paths = _list_folder_images(data_dir)
    order = np.random.default_rng(_FOLDER_SPLIT_SEED).permutation(len(paths))
    validation_count = int(round(len(paths) * FOLDER_VALIDATION_FRACTION))
    if len(paths) >= 2:
        # A handful of images still gets a (tiny) validation set.
        validation_count = min(max(validation_count, 1), len(paths) - 1)
    # The permuted order is kept (not re-sorted), so each split is already
    # shuffled across subfolders before the pipeline's local shuffle buffer.
    return {
        "validation": [paths[i] for i in order[:validation_count]],
        "train": [paths[i] for i in order[validation_count:]],
    }


def _list_folder_images(data_dir):
    """Sorted paths of decodable images under ``data_dir``; warns once about bad files."""
    if data_dir is None:
        raise UsageError("--dataset folder needs --data-dir DIR, a folder of JPEG/PNG/BMP/GIF images.")
    folder = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
    if not os.path.exists(folder):
        raise UsageError(f"image folder {folder} does not exist; pass --data-dir with a folder "
                        f"of JPEG/PNG/BMP/GIF images.")
    if not os.path.isdir(folder):
        raise UsageError(f"{folder} is not a folder; --data-dir must be a folder (searched "
                        f"recursively) of JPEG/PNG/BMP/GIF images.")

    candidates = []
    for root, dirs, files in os.walk(folder):
        # Hidden entries are metadata (.git, macOS "._x.jpg" resource forks), not images.
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        candidates.extend(
            os.path.join(root, f) for f in files
            if not f.startswith(".") and f.lower().endswith(FOLDER_EXTENSIONS)
        )
    candidates.sort()
    if not candidates:
        raise DataError(f"image folder {folder} contains no images (looked for "
                        f"{'/'.join(FOLDER_EXTENSIONS)} files in it and its subfolders); add "
                        f"images or point --data-dir at another folder.")

    good, bad = [], []
    for path in candidates:
        problem = _unreadable_reason(path)
        if problem is None:
            good.append(path)
        else:
            bad.append((path, problem))
    if not good:
        raise DataError(f"none of the {len(bad)} image file(s) in {folder} can be decoded "
                        f"(e.g. {_describe_bad(bad, folder)}); add readable JPEG/PNG/BMP/GIF "
                        f"images or point --data-dir at another folder.")
    if bad:
        warnings.warn(
            f"skipping {len(bad)} of {len(candidates)} image file(s) in {folder} that cannot "
            f"be decoded: {_describe_bad(bad, folder)}",
            UnreadableImagesWarning, stacklevel=5,
        )
    return good


def _unreadable_reason(path):
    """None if TensorFlow should decode the file, else a short reason.

    PIL's ``verify`` parses headers and checksums without decoding pixels, so
    this stays cheap even for large folders.
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image_format, mode = image.format, image.mode
                image.verify()
    except Image.DecompressionBombError:
        return None  # just very large; TensorFlow decodes it and resize shrinks it
    except Exception as error:  # PIL raises many types for damaged files
        return f"{type(error).__name__}: {error}".strip()
    if image_format not in _TF_DECODABLE_FORMATS:
        return f"{image_format} data, which TensorFlow cannot decode"
    if image_format == "BMP" and mode == "1":
        return "1-bit BMP, which TensorFlow cannot decode"
    return None


def _describe_bad(bad, folder, limit=3):
    shown = "; ".join(f"{os.path.relpath(path, folder)} ({why})" for path, why in bad[:limit])
    return shown + (f"; and {len(bad) - limit} more" if len(bad) > limit else "")


def _files_dataset(paths, image_size):
    def read(path):
        # channels=3 turns gray, palette and RGBA into RGB; GIFs give their first frame.
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        return preprocess_image(image, image_size)

    images = tf.data.Dataset.from_tensor_slices(tf.constant(paths, dtype=tf.string))
    images = images.map(read, num_parallel_calls=tf.data.AUTOTUNE)
    # Safety net for damage the listing-time check cannot see: skip (with a
    # TensorFlow warning) rather than crash mid-training.
    return images.ignore_errors(log_warning=True)


# -- TFDS sources ---------------------------------------------------------------


def network_reachable(host, port=443, timeout=NETWORK_PROBE_TIMEOUT_S):
    """True if a TCP connection to ``host:port`` (or the HTTPS proxy) opens within ``timeout``.

    The connection runs in a daemon thread so a slow DNS lookup cannot stretch
    the wait beyond ``timeout``. Tests replace this function.
    """
    target = _proxy_for(host) or (host, port)
    opened = []

    def connect():
        try:
            with socket.create_connection(target, timeout=timeout):
                opened.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(opened)


def _proxy_for(host):
    """(host, port) of the HTTPS proxy downloads would go through, or None."""
    proxy = urllib.request.getproxies().get("https")
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    parsed = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if not parsed.hostname:
        return None
    return parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)


def _tfds_images(name, split, image_size, data_dir):
    import tensorflow_datasets as tfds  # slow to import; only these sources need it

    source = _TFDS_SOURCES[name]
    if data_dir is not None:
        data_dir = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
    builder = tfds.builder(source["tfds_name"], data_dir=data_dir)
    _ensure_prepared(builder, name, source)
    examples = builder.as_dataset(split=source["splits"][split], shuffle_files=True)
    return examples.map(
        lambda example: preprocess_image(example["image"], image_size),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def _ensure_prepared(builder, name, source):
    """Download and prepare the dataset unless it is already there; fail fast offline."""
    if _is_prepared(builder):
        return
    host = source["download_host"]
    # Only probe when tfds's real download would run: under
    # tfds.testing.mock_data the download is a no-op and needs no network.
    if not _download_is_replaced(builder) and not network_reachable(host):
        raise DataError(
            f"the {name} dataset (TFDS '{builder.name}') is not prepared in "
            f"{builder.data_path} and {host}, which it downloads from, cannot be "
            f"reached (no internet access?). {_offline_alternatives(builder.name)}"
        )
    try:
        builder.download_and_prepare()
    except Exception as error:  # network and checksum errors come in many types
        raise DataError(
            f"downloading the {name} dataset (TFDS '{builder.name}') failed: "
            f"{type(error).__name__}: {error}. {_offline_alternatives(builder.name)}"
        ) from error


def _is_prepared(builder):
    # Checking the folder first avoids tfds logging a warning about a missing
    # dataset_info.json for a dataset that was simply never downloaded.
    try:
        if not builder.data_path.exists():
            return False
    except OSError:
        return False
    return builder.is_prepared()


def _download_is_replaced(builder):
    """True if ``download_and_prepare`` is not TFDS's own (e.g. tfds.testing.mock_data's no-op)."""
    method = type(builder).download_and_prepare
    return not getattr(method, "__module__", "").startswith("tensorflow_datasets.core")


def _offline_alternatives(tfds_name):
    return (
        f"Alternatives: prepare it on a machine with internet access (e.g. "
        f"`tfds build {tfds_name} --data_dir DIR`), copy DIR here and pass --data-dir DIR; "
        f"or train on your own images with --dataset folder --data-dir DIR; "
        f"or use the offline demo --dataset shapes."
    )
