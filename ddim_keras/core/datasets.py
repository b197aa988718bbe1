"""The names of the image sources and the options of their images, free of TensorFlow.

``--dataset`` is one of :data:`DATASETS` or ``tfds:NAME[:SPLITS]``
(:func:`check_dataset_name`); ``--background`` is the colour under transparent
pixels (:func:`parse_background`); ``--cache`` one of :data:`CACHE_MODES`. Plain
Python, so that commands check these flags before any heavy import; the loaders
themselves are in :mod:`ddim_keras.data`.
"""

import re

#: The image sources ``ddim_keras.data`` loads (``data.SOURCES``): kept here, free of
#: TensorFlow, so that the commands' ``--dataset`` check costs no import. Besides these,
#: ``tfds:NAME[:SPLITS]`` names any TFDS image dataset (:func:`check_dataset_name`).
DATASETS = ("flowers", "celeba", "folder", "shapes")


#: Prefix of a TFDS dataset given by name: ``tfds:cifar10``, ``tfds:mnist:train,test``.
TFDS_PREFIX = "tfds:"


#: How a ``--dataset`` value is written in messages and ``--help``.
DATASET_METAVAR = "{" + ",".join(DATASETS) + ",tfds:NAME[:SPLITS]}"


# NAME is a TFDS builder name, with an optional /config and :x.y.z version; SPLITS is
# one split (divided 80/20) or TRAIN,VALIDATION (TFDS split strings, used as given).
_TFDS_NAME = re.compile(
    r"(?P<name>[a-z][a-z0-9_]*(?:/[A-Za-z0-9_.\-]+)?(?::\d+\.\d+\.\d+)?)"
    r"(?::(?P<splits>.*))?\Z"
)


_TFDS_SPLIT = re.compile(r"[A-Za-z0-9_\[\]:%+.\-]+\Z")


def check_dataset_name(name):
    """``name`` if it names an image source, else ValueError saying why.

    The one rule for ``--dataset`` (train, evaluate, sweep) and run.json: one of
    :data:`DATASETS`, or ``tfds:NAME[:SPLITS]`` (see :func:`parse_tfds_dataset`).
    """
    if name in DATASETS:
        return name
    if isinstance(name, str) and name.startswith(TFDS_PREFIX):
        parse_tfds_dataset(name)
        return name
    raise ValueError(
        f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}, or "
        f"tfds:NAME for a TFDS image dataset (e.g. tfds:cifar10)."
    )


def parse_tfds_dataset(name):
    """``(tfds_name, splits)`` of ``tfds:NAME[:SPLITS]``; ValueError if malformed.

    ``splits`` is None (the default: 80/20 of the dataset's train split), a
    1-tuple (one split, or several joined by '+', divided 80/20) or a 2-tuple
    (the training and the validation split, TFDS split strings used as given,
    e.g. ``train,test`` or ``train[:90%],train[90%:]``).
    """
    match = _TFDS_NAME.match(name[len(TFDS_PREFIX) :]) if name.startswith(TFDS_PREFIX) else None
    if match is None:
        raise ValueError(
            f"dataset {name!r} is not of the form tfds:NAME[:SPLITS] with a "
            f"lower-case TFDS name, e.g. tfds:cifar10 or tfds:mnist:train,test."
        )
    splits = match.group("splits")
    if splits is None:
        return match.group("name"), None
    parts = tuple(part.strip() for part in splits.split(","))
    if len(parts) > 2 or not all(_TFDS_SPLIT.match(part) for part in parts):
        raise ValueError(
            f"the splits of dataset {name!r} must be one TFDS split (divided "
            f"80/20) or TRAIN,VALIDATION, e.g. tfds:cifar10:train,test."
        )
    if len(parts) == 1 and any(char in parts[0] for char in "[]%:"):
        raise ValueError(
            f"dataset {name!r}: a single split is divided 80/20 and cannot be "
            f"sliced itself; give both as TRAIN,VALIDATION, e.g. "
            f"tfds:mnist:train[:50%],test."
        )
    return match.group("name"), parts


def dataset_slug(name):
    """A file-name-safe form of a dataset name (``tfds:cifar10`` -> ``tfds_cifar10``)."""
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", name).strip("_") or "dataset"


#: Named backgrounds for transparent images (``--background``).
BACKGROUNDS = {"white": (255, 255, 255), "black": (0, 0, 0)}


DEFAULT_BACKGROUND = "white"


def parse_background(value):
    """(R, G, B) of ``white``, ``black``, ``R,G,B`` (0..255) or a 3-list; ValueError if not."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in BACKGROUNDS:
            return BACKGROUNDS[text]
        parts = text.split(",")
    else:
        parts = list(value) if isinstance(value, (list, tuple)) else [value]
    try:
        rgb = tuple(int(str(part).strip()) for part in parts)
    except ValueError:
        rgb = ()
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise ValueError(
            f"background {value!r} must be white, black or R,G,B with three "
            f"integers 0..255 (e.g. 128,128,128)."
        )
    return rgb


def background_rgb(value=None):
    """(R, G, B) of a ``--background`` value (see :func:`parse_background`); None: the default."""
    return parse_background(DEFAULT_BACKGROUND if value is None else value)


def format_background(rgb):
    """The name of (R, G, B) as ``--background`` takes it (``white``, ``0,128,255``)."""
    rgb = parse_background(rgb)
    for name, value in BACKGROUNDS.items():
        if value == rgb:
            return name
    return ",".join(str(v) for v in rgb)


#: Where the training images are cached after decoding (``--cache``): in memory (the
#: example's), in files on disk (collections larger than memory) or not at all.
CACHE_MODES = ("memory", "disk", "none")
