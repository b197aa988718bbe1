"""The GAN baseline's generator and discriminator (the keras.io ADA example's DCGAN pair).

The generator maps a ``gan_noise_size`` normal vector to a 4 x 4 (more exactly
``image_size / 2**gan_depth``) feature map and doubles it ``gan_depth`` times
with strided transposed convolutions, ending in a sigmoid (pixels in [0, 1]).
The discriminator halves the image ``gan_depth`` times with strided
convolutions and leaky ReLUs, then one logit after dropout. Batch
normalisation without scale throughout, biases only where no normalisation
follows; all widths ``gan_width``.
"""

import keras
from keras import layers


def build_generator(config):
    start = config.image_size // 2**config.gan_depth
    width = config.gan_width
    noise = keras.Input(shape=(config.gan_noise_size,), name="latent")
    x = layers.Dense(start * start * width, use_bias=False)(noise)
    x = layers.BatchNormalization(scale=False)(x)
    x = layers.ReLU()(x)
    x = layers.Reshape((start, start, width))(x)
    for _ in range(config.gan_depth - 1):
        x = layers.Conv2DTranspose(width, 4, strides=2, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(scale=False)(x)
        x = layers.ReLU()(x)
    images = layers.Conv2DTranspose(
        3, 4, strides=2, padding="same", activation="sigmoid", dtype="float32"
    )(x)
    return keras.Model(noise, images, name="generator")


def build_discriminator(config):
    images = keras.Input(shape=(config.image_size, config.image_size, 3), name="images")
    x = images
    for _ in range(config.gan_depth):
        x = layers.Conv2D(config.gan_width, 4, strides=2, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(scale=False)(x)
        x = layers.LeakyReLU(negative_slope=config.gan_leaky_relu_slope)(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(config.gan_dropout)(x)
    logits = layers.Dense(1, dtype="float32")(x)
    return keras.Model(images, logits, name="discriminator")
