"""The two splits every source gives, and the rules they share."""

from ddim_keras.core.errors import DataError

SPLITS = ("train", "validation")


#: Share of a folder's images held out for validation.
VALIDATION_FRACTION = 0.2


def check_one_batch(image_count, batch_size, training=True):
    """Raise DataError if ``0 <= image_count < batch_size``: such a split yields no batch."""
    if 0 <= image_count < batch_size:
        part = "training" if training else "validation"
        raise DataError(
            f"the {part} set has only {image_count} image(s), fewer than one batch of "
            f"batch_size={batch_size} (incomplete batches are dropped). Use a smaller "
            f"batch size or more images."
        )
