"""Adaptive discriminator augmentation (Karras et al. 2020) in ``keras.ops``.

The GAN baseline's discriminator sees real and generated images through the
same random augmentation, applied to each image with probability ``p``;
``p`` is steered so that the discriminator's accuracy on real images stays
near a target (0.85): when it is more accurate the discriminator is
overfitting and more augmentation is needed, when less, fewer.

Keras' augmentation layers are not the same on every backend (and
``RandomRotation`` and friends run outside the model's graph on some), so the
augmentation here is one random affine map per image written with plain
``keras.ops``: a horizontal flip, a rotation, a zoom in and a translation
(the keras.io ADA example's four layers), applied by nearest-neighbour
resampling with symmetric ("reflect") edges. Nearest neighbour makes the
output a gather of input pixels, so gradients flow back to a generated image
on every backend, as the discriminator's loss needs.
"""

import math

import keras
from keras import ops

from ddim_keras.core import PACKAGE


def reflect_indices(indices, size):
    """Integer pixel ``indices`` mirrored into ``[0, size)`` (``d c b a | a b c d | d c b a``)."""
    period = 2 * size
    folded = ops.mod(indices, period)
    return ops.where(folded < size, folded, period - 1 - folded)


def affine_resample(images, flips, angles, zooms, shifts_y, shifts_x):
    """Each image through its own flip, rotation, zoom and translation.

    ``images``: (batch, size, size, channels). The other arguments are (batch,)
    tensors: ``flips`` 1 or -1 (mirror left-right), ``angles`` in radians
    (counter-clockwise), ``zooms`` the scale of the sampled region (below 1 zooms
    in), ``shifts_y``/``shifts_x`` translations in pixels. Output pixel (y, x)
    takes the input pixel nearest to the inverse map of its centred coordinates;
    positions outside the image are mirrored back in.
    """
    batch = ops.shape(images)[0]
    size = images.shape[1]
    channels = images.shape[3]
    centre = (size - 1) / 2.0
    grid = ops.arange(size, dtype="float32") - centre
    ys = ops.reshape(grid, (1, size, 1))
    xs = ops.reshape(grid, (1, 1, size))

    def per_image(values):
        return ops.reshape(ops.cast(values, "float32"), (-1, 1, 1))

    cos, sin = per_image(ops.cos(angles)), per_image(ops.sin(angles))
    zoom, flip = per_image(zooms), per_image(flips)
    # Source of each output pixel: mirrored, rotated, scaled, then moved back.
    u = flip * xs
    source_x = zoom * (cos * u - sin * ys) + centre - per_image(shifts_x)
    source_y = zoom * (sin * u + cos * ys) + centre - per_image(shifts_y)
    source_x = reflect_indices(ops.cast(ops.round(source_x), "int32"), size)
    source_y = reflect_indices(ops.cast(ops.round(source_y), "int32"), size)
    flat_index = ops.reshape(source_y * size + source_x, (batch, size * size, 1))
    flat_index = ops.broadcast_to(flat_index, (batch, size * size, channels))
    flat = ops.reshape(images, (batch, size * size, channels))
    gathered = ops.take_along_axis(flat, flat_index, axis=1)
    return ops.reshape(gathered, (batch, size, size, channels))


@keras.saving.register_keras_serializable(package=PACKAGE)
class AdaptiveAugmenter(keras.layers.Layer):
    """Random flip, rotation, zoom and translation, each image with probability ``p``.

    ``p`` (the variable ``probability``) starts at 0 and moves by
    ``(accuracy - target_accuracy) / integration_steps`` after every training
    step (:meth:`update`), clipped to [0, 1]: the keras.io ADA example's rule.
    ``max_rotation`` is a fraction of a full turn (0.125: up to 45 degrees
    either way), ``max_translation`` a fraction of the image size, ``max_zoom``
    the largest zoom in (0.25: the central 75 %).
    """

    def __init__(
        self,
        target_accuracy=0.85,
        integration_steps=1000,
        max_translation=0.125,
        max_rotation=0.125,
        max_zoom=0.25,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.target_accuracy = float(target_accuracy)
        self.integration_steps = int(integration_steps)
        self.max_translation = float(max_translation)
        self.max_rotation = float(max_rotation)
        self.max_zoom = float(max_zoom)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="augmenter_seed")
        self.probability = self.add_weight(
            name="probability", shape=(), initializer="zeros", trainable=False
        )
        self.built = True  # no weights depend on the input

    def get_config(self):
        return {
            **super().get_config(),
            "target_accuracy": self.target_accuracy,
            "integration_steps": self.integration_steps,
            "max_translation": self.max_translation,
            "max_rotation": self.max_rotation,
            "max_zoom": self.max_zoom,
            "seed": self.seed,
        }

    def draw(self, images):
        """The random parameters of one augmentation of ``images`` (a tuple of tensors).

        Drawn apart from :meth:`apply` so that a train step can draw first and
        differentiate a deterministic function of the weights afterwards.
        """
        batch = ops.shape(images)[0]
        size = images.shape[1]
        seed = self.seed_generator

        def uniform(low, high):
            return keras.random.uniform((batch,), low, high, seed=seed)

        flips = ops.where(uniform(0.0, 1.0) < 0.5, -1.0, 1.0)
        turn = 2.0 * math.pi * self.max_rotation
        shift = self.max_translation * size
        return (
            uniform(0.0, 1.0),  # the coin: augmented when below the probability
            flips,
            uniform(-turn, turn),
            uniform(1.0 - self.max_zoom, 1.0),
            uniform(-shift, shift),
            uniform(-shift, shift),
        )

    def apply(self, images, parameters):
        """``images`` augmented by the draws of :meth:`draw`, each with probability ``p``."""
        coins, *affine = parameters
        augmented = affine_resample(images, *affine)
        chosen = ops.reshape(coins, (-1, 1, 1, 1)) < ops.cast(self.probability, "float32")
        return ops.where(chosen, augmented, images)

    def call(self, images, training=False):
        if not training:
            return images
        return self.apply(images, self.draw(images))

    def update(self, real_logits):
        """Move ``p`` by the discriminator's accuracy on real images; returns that accuracy."""
        accuracy = ops.mean(ops.cast(ops.convert_to_tensor(real_logits) > 0.0, "float32"))
        step = (accuracy - self.target_accuracy) / self.integration_steps
        self.probability.assign(ops.clip(self.probability + step, 0.0, 1.0))
        return accuracy
