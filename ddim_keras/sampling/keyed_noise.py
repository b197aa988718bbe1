"""Gaussian noise keyed by integers, computed in ``keras.ops``: the same on every backend.

The backends' own random generators differ (TensorFlow's Philox, JAX's
threefry, PyTorch's Mersenne twister), so a seed alone cannot give the same
images on TensorFlow, JAX and PyTorch. The fresh noise of stochastic sampling
(``eta > 0``) is therefore drawn here, from a counter-based generator written
in integer ``keras.ops``: every element is a hash of (seed, step, image index,
element index), turned into a standard normal with the Box-Muller transform.
The integer part is bit-identical on every backend; the float part differs by
rounding of ``log``/``cos`` only.

Keying each image by its index (not its position in a chunk) makes stochastic
sampling independent of the batch size, as deterministic sampling already is.

The hash is Chris Wellons' "lowbias32" integer mixer (xor-shift-multiply,
two rounds), computed in int32: multiplication wraps modulo 2**32 on every
backend, and a logical right shift is an arithmetic shift with the sign bits
masked off.
"""

import math

from keras import ops

#: The two odd multipliers of lowbias32 (as signed 32-bit values).
_MULTIPLIERS = (0x7FEB352D, 0x846CA68B - 2**32)
#: Separates the key words before they are mixed (the golden ratio in 32 bits).
_GOLDEN = 0x9E3779B9 - 2**32
#: Uniforms take the top 24 bits of a hash: exactly representable in float32.
_UNIFORM_BITS = 24


def _shift_right(values, bits):
    # Logical shift of int32 values: shift, then clear the copied sign bits.
    return ops.bitwise_and(ops.right_shift(values, bits), (1 << (32 - bits)) - 1)


def hash32(values):
    """lowbias32 of int32 ``values`` (a bijection of the 32-bit integers), as int32."""
    values = ops.cast(values, "int32")
    values = ops.bitwise_xor(values, _shift_right(values, 16))
    values = ops.multiply(values, ops.convert_to_tensor(_MULTIPLIERS[0], "int32"))
    values = ops.bitwise_xor(values, _shift_right(values, 15))
    values = ops.multiply(values, ops.convert_to_tensor(_MULTIPLIERS[1], "int32"))
    return ops.bitwise_xor(values, _shift_right(values, 16))


def _mix(key, word):
    # A new key from a key and one more word; distinct words give unrelated keys.
    return hash32(ops.bitwise_xor(hash32(ops.add(key, _GOLDEN)), ops.cast(word, "int32")))


def _uniforms(keys, counters):
    """Uniforms in (0, 1) from int32 ``keys`` and ``counters`` (broadcast together)."""
    bits = _shift_right(hash32(ops.bitwise_xor(keys, hash32(counters))), 32 - _UNIFORM_BITS)
    return (ops.cast(bits, "float32") + 0.5) * (1.0 / 2**_UNIFORM_BITS)


def keyed_normal(shape, seed, step, first_image=0, stream=0):
    """Standard normal noise of ``shape`` (images first), keyed by (seed, step, image index).

    Image ``i`` of the batch is image ``first_image + i`` of the whole sample:
    its noise at a given (seed, step) does not depend on how the images are
    chunked. ``seed``, ``step`` and ``first_image`` may be Python ints or int32
    tensors (so a compiled loop does not retrace for new values); seeds are
    taken modulo 2**32. ``shape`` may hold tensors (a batch size from the data).
    ``stream`` separates draws that share a step: 0 is a sampling step's fresh
    noise; inpainting draws its pasted and re-noised images from others (see
    :mod:`ddim_keras.sampling.editing`).
    """
    num_images = shape[0]
    per_image = math.prod(int(size) for size in shape[1:])
    key = _mix(_mix(hash32(_wrap(seed)), step), stream)
    image_index = ops.add(ops.arange(num_images, dtype="int32"), ops.cast(first_image, "int32"))
    image_keys = ops.reshape(_mix(key, image_index), (-1, 1))
    # Two uniforms per element (counters 2j and 2j + 1) feed one Box-Muller normal.
    counters = ops.reshape(ops.arange(per_image, dtype="int32") * 2, (1, -1))
    radius = ops.sqrt(-2.0 * ops.log(_uniforms(image_keys, counters)))
    angle = (2.0 * math.pi) * _uniforms(image_keys, counters + 1)
    return ops.reshape(radius * ops.cos(angle), shape)


def _wrap(seed):
    # Python ints of any size become their low 32 bits as a signed int32.
    if isinstance(seed, int):
        seed = (seed + 2**31) % 2**32 - 2**31
    return ops.cast(seed, "int32")
