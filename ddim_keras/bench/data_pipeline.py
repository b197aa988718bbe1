"""The folder pipeline's speed: JPEGs written to a temporary folder, decoded and
preprocessed by the pipeline training would use here, in images/s beside the train
step's.

Apart from the training measurement because it times the input, which that one
leaves out on purpose, and because it needs no model.
"""

import os
import tempfile
import time

from ddim_keras.bench.defaults import SEED
from ddim_keras.core.errors import DdimError, UsageError

#: Width and height of the benchmark's JPEG files.
DATA_FILE_SIZE = 256
#: Timed passes over the files after the warm-up; the median counts.
DATA_REPEATS = 3


def write_benchmark_jpegs(folder, count, size=DATA_FILE_SIZE, seed=SEED):
    """``count`` photo-like JPEGs (smooth colours plus grain, quality 90); their paths."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        blocks = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
        smooth = np.asarray(blocks.resize((size, size), Image.BICUBIC), dtype=np.float32)
        grain = rng.normal(0.0, 8.0, smooth.shape)
        pixels = np.clip(smooth + grain, 0, 255).astype(np.uint8)
        path = os.path.join(folder, f"{index:04d}.jpg")
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


def folder_pipeline(paths, config):
    """(name, one pass, images per pass) of the folder pipeline training here would use.

    ``tf.data`` (``data.image_files_dataset``, batched and scaled as
    ``data.prepare_dataset`` does) where TensorFlow is installed, whatever the
    Keras backend; otherwise the NumPy/Pillow pipeline of
    :mod:`ddim_keras.data.numpy_pipeline` (a thread pool decoding each batch's files;
    its batches drop an incomplete last one). ``one pass`` returns the number
    of images it produced.
    """
    whole = len(paths) // config.batch_size * config.batch_size
    from ddim_keras.core.optional import tensorflow_installed
    from ddim_keras.data.folder import file_entries
    from ddim_keras.data.tf_pipeline import image_files_dataset, to_unit_range

    if tensorflow_installed():
        import tensorflow as tf

        images = image_files_dataset(paths, config.image_size)
        batches = (
            images.batch(config.batch_size)
            .map(to_unit_range, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE)
        )

        def one_pass():
            return sum(int(batch.shape[0]) for batch in batches)

        return "tf.data", one_pass, len(paths)

    from ddim_keras.core.datasets import background_rgb
    from ddim_keras.data import numpy_pipeline as numpy_data

    files = numpy_data.ImageFiles(
        file_entries(paths), config.image_size, background_rgb(), cache="none"
    )
    batches = numpy_data.ImageBatches(files, config.batch_size)

    def one_pass():
        return sum(len(batches[index]) for index in range(len(batches)))

    return "NumPy/Pillow", one_pass, whole


def measure_data_pipeline(config, num_files, train_images_per_s, repeats=DATA_REPEATS):
    """Images/s of the folder pipeline: decode, crop, resize to image_size, batch, scale.

    The files are read from a fresh temporary folder (so mostly from the page
    cache after the warm-up pass, as a folder read every epoch would be).
    """
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="ddim-benchmark-") as folder:
        paths = write_benchmark_jpegs(folder, num_files)
        started = time.perf_counter()
        pipeline, one_pass, expected = folder_pipeline(paths, config)
        inspect_s = time.perf_counter() - started
        if expected == 0:
            raise UsageError(
                f"--data-files {num_files} is less than one batch of "
                f"{config.batch_size}, which the {pipeline} pipeline drops."
            )
        count = one_pass()  # warm-up: traces the map functions, starts the threads
        if count != expected:
            raise DdimError("the benchmark's JPEG files did not all decode.")
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            one_pass()
            times.append(time.perf_counter() - started)
    seconds = float(np.median(times))
    images_per_s = count / seconds
    return {
        "pipeline": pipeline,
        "format": "JPEG",
        "num_files": num_files,
        "num_images": count,
        "file_size": DATA_FILE_SIZE,
        "image_size": config.image_size,
        "repeats": repeats,
        "seconds": seconds,
        "seconds_all": times,
        "inspect_s": inspect_s,
        "images_per_s": images_per_s,
        "train_images_per_s": train_images_per_s,
        "ratio": images_per_s / train_images_per_s,
    }
