"""Training speed: the first train step (tracing included), timed steady-state steps,
the same steps pipelined, and the same again under a reduced-precision policy.

The train step runs on one synthetic batch, repeated, so that the input pipeline
costs next to nothing and the numbers are the model's (the folder pipeline is timed
on its own, in :mod:`ddim_keras.bench.data_pipeline`).
"""

import math
import time

from ddim_keras.bench.defaults import SEED
from ddim_keras.bench.system import active_backend, compiler_description
from ddim_keras.core.devices import POLICIES
from ddim_keras.core.errors import DdimError


def synthetic_images(config, count, seed=SEED):
    import numpy as np

    rng = np.random.default_rng(seed)
    shape = (count, config.image_size, config.image_size, 3)
    return rng.uniform(0.0, 1.0, size=shape).astype("float32")


def _finite_loss(logs):
    import numpy as np

    loss = float(np.asarray(logs["n_loss"]))
    if not math.isfinite(loss):
        raise DdimError(
            f"the benchmark's training loss became {loss}; the timings would be "
            "meaningless. Try a lower learning_rate in a --config file."
        )
    return loss


def repeated_batches(batch):
    """A callable making endless fit data of one batch, repeated (no input pipeline cost).

    TensorFlow gets a ``tf.data`` dataset of it; the other backends an endless
    ``keras.utils.PyDataset`` of the NumPy batch (read in the main thread),
    which Keras turns into their tensors.
    """
    import keras

    if active_backend() == "tensorflow":
        import tensorflow as tf

        # One element = one whole batch, repeated.
        return lambda: tf.data.Dataset.from_tensors(batch).repeat()

    class Repeated(keras.utils.PyDataset):
        @property
        def num_batches(self):
            return None  # endless; fit's steps_per_epoch says how many

        def __getitem__(self, index):
            return batch

    return Repeated


def _step_clock(pipelined=False):
    """A Keras callback recording when each train step ends; ``.ends()`` in step order.

    Keras turns a step's logs into Python floats, which waits for the step,
    before it calls ``on_train_batch_end``. A callback that is not async-safe
    (``pipelined=False``) is called in the training loop, so the loop waits for
    every step before it starts the next. An async-safe one is called from
    Keras' callback threads on the backends Keras deems thread-safe (JAX and
    PyTorch; on TensorFlow it is called in the loop all the same), so the loop
    runs on and queues the next steps meanwhile (JAX's dispatch, and CUDA's, are
    asynchronous); the clock still notes when each step's loss became available.
    """
    import keras

    class StepClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.async_safe = pipelined
            self._ends = []  # (step, time): appended from several threads when async

        def on_train_batch_end(self, batch, logs=None):
            self._ends.append((batch, time.perf_counter()))

        def ends(self):
            return [end for _, end in sorted(self._ends)]

    return StepClock()


def _fit(model, data, steps, callbacks=None):
    history = model.fit(
        data(), epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False, callbacks=callbacks
    )
    return _finite_loss({"n_loss": history.history["n_loss"][-1]})


def measure_training(model, config, train_steps):
    """First-step time (tracing included), steady-state step times, then pipelined steps."""
    batch = synthetic_images(config, config.batch_size)
    data = repeated_batches(batch)
    model.normalizer.adapt(batch)

    started = time.perf_counter()
    _fit(model, data, 1)
    first_step_s = time.perf_counter() - started

    # One warm-up step (a new fit call sets up its iterator), then train_steps timed
    # ones, each from the end of the one before.
    clock = _step_clock()
    _fit(model, data, train_steps + 1, callbacks=[clock])
    ends = clock.ends()
    step_times = [later - earlier for earlier, later in zip(ends, ends[1:])]
    if len(step_times) != train_steps:
        raise DdimError(
            f"the benchmark timed {len(step_times)} train steps instead of {train_steps}."
        )
    total = sum(step_times)

    # The same steps with nothing waiting for each one: what a backend with asynchronous
    # dispatch gains by queueing steps; from the end of the warm-up step to the last's.
    clock = _step_clock(pipelined=True)
    _fit(model, data, train_steps + 1, callbacks=[clock])
    ends = clock.ends()
    pipelined_s = ends[-1] - ends[0]
    return {
        "first_step_s": first_step_s,
        "images_per_s": config.batch_size * train_steps / total,
        "step_s": total / train_steps,
        "step_s_min": min(step_times),
        "step_s_max": max(step_times),
        "step_s_all": step_times,
        "timed_steps": train_steps,
        "pipelined_s": pipelined_s,
        "pipelined_images_per_s": config.batch_size * train_steps / pipelined_s,
        "jit_compile": bool(model.jit_compile),
        "compiler": compiler_description(active_backend(), model.jit_compile),
    }


def measure_mixed_training(config, train_steps, precision, jit_compile, float32_train):
    """The training measurement again, for a model built under ``precision``'s policy."""
    import keras

    from ddim_keras.model.diffusion_model import DiffusionModel

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(POLICIES[precision])
    try:
        keras.utils.set_random_seed(SEED)
        model = DiffusionModel(config, kid_weights=None)
        model.compile(jit_compile=jit_compile)
        result = measure_training(model, config, train_steps)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    result["precision"] = precision
    result["speedup_over_float32"] = result["images_per_s"] / float32_train["images_per_s"]
    return result
