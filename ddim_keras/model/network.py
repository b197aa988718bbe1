"""The denoising network: the keras.io example's residual U-Net, layer for layer.

Inputs are the noisy images and the variances of their noise components
(noise_rates**2); the output is the predicted noise. The network knows nothing
of schedules or samplers.

The layers are created in the same order and with the same classes as the
example, so a ``.weights.h5`` written by the example loads into this network:
Keras addresses weights by layer class name and position, not by layer name.
Two differences: the embedding is a registered layer class instead of a Lambda,
so ``.keras`` files load in safe mode (it has no weights, so the layout is
equal); Conv2D and BatchNormalization are Keras' own with a fused PyTorch path
(:mod:`ddim_keras.model.fused_layers`), same class names, weights and math.
"""

import math

import keras
from keras import layers, ops

from ddim_keras.core import PACKAGE
from ddim_keras.model.fused_layers import BatchNormalization, Conv2D


@keras.saving.register_keras_serializable(package=PACKAGE)
class SinusoidalEmbedding(layers.Layer):
    """Sines and cosines of the input at log-spaced frequencies.

    Makes the network sensitive to small changes of the noise level: the
    frequencies range from 1 (the input's range) to ``max_frequency``.
    Input (batch, 1, 1, 1) -> output (batch, 1, 1, embedding_dims).
    """

    def __init__(self, embedding_dims=32, max_frequency=1000.0, min_frequency=1.0, **kwargs):
        super().__init__(**kwargs)
        self.embedding_dims = int(embedding_dims)
        self.max_frequency = float(max_frequency)
        self.min_frequency = float(min_frequency)

    def call(self, x):
        frequencies = ops.exp(
            ops.linspace(
                math.log(self.min_frequency),
                math.log(self.max_frequency),
                self.embedding_dims // 2,
            )
        )
        angular_speeds = ops.cast(2.0 * math.pi * frequencies, x.dtype)
        return ops.concatenate([ops.sin(angular_speeds * x), ops.cos(angular_speeds * x)], axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.embedding_dims,)

    def get_config(self):
        config = super().get_config()
        config.update(
            embedding_dims=self.embedding_dims,
            max_frequency=self.max_frequency,
            min_frequency=self.min_frequency,
        )
        return config


def residual_block(x, width, dtype=None, embedding=None):
    """BatchNorm -> 3x3 swish conv -> 3x3 conv, plus a (projected) shortcut.

    ``embedding`` (batch, 1, 1, dims), when given, is projected to ``width`` and added
    between the two convolutions (DDPM's U-Net), so each block knows the noise level.
    """
    input_width = x.shape[3]
    if input_width == width:
        residual = x
    else:
        # A 1x1 convolution matches the shortcut's channels to the block's.
        residual = Conv2D(width, kernel_size=1, dtype=dtype)(x)
    # center/scale are redundant: a convolution follows.
    x = BatchNormalization(center=False, scale=False, dtype=dtype)(x)
    x = Conv2D(width, kernel_size=3, padding="same", activation="swish", dtype=dtype)(x)
    if embedding is not None:
        # float32 like the embedding (see build_unet): a (batch, width) product costs nothing.
        x = layers.Add(dtype=dtype)([x, layers.Dense(width, dtype="float32")(embedding)])
    x = Conv2D(width, kernel_size=3, padding="same", dtype=dtype)(x)
    return layers.Add(dtype=dtype)([x, residual])


#: Channels per normalisation group before self-attention (at most; fewer channels
#: than groups make one group per channel).
ATTENTION_GROUPS = 8


def attention_block(x, heads, dtype=None):
    """Self-attention over all positions of ``x``, added to it (pre-normalised).

    Every pixel sees every other, so the lowest resolution agrees on the whole
    picture (one background, whole shapes) instead of only on a neighbourhood.
    It computes in float32 under every policy: at the lowest resolution it is a small
    share of the network, its softmax is safer so, and XLA:CPU has no float16 matmul.
    """
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    y = layers.GroupNormalization(
        groups=math.gcd(channels, ATTENTION_GROUPS), epsilon=1e-5, dtype="float32"
    )(x)
    y = layers.Reshape((height * width, channels), dtype="float32")(y)
    y = layers.MultiHeadAttention(heads, channels // heads, dtype="float32")(y, y)
    y = layers.Reshape((height, width, channels), dtype="float32")(y)
    return layers.Add(dtype=dtype)([x, y])


def down_block(x, skips, width, block_depth, dtype=None, embedding=None):
    for _ in range(block_depth):
        x = residual_block(x, width, dtype, embedding)
        skips.append(x)
    return layers.AveragePooling2D(pool_size=2, dtype=dtype)(x)


def up_block(x, skips, width, block_depth, dtype=None, embedding=None):
    x = layers.UpSampling2D(size=2, interpolation="bilinear", dtype=dtype)(x)
    for _ in range(block_depth):
        x = layers.Concatenate(dtype=dtype)([x, skips.pop()])
        x = residual_block(x, width, dtype, embedding)
    return x


#: The spread of the class embedding's initial vectors: the root mean square of the
#: sinusoidal noise embedding's values (sines and cosines: 1 / sqrt(2)).
CLASS_EMBEDDING_STDDEV = 0.7071


def build_unet(
    image_size,
    widths,
    block_depth,
    embedding_dims=32,
    embedding_max_frequency=1000.0,
    name="residual_unet",
    dtype=None,
    num_classes=0,
    attention_heads=0,
    block_embedding=False,
):
    """The residual U-Net; 1,953,507 parameters at the example's defaults.

    ``num_classes`` > 0 makes it class-conditional: a third input of integer
    labels (the label ``num_classes`` meaning "no class") picks a learned
    embedding that joins the noise embedding as further channels, once, at the
    input. At 0 (the example's) the network has neither, layer for layer.

    ``dtype`` is the layers' dtype policy (e.g. "mixed_bfloat16"); None follows
    Keras' global policy. The embedding computes in float32 under every policy:
    its angles reach 2*pi*max_frequency (~6,300 rad at the default), which
    float16 or bfloat16 would round by whole radians, scrambling the noise level.
    """
    noisy_images = keras.Input(shape=(image_size, image_size, 3))
    noise_variances = keras.Input(shape=(1, 1, 1))

    # The noise level enters once, at full resolution, as extra channels.
    e = SinusoidalEmbedding(embedding_dims, embedding_max_frequency, dtype="float32")(
        noise_variances
    )
    inputs = [noisy_images, noise_variances]
    if num_classes:
        labels = keras.Input(shape=(), dtype="int32")
        inputs.append(labels)
        # One more entry than classes: the last is the "no class" of guidance. The
        # vectors start at the scale of the noise embedding's sines and cosines: at
        # Keras' default (uniform within +-0.05) they were a 25th of it, and a demo-budget
        # shapes model learned to ignore them (its classes changed its output by 0.1 %).
        c = layers.Embedding(
            num_classes + 1,
            embedding_dims,
            embeddings_initializer=keras.initializers.RandomNormal(stddev=CLASS_EMBEDDING_STDDEV),
            dtype=dtype,
        )(labels)
        c = layers.Reshape((1, 1, embedding_dims), dtype=dtype)(c)
        e = layers.Concatenate(dtype=dtype)([e, c])
    block_e = None
    if block_embedding:
        # One projection for all blocks; each block then maps it to its own width.
        block_e = layers.Dense(4 * embedding_dims, activation="swish", dtype="float32")(e)
    e = layers.UpSampling2D(size=image_size, interpolation="nearest", dtype=dtype)(e)

    x = Conv2D(widths[0], kernel_size=1, dtype=dtype)(noisy_images)
    x = layers.Concatenate(dtype=dtype)([x, e])

    skips = []
    for width in widths[:-1]:
        x = down_block(x, skips, width, block_depth, dtype, block_e)

    for _ in range(block_depth):
        x = residual_block(x, widths[-1], dtype, block_e)
        if attention_heads:
            x = attention_block(x, attention_heads, dtype)

    for width in reversed(widths[:-1]):
        x = up_block(x, skips, width, block_depth, dtype, block_e)

    # Zero init: the untrained network predicts zero noise, the targets' mean.
    x = Conv2D(3, kernel_size=1, kernel_initializer="zeros", dtype=dtype)(x)

    return keras.Model(inputs, x, name=name)


def build_network(config, name="residual_unet", dtype=None):
    """The U-Net described by a DiffusionConfig (``dtype``: see :func:`build_unet`)."""
    return build_unet(
        config.image_size,
        list(config.widths),
        config.block_depth,
        embedding_dims=config.embedding_dims,
        embedding_max_frequency=config.embedding_max_frequency,
        name=name,
        dtype=dtype,
        num_classes=config.num_classes,
        attention_heads=config.attention_heads,
        block_embedding=config.block_embedding,
    )
