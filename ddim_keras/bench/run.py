"""One backend's whole benchmark: :func:`run_benchmark` runs every measurement of
:mod:`ddim_keras.bench` for one config on the active backend and derives the FLOP
figures from them.

Kept apart from the measurements because it decides their order (the matmul first and
last, training and sampling on one float32 model, reduced-precision training on a
second model afterwards, so that its memory does not count in the float32 peak) and
the shape of the result: the dict the command prints and writes as JSON.
"""

from ddim_keras.bench.data_pipeline import measure_data_pipeline
from ddim_keras.bench.defaults import (
    DEFAULT_DATA_FILES,
    DEFAULT_MATMUL_SIZE,
    DEFAULT_REPEATS,
    SEED,
)
from ddim_keras.bench.flops import FLOPS_CONVENTION, forward_flops, measure_matmul
from ddim_keras.bench.sampling import measure_sampling
from ddim_keras.bench.system import (
    CpuShare,
    accelerator_peak_mb,
    active_backend,
    backend_versions,
    device_description,
    peak_rss_mb,
)
from ddim_keras.bench.training import measure_mixed_training, measure_training
from ddim_keras.core.devices import xla_rejects_mixed_precision


def run_benchmark(
    config,
    steps,
    train_steps,
    num_images,
    jit_compile="auto",
    matmul_size=DEFAULT_MATMUL_SIZE,
    precision="float32",
    repeats=DEFAULT_REPEATS,
    data_files=DEFAULT_DATA_FILES,
    skip=(),
):
    """Every measurement for one config on the active backend; returns the result as a dict.

    ``precision`` other than float32 also times training and the compiled
    sampler in that precision (``train.mixed``, ``sampling.mixed``).
    ``data_files`` JPEGs time the data pipeline (``data``; None when 0).
    ``skip``: parts of :data:`~ddim_keras.bench.defaults.PARTS` left out; their sections
    are None and ``skipped`` says why.
    """
    import keras

    from ddim_keras.model.diffusion_model import DiffusionModel

    backend = active_backend()
    skipped = {part: "--skip" for part in skip}
    if "data" not in skip and not data_files:
        skipped["data"] = "--data-files 0"
    if "data" not in skipped and "train" in skip:
        skipped["data"] = "compared with the train step, which is skipped"
    if "sampling" in skip:
        skipped["loop"] = "--skip sampling"

    cpu_share = CpuShare()
    rss_before_model = peak_rss_mb()
    # The matmul runs first and last; the faster run is the practical limit (a
    # slower one means something else took CPU or GPU time meanwhile).
    matmul_start = None if "matmul" in skipped else measure_matmul(matmul_size)
    keras.utils.set_random_seed(SEED)
    # No KID: it is never measured here, and its encoder is only built on use.
    model = DiffusionModel(config, kid_weights=None)
    model.compile(jit_compile=jit_compile)

    forward = forward_flops(model.network)
    train = None if "train" in skipped else measure_training(model, config, train_steps)
    sampling = (
        None
        if "sampling" in skipped
        else measure_sampling(
            model, num_images, steps, precision, repeats, loop="loop" not in skipped
        )
    )
    peak_float32 = peak_rss_mb()
    if train is not None:
        train["mixed"] = None
        if xla_rejects_mixed_precision(jit_compile, precision):
            train["mixed"] = {
                "precision": precision,
                "skipped": "TensorFlow's XLA for CPU refuses mixed-precision training graphs",
            }
        elif precision != "float32":
            train["mixed"] = measure_mixed_training(
                config, train_steps, precision, jit_compile, train
            )
    data_pipeline = (
        None
        if "data" in skipped
        else measure_data_pipeline(config, data_files, train["images_per_s"])
    )
    matmul_end = None if "matmul" in skipped else measure_matmul(matmul_size)

    flops = {
        "per_image": forward,
        "train_per_image": 3 * forward,
        "sampling_per_image": steps * forward,
        "achieved_per_s": None,
        "sampling_achieved_per_s": None,
        "matmul_per_s": None,
        "matmul_per_s_first": None,
        "matmul_per_s_last": None,
        "matmul_size": None,
        "utilization": None,
        "convention": FLOPS_CONVENTION,
    }
    if train is not None:
        flops["achieved_per_s"] = 3.0 * forward * train["images_per_s"]
    if sampling is not None:
        flops["sampling_achieved_per_s"] = steps * forward * sampling["compiled_images_per_s"]
    if matmul_start is not None:
        matmul_per_s = max(matmul_start["flops_per_s"], matmul_end["flops_per_s"])
        flops.update(
            matmul_per_s=matmul_per_s,
            matmul_per_s_first=matmul_start["flops_per_s"],
            matmul_per_s_last=matmul_end["flops_per_s"],
            matmul_size=matmul_size,
        )
        if train is not None:
            flops["utilization"] = flops["achieved_per_s"] / matmul_per_s
    return {
        "backend": backend,
        "device": device_description(),
        "config": config.to_dict(),
        "batch_size": config.batch_size,
        "steps": steps,
        "num_images": num_images,
        "precision": precision,
        "train": train,
        "sampling": sampling,
        "data": data_pipeline,
        "skipped": skipped,
        "memory": {
            # The float32 model's training and sampling (the reduced-precision
            # sampler's copy included); the second model of train.mixed adds to
            # the process's peak afterwards.
            "peak_rss_mb": peak_float32,
            "peak_rss_mb_before_model": rss_before_model,
            "peak_rss_mb_at_end": peak_rss_mb(),
            # The backend's peak on its first GPU over the whole run (None on a CPU).
            "accelerator_peak_mb": accelerator_peak_mb(),
        },
        "flops": flops,
        "versions": backend_versions(),
        "machine_load": cpu_share.result(),
    }
