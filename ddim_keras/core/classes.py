"""Class labels and guidance: the checks shared by the library and every command.

A class-conditional model (``num_classes`` > 0, see
:mod:`ddim_keras.model.conditioning`) takes one integer label per image, 0 ..
``num_classes - 1``; the label ``num_classes`` is the "no class" it is trained
with a ``label_dropout`` share of the time, which gives the unconditional
prediction that classifier-free guidance needs. Plain Python (no Keras import),
so commands check their flags before the heavy imports.
"""

import math
import numbers

import numpy as np

from ddim_keras.core.errors import UsageError


def check_guidance(guidance, name="guidance"):
    """The guidance scale w >= 0: 0 unconditional, 1 plain conditional, above 1 guided."""
    if (
        isinstance(guidance, bool)
        or not isinstance(guidance, numbers.Real)
        or not math.isfinite(guidance)
        or guidance < 0
    ):
        raise UsageError(
            f"{name} must be a number of at least 0, got {guidance}: the prediction is "
            "unconditional + w * (conditional - unconditional), so 0 ignores the class, "
            "1 is the plain conditional model and values above 1 (3 to 7 are usual) "
            "follow the class more closely."
        )
    return float(guidance)


def check_labels(labels, num_images, num_classes, name="labels"):
    """One int32 label per image, (num_images,), from None, one label or a sequence.

    None on a conditional model: every image unconditional (the "no class"
    label ``num_classes``, which may also be given per image). Labels need a
    conditional model.
    """
    if labels is None:
        return None if not num_classes else np.full((num_images,), num_classes, np.int32)
    if not num_classes:
        raise UsageError(
            f"{name} were given, but this model is unconditional (num_classes 0): it was "
            "trained without classes. Leave out the labels, or train a conditional model "
            "(train --conditional)."
        )
    array = np.asarray(labels)
    if array.ndim == 0:
        array = np.full((num_images,), array)
    if array.shape != (num_images,) or not np.issubdtype(array.dtype, np.integer):
        raise UsageError(
            f"{name} must be one class index or one per image ({num_images} whole "
            f"numbers), got {labels!r}."
        )
    if array.min() < 0 or array.max() > num_classes:
        raise UsageError(
            f"{name} must be class indices from 0 to {num_classes - 1} (this model has "
            f"{num_classes} classes; {num_classes} means no class), got "
            f"{sorted(set(array.tolist()))}."
        )
    return array.astype(np.int32)


def resolve_class(text, class_names, flag="--class"):
    """The index of a class given by name or index (a command's ``--class``)."""
    if not class_names:
        raise UsageError(
            f"{flag} needs a class-conditional run, and this one is unconditional (it was "
            "trained without --conditional). Leave out the flag, or train with --conditional."
        )
    if text in class_names:
        return class_names.index(text)
    folded = [name.casefold() for name in class_names]
    if text.casefold() in folded and folded.count(text.casefold()) == 1:
        return folded.index(text.casefold())
    if text.isdigit() and int(text) < len(class_names):
        return int(text)
    shown = ", ".join(class_names[:30]) + (" ..." if len(class_names) > 30 else "")
    raise UsageError(
        f"{flag} {text!r} is not a class of this run: give a class name or an index from "
        f"0 to {len(class_names) - 1}. Its {len(class_names)} classes are: {shown}."
    )


def class_rows(num_classes, num_rows, num_cols):
    """The labels of a grid with one class per row: row r shows class r (cycling past
    the last class), so a model of more classes than rows shows its first ``num_rows``."""
    return np.repeat(np.arange(num_rows) % num_classes, num_cols).astype(np.int32)
