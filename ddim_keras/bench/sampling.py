"""Sampling speed: the compiled sampler against the example's step-by-step Python loop,
on the same noise, and the compiled sampler again in reduced precision.

Besides the speeds it checks that the samplers agree, on a network whose output
layer is drawn at random (an untrained one predicts zero noise, and any two
samplers would agree trivially).
"""

import math
import time

from ddim_keras.bench.defaults import DEFAULT_REPEATS, SEED
from ddim_keras.bench.flops import all_layers
from ddim_keras.bench.system import active_backend
from ddim_keras.core.backend import BACKEND_LABELS


def randomize_output_layer(network, noise, seed=SEED):
    """Re-draw the zero-initialised output convolution with random weights.

    An untrained network predicts exactly zero noise, which would make the
    two samplers agree trivially; with random output weights the agreement
    check compares real network outputs. The weights are scaled so that the
    predicted noise of pure noise has unit standard deviation, as a trained
    network's would. An untrained network is no denoiser, so its samples are
    still far outside the data range (the first step divides by
    min_signal_rate); the agreement is judged relative to their size. Speed
    does not depend on the values.
    """
    import keras
    import numpy as np

    convolutions = [
        layer for layer in all_layers(network) if isinstance(layer, keras.layers.Conv2D)
    ]
    kernel = convolutions[-1].kernel
    kernel.assign(keras.initializers.GlorotUniform(seed=seed)(kernel.shape))
    variances = np.ones((len(noise), 1, 1, 1), "float32")
    std = float(np.std(keras.ops.convert_to_numpy(network([noise, variances], training=False))))
    if std > 0 and math.isfinite(std):
        kernel.assign(kernel / std)


def _timed(function):
    """(seconds, result as NumPy) of one call; converting waits for the result."""
    from keras import ops

    started = time.perf_counter()
    result = ops.convert_to_numpy(function())
    return time.perf_counter() - started, result


def measure_sampling(
    model, num_images, steps, precision="float32", repeats=DEFAULT_REPEATS, loop=True
):
    """Compiled sampler and Python loop in float32; then ``precision``, unless float32.

    Each sampler runs ``repeats`` times after a warm-up, the samplers taking
    turns so that a change in the machine's load hits them alike; the median
    time counts. ``loop=False`` leaves out the example's step-by-step loop
    (its numbers, and those compared with it, are then None).
    """
    import numpy as np

    noise = model.initial_noise(num_images, seed=SEED)
    randomize_output_layer(model.ema_network, noise)
    # The compiled sampler itself (what sampling_loop.sample runs chunk by chunk), timed
    # against the example's step-by-step loop on the same noise: one chunk, no
    # denormalisation, so that the two compute the same thing.
    samplers = {
        "compiled": lambda: model.compiled_reverse_diffusion(noise, steps, seed=SEED),
    }
    if loop:
        samplers["loop"] = lambda: model.reverse_diffusion(noise, steps, seed=SEED)
    if precision != "float32":
        samplers["mixed"] = lambda: model.compiled_reverse_diffusion(
            noise, steps, seed=SEED, precision=precision
        )
    first_call_s, _ = _timed(samplers["compiled"])
    if loop:
        _timed(lambda: model.reverse_diffusion(noise, 1, seed=SEED))  # warm-up: one step
    if "mixed" in samplers:
        _timed(samplers["mixed"])
    times = {name: [] for name in samplers}
    outputs = {}
    for _ in range(repeats):
        for name, sampler in samplers.items():
            seconds, outputs[name] = _timed(sampler)
            times[name].append(seconds)
    median = {name: float(np.median(values)) for name, values in times.items()}

    compiled = outputs["compiled"]
    compiled_ips = num_images / median["compiled"]
    if loop:
        max_abs_diff = float(np.max(np.abs(compiled - outputs["loop"])))
        max_abs = float(np.max(np.abs(outputs["loop"])))
        loop_ips = num_images / median["loop"]
    else:
        max_abs_diff = loop_ips = None
        max_abs = float(np.max(np.abs(compiled)))
    mixed = None
    if "mixed" in samplers:
        mixed_ips = num_images / median["mixed"]
        mixed = {
            "precision": precision,
            "compiled_s": median["mixed"],
            "compiled_s_all": times["mixed"],
            "images_per_s": mixed_ips,
            "image_steps_per_s": mixed_ips * steps,
            "ratio": mixed_ips / loop_ips if loop else None,
            "speedup_over_float32": mixed_ips / compiled_ips,
            # Relative to the largest float32 value: the untrained network's
            # samples are far outside the data range (see randomize_output_layer).
            "max_rel_diff": float(np.max(np.abs(outputs["mixed"] - compiled))) / max(1.0, max_abs),
        }
    return {
        "num_images": num_images,
        "steps": steps,
        "repeats": repeats,
        "compiled_first_call_s": first_call_s,
        "compiled_s": median["compiled"],
        "loop_s": median.get("loop"),
        "compiled_s_all": times["compiled"],
        "loop_s_all": times.get("loop"),
        "compiled_images_per_s": compiled_ips,
        "compiled_image_steps_per_s": compiled_ips * steps,
        "loop_images_per_s": loop_ips,
        # The example's loop calls the network once per step from Python: eager
        # TensorFlow, eager JAX ops or eager PyTorch, as the backend runs it.
        "loop": (
            f"eager {BACKEND_LABELS.get(active_backend(), active_backend())}"
            if loop
            else "skipped (--skip loop)"
        ),
        "ratio": compiled_ips / loop_ips if loop else None,
        "max_abs_diff": max_abs_diff,
        "max_abs_value": max_abs,
        "agree": bool(max_abs_diff <= 1e-3 * max(1.0, max_abs)) if loop else None,
        "mixed": mixed,
    }
