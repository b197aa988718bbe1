"""Numbers of a class-conditional run's guided samples (evaluate and sweep ``--guidance``).

A conditional run is measured on samples of the validation images' own
classes: generated image i gets the label of validation image i, so each
batch of generated images has the class mix of the batch of real images it
is compared with, and the images of one class can be picked out of both sets
afterwards (:func:`class_kids`) without sampling again. On ``shapes`` the
shapes classifier also says whether each sample shows the kind it was asked
for (:func:`requested_shares`).
"""

import numpy as np

from ddim_keras.core.errors import UsageError

#: A kind counts as shown when the shapes classifier's sigmoid output for it is
#: above this (the classifier's own decision threshold).
SHOWN_THRESHOLD = 0.5


def split_labelled(batches):
    """``(image batches, labels)`` of (images, labels) validation batches.

    The image batches are returned as a list (encoded once, then reused), the
    labels as one int32 array, batch after batch.
    """
    images, labels = [], []
    for batch_images, batch_labels in batches:
        images.append(batch_images)
        labels.append(np.asarray(batch_labels).reshape(-1).astype(np.int32))
    return images, (np.concatenate(labels) if labels else np.zeros((0,), np.int32))


def class_kids(real_features, generated_features, labels, class_names, batch_size):
    """``{class name: KID}`` of the generated images of each class against the real
    images of that class.

    ``real_features`` and ``generated_features`` are lists of per-batch features,
    image i of both having class ``labels[i]``. Each class's images are taken in
    whole batches of ``batch_size`` (all of them when fewer), KID estimated per
    batch and averaged, as for the whole set. A class with fewer than two images
    gets None (KID compares pairs).
    """
    from keras import ops

    from ddim_keras.metrics.kid import kernel_inception_distance

    def joined(batches):
        return np.concatenate([np.asarray(ops.convert_to_numpy(batch)) for batch in batches])

    real, generated = joined(real_features), joined(generated_features)
    count = min(len(real), len(generated))
    labels = np.asarray(labels)[:count]
    kids = {}
    for index, name in enumerate(class_names):
        chosen = np.flatnonzero(labels == index)
        if len(chosen) < 2:
            kids[name] = None
            continue
        size = min(batch_size, len(chosen))
        values = [
            float(
                ops.convert_to_numpy(
                    kernel_inception_distance(
                        real[chosen[start : start + size]], generated[chosen[start : start + size]]
                    )
                )
            )
            for start in range(0, len(chosen) - size + 1, size)
        ]
        kids[name] = float(np.mean(values))
    return kids


def requested_shares(probabilities, labels, class_names):
    """``(share, {class name: share})`` of samples that show the kind they were asked for.

    ``probabilities`` are the shapes classifier's (N, 4) outputs (one sigmoid per
    kind, in the order of ``class_names``, then "two shapes"); sample i was asked
    for kind ``labels[i]``. A class nobody asked for gets None.
    """
    probabilities = np.asarray(probabilities)
    labels = np.asarray(labels)[: len(probabilities)]
    shown = probabilities[np.arange(len(labels)), labels] > SHOWN_THRESHOLD
    per_class = {
        name: (float(np.mean(shown[labels == index])) if np.any(labels == index) else None)
        for index, name in enumerate(class_names)
    }
    return (float(np.mean(shown)) if len(shown) else None), per_class


def format_per_class(values, digits=4):
    """``circle=0.12;square=0.3`` (a CSV cell) of ``{class name: value or None}``."""
    return ";".join(
        f"{name}={'' if value is None else f'{value:.{digits}g}'}" for name, value in values.items()
    )


def parse_per_class(text):
    """The ``{class name: float or None}`` of a :func:`format_per_class` cell."""
    values = {}
    for item in filter(None, (text or "").split(";")):
        name, _, value = item.rpartition("=")
        values[name] = float(value) if value else None
    return values


class GuidedNumbers:
    """What one guided measurement collects beside its KID, and the numbers made of it.

    Pass ``on_generated`` and ``on_features`` to
    :func:`ddim_keras.metrics.evaluation.compute_kid`; ``labels`` are the
    classes asked for, image by image. With ``classify`` (a ``shapes`` run and
    its classes) the shapes classifier looks at every sample.
    """

    def __init__(self, labels, class_names, batch_size, classify=False):
        self.labels = np.asarray(labels)
        self.class_names = list(class_names)
        self.batch_size = batch_size
        self.classify = classify
        self.features = []
        self.probabilities = []

    def on_generated(self, images):
        if self.classify:
            from ddim_keras.metrics.shapes_classifier import predict

            self.probabilities.append(predict(images))

    def on_features(self, features):
        self.features.append(features)

    def results(self, real_features):
        """``{"class_kids": {...}, "requested": share or None, "requested_per_class":
        {...} or None, "recognised": share or None}``."""
        numbers = {
            "class_kids": class_kids(
                real_features[: len(self.features)],
                self.features,
                self.labels,
                self.class_names,
                self.batch_size,
            ),
            "requested": None,
            "requested_per_class": None,
            "recognised": None,
        }
        if self.probabilities:
            from ddim_keras.metrics.shapes_classifier import recognised_share

            probabilities = np.concatenate(self.probabilities)
            share, per_class = requested_shares(probabilities, self.labels, self.class_names)
            numbers.update(
                requested=share,
                requested_per_class=per_class,
                recognised=recognised_share(probabilities),
            )
        return numbers


def can_check_kinds(dataset, class_names):
    """Whether the shapes classifier can say which kind a sample shows: a ``shapes``
    run with the generator's kinds as its classes."""
    from ddim_keras.data.labels import SHAPES_CLASSES

    return dataset == "shapes" and tuple(class_names) == tuple(SHAPES_CLASSES)


def check_guided_run(run_path, config, class_names):
    """Refuse --guidance where it means nothing: an unconditional run, or one that did
    not record its classes."""
    if not config.num_classes:
        raise UsageError(
            f"--guidance needs a class-conditional run, but {run_path} is unconditional "
            "(trained without --conditional): measure it without --guidance."
        )
    if len(class_names) != config.num_classes:
        raise UsageError(
            f"{run_path} has {config.num_classes} classes but its run.json names "
            f"{len(class_names)}: the validation images' classes cannot be matched to the "
            "model's. Measure it without --guidance."
        )
