"""Batches of the NumPy/Pillow pipeline (:mod:`ddim_keras.data.numpy_pipeline`).

:class:`ImageBatches`, the shuffled batches a model trains on (``keras.utils.PyDataset``),
with the labels of a class-conditional run beside the images; :class:`OrderedBatches`,
the first batches in order (KID); :func:`adapt_normalizer`, the data statistics.
"""

import keras
import numpy as np

from ddim_keras.core.errors import DataError


def to_unit_range(images):
    """float32 in [0, 1] of uint8 images."""
    return np.asarray(images, np.float32) / np.float32(255.0)


# -- batches --------------------------------------------------------------------------


class ImageBatches(keras.utils.PyDataset):
    """Shuffled float32 batches (batch_size, S, S, 3) in [0, 1] of a split's images.

    ``images`` is a :class:`~ddim_keras.data.numpy_pipeline.SplitImages`.

    Images that carry ``labels`` (a class-conditional run) come as (images, labels).

    One epoch is ``repetitions`` passes over the images, each in its own random
    order, cut into ``len(images) * repetitions // batch_size`` batches (the
    remainder is dropped). The order of epoch ``e`` comes from
    ``numpy.random.default_rng([seed, stream, e])``: the same seed gives the same
    batches, every epoch a new order. Keras counts the epochs by calling
    ``on_epoch_end``. :meth:`repeat` gives the endless version that
    ``fit(steps_per_epoch=...)`` needs, where batch ``i`` belongs to pass group
    ``i // batches_per_epoch`` whatever the Keras epoch.
    """

    def __init__(self, images, batch_size, repetitions=1, seed=0, stream=0, endless=False):
        # One worker: a batch's files are decoded in parallel by the decoding pool.
        super().__init__(workers=1, use_multiprocessing=False)
        self.images = images
        self.batch_size = int(batch_size)
        self.repetitions = int(repetitions)
        self.seed = int(seed)
        self.stream = int(stream)
        self.endless = bool(endless)
        self.epoch = 0
        self.batches_per_epoch = len(images) * self.repetitions // self.batch_size
        self._orders = {}

    @property
    def num_batches(self):
        return None if self.endless else self.batches_per_epoch

    def __len__(self):
        if self.endless:
            raise TypeError("an endless ImageBatches has no length")
        return self.batches_per_epoch

    def __getitem__(self, index):
        if self.endless:
            epoch, index = divmod(int(index), self.batches_per_epoch)
        else:
            if not 0 <= index < self.batches_per_epoch:
                raise IndexError(f"batch {index} of {self.batches_per_epoch}")
            epoch = self.epoch
        return self.batch(epoch, index)

    def batch(self, epoch, index):
        """float32 batch ``index`` of epoch ``epoch``; with labels, (images, int32 labels)."""
        start = index * self.batch_size
        indices = self.order(epoch)[start : start + self.batch_size]
        images = to_unit_range(self.images.uint8(indices))
        labels = getattr(self.images, "labels", None)
        if labels is None:
            return images
        return images, np.asarray(labels, np.int32)[indices]

    def order(self, epoch):
        """The image indices of epoch ``epoch``: ``repetitions`` permutations in a row."""
        order = self._orders.get(epoch)
        if order is None:
            rng = np.random.default_rng([self.seed, self.stream, epoch])
            order = np.concatenate(
                [rng.permutation(len(self.images)) for _ in range(self.repetitions)]
            )
            self._orders = {epoch: order}  # the current epoch's only
        return order

    def on_epoch_end(self):
        self.epoch += 1

    def repeat(self):
        """The same batches without end (what ``tf.data.Dataset.repeat()`` makes)."""
        return ImageBatches(
            self.images, self.batch_size, self.repetitions, self.seed, self.stream, endless=True
        )


class OrderedBatches:
    """The first ``num_batches`` whole batches of a split's images, in order.

    ``images`` is a :class:`~ddim_keras.data.numpy_pipeline.SplitImages`.

    Iterable as often as wanted; each batch is float32 (batch_size, S, S, 3), or
    (that, int32 labels) where the images carry labels.
    """

    def __init__(self, images, batch_size, num_batches):
        self.images = images
        self.batch_size = int(batch_size)
        self.num_batches = max(0, min(int(num_batches), len(images) // self.batch_size))

    def __len__(self):
        return self.num_batches

    def __iter__(self):
        for index in range(self.num_batches):
            start = index * self.batch_size
            images = to_unit_range(self.images.uint8(range(start, start + self.batch_size)))
            labels = self.images.labels
            yield images if labels is None else (images, labels[start : start + self.batch_size])


def adapt_normalizer(layer, batches):
    """Adapt a per-channel ``keras.layers.Normalization`` to one epoch of ``batches``.

    What ``layer.adapt(batches)`` computes (mean and population variance over
    every pixel of the epoch's batches), in float64 with NumPy, then set the way
    ``adapt`` sets them; works without TensorFlow, which Keras' ``adapt`` needs
    for a dataset.
    """
    total = np.zeros(3, np.float64)
    squares = np.zeros(3, np.float64)
    count = 0
    for index in range(batches.batches_per_epoch):
        batch = batches.batch(0, index)
        images = batch[0] if isinstance(batch, tuple) else batch
        pixels = images.reshape(-1, 3).astype(np.float64)
        total += pixels.sum(axis=0)
        squares += np.square(pixels).sum(axis=0)
        count += len(pixels)
    if not count:
        raise DataError("cannot adapt the normalizer: the training set yields no batch.")
    mean = total / count
    variance = np.maximum(squares / count - np.square(mean), 0.0)
    if not layer.built:
        layer.build((None, batches.images.image_size, batches.images.image_size, 3))
    layer.adapt_mean.assign(mean.reshape(layer.adapt_mean.shape).astype("float32"))
    layer.adapt_variance.assign(variance.reshape(layer.adapt_variance.shape).astype("float32"))
    layer.finalize_state()
