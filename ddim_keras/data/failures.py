"""How files that fail at decode time are reported: one warning per pass over a split.

The folder listing (:mod:`ddim_keras.data.folder`) only parses headers, so a
file damaged past its header (a truncated JPEG) fails later, when its pixels
are decoded. Both pipelines then count such files over a whole pass and give
one :class:`~ddim_keras.core.errors.UnreadableImagesWarning` that says how many
of how many files of which split failed, naming a few.
"""

import os

#: How many failed files a warning names.
SHOWN = 3


def split_phrase(split):
    """'the training split' for "train", 'the validation split', ...; None: no split."""
    if split is None:
        return None
    return "the training split" if split == "train" else f"the {split} split"


def describe_file(path, folder=None):
    """``path`` relative to ``folder`` when inside it, else as it is."""
    if folder:
        relative = os.path.relpath(path, folder)
        if not relative.startswith(os.pardir):
            return relative
    return path


def undecodable_message(count, total, named, outcome, split=None, folder=None):
    """'1 of 6 image files of the training split could not be decoded and were skipped:
    photos/cut.jpg (OSError: ...)'.

    ``named`` holds ``(path, reason)`` of some of the ``count`` failed files
    (:data:`SHOWN` at most are shown); ``outcome`` says what became of them.
    """
    where = f" of {split_phrase(split)}" if split else ""
    files = "image file" if total == 1 else "image files"
    message = f"{count} of {total} {files}{where} could not be decoded and {outcome}"
    shown = [f"{describe_file(path, folder)} ({why})" for path, why in named[:SHOWN]]
    if shown:
        message += ": " + "; ".join(shown)
        if count > len(shown):
            message += f"; and {count - len(shown)} more"
    return message + "."


def short_reason(error):
    """``Type: message`` of an exception, without TensorFlow's op decorations."""
    text = " ".join(str(error).split())
    if text.startswith("{{function_node") and "}} " in text:
        text = text.split("}} ", 1)[1]
    text = text.split(" [Op:", 1)[0].strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
