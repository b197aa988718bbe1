"""A small CNN trained on the ``shapes`` generator's own labels: the offline KID encoder.

KID needs image features that respond to what matters in an image. InceptionV3
with ImageNet weights is the standard encoder, but its weights must be
downloaded; with random weights KID is ~1e-7 for every run and judges nothing.
For the procedural ``shapes`` dataset this module provides a replacement that
needs no download: a classifier trained on images the generator draws, with the
generator's own labels (see :func:`ddim_keras.data.shapes.shapes_images_with_labels`):

* which kinds are visible (multi-hot over circle, square, triangle), and
* whether two shapes are visible (else one).

Its globally averaged convolutional activations are the KID feature vector
(:func:`build_feature_encoder`; ``--kid-encoder shapes``): those its head reads
(like InceptionV3's pool features) and those of its earlier blocks, so that KID
responds both to recognisable shapes and to crisp edges and clean colours.
Its weights ship with the package (``ddim_keras/assets/shapes_classifier.weights.h5``)
and are reproduced by ``python -m ddim_keras.shapes_classifier --retrain``.
"""

import os

import numpy as np

#: The classifier's input size; images of other sizes are resized to it.
CLASSIFIER_IMAGE_SIZE = 32


#: Sigmoid outputs: one per shape kind, then "two shapes are visible".
OUTPUTS = ("circle", "square", "triangle", "two_shapes")


#: Units of the classifier's hidden dense layer (between its last convolutions and
#: its outputs).
HIDDEN_UNITS = 64


#: Layers whose activations, averaged over the image, make up the KID features:
#: the input of the classifier's head, then the last layers of the two earlier
#: convolution blocks (edges and colours, which blurring and noise change most).
FEATURE_LAYERS = ("gap", "conv1b", "conv0b")


#: Width of the KID feature vector.
FEATURE_DIMS = 64 + 48 + 24


#: Each part of the features is divided by its root mean square over these
#: freshly drawn shapes images, so that the parts weigh alike and KID's kernel
#: sees values of order 1 (as with InceptionV3's features).
REFERENCE_IMAGES = 256


REFERENCE_SEED = 4321


WEIGHTS_PATH = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "assets",
    "shapes_classifier.weights.h5",
)


#: Training recipe of the shipped weights (``--retrain`` reproduces them): images
#: drawn at 32 px, plus some drawn at 16 and 64 px and resized to 32 the way
#: :func:`build_feature_encoder` resizes them, so that runs of those sizes are
#: measured with features the classifier has seen.
TRAIN_IMAGES = {32: 8000, 16: 2000, 64: 2000}


#: Images with no shape (all targets 0), so that noise or a bare background is
#: not "recognised": pixel noise, blotchy noise and shapeless backgrounds.
NEGATIVE_IMAGES = 1200


TRAIN_SEED = 1234


EPOCHS = 20


BATCH_SIZE = 64


LEARNING_RATE = 2e-3


#: Held-out images: another seed than training and than any run's data
#: (runs use seeds 0, 1, ... and validation streams [seed, 1]).
HELD_OUT_IMAGES = 2000


HELD_OUT_SEED = 987654


def targets_from_labels(labels):
    """The classifier's (N, 4) float32 targets from ``shapes_images_with_labels`` labels."""
    kinds = labels["kinds"].astype("float32")
    two = (labels["count"] == 2).astype("float32")[:, None]
    return np.concatenate([kinds, two], axis=1)


def labelled_images(num_images, seed, image_size=CLASSIFIER_IMAGE_SIZE):
    """(float32 images in [0, 1] of ``image_size``, targets) of freshly drawn shapes."""
    from ddim_keras.data.shapes import shapes_images_with_labels

    images, labels = shapes_images_with_labels(num_images, image_size, seed=seed)
    return images.astype("float32") / 255.0, targets_from_labels(labels)


def shapeless_images(num_images, seed, image_size=CLASSIFIER_IMAGE_SIZE):
    """Float32 images in [0, 1] without any shape: a third each of uniform pixel noise,
    blotchy noise (coarse noise resized up) and the generator's bare backgrounds."""
    from keras import ops

    from ddim_keras.data.shapes import draw_background

    rng = np.random.default_rng(seed)
    third = num_images // 3
    pixels = rng.uniform(0.0, 1.0, (third, image_size, image_size, 3))
    coarse = rng.uniform(0.0, 1.0, (third, image_size // 4, image_size // 4, 3))
    blotches = ops.convert_to_numpy(
        ops.image.resize(coarse.astype("float32"), (image_size, image_size))
    )
    coords = (np.arange(image_size, dtype=np.float32) + 0.5) / image_size
    y, x = np.meshgrid(coords, coords, indexing="ij")
    backgrounds = np.stack(
        [draw_background(rng, x, y) / 255.0 for _ in range(num_images - 2 * third)]
    )
    return np.concatenate([pixels, blotches, backgrounds]).astype("float32")


def training_images(counts=None, seed=TRAIN_SEED, negatives=NEGATIVE_IMAGES):
    """(images at 32 px, targets): ``counts`` maps a drawing size to a number of images;
    ``negatives`` shapeless images (targets 0) are added."""
    from keras import ops

    all_images, all_targets = [], []
    for size, count in sorted((counts or TRAIN_IMAGES).items()):
        images, targets = labelled_images(count, [seed, size], size)
        if size != CLASSIFIER_IMAGE_SIZE:
            images = np.concatenate(
                [
                    ops.convert_to_numpy(_resize(images[i : i + 500], size))
                    for i in range(0, count, 500)
                ]
            )
        all_images.append(images)
        all_targets.append(targets)
    if negatives:
        all_images.append(shapeless_images(negatives, [seed, 3]))
        all_targets.append(np.zeros((negatives, len(OUTPUTS)), dtype="float32"))
    return np.concatenate(all_images), np.concatenate(all_targets)


def build_classifier():
    """The uncompiled CNN: (32, 32, 3) images in [0, 1] -> (4,) sigmoid probabilities.

    Layers named ``gap`` (averaged last convolutions), ``features`` (the hidden
    dense layer, the penultimate) and ``logits``.
    """
    import keras
    from keras import layers

    inputs = keras.Input(shape=(CLASSIFIER_IMAGE_SIZE, CLASSIFIER_IMAGE_SIZE, 3), name="images")
    x = layers.Rescaling(2.0, offset=-1.0, name="centre")(inputs)
    for index, width in enumerate((24, 48, 64)):
        x = layers.Conv2D(width, 3, padding="same", activation="relu", name=f"conv{index}a")(x)
        x = layers.Conv2D(width, 3, padding="same", activation="relu", name=f"conv{index}b")(x)
        if index < 2:
            x = layers.MaxPooling2D(name=f"pool{index}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    features = layers.Dense(HIDDEN_UNITS, activation="relu", name="features")(x)
    logits = layers.Dense(len(OUTPUTS), name="logits")(features)
    outputs = layers.Activation("sigmoid", name="probabilities")(logits)
    return keras.Model(inputs, outputs, name="shapes_classifier")


def train_classifier(
    num_images=None, epochs=EPOCHS, seed=TRAIN_SEED, verbose=0, negatives=NEGATIVE_IMAGES
):
    """Train a fresh classifier deterministically (fixed seeds) and return it.

    ``num_images`` maps drawing sizes to image counts (default :data:`TRAIN_IMAGES`).
    """
    import keras

    keras.utils.set_random_seed(seed)
    images, targets = training_images(num_images, seed, negatives)
    model = build_classifier()
    steps = epochs * (len(images) // BATCH_SIZE)
    schedule = keras.optimizers.schedules.CosineDecay(LEARNING_RATE, max(steps, 1))
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy")],
    )
    rng = np.random.default_rng([seed, 2])
    for _ in range(epochs):
        # Flips and quarter turns keep every label: 8x the views for free.
        augmented = _augment(images, rng)
        model.fit(
            augmented, targets, batch_size=BATCH_SIZE, epochs=1, shuffle=True, verbose=verbose
        )
    return model


def _augment(images, rng):
    """Each image flipped and turned by a random one of the 8 symmetries of the square."""
    turns = rng.integers(4, size=len(images))
    flips = rng.random(len(images)) < 0.5
    out = np.empty_like(images)
    for turn in range(4):
        for flip in (False, True):
            chosen = (turns == turn) & (flips == flip)
            view = np.rot90(images[chosen], turn, axes=(1, 2))
            out[chosen] = view[:, :, ::-1] if flip else view
    return out


def load_classifier(path=None):
    """The classifier with the shipped weights (or those in ``path``)."""
    from ddim_keras.core.errors import DdimError

    path = path or WEIGHTS_PATH
    if not os.path.isfile(path):
        raise DdimError(
            f"the shapes classifier weights {path} are missing; recreate them with "
            "python -m ddim_keras.shapes_classifier --retrain."
        )
    model = build_classifier()
    model.load_weights(path)
    model.trainable = False
    return model


def _resize(images, image_size):
    """Resize a (N, H, W, 3) batch to the classifier's size (a Keras layer, or identity)."""
    from keras import layers

    if image_size == CLASSIFIER_IMAGE_SIZE:
        return images
    # Antialiasing matters when shrinking: the classifier was trained on
    # supersampled (antialiased) drawings.
    return layers.Resizing(
        CLASSIFIER_IMAGE_SIZE, CLASSIFIER_IMAGE_SIZE, antialias=True, name="resize"
    )(images)


def build_feature_encoder(image_size, classifier=None):
    """KID encoder for ``shapes``: images in [0, 1] of ``image_size`` -> (FEATURE_DIMS,) features.

    Images are resized to 32 pixels; the features are the classifier's
    :data:`FEATURE_LAYERS` averaged over the image, each scaled to unit root
    mean square over :data:`REFERENCE_IMAGES` real shapes images. A drop-in
    replacement for :func:`ddim_keras.metrics.kid.build_encoder`.
    """
    import keras
    from keras import layers

    classifier = classifier or load_classifier()
    parts = [classifier.get_layer(name).output for name in FEATURE_LAYERS]
    parts = [
        part if len(part.shape) == 2 else layers.GlobalAveragePooling2D(name=f"{name}_mean")(part)
        for name, part in zip(FEATURE_LAYERS, parts)
    ]
    trunk = keras.Model(classifier.inputs, parts, name="shapes_features")
    trunk.trainable = False
    reference, _ = labelled_images(REFERENCE_IMAGES, REFERENCE_SEED)
    scales = [
        float(np.sqrt(np.mean(np.square(part))))
        for part in trunk.predict(reference, batch_size=REFERENCE_IMAGES, verbose=0)
    ]

    inputs = keras.Input(shape=(image_size, image_size, 3))
    parts = trunk(_resize(inputs, image_size))
    features = layers.Concatenate(name="features")(
        [
            layers.Rescaling(1.0 / max(scale, 1e-6), name=f"scale{index}")(part)
            for index, (part, scale) in enumerate(zip(parts, scales))
        ]
    )
    encoder = keras.Model(inputs, features, name="shapes_encoder")
    encoder.trainable = False
    return encoder


def predict(images, classifier=None, batch_size=256):
    """(N, 4) probabilities of :data:`OUTPUTS` for images (uint8 0..255 or float in [0, 1])."""
    import keras

    images = np.asarray(images)
    if images.dtype == np.uint8:
        images = images.astype("float32") / 255.0
    classifier = classifier or load_classifier()
    size = images.shape[1]
    if size != CLASSIFIER_IMAGE_SIZE:
        inputs = keras.Input(shape=images.shape[1:])
        classifier = keras.Model(inputs, classifier(_resize(inputs, size)))
    return np.asarray(
        classifier.predict(images.astype("float32"), batch_size=batch_size, verbose=0)
    )


def recognised_fraction(images, threshold=0.9, classifier=None):
    """Share of images the classifier recognises confidently.

    An image is recognised when every one of the four sigmoid outputs (each
    kind, and "two shapes") is confident, i.e. above ``threshold`` or below
    ``1 - threshold``, and at least one kind is predicted present. Real shapes
    images score near 1; blurred, noisy or shapeless images score low.
    """
    return recognised_share(predict(images, classifier), threshold)


def recognised_share(probabilities, threshold=0.9):
    """:func:`recognised_fraction` from the classifier's (N, 4) ``probabilities``."""
    confident = np.all((probabilities > threshold) | (probabilities < 1.0 - threshold), axis=1)
    some_kind = np.any(probabilities[:, :3] > threshold, axis=1)
    return float(np.mean(confident & some_kind))


def held_out_accuracy(
    classifier=None,
    num_images=HELD_OUT_IMAGES,
    seed=HELD_OUT_SEED,
    image_size=CLASSIFIER_IMAGE_SIZE,
):
    """Accuracy on freshly drawn images: {"exact": all 4 outputs right, output: accuracy}."""
    images, targets = labelled_images(num_images, seed, image_size)
    predicted = predict(images, classifier) > 0.5
    right = predicted == (targets > 0.5)
    result = {"exact": float(np.mean(np.all(right, axis=1)))}
    result.update({name: float(np.mean(right[:, i])) for i, name in enumerate(OUTPUTS)})
    return result
