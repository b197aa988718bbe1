"""Seconds per training step of the diffusion demo's model and of the GAN baseline.

The two models train in turn in one process (4 rounds of 20 steps each, batch 32 at
32 px, random images), so that a machine shared with other work slows both alike; prints
the medians and their ratio as JSON. The ratio sets the GAN's epochs at equal wall time
(experiments/shapes_gan_walltime.json: 24 / ratio). Run from the repository root:

    KERAS_BACKEND=tensorflow TF_NUM_INTRAOP_THREADS=1 python tools/gan_step_time.py
"""

import json
import os
import sys
import time

sys.path.insert(0, os.getcwd())

import keras  # noqa: E402
import numpy as np  # noqa: E402

from ddim_keras.cli.gan_args import load_config_of_kind  # noqa: E402
from ddim_keras.core.config import preset  # noqa: E402
from ddim_keras.model.kinds import build_model  # noqa: E402

STEPS, ROUNDS, BATCH = 20, 4, 32


def main():
    configs = {
        "diffusion (shapes preset)": preset("shapes"),
        "GAN (experiments/shapes_gan.json)": load_config_of_kind(
            "experiments/shapes_gan.json", preset("shapes")
        ),
    }
    images = np.random.default_rng(0).uniform(size=(BATCH * STEPS, 32, 32, 3))
    images = images.astype("float32")
    models = {}
    for name, config in configs.items():
        keras.utils.set_random_seed(0)
        model = build_model(config.replace(kid=False), kid_weights=None)
        model.compile()
        if model.normalizer is not None:
            model.normalizer.adapt(images[: 2 * BATCH])
        model.fit(images[: 2 * BATCH], batch_size=BATCH, epochs=1, verbose=0)  # traced
        models[name] = model
    times = {name: [] for name in models}
    for _ in range(ROUNDS):
        for name, model in models.items():
            started = time.perf_counter()
            model.fit(images, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
            times[name].append((time.perf_counter() - started) / STEPS)
    result = {name: float(np.median(values)) for name, values in times.items()}
    diffusion, gan = result.values()
    result["gan_over_diffusion"] = gan / diffusion
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
