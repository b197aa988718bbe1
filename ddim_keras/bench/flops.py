"""FLOPs: the network's forward FLOPs counted from its layers, and a float32 matmul's
FLOP/s, the machine's practical limit that training's FLOP/s are compared with.

Counting and the matmul go together: both are expressed in :data:`FLOPS_CONVENTION`.
"""

import math
import time

from ddim_keras.bench.defaults import SEED

#: The matmul is repeated until it has run this long (and at least 3 times).
MATMUL_MIN_SECONDS = 1.0
#: How the FLOP figures are counted; the results carry it beside them.
FLOPS_CONVENTION = (
    "1 multiply-add = 2 FLOPs. Forward FLOPs count the convolutions and dense layers "
    "(2*H_out*W_out*kh*kw*C_in*C_out per image, plus H_out*W_out*C_out for the bias); "
    "element-wise work (batch norm, swish, additions, pooling, upsampling, the sinusoidal "
    "embedding) is not counted. Training = 3 x forward (forward + backward), sampling = "
    "steps x forward. A float32 matmul of n x n matrices counts 2*n**3."
)


def all_layers(model):
    """Every layer of a model, nested models expanded."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)
        else:
            yield layer


def forward_flops(network):
    """Forward FLOPs per image of a functional Keras model, counted from its layers.

    1 multiply-add = 2 FLOPs. A Conv2D counts ``2 * H_out * W_out * kh * kw *
    C_in/groups * C_out`` plus ``H_out * W_out * C_out`` for its bias; a Dense
    counts ``2 * C_in * C_out`` (times any leading non-batch dimensions) plus
    the bias. Element-wise layers are not counted: in this U-Net they are
    under 1 % of the total (TensorFlow's graph profiler, which counts them,
    gives 0.3 % more for the flowers network and 0.6 % more for shapes).
    """
    from keras import layers

    total = 0
    for layer in all_layers(network):
        if isinstance(layer, layers.Conv2D):
            kernel_h, kernel_w, in_per_group, out_channels = layer.kernel.shape
            _, height, width, _ = layer.output.shape
            positions = int(height) * int(width)
            total += 2 * positions * kernel_h * kernel_w * in_per_group * out_channels
            if layer.use_bias:
                total += positions * out_channels
        elif isinstance(layer, layers.Dense):
            in_channels, out_channels = layer.kernel.shape
            positions = math.prod(int(d) for d in layer.output.shape[1:-1])
            total += 2 * positions * in_channels * out_channels
            if layer.use_bias:
                total += positions * out_channels
    return int(total)


def measure_matmul(size, min_seconds=MATMUL_MIN_SECONDS):
    """FLOP/s of a float32 ``size x size`` matmul (``keras.ops``), repeated after a warm-up.

    On a GPU the backend's default float32 matmul precision applies (JAX and
    TensorFlow may use TF32 tensor cores for it), as it does in the network.
    """
    import keras
    from keras import ops

    a = keras.random.uniform((size, size), seed=SEED + 1, dtype="float32")
    b = keras.random.uniform((size, size), seed=SEED + 2, dtype="float32")

    def one():
        # Reading one value back to the host waits for the product.
        return float(ops.convert_to_numpy(ops.matmul(a, b)[0, 0]))

    for _ in range(2):
        one()
    repeats = 0
    started = time.perf_counter()
    while repeats < 3 or time.perf_counter() - started < min_seconds:
        one()
        repeats += 1
    elapsed = time.perf_counter() - started
    return {"size": size, "repeats": repeats, "flops_per_s": 2.0 * size**3 * repeats / elapsed}
