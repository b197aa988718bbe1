"""What a ``tf.data`` pipeline does at the end of each pass over it.

A pass over a folder's files ends by comparing the number of images that
decoded with the number of files (:func:`count_decoded`): files that fail at
decode time are skipped by ``ignore_errors``, and this is where they are
counted and reported (one warning per pass; with ``cache()`` after it, only the
pass that fills the cache decodes). A pass that fills a disk cache ends by
publishing it under its final name (:func:`disk_cached`).

Both work by appending a marker element to the pass, which a filter removes
after calling Python (``tf.py_function``) with the number of elements before
it: images and their order are unchanged. A pass cut short (``take``) reaches
no end and reports nothing. TensorFlow is imported inside the functions only.
"""

import os
import threading
import warnings

from ddim_keras.core.errors import UnreadableImagesWarning
from ddim_keras.data.cache import CacheWriter
from ddim_keras.data.failures import SHOWN, short_reason, undecodable_message


def at_end_of_each_pass(dataset, callback, *inputs):
    """``dataset`` as it is, calling ``callback(count, *inputs)`` in Python whenever a pass
    over it reaches its end; ``count`` is the number of elements of that pass.

    ``dataset``'s elements are tensors of known rank, or tuples of them ((image,
    label) pairs); ``inputs`` are tensors, given to ``callback`` as NumPy values.
    """
    import tensorflow as tf

    filler = tf.nest.map_structure(
        lambda spec: tf.zeros(
            [0 if size is None else size for size in spec.shape.as_list()], spec.dtype
        ),
        dataset.element_spec,
    )
    # (tf.data passes a tuple's parts as separate arguments.)
    marked = dataset.map(
        lambda *parts: (parts[0] if len(parts) == 1 else parts, False)
    ).concatenate(tf.data.Dataset.from_tensors((filler, True)))

    def call(count, *values):
        callback(int(count), *(value.numpy() for value in values))
        return False

    def keep(position, element):
        def at_end():
            return tf.reshape(tf.py_function(call, [position, *inputs], tf.bool), [])

        return tf.cond(element[1], at_end, lambda: tf.constant(True))

    # enumerate() counts from 0 again on every pass (a repeat() re-creates it).
    return marked.enumerate().filter(keep).map(lambda position, element: element[0])


# -- files that fail at decode time -------------------------------------------------------


class DecodeReport:
    """Warns at the end of a pass in which fewer images decoded than there are files.

    ``problem_of(entry)`` decodes one ``(path, decoder, orientation)`` entry as
    the pipeline does and returns None, or why it fails; it is called only
    after a pass that lost files, to name up to :data:`SHOWN` of them (those
    found in an earlier pass are tried first).
    """

    def __init__(self, entries, problem_of, split=None, folder=None):
        self.entries = list(entries)
        self.problem_of = problem_of
        self.split = split
        self.folder = folder
        self._known = []  # entries found undecodable in an earlier pass
        self._lock = threading.Lock()

    def end_of_pass(self, decoded):
        lost = len(self.entries) - decoded
        if lost <= 0:
            return
        try:
            named = self._find(min(lost, SHOWN))
        except Exception:  # naming files must never stop training
            named = []
        warnings.warn(
            undecodable_message(
                lost, len(self.entries), named, "were skipped", self.split, self.folder
            ),
            UnreadableImagesWarning,
            stacklevel=2,
        )

    def _find(self, wanted):
        with self._lock:
            known = list(self._known)
        found = []
        for entry in known + [entry for entry in self.entries if entry not in known]:
            if len(found) == wanted:
                break
            try:
                problem = self.problem_of(entry)
            except Exception as error:
                problem = short_reason(error)
            if problem:
                found.append((entry, problem))
        with self._lock:
            self._known = [entry for entry, _ in found]
        return [(entry[0], problem) for entry, problem in found]


def count_decoded(images, report):
    """``images`` (what ``ignore_errors`` left of a list of files), reporting to ``report``
    (a :class:`DecodeReport`) at the end of each pass."""
    return at_end_of_each_pass(images, lambda decoded: report.end_of_pass(decoded))


# -- disk caches ----------------------------------------------------------------------------


def disk_cached(images, prefix):
    """``images.cache(prefix)``, safe for several processes sharing the cache folder.

    Each pass reads the finished cache (``PREFIX.index``) if there is one; else
    it fills a cache of its own (``PREFIX.writer-TOKEN``, see
    :class:`ddim_keras.data.cache.CacheWriter`) and, at its end, publishes it
    under ``PREFIX`` unless another writer has finished first.
    """
    import tensorflow as tf

    cache = _DiskCache(prefix)

    def one_pass(_):
        name = tf.reshape(tf.py_function(cache.start, [], tf.string), [])
        return at_end_of_each_pass(images.cache(name), cache.finish, name)

    cached = tf.data.Dataset.from_tensors(0).flat_map(one_pass)
    count = int(images.cardinality())
    if count >= 0:  # flat_map hides it; Keras' progress bar and epochs use it
        cached = cached.apply(tf.data.experimental.assert_cardinality(count))
    return cached


class _DiskCache:
    def __init__(self, prefix):
        self.prefix = prefix
        self._writers = {}  # name given to a pass -> its CacheWriter
        self._lock = threading.Lock()

    def _published(self):
        return os.path.exists(self.prefix + ".index")

    def start(self):
        writer = CacheWriter.start(self.prefix, self._published)
        if writer is None:
            return self.prefix
        with self._lock:
            self._writers[writer.path()] = writer
        return writer.path()

    def finish(self, count, name):
        with self._lock:
            writer = self._writers.pop(os.fsdecode(name), None)
        if writer is not None:
            writer.finish(self._published)
