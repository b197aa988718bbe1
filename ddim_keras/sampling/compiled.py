"""The sampling loops compiled the way each Keras backend compiles: one graph per sampler."""

import keras

#: The arguments of a compiled generation loop: (initial_noise, diffusion_steps, eta,
#: seed, first_image). "images" is a float32 batch of images (any batch size), "masks"
#: one float32 channel per pixel, "int" and "float" scalars.
SAMPLER_ARGUMENTS = ("images", "int", "float", "int", "int")
#: The arguments of a compiled editing loop (:mod:`ddim_keras.sampling.edit_loop`):
#: (initial_noise, known_images, masks, diffusion_steps, start_step, resample, eta,
#: seed, first_image).
EDITOR_ARGUMENTS = ("images", "images", "masks", "int", "int", "int", "float", "int", "int")
#: What a class-conditional model's loops take after those: (labels, guidance), one
#: int32 class per image and the guidance scale, inputs so that new values do not retrace.
CONDITION_ARGUMENTS = ("labels", "float")


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

    See :func:`compile_loop`, with the arguments :data:`SAMPLER_ARGUMENTS`.
    """
    return compile_loop(run, network, image_size, SAMPLER_ARGUMENTS)


def compile_loop(run, network, image_size, arguments):
    """``run(*args)`` compiled for the backend; ``arguments`` names each argument's kind.

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

        specs = {
            "images": tf.TensorSpec((None, image_size, image_size, 3), tf.float32),
            "masks": tf.TensorSpec((None, image_size, image_size, 1), tf.float32),
            "labels": tf.TensorSpec((None,), tf.int32),
            "int": tf.TensorSpec((), tf.int32),
            "float": tf.TensorSpec((), tf.float32),
        }
        function = tf.function(
            run, input_signature=[specs[kind] for kind in arguments], jit_compile=False
        )
        return lambda *args: function(
            *(tf.convert_to_tensor(arg, specs[kind].dtype) for arg, kind in zip(args, arguments))
        )
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        variables = list(network.variables)
        converters = {
            "images": lambda arg: jnp.asarray(arg, jnp.float32),
            "masks": lambda arg: jnp.asarray(arg, jnp.float32),
            "labels": lambda arg: jnp.asarray(arg, jnp.int32),
            "int": jnp.int32,
            "float": jnp.float32,
        }

        def pure(values, *args):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return run(*args)

        function = jax.jit(pure)
        return lambda *args: function(
            [variable.value for variable in variables],
            *(converters[kind](arg) for arg, kind in zip(args, arguments)),
        )
    if backend == "torch":
        converters = {
            "images": lambda arg: keras.ops.convert_to_tensor(arg, "float32"),
            "masks": lambda arg: keras.ops.convert_to_tensor(arg, "float32"),
            "labels": lambda arg: keras.ops.convert_to_tensor(arg, "int32"),
            "int": int,
            "float": float,
        }

        def eager(*args):
            with no_gradients():
                return run(*(converters[kind](arg) for arg, kind in zip(args, arguments)))

        return eager
    raise ValueError(
        f"sampling is not supported on the {backend!r} backend; use tensorflow, jax or torch"
    )
