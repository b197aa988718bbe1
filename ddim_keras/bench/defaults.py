"""The benchmark's defaults, its seed and the names of its parts.

One home for the numbers that both the command's flags and the measuring functions
default to, so that they cannot drift apart. Plain constants: every module of
:mod:`ddim_keras.bench` may import them, and so may the command.
"""

DEFAULT_PRESET = "flowers"
DEFAULT_STEPS = 20
DEFAULT_TRAIN_STEPS = 5
DEFAULT_NUM_IMAGES = 18
DEFAULT_REPEATS = 3
DEFAULT_MATMUL_SIZE = 2048
DEFAULT_DATA_FILES = 200
#: Seeds of the synthetic images, the weights, the noise and the sampler.
SEED = 0
#: Parts of the benchmark that --skip can leave out.
PARTS = ("train", "sampling", "loop", "data", "matmul")
