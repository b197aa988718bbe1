"""The train and test steps of each Keras backend: the model's math, differentiated each one's way.

The model computes the step (draws, losses, optimizer, EMA, metrics) with
``keras.ops`` in :meth:`DiffusionModel.noisy_batch`, :meth:`~DiffusionModel.step_losses`
and :meth:`~DiffusionModel.finish_train_step`; what differs between backends is
only how the gradients are taken and how state travels:

* TensorFlow: ``tf.GradientTape`` around the forward pass (the example's);
* PyTorch: ``backward()`` on the loss, gradients read from the weights;
* JAX: Keras calls ``train_step(state, data)`` and expects a pure function, so
  the step runs inside a :class:`keras.StatelessScope` that maps every model,
  optimizer and metric variable to the values in ``state``; the network's
  forward pass is a ``stateless_call`` differentiated by ``jax.value_and_grad``,
  and the new state is read back from the scope.
"""

import keras
from keras import ops


def _inputs(model, data):
    """(images,) or, for a conditional model, (images, labels).

    A dataset may yield images alone or (images,) / (images, targets) tuples; an
    unconditional model ignores the targets.
    """
    images, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
    if not model.diffusion_config.num_classes:
        return (images,)
    if labels is None:
        raise ValueError(
            "a class-conditional model (num_classes > 0) trains on (images, labels) "
            "batches; this dataset yields images only."
        )
    return (images, labels)


def train_step(model, *args):
    """``model.train_step`` for the active backend (JAX passes ``state`` first)."""
    *state, data = args
    args = (*state, *_inputs(model, data))
    backend = keras.backend.backend()
    if backend == "jax":
        return _jax_train_step(model, *args)
    if backend == "torch":
        return _torch_train_step(model, *args)
    return _tensorflow_train_step(model, *args)


def test_step(model, *args):
    """``model.test_step`` for the active backend: no gradients, so only JAX's state differs."""
    *state, data = args
    args = (*state, *_inputs(model, data))
    if keras.backend.backend() == "jax":
        return _jax_test_step(model, *args)
    return model.evaluate_batch(*args)


def differentiated_loss(model, per_pixel_loss):
    """(the loss to differentiate, a factor for its float32 gradients or None).

    The example differentiates the unreduced per-pixel loss, which
    TensorFlow's tape sums, so its gradients are those of the SUM over
    pixels and images, not of their mean. AdamW is scale-invariant only up
    to its epsilon, which would damp a mean's ~260,000x smaller gradients,
    so the sum is what reproduces the example's updates (on every backend).
    Under a tf.distribute strategy the optimizer sums the replicas'
    gradients, and the sum of the replicas' sums is the global batch's sum:
    no rescaling.

    The gradient wanted is that of ``sum(per_pixel_loss)``. Under a
    LossScaleOptimizer (mixed_float16) the sum's gradients overflow float16
    inside the network (measured at 64 px, batch 16: every step skipped and
    the loss scale halved each time), so there the tape differentiates the
    scaled MEAN, which float16 holds, and the float32 gradients are
    multiplied back by the number of terms: the same gradient, up to
    rounding. float32 and bfloat16 (float32's range) differentiate the sum
    itself, which keeps float32 bit-identical to the example.
    """
    if isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer):
        count = ops.cast(ops.size(per_pixel_loss), "float32")
        return model.optimizer.scale_loss(ops.mean(per_pixel_loss)), count
    return ops.sum(per_pixel_loss), None


def _noisy_training_batch(model, images, labels):
    # Labels only for a labelled batch: a subclass that overrides the example-style
    # noisy_batch(images, training) keeps working on unconditional data.
    if labels is None:
        return model.noisy_batch(images, training=True)
    return model.noisy_batch(images, training=True, labels=labels)


def _tensorflow_train_step(model, images, labels=None):
    import tensorflow as tf

    batch = _noisy_training_batch(model, images, labels)
    with tf.GradientTape() as tape:
        objective, noise_loss, image_loss = model.step_losses(batch, model.network)
        training_loss, gradient_factor = differentiated_loss(model, objective)
    gradients = tape.gradient(training_loss, model.network.trainable_weights)
    return model.finish_train_step(gradients, gradient_factor, noise_loss, image_loss)


def _torch_train_step(model, images, labels=None):
    import torch

    batch = _noisy_training_batch(model, images, labels)
    model.zero_grad()
    objective, noise_loss, image_loss = model.step_losses(batch, model.network)
    training_loss, gradient_factor = differentiated_loss(model, objective)
    training_loss.backward()
    gradients = [weight.value.grad for weight in model.network.trainable_weights]
    # The update, EMA and metrics are not part of any gradient.
    with torch.no_grad():
        return model.finish_train_step(
            gradients, gradient_factor, noise_loss.detach(), image_loss.detach()
        )


def _state_mapping(model, state, with_optimizer):
    """(variable, value) pairs of the state Keras' JAX trainer passes, in its order."""
    groups = [model.trainable_variables, model.non_trainable_variables]
    if with_optimizer:
        groups.append(model.optimizer.variables)
    groups.append(model.metrics_variables)
    return [pair for variables, values in zip(groups, state) for pair in zip(variables, values)]


def _read_state(scope, mapping, state):
    # The same structure as ``state``, each value as the scope last saw it.
    values = iter([scope.get_current_value(variable) for variable, _ in mapping])
    return tuple([next(values) for _ in group] for group in state)


def _jax_train_step(model, state, images, labels=None):
    import jax

    mapping = _state_mapping(model, state, with_optimizer=True)
    network = model.network
    with keras.StatelessScope(state_mapping=mapping) as scope:
        batch = _noisy_training_batch(model, images, labels)
        weights = [scope.get_current_value(v) for v in network.trainable_variables]
        others = [scope.get_current_value(v) for v in network.non_trainable_variables]

        def losses(weights):
            updated = []

            def forward(inputs, training):
                outputs, new_others = network.stateless_call(
                    weights, others, inputs, training=training
                )
                updated.append(new_others)
                return outputs

            objective, noise_loss, image_loss = model.step_losses(batch, forward)
            training_loss, gradient_factor = differentiated_loss(model, objective)
            # Batch-norm statistics and the reported losses leave through aux.
            return training_loss, (noise_loss, image_loss, updated[0], gradient_factor)

        (_, aux), gradients = jax.value_and_grad(losses, has_aux=True)(weights)
        noise_loss, image_loss, new_others, gradient_factor = aux
        for variable, value in zip(network.non_trainable_variables, new_others):
            variable.assign(value)
        logs = model.finish_train_step(
            gradients,
            gradient_factor,
            noise_loss,
            image_loss,
            apply_gradients=lambda g: _stateless_apply(model, scope, g),
        )
    return logs, _read_state(scope, mapping, state)


def _stateless_apply(model, scope, gradients):
    """The optimizer's update as JAX needs it: ``stateless_apply`` on the scope's values.

    (``optimizer.apply`` would do for a plain optimizer, but a LossScaleOptimizer
    assigns its variables inside ``ops.cond`` branches, which under a JAX trace
    leak tracers; its ``stateless_apply`` is written for this case.)
    """
    optimizer, weights = model.optimizer, model.network.trainable_variables
    new_weights, new_optimizer_values = optimizer.stateless_apply(
        [scope.get_current_value(v) for v in optimizer.variables],
        gradients,
        [scope.get_current_value(v) for v in weights],
    )
    for variable, value in zip(weights, new_weights):
        variable.assign(value)
    for variable, value in zip(optimizer.variables, new_optimizer_values):
        variable.assign(value)


def _jax_test_step(model, state, images, labels=None):
    mapping = _state_mapping(model, state, with_optimizer=False)
    with keras.StatelessScope(state_mapping=mapping) as scope:
        logs = model.evaluate_batch(images, labels)
    return logs, _read_state(scope, mapping, state)
