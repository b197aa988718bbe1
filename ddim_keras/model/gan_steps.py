"""The GAN baseline's train and test steps on each Keras backend.

As in :mod:`ddim_keras.model.train_steps`, the math is the model's
(:meth:`~ddim_keras.model.gan.GANModel.draw`,
:meth:`~ddim_keras.model.gan.GANModel.step_losses`,
:meth:`~ddim_keras.model.gan.GANModel.finish_train_step`, in ``keras.ops``); only the way the two
gradients are taken differs. The generator's gradient is that of the
generator loss, the discriminator's that of the discriminator loss, both from
one forward pass:

* TensorFlow: a persistent ``tf.GradientTape``;
* PyTorch: ``torch.autograd.grad`` twice on one graph;
* JAX: one ``jax.vjp`` of both losses, pulled back once per loss, inside a
  :class:`keras.StatelessScope` that maps the state Keras passes in.

The random draws come before the differentiated part, so every backend
differentiates a deterministic function of the weights.
"""

import keras

from ddim_keras.model.train_steps import _read_state, _state_mapping


def _images(data):
    images, _, _ = keras.utils.unpack_x_y_sample_weight(data)
    return images


def train_step(model, *args):
    *state, data = args
    images = _images(data)
    backend = keras.backend.backend()
    if backend == "jax":
        return _jax_train_step(model, *state, images)
    if backend == "torch":
        return _torch_train_step(model, images)
    return _tensorflow_train_step(model, images)


def test_step(model, *args):
    *state, data = args
    images = _images(data)
    if keras.backend.backend() != "jax":
        return model.evaluate_batch(images)
    mapping = _state_mapping(model, state[0], with_optimizer=False)
    with keras.StatelessScope(state_mapping=mapping) as scope:
        logs = model.evaluate_batch(images)
    return logs, _read_state(scope, mapping, state[0])


def _tensorflow_train_step(model, images):
    import tensorflow as tf

    draws = model.draw(images)
    with tf.GradientTape(persistent=True) as tape:
        losses = model.step_losses(images, draws, model.generator, model.discriminator)
    g_gradients = tape.gradient(losses[0], model.generator.trainable_weights)
    d_gradients = tape.gradient(losses[1], model.discriminator.trainable_weights)
    del tape
    return model.finish_train_step(g_gradients + d_gradients, losses)


def _torch_train_step(model, images):
    import torch

    draws = model.draw(images)
    model.zero_grad()
    losses = model.step_losses(images, draws, model.generator, model.discriminator)
    g_weights = [w.value for w in model.generator.trainable_weights]
    d_weights = [w.value for w in model.discriminator.trainable_weights]
    g_gradients = torch.autograd.grad(losses[0], g_weights, retain_graph=True)
    d_gradients = torch.autograd.grad(losses[1], d_weights)
    with torch.no_grad():
        detached = [value.detach() for value in losses]
        return model.finish_train_step(list(g_gradients) + list(d_gradients), detached)


def _stateless(network, scope, weights, holder):
    """A callable(inputs, training) for ``network`` with ``weights``, keeping its
    non-trainable state (batch-norm statistics) in ``holder[0]`` from call to call."""

    def call(inputs, training):
        outputs, holder[0] = network.stateless_call(weights, holder[0], inputs, training=training)
        return outputs

    return call


def _jax_train_step(model, state, images):
    import jax
    from jax import numpy as jnp

    mapping = _state_mapping(model, state, with_optimizer=True)
    generator, discriminator = model.generator, model.discriminator
    with keras.StatelessScope(state_mapping=mapping) as scope:
        draws = model.draw(images)

        def values(variables):
            return [scope.get_current_value(v) for v in variables]

        def forward(g_weights, d_weights):
            g_state = [values(generator.non_trainable_variables)]
            d_state = [values(discriminator.non_trainable_variables)]
            losses = model.step_losses(
                images,
                draws,
                _stateless(generator, scope, g_weights, g_state),
                _stateless(discriminator, scope, d_weights, d_state),
            )
            g_loss, d_loss, real_logits, generated_logits = losses
            return (g_loss, d_loss), (real_logits, generated_logits, g_state[0], d_state[0])

        (g_loss, d_loss), pullback, aux = jax.vjp(
            forward,
            values(generator.trainable_variables),
            values(discriminator.trainable_variables),
            has_aux=True,
        )
        real_logits, generated_logits, g_state, d_state = aux
        one, zero = jnp.ones_like(g_loss), jnp.zeros_like(g_loss)
        g_gradients = pullback((one, zero))[0]
        d_gradients = pullback((zero, one))[1]
        for variable, value in zip(generator.non_trainable_variables, g_state):
            variable.assign(value)
        for variable, value in zip(discriminator.non_trainable_variables, d_state):
            variable.assign(value)

        def apply_gradients(gradients):
            optimizer, weights = model.optimizer, model.trained_weights
            new_weights, new_values = optimizer.stateless_apply(
                values(optimizer.variables), gradients, values(weights)
            )
            for variable, value in zip(weights, new_weights):
                variable.assign(value)
            for variable, value in zip(optimizer.variables, new_values):
                variable.assign(value)

        logs = model.finish_train_step(
            list(g_gradients) + list(d_gradients),
            (g_loss, d_loss, real_logits, generated_logits),
            apply_gradients=apply_gradients,
        )
    return logs, _read_state(scope, mapping, state)
