"""Class conditioning and classifier-free guidance (Ho & Salimans 2022), in ``keras.ops``.

A conditional network (``num_classes`` > 0, :func:`ddim_keras.model.network.build_unet`)
takes a third input, one integer label per image; the label ``num_classes``
is "no class". Training replaces each label by "no class" with probability
``label_dropout`` (:func:`drop_labels`), so the one network learns both the
conditional prediction and the unconditional one. Sampling mixes them,
:func:`guided_outputs`::

    prediction = unconditional + w * (conditional - unconditional)

with the guidance scale w (0: unconditional, 1: plain conditional, above 1:
closer to the class), both predictions from one network call on the batch
doubled: the conditional half first, then the unconditional half.

The mix is taken on the network's raw output (noise, velocity or image, by the
config's ``prediction``). The predicted noise and image are linear in that
output with the same coefficients for both halves, and the mix's weights
(1 - w, w) sum to 1, so this is the same as mixing the predicted noises and
deriving the images from the mixed noise: every step rule sees one consistent
(noise, image) pair, as without guidance.
"""

import numpy as np
from keras import ops


def null_labels(num_images, num_classes):
    """The "no class" label of ``num_images`` images: ``num_classes``, int32."""
    return ops.full((num_images,), num_classes, dtype="int32")


def drop_labels(labels, coins, label_dropout, num_classes):
    """``labels`` with "no class" wherever ``coins`` (uniform in [0, 1)) is below the rate."""
    labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
    coins = ops.reshape(coins, (-1,))
    return ops.where(coins < label_dropout, null_labels(ops.shape(labels)[0], num_classes), labels)


def one_prediction(labels, guidance, num_classes):
    """``(labels, guided)`` of a sampling call: with w 0 or 1 the mix is one prediction.

    w = 1 is the plain conditional prediction and w = 0 the unconditional one
    (the "no class" label), so those need the network once on the batch, not on
    the batch doubled; ``guided`` says whether the two predictions are mixed.
    ``labels`` are checked int32 labels (NumPy).
    """
    if guidance == 0:
        return np.full(np.shape(labels), num_classes, np.int32), False
    return labels, guidance != 1


def guided_outputs(network_call, noisy_images, noise_rates, labels, guidance, num_classes):
    """The guided output ``uncond + guidance * (cond - uncond)``, from ONE network call.

    ``network_call(noisy_images, noise_rates, labels)`` returns the network's
    float32 output; it is called once, on the batch doubled (conditional half,
    then "no class" half).
    """
    num_images = ops.shape(noisy_images)[0]
    labels = ops.cast(labels, "int32")
    outputs = network_call(
        ops.concatenate([noisy_images, noisy_images], axis=0),
        ops.concatenate([noise_rates, noise_rates], axis=0),
        ops.concatenate([labels, null_labels(num_images, num_classes)], axis=0),
    )
    conditional, unconditional = ops.split(outputs, 2, axis=0)
    guidance = ops.cast(guidance, "float32")
    return unconditional + guidance * (conditional - unconditional)
