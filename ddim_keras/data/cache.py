"""Disk caches of decoded images: named by what they hold, never read stale, never clashing.

A finished cache has its final name (``PREFIX.npy`` for the NumPy pipeline,
``PREFIX.index`` and ``PREFIX.data-*`` for tf.data) and is only ever complete:
each writer fills files of its own, ``PREFIX.writer-TOKEN...``, and renames
them to the final name once they are whole. Several processes may share a
cache folder:

* a writer holds ``PREFIX.writer-TOKEN.lock`` locked (``fcntl.flock``) for as
  long as it lives, so a writer's files whose lock can be taken are a dead
  writer's leftovers, and only those are removed;
* the cache folder's ``ddim_cache.lock`` is locked around the steps that look
  at other writers' files (start, publish, clean-up), so none of them
  interleave;
* where ``flock`` is unavailable (not Linux/macOS, some network file systems),
  writers still write their own files, but no one removes another's.

Standard library only: both pipelines use it.
"""

import atexit
import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import threading

from ddim_keras.core.durable import fsync_directory, publish

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

#: Part of every cache's identity. Bump it when the same files would be cached as
#: other pixels (decoding, orientation, crop, compositing, resizing, rounding) or
#: stored otherwise (dtype, shape, file layout): caches of an older version are then
#: never read (their files stay until removed by hand).
PIPELINE_VERSION = 1


#: The cache folder's lock file, taken around starting, publishing and cleaning up.
FOLDER_LOCK = "ddim_cache.lock"


_WRITER = re.compile(r"\.writer-(\d+-[0-9a-f]+)(?=[._])")


def fingerprint(identity):
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def cache_prefix(folder, split, identity, pipeline):
    """``FOLDER/SPLIT_FINGERPRINT``: the name of ``split``'s cache, from what its images are
    made of (``identity``), which pipeline caches them and :data:`PIPELINE_VERSION`."""
    identity = dict(identity, pipeline=pipeline, pipeline_version=PIPELINE_VERSION)
    return os.path.join(folder, f"{split}_{fingerprint(identity)}")


@contextlib.contextmanager
def folder_lock(folder):
    """Hold the cache folder's exclusive lock (a no-op where flock is unavailable)."""
    try:
        fd = os.open(os.path.join(folder, FOLDER_LOCK), os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        yield
        return
    try:
        _lock(fd, wait=True)  # where it cannot lock, no one removes another's files
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _lock(fd, wait=False):
    """True if ``fd`` is now exclusively locked, False if another holds it, None if
    this system cannot tell."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        return True
    except OSError as error:
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        return None  # ENOLCK, EOPNOTSUPP...: some network file systems


class CacheWriter:
    """One writer of the cache at ``prefix``: its own file names and its lock.

    :meth:`start` (under the folder lock) removes dead writers' leftovers and,
    unless the cache is finished, locks this writer's lock file; the writer fills files named
    :meth:`path` ``(SUFFIX)``; :meth:`finish` publishes them under the final
    name unless another writer has already done so, and :meth:`abandon` removes
    them. A writer that is neither finished nor abandoned is abandoned when the
    process exits; if it is killed, the next writer in the folder cleans up.
    """

    _live = set()  # this process's unfinished writers
    _live_lock = threading.Lock()

    def __init__(self, prefix):
        self.prefix = prefix
        self.folder = os.path.dirname(prefix) or "."
        self.token = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.temporary = f"{prefix}.writer-{self.token}"
        self._fd = None

    @classmethod
    def start(cls, prefix, is_published):
        """A new writer of the cache at ``prefix``, or None if ``is_published()`` (called
        under the folder lock, after dead writers' leftovers are removed) says it is
        finished already."""
        writer = cls(prefix)
        with folder_lock(writer.folder):
            remove_dead_writers(writer.folder)
            if is_published():
                return None
            writer._fd = os.open(writer.temporary + ".lock", os.O_RDWR | os.O_CREAT, 0o666)
            _lock(writer._fd)  # new: never held by another
            os.write(writer._fd, f"{os.getpid()}\n".encode())
        with cls._live_lock:
            cls._live.add(writer)
        return writer

    def path(self, suffix=""):
        """This writer's name for the file the finished cache calls ``PREFIX + suffix``."""
        return self.temporary + suffix

    def finish(self, is_published):
        """Give this writer's files their final names, unless ``is_published()`` (called
        under the folder lock) says another writer's finished cache is already there."""
        base = os.path.basename(self.temporary)
        with folder_lock(self.folder):
            if self._fd is not None and not is_published():
                # The finished files (not tf.data's own PREFIX_0... of an unfinished pass),
                # data before index: a tf.data cache is finished once PREFIX.index exists.
                names = [name for name in self._files() if name.startswith(base + ".")]
                for name in sorted(names, key=lambda name: name.endswith(".index")):
                    publish(os.path.join(self.folder, name), self.prefix + name[len(base) :])
            self._close()

    def abandon(self):
        """Remove this writer's files and lock (an unfinished cache)."""
        with folder_lock(self.folder):
            self._close()

    def _files(self):
        base = os.path.basename(self.temporary)
        try:
            names = os.listdir(self.folder)
        except OSError:
            return []
        return [name for name in names if name.startswith(base) and name != base + ".lock"]

    def _close(self):
        """Remove what is left of this writer's files, then its lock (the folder lock held)."""
        if self._fd is None:
            return
        for name in self._files():
            _remove(os.path.join(self.folder, name))
        _remove(self.temporary + ".lock")
        os.close(self._fd)
        self._fd = None
        with self._live_lock:
            self._live.discard(self)

    @classmethod
    def abandon_all(cls):
        with cls._live_lock:
            writers = list(cls._live)
        for writer in writers:
            try:
                writer.abandon()
            except OSError:
                pass


atexit.register(CacheWriter.abandon_all)


def remove_dead_writers(folder):
    """Remove the files of writers in ``folder`` that are gone (call under the folder lock).

    A writer is gone when its lock file can be locked (its process died and the
    system released the lock) or is missing; a live writer's lock cannot be
    taken, and where locks are unavailable nothing of another writer's is touched.
    """
    try:
        names = os.listdir(folder)
    except OSError:
        return
    files = {}
    for name in names:
        match = _WRITER.search(name)
        if match:
            files.setdefault(match.group(1), []).append(name)
    with CacheWriter._live_lock:
        own = {writer.token for writer in CacheWriter._live}
    for token, members in files.items():
        if token in own:
            continue
        locks = [name for name in members if name.endswith(f".writer-{token}.lock")]
        if locks:
            try:
                fd = os.open(os.path.join(folder, locks[0]), os.O_RDWR)
            except OSError:
                continue
            try:
                if not _lock(fd):
                    continue  # alive, or no way to tell
                for name in members:
                    if name not in locks:
                        _remove(os.path.join(folder, name))
                _remove(os.path.join(folder, locks[0]))
            finally:
                os.close(fd)
        elif fcntl is not None:
            # A live writer's lock file exists from its start to its end (both under the
            # folder lock): files without one are what an interrupted clean-up left.
            for name in members:
                _remove(os.path.join(folder, name))
    fsync_directory_quietly(folder)


def fsync_directory_quietly(folder):
    try:
        fsync_directory(folder)
    except OSError:
        pass


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    except OSError:
        pass  # e.g. still open on Windows: left for a later clean-up
