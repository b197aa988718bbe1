"""What sampling keeps between calls: reduced-precision network copies and compiled loops.

Both are built on first use and reused, so a model samples in float32, bfloat16
or float16 with one compiled graph loop each (and one more each when the
trajectory is recorded), whatever the number of steps. The model holds its
cache out of Keras' tracking (see :mod:`ddim_keras.untracked`): nothing here
reaches a checkpoint.
"""

import keras

from ddim_keras import sampling
from ddim_keras.distribute import POLICIES
from ddim_keras.network import build_network


class SamplerCache:
    def __init__(self, config):
        self.config = config
        self.copies = {}     # precision -> network computing in that precision
        self.functions = {}  # (record, precision, sampler, spacing) -> compiled sampler

    def network(self, ema_network, precision="float32"):
        """The network that samples in ``precision``: "float32", "bfloat16" or "float16".

        float32 is ``ema_network`` itself. The others are a copy of it whose
        layers compute in that precision (a mixed dtype policy: the weights stay
        float32), with the EMA weights copied in on every call, so it always
        samples with the current weights.
        """
        if precision not in POLICIES:
            raise ValueError(f"unknown sampling precision {precision!r}; use one of "
                             f"{', '.join(POLICIES)}")
        if precision == "float32":
            return ema_network
        if precision not in self.copies:
            self.copies[precision] = build_network(self.config,
                                                   name=f"residual_unet_{precision}",
                                                   dtype=POLICIES[precision])
        network = self.copies[precision]
        for target, source in zip(network.weights, ema_network.weights):
            target.assign(source)
        return network

    def compiled(self, denoise_fn, schedule_fn, record, precision, sampler="ddim",
                 spacing="time", network=None):
        """The compiled sampler for (record, precision, sampler, spacing), traced once.

        ``denoise_fn(noisy_images, noise_rates, signal_rates)`` must use
        ``network``, the network of ``precision``; it is bound on the first
        call for that key. The function takes (initial_noise, diffusion_steps,
        eta, seed, first_image) and returns what
        :func:`ddim_keras.sampling.reverse_diffusion_graph` returns. New values
        do not retrace it, except ``record``: a recording's shape is its number
        of steps, so it is part of the key (False, or the number of steps).
        Each backend compiles in its own way, see :func:`compile_sampler`.
        """
        key = (record, precision, sampler, spacing)
        if key not in self.functions:
            def run(initial_noise, diffusion_steps, eta, seed, first_image):
                return sampling.reverse_diffusion_graph(
                    denoise_fn, schedule_fn, initial_noise, diffusion_steps, eta=eta,
                    seed=seed, record=record, first_image=first_image, sampler=sampler,
                    spacing=spacing)

            self.functions[key] = compile_sampler(run, network, self.config.image_size)
        return self.functions[key]


def no_gradients():
    """A context in which sampling records no gradients: ``torch.no_grad()`` on PyTorch
    (which otherwise keeps every step's activations for a backward pass); nothing
    elsewhere (TensorFlow and JAX record only inside a tape or a grad transform)."""
    import contextlib

    if keras.backend.backend() == "torch":
        import torch

        return torch.no_grad()
    return contextlib.nullcontext()


def compile_sampler(run, network, image_size):
    """``run(initial_noise, diffusion_steps, eta, seed, first_image)`` compiled for the backend.

    * TensorFlow: a ``tf.function`` with a fixed input signature (any batch
      size, the scalars as tensors), so it is traced once;
    * JAX: ``jax.jit`` of a pure function of the network's weights, which are
      passed in on every call (a closure would bake them in as constants and
      miss later training); retraced per batch size only;
    * PyTorch: the loop runs eagerly under ``torch.no_grad()`` (no graph to
      trace; ``keras.ops.while_loop`` is a Python loop there).

    The returned callable takes NumPy arrays or tensors and Python numbers.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        function = tf.function(
            run,
            input_signature=[
                tf.TensorSpec((None, image_size, image_size, 3), tf.float32),
                tf.TensorSpec((), tf.int32),    # diffusion_steps
                tf.TensorSpec((), tf.float32),  # eta
                tf.TensorSpec((), tf.int32),    # seed
                tf.TensorSpec((), tf.int32),    # first_image
            ],
            jit_compile=False,
        )
        return lambda noise, steps, eta, seed, first_image: function(
            tf.convert_to_tensor(noise, tf.float32), tf.constant(steps, tf.int32),
            tf.constant(eta, tf.float32), tf.constant(seed, tf.int32),
            tf.constant(first_image, tf.int32))
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        variables = list(network.variables)

        def pure(values, noise, steps, eta, seed, first_image):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return run(noise, steps, eta, seed, first_image)

        function = jax.jit(pure)
        return lambda noise, steps, eta, seed, first_image: function(
            [variable.value for variable in variables], jnp.asarray(noise, jnp.float32),
            jnp.int32(steps), jnp.float32(eta), jnp.int32(seed), jnp.int32(first_image))
    if backend == "torch":
        def eager(noise, steps, eta, seed, first_image):
            with no_gradients():
                return run(keras.ops.convert_to_tensor(noise, "float32"), int(steps),
                           float(eta), int(seed), int(first_image))

        return eager
    raise ValueError(f"sampling is not supported on the {backend!r} backend; use tensorflow, "
                     "jax or torch")
