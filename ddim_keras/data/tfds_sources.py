"""The TensorFlow Datasets sources: ``flowers``, ``celeba`` and any ``tfds:NAME[:SPLITS]``.

They never leave a user waiting on TFDS's own download retries (minutes)
without a network: before downloading, a few-second TCP probe checks that the
download host answers, and a failure becomes a :class:`DataError` that names
the offline alternatives.
"""

import os
import re
import socket
import threading
import urllib.parse
import urllib.request
import warnings

from ddim_keras.core.datasets import TFDS_PREFIX, parse_tfds_dataset
from ddim_keras.core.errors import DataError, SmallImagesWarning, UsageError
from ddim_keras.data.splits import VALIDATION_FRACTION
from ddim_keras.data.tf_pipeline import preprocess_image_uint8

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


def tfds_label(name, attribute=None):
    """The feature a TFDS source's class labels come from: ``"label"``, or celeba's
    ``("attributes", ATTRIBUTE)`` (``--label ATTRIBUTE``, two classes)."""
    if name == "celeba":
        if not attribute:
            raise UsageError(
                "--conditional with --dataset celeba needs --label ATTRIBUTE, the attribute "
                "whose two values are the classes (e.g. --label Smiling or --label Eyeglasses)."
            )
        return ("attributes", attribute)
    if attribute:
        raise UsageError(
            f"--label names a celeba attribute; --dataset {name} takes its classes from "
            "its own labels. Leave out --label."
        )
    return ("label",)


def tfds_classes(name, data_dir=None, attribute=None):
    """The class names of a TFDS source's labels (:func:`tfds_label`), from TFDS's metadata."""
    import tensorflow_datasets as tfds

    label = tfds_label(name, attribute)
    if name.startswith(TFDS_PREFIX):
        builder, _ = _named_tfds_source(tfds, name, data_dir)
    else:
        builder = tfds.builder(_TFDS_SOURCES[name]["tfds_name"], data_dir=data_dir)
    features = builder.info.features
    if label[0] == "attributes":
        names = sorted(features["attributes"].keys())
        if attribute not in names:
            raise UsageError(
                f"--label {attribute!r} is not a celeba attribute; choose one of "
                f"{', '.join(names)}."
            )
        return [f"not {attribute}", attribute]
    feature = features["label"] if "label" in features.keys() else None  # noqa: SIM118
    if not isinstance(feature, tfds.features.ClassLabel):
        raise UsageError(
            f"--conditional needs class labels, and TFDS dataset {builder.name!r} has no "
            f"'label' class feature (its features: {', '.join(features.keys())}). Train "
            "it without --conditional, or choose a labelled dataset such as tfds:cifar10."
        )
    return list(feature.names)


def tfds_split_images(name, splits, image_size, data_dir, background, common, label=None):
    """``(datasets, identities)`` of a TFDS source: flowers, celeba or ``tfds:NAME``.

    ``label`` (see :func:`tfds_label`): elements are (image, int32 label).
    """
    import tensorflow as tf
    import tensorflow_datasets as tfds  # slow to import; only these sources need it

    if data_dir is not None:
        data_dir = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
    if name.startswith(TFDS_PREFIX):
        builder, source = _named_tfds_source(tfds, name, data_dir)
    else:
        source = _TFDS_SOURCES[name]
        builder = tfds.builder(source["tfds_name"], data_dir=data_dir)
    _ensure_prepared(builder, name, source)
    split_strings = source["splits"] or _default_tfds_splits(builder)
    if name.startswith(TFDS_PREFIX):
        _check_tfds_splits(builder, name, split_strings)
        _warn_small_tfds_images(name, source["image_shape"], image_size)
    datasets, identities = {}, {}
    for split in splits:
        try:
            examples = builder.as_dataset(split=split_strings[split], shuffle_files=True)
        except Exception as error:  # unknown split names and slicing errors come as several types
            raise DataError(
                f"cannot read split {split_strings[split]!r} of the {name} dataset "
                f"(TFDS '{builder.name}'): {type(error).__name__}: {error}"
            ) from None

        def prepare(example):
            image = preprocess_image_uint8(example["image"], image_size, background)
            if label is None:
                return image
            value = example
            for key in label:
                value = value[key]
            return image, tf.cast(value, tf.int32)

        datasets[split] = examples.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
        identities[split] = dict(
            common,
            tfds=builder.name,
            version=str(builder.version),
            data_dir=str(builder.data_dir),
            split=split_strings[split],
        )
        if label is not None:
            identities[split]["label"] = list(label)
    return datasets, identities


def _named_tfds_source(tfds, name, data_dir):
    """(builder, source) of ``tfds:NAME[:SPLITS]``; fails before any download if unusable."""
    tfds_name, splits = parse_tfds_dataset(name)
    try:
        builder = tfds.builder(tfds_name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise UsageError(
            f"--dataset {name}: TFDS has no dataset {tfds_name!r} (see "
            f"https://www.tensorflow.org/datasets/catalog for the names; a "
            f"config or version is written NAME/CONFIG:1.0.0)."
        ) from None
    except Exception as error:  # a builder whose own requirements are missing
        raise DataError(
            f"--dataset {name}: TFDS cannot load the builder of {tfds_name!r}: "
            f"{type(error).__name__}: {error}"
        ) from None
    features = builder.info.features
    feature = features["image"] if "image" in features.keys() else None  # noqa: SIM118
    if not isinstance(feature, tfds.features.Image):
        raise UsageError(
            f"--dataset {name}: TFDS dataset {builder.name!r} has no 'image' "
            f"feature (its features: {', '.join(features.keys()) or 'none'}); "
            f"choose an image dataset such as tfds:cifar10 or tfds:mnist."
        )
    shape = feature.shape
    if len(shape) == 3 and shape[-1] not in (None, 1, 2, 3, 4):
        raise UsageError(
            f"--dataset {name}: its images have {shape[-1]} channels; only gray, "
            f"RGB and their alpha versions (1 to 4 channels) can be used."
        )
    source = {
        "tfds_name": tfds_name,
        "download_host": _download_host(builder),
        "image_shape": tuple(shape),
        "splits": _explicit_tfds_splits(splits),
    }
    return builder, source


def _explicit_tfds_splits(splits):
    """{"train": ..., "validation": ...} of the SPLITS of ``tfds:NAME:SPLITS``, or None."""
    if splits is None:
        return None
    if len(splits) == 2:
        return {"train": splits[0], "validation": splits[1]}
    return _eighty_twenty(splits[0].split("+"))


def _eighty_twenty(split_names):
    cut = int(round(100 * (1 - VALIDATION_FRACTION)))
    return {
        "train": "+".join(f"{split}[:{cut}%]" for split in split_names),
        "validation": "+".join(f"{split}[{cut}%:]" for split in split_names),
    }


def _default_tfds_splits(builder):
    """80/20 of the train split (of every split if there is no 'train'), once prepared."""
    known = list(builder.info.splits.keys())
    if known and "train" not in known:
        names = sorted(known)
    else:
        names = ["train"]  # also under tfds.testing.mock_data, which records no splits
    return _eighty_twenty(names)


def _check_tfds_splits(builder, name, split_strings):
    """Refuse split names the prepared dataset does not have, naming those it has."""
    known = list(builder.info.splits.keys())
    if not known:
        return
    for text in split_strings.values():
        for part in text.split("+"):
            split = re.split(r"[\[(]", part.strip(), maxsplit=1)[0]
            if split not in known:
                raise UsageError(
                    f"--dataset {name}: TFDS dataset {builder.name!r} has no split "
                    f"{split!r}; its splits are {', '.join(sorted(known))}."
                )


def _warn_small_tfds_images(name, shape, image_size):
    """One warning when a TFDS dataset's images (of a fixed size) are all upscaled."""
    if len(shape) == 3 and shape[0] and shape[1] and min(shape[0], shape[1]) < image_size:
        warnings.warn(
            f"the images of --dataset {name} are {shape[1]}x{shape[0]}, smaller "
            f"than image_size {image_size} px: all of them are upscaled (blurry).",
            SmallImagesWarning,
            stacklevel=5,
        )


def _download_host(builder):
    """The host the dataset downloads from (from its checksums), or None if unknown."""
    try:
        urls = list(builder.url_infos or ())
    except Exception:  # no checksums file: the host is not known before downloading
        return None
    for url in urls:
        host = urllib.parse.urlsplit(url).hostname
        if host:
            return host
    return None


def _ensure_prepared(builder, name, source):
    """Download and prepare the dataset unless it is already there; fail fast offline."""
    if _is_prepared(builder):
        return
    host = source.get("download_host")  # None when unknown: the download itself tells
    tfds_name = source.get("tfds_name", builder.name)
    # Only probe when tfds's real download would run: under
    # tfds.testing.mock_data the download is a no-op and needs no network.
    if host and not _download_is_replaced(builder) and not network_reachable(host):
        raise DataError(
            f"the {name} dataset (TFDS '{builder.name}') is not prepared in "
            f"{builder.data_path} and {host}, which it downloads from, cannot be "
            f"reached (no internet access?). {_offline_alternatives(tfds_name)}"
        )
    try:
        builder.download_and_prepare()
    except Exception as error:  # network and checksum errors come in many types
        raise DataError(
            f"downloading the {name} dataset (TFDS '{builder.name}') failed: "
            f"{type(error).__name__}: {error}. {_offline_alternatives(tfds_name)}"
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
