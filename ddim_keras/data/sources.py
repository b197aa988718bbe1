"""What a source's images are made of before any pipeline, and whether it can be read here."""

from ddim_keras.core.datasets import background_rgb, check_dataset_name
from ddim_keras.core.errors import DataError, UsageError
from ddim_keras.core.optional import TENSORFLOW_EXTRA, tensorflow_installed, tfds_installed
from ddim_keras.data.folder import file_identities, split_folder
from ddim_keras.data.shapes import shapes_split_images

#: The sources read without TensorFlow Datasets (by either pipeline).
LOCAL_SOURCES = ("shapes", "folder")


def check_source_available(name):
    """Raise DataError if source ``name`` needs TensorFlow Datasets and it is not installed.

    Cheap (imports nothing): commands call it before building anything.
    """
    if name in LOCAL_SOURCES or tfds_installed():
        return
    if tensorflow_installed():
        raise DataError(
            f"--dataset {name} is read through TensorFlow Datasets, which is not installed "
            f"here: install it with `{TENSORFLOW_EXTRA}` (or `pip install tensorflow-datasets`). "
            f"--dataset shapes (the offline demo) and --dataset folder --data-dir DIR (your own "
            f"images) work without it."
        )
    raise DataError(
        f"--dataset {name} is read through TensorFlow Datasets, which needs TensorFlow, and "
        f"neither is installed here: install both with `{TENSORFLOW_EXTRA}`. Without "
        f"TensorFlow, --dataset shapes (the offline demo) and --dataset folder --data-dir DIR "
        f"(your own images) work."
    )


def split_sources(
    name, config, splits, data_dir, seed, shapes_count, background=None, shapes_record=None
):
    """What the images of ``shapes`` or ``folder`` are made of, before any pipeline.

    Returns ``(sources, identities, background)``: ``sources[split]`` is a uint8
    array of (N, image_size, image_size, 3) drawn images for ``shapes`` and a
    list of ``(path, decoder, orientation)`` for ``folder`` (see
    :func:`~ddim_keras.data.decode.inspect_image`); ``identities[split]`` describes them (the
    fingerprint of a disk cache); ``background`` is the parsed (R, G, B). Both
    pipelines build on this, so they read the same images in the same order.
    Other sources raise (TFDS ones are read by ``ddim_keras.data.loaders._load_split_images``).
    ``shapes_record``, a dict, gets per split what each drawn image holds (see
    :func:`~ddim_keras.data.shapes.draw_shapes`).
    """
    background, common = checked_source(name, config, background)
    if name == "shapes":
        return (
            {
                split: shapes_split_images(
                    split,
                    config.image_size,
                    seed,
                    shapes_count,
                    None if shapes_record is None else shapes_record.setdefault(split, []),
                )
                for split in splits
            },
            {split: dict(common, split=split, seed=seed, count=shapes_count) for split in splits},
            background,
        )
    if name == "folder":
        split_entries = split_folder(data_dir, config.image_size)
        return (
            {split: split_entries[split] for split in splits},
            {split: dict(common, files=file_identities(split_entries[split])) for split in splits},
            background,
        )
    raise ValueError(f"{name} is not a source of arrays or files")


def checked_source(name, config, background):
    """(background as (R, G, B), the identity fields of every split) of a usable source."""
    try:
        check_dataset_name(name)
    except ValueError as error:
        raise UsageError(str(error)) from None
    check_source_available(name)
    background = background_rgb(background)
    return background, {"source": name, "image_size": config.image_size, "background": background}
