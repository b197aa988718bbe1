"""The backend-independent noise of stochastic sampling (ddim_keras.sampling.keyed_noise).

The integer hash is checked bit for bit against a NumPy uint32 restatement of
lowbias32; the normals against the standard normal distribution (moments, the
CDF at fixed points, correlations between neighbours, images and steps).
Cross-backend equality itself is checked in test_backends.py.
"""

import math

import numpy as np
import pytest
from keras import ops

from ddim_keras.sampling import keyed_noise

pytestmark = pytest.mark.backends


def numpy_lowbias32(values):
    """Chris Wellons' lowbias32 in unsigned 32-bit NumPy arithmetic."""
    x = np.asarray(values, np.int64).astype(np.uint32)
    with np.errstate(over="ignore"):
        x ^= x >> np.uint32(16)
        x = (x * np.uint32(0x7FEB352D)).astype(np.uint32)
        x ^= x >> np.uint32(15)
        x = (x * np.uint32(0x846CA68B)).astype(np.uint32)
        x ^= x >> np.uint32(16)
    return x.astype(np.int32)  # the same bits, read as signed


def test_hash_is_lowbias32_bit_for_bit():
    values = np.concatenate(
        [
            np.array([0, 1, 2, -1, -(2**31), 2**31 - 1, 123456789], np.int64),
            np.random.default_rng(0).integers(-(2**31), 2**31, 5000),
        ]
    )
    got = ops.convert_to_numpy(keyed_noise.hash32(values.astype(np.int32)))
    np.testing.assert_array_equal(got, numpy_lowbias32(values))
    # A bijection of the 32-bit integers: distinct inputs stay distinct.
    assert len(np.unique(got)) == len(np.unique(values))


def standard_normal_cdf(x):
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def test_normals_have_the_standard_normal_distribution():
    noise = ops.convert_to_numpy(keyed_noise.keyed_normal((64, 16, 16, 3), seed=3, step=1))
    values = noise.ravel().astype(np.float64)
    n = values.size  # 49,152
    assert abs(values.mean()) < 4 / math.sqrt(n)
    assert abs(values.var() - 1.0) < 4 * math.sqrt(2.0 / n)
    # Skewness 0 and kurtosis 3, within 4 standard errors.
    assert abs(np.mean(values**3)) < 4 * math.sqrt(6.0 / n)
    assert abs(np.mean(values**4) - 3.0) < 4 * math.sqrt(24.0 / n)
    for point in (-2.0, -1.0, 0.0, 0.5, 1.5, 2.5):
        share = np.mean(values <= point)
        expected = standard_normal_cdf(point)
        assert abs(share - expected) < 4 * math.sqrt(expected * (1 - expected) / n), point


def correlation(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def test_neighbours_images_steps_and_seeds_are_uncorrelated():
    shape = (32, 16, 16, 3)
    noise = ops.convert_to_numpy(keyed_noise.keyed_normal(shape, seed=9, step=4))
    bound = 4 / math.sqrt(noise.size / 2)
    flat = noise.reshape(len(noise), -1)
    assert abs(correlation(flat[:, :-1], flat[:, 1:])) < bound  # neighbouring elements
    assert abs(correlation(flat[:-1], flat[1:])) < bound  # neighbouring images
    next_step = ops.convert_to_numpy(keyed_noise.keyed_normal(shape, seed=9, step=5))
    other_seed = ops.convert_to_numpy(keyed_noise.keyed_normal(shape, seed=10, step=4))
    assert abs(correlation(noise, next_step)) < 2 * bound
    assert abs(correlation(noise, other_seed)) < 2 * bound


def test_an_image_keeps_its_noise_whatever_its_chunk():
    whole = ops.convert_to_numpy(keyed_noise.keyed_normal((10, 4, 4, 3), seed=1, step=2))
    tail = ops.convert_to_numpy(
        keyed_noise.keyed_normal((4, 4, 4, 3), seed=1, step=2, first_image=6)
    )
    np.testing.assert_array_equal(whole[6:], tail)
    # Tensors and Python ints key the same noise (a compiled loop passes tensors).
    as_tensors = keyed_noise.keyed_normal(
        (4, 4, 4, 3),
        ops.convert_to_tensor(1, "int32"),
        ops.convert_to_tensor(2, "int32"),
        ops.convert_to_tensor(6, "int32"),
    )
    np.testing.assert_array_equal(ops.convert_to_numpy(as_tensors), tail)


def test_seeds_wrap_at_32_bits():
    a = ops.convert_to_numpy(keyed_noise.keyed_normal((2, 2, 2, 3), seed=5, step=0))
    b = ops.convert_to_numpy(keyed_noise.keyed_normal((2, 2, 2, 3), seed=5 + 2**32, step=0))
    np.testing.assert_array_equal(a, b)
    c = ops.convert_to_numpy(keyed_noise.keyed_normal((2, 2, 2, 3), seed=6, step=0))
    assert not np.allclose(a, c)
