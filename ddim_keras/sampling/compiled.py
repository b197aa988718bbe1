"""The sampling loop compiled the way each Keras backend compiles: one graph per sampler."""

import keras

pass


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
                tf.TensorSpec((), tf.int32),  # diffusion_steps
                tf.TensorSpec((), tf.float32),  # eta
                tf.TensorSpec((), tf.int32),  # seed
                tf.TensorSpec((), tf.int32),  # first_image
            ],
            jit_compile=False,
        )
        return lambda noise, steps, eta, seed, first_image: function(
            tf.convert_to_tensor(noise, tf.float32),
            tf.constant(steps, tf.int32),
            tf.constant(eta, tf.float32),
            tf.constant(seed, tf.int32),
            tf.constant(first_image, tf.int32),
        )
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        variables = list(network.variables)

        def pure(values, noise, steps, eta, seed, first_image):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return run(noise, steps, eta, seed, first_image)

        function = jax.jit(pure)
        return lambda noise, steps, eta, seed, first_image: function(
            [variable.value for variable in variables],
            jnp.asarray(noise, jnp.float32),
            jnp.int32(steps),
            jnp.float32(eta),
            jnp.int32(seed),
            jnp.int32(first_image),
        )
    if backend == "torch":

        def eager(noise, steps, eta, seed, first_image):
            with no_gradients():
                return run(
                    keras.ops.convert_to_tensor(noise, "float32"),
                    int(steps),
                    float(eta),
                    int(seed),
                    int(first_image),
                )

        return eager
    raise ValueError(
        f"sampling is not supported on the {backend!r} backend; use tensorflow, jax or torch"
    )
