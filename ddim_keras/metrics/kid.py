"""Kernel Inception Distance (Binkowski et al. 2018), as in the keras.io example.

Images are encoded by InceptionV3 (no classification head, global average
pooling) at ``kid_image_size`` pixels; KID is the unbiased estimate of the
squared maximum mean discrepancy between the two sets of features under the
polynomial kernel ``(x . y / d + 1) ** 3``, estimated per batch and averaged
over batches.
"""

import os
import warnings

import keras
from keras import layers, ops

from ddim_keras.core import PACKAGE
from ddim_keras.core.checks import KID_ENCODERS
from ddim_keras.core.errors import DdimError, UsageError
from ddim_keras.core.untracked import Untracked


def polynomial_kernel(features_1, features_2):
    feature_dimensions = ops.cast(ops.shape(features_1)[1], features_1.dtype)
    return (ops.matmul(features_1, ops.transpose(features_2)) / feature_dimensions + 1.0) ** 3.0


def kernel_inception_distance(real_features, generated_features):
    """Unbiased squared MMD between two feature batches (pure function).

    The within-set kernel means leave out the diagonal (an image compared with
    itself), which is what makes the estimate unbiased; it can therefore be
    slightly negative when both sets come from the same distribution.
    """
    real_features = ops.convert_to_tensor(real_features, dtype="float32")
    generated_features = ops.convert_to_tensor(generated_features, dtype="float32")
    kernel_real = polynomial_kernel(real_features, real_features)
    kernel_generated = polynomial_kernel(generated_features, generated_features)
    kernel_cross = polynomial_kernel(real_features, generated_features)

    num_real = ops.shape(real_features)[0]
    num_generated = ops.shape(generated_features)[0]
    num_real_f = ops.cast(num_real, "float32")
    num_generated_f = ops.cast(num_generated, "float32")
    off_diagonal_real = 1.0 - ops.eye(num_real, dtype="float32")
    off_diagonal_generated = 1.0 - ops.eye(num_generated, dtype="float32")
    mean_kernel_real = ops.sum(kernel_real * off_diagonal_real) / (num_real_f * (num_real_f - 1.0))
    mean_kernel_generated = ops.sum(kernel_generated * off_diagonal_generated) / (
        num_generated_f * (num_generated_f - 1.0)
    )
    mean_kernel_cross = ops.mean(kernel_cross)
    return mean_kernel_real + mean_kernel_generated - 2.0 * mean_kernel_cross


@keras.saving.register_keras_serializable(package=PACKAGE)
class InceptionPreprocessing(layers.Layer):
    """[0, 255] pixels -> [-1, 1], what InceptionV3 was trained on."""

    def call(self, images):
        return images / 127.5 - 1.0


def resolve_weights(weights):
    """Check a KID weights choice early: "imagenet", a file path, or None."""
    if weights is None or weights == "imagenet":
        return weights
    if isinstance(weights, str) and weights.lower() in ("none", "random"):
        return None
    if not os.path.isfile(weights):
        raise UsageError(
            f"KID weights file {weights!r} does not exist. Pass the path of an InceptionV3 "
            "no-top weights file (inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5), "
            "'imagenet' to download them, or use --no-kid."
        )
    return weights


def resolve_encoder_name(name):
    """Check a KID encoder choice early: one of ``checks.KID_ENCODERS`` (None = "inception")."""
    if name is None:
        return "inception"
    if name not in KID_ENCODERS:
        raise UsageError(f"unknown KID encoder {name!r}; choose one of {', '.join(KID_ENCODERS)}.")
    return name


def build_encoder(image_size, kid_image_size=75, weights="imagenet", encoder_name="inception"):
    """KID feature extractor for images in [0, 1] of ``image_size``.

    ``encoder_name`` "inception" (default): InceptionV3 with ``weights`` at
    ``kid_image_size`` pixels; "shapes": the shipped shapes classifier's
    features (``weights`` and ``kid_image_size`` do not apply).
    """
    if resolve_encoder_name(encoder_name) == "shapes":
        from ddim_keras.metrics.shapes_classifier import build_feature_encoder

        return build_feature_encoder(image_size)
    weights = resolve_weights(weights)
    if weights is None:
        warnings.warn(
            "KID encoder has random weights (weights=None): KID values are only useful as a "
            "smoke test and are not comparable with published numbers.",
            stacklevel=2,
        )
    try:
        inception = keras.applications.InceptionV3(
            include_top=False,
            input_shape=(kid_image_size, kid_image_size, 3),
            weights=weights,
        )
    except Exception as error:  # the download, or a mismatched weights file
        if weights == "imagenet":
            raise DdimError(
                "could not download the ImageNet InceptionV3 weights that KID needs "
                f"({type(error).__name__}: {error}). Offline, pass a local copy with "
                "--kid-weights PATH (the file inception_v3_weights_tf_dim_ordering_tf_kernels_"
                "notop.h5, also found in ~/.keras/models on a machine that has downloaded it), "
                "or train without KID using --no-kid."
            ) from None
        raise UsageError(
            f"could not load KID weights from {weights!r} ({type(error).__name__}: {error}); "
            "it must be an InceptionV3 no-top weights file."
        ) from None
    inception.trainable = False
    return keras.Sequential(
        [
            keras.Input(shape=(image_size, image_size, 3)),
            layers.Rescaling(255.0),
            layers.Resizing(height=kid_image_size, width=kid_image_size),
            InceptionPreprocessing(),
            inception,
            layers.GlobalAveragePooling2D(),
        ],
        name="inception_encoder",
    )


def _gather_replicas(features):
    """Under a multi-replica tf.distribute strategy, the features of the global batch.

    Every replica sees its share of a batch; KID estimated on each share and
    averaged would be a different (noisier) estimate than on the whole batch.
    Gathering the features first makes every replica compute the one-device
    value, which the tracker (a mean) then keeps as is. (JAX's data
    parallelism computes on the global batch already; PyTorch has one device.)
    """
    if keras.backend.backend() != "tensorflow":
        return features
    import tensorflow as tf

    if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
        return features
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return features
    return context.all_gather(features, axis=0)


@keras.saving.register_keras_serializable(package=PACKAGE)
class KID(keras.metrics.Metric):
    """In-graph KID metric: ``update_state(real_images, generated_images)``.

    Images are in [0, 1]. The encoder is built lazily on first use (so
    constructing a model never downloads weights) unless one is passed.
    """

    def __init__(
        self,
        name="kid",
        image_size=64,
        kid_image_size=75,
        weights="imagenet",
        encoder=None,
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.image_size = image_size
        self.kid_image_size = kid_image_size
        self.weights = weights
        # KID is estimated per batch and averaged across batches.
        self.kid_tracker = keras.metrics.Mean(name="kid_tracker")
        # Its fixed weights stay out of checkpoints.
        self._holder = Untracked(encoder)

    def use_encoder(self, encoder):
        """Measure with ``encoder`` (built by the caller, e.g. :func:`build_encoder`)."""
        self._holder.value = encoder

    def get_encoder(self):
        """The encoder, built on first use (a method, not a property, so that
        Keras' checkpoint walk over attributes never triggers a download)."""
        if self._holder.value is None:
            self._holder.value = build_encoder(self.image_size, self.kid_image_size, self.weights)
        return self._holder.value

    def update_state(self, real_images, generated_images, sample_weight=None):
        encoder = self.get_encoder()
        real_features = _gather_replicas(encoder(real_images, training=False))
        generated_features = _gather_replicas(encoder(generated_images, training=False))
        self.kid_tracker.update_state(kernel_inception_distance(real_features, generated_features))

    def result(self):
        return self.kid_tracker.result()

    def reset_state(self):
        self.kid_tracker.reset_state()

    def get_config(self):
        config = super().get_config()
        config.update(
            image_size=self.image_size, kid_image_size=self.kid_image_size, weights=self.weights
        )
        return config
