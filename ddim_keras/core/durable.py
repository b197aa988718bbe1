"""Durable file writes: a crash or a power cut leaves the old file or the new one, whole.

Every file the package writes (checkpoints, configs, ``state.json``, CSVs, images, plots)
goes through :func:`write_durably`: the content is written to a temporary file beside the
target, flushed to disk (``fsync``), renamed over the target (``os.replace``, atomic on one
file system), and then the folder is flushed too, so that the rename itself survives a power
cut. The temporary file keeps the target's extension (``last.tmp.weights.h5``,
``grid.tmp.png``, ``state.tmp.json``) because Keras and image writers choose the format from
the name. It is removed when the write fails; only a killed process can leave it behind, and
the next write replaces it.

This module imports only the standard library, so commands can use it before their heavy
imports.

Example::

    from ddim_keras.io.durable import write_durably, write_json

    write_durably("checkpoints/last.weights.h5", model.save_weights)
    write_json("run/state.json", {"epoch": 3})
"""

import errno
import json
import os

#: A directory fsync that fails with one of these means "not supported here", not an error.
_UNSUPPORTED_DIRECTORY_FSYNC = (errno.EINVAL, errno.EBADF)


def temporary_path(path):
    """The temporary name :func:`write_durably` uses for ``path``: same folder and extension.

    ``a/last.weights.h5`` -> ``a/last.tmp.weights.h5``, ``a/grid.png`` -> ``a/grid.tmp.png``,
    ``a/name`` -> ``a/name.tmp``.
    """
    path = os.fspath(path)
    if path.endswith(".weights.h5"):  # Keras insists on this suffix
        return path[: -len(".weights.h5")] + ".tmp.weights.h5"
    root, extension = os.path.splitext(path)
    return f"{root}.tmp{extension}"


def fsync_path(path):
    """Flush a written file's content to disk."""
    fd = os.open(path, os.O_RDWR if os.name == "nt" else os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_directory(directory):
    """Flush a folder's entries (a rename in it) to disk, where the platform allows it."""
    if os.name == "nt":  # folders cannot be opened or flushed on Windows
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as error:
        if error.errno not in _UNSUPPORTED_DIRECTORY_FSYNC:
            raise
    finally:
        os.close(fd)


def publish(tmp_path, path):
    """Give a fully written ``tmp_path`` the name ``path``, durably: fsync, rename, fsync folder.

    The one rename of the package; a reader sees the old file or the whole new one.
    """
    fsync_path(tmp_path)
    os.replace(tmp_path, path)
    fsync_directory(os.path.dirname(os.path.abspath(path)))


def write_durably(path, save, *, user_error=False):
    """Write ``path`` through ``save(tmp_path)``, durably and atomically; returns ``path``.

    ``save`` writes the whole content to the temporary path it is given (see
    :func:`temporary_path`). On any failure the temporary file is removed, the previous
    ``path`` is left as it was, and the error is raised again; with ``user_error=True`` an
    ``OSError`` becomes a one-line :class:`~ddim_keras.core.errors.DdimError` naming ``path``.
    """
    path = os.fspath(path)
    tmp_path = temporary_path(path)
    try:
        save(tmp_path)
        publish(tmp_path, path)
    except BaseException as error:
        if os.path.lexists(tmp_path):
            try:
                os.remove(tmp_path)
            except OSError:
                pass  # the original error matters more
        if user_error and isinstance(error, OSError):
            from ddim_keras.core.errors import DdimError

            raise DdimError(f"could not write {path}: {error.strerror or error}.") from None
        raise
    return path


def write_text(path, text, *, newline=None, user_error=False):
    """Write a string (UTF-8) durably; ``newline`` as for :func:`open`."""

    def save(tmp_path):
        with open(tmp_path, "w", encoding="utf-8", newline=newline) as handle:
            handle.write(text)

    return write_durably(path, save, user_error=user_error)


def write_bytes(path, data, *, user_error=False):
    """Write bytes durably."""

    def save(tmp_path):
        with open(tmp_path, "wb") as handle:
            handle.write(data)

    return write_durably(path, save, user_error=user_error)


def write_json(path, data, *, user_error=False):
    """Write ``data`` as indented, key-sorted JSON with a final newline, durably."""
    return write_text(
        path, json.dumps(data, indent=2, sort_keys=True) + "\n", user_error=user_error
    )
