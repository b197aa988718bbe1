"""Training under tf.distribute strategies: per-replica random streams and step logs.

TensorFlow only: JAX distributes through ``keras.distribution`` (one program
over sharded arrays, whose draws need no per-replica seeds) and PyTorch trains
on one device; there :func:`replica_seeds` gives :class:`NoReplicas`.
One device needs none of this either: it draws from Keras' global generator,
like the example. With several replicas that generator cannot be used (it is a variable
created on first use, which a MultiWorkerMirroredStrategy step fails to create,
and whose per-replica copies would start from the same state), so each replica
draws statelessly from a seed made here.
"""

import keras
import numpy as np
from keras import ops

#: Seed slots per (step, replica): the step's own streams (noise, times, KID's
#: starting noise, the coins of ``augment="flip"``) are the offsets 0 to 3 after its seed.
STREAMS_PER_STEP = 4


def replica_seeds():
    """:class:`ReplicaSeeds` on TensorFlow, :class:`NoReplicas` on the other backends."""
    return ReplicaSeeds() if keras.backend.backend() == "tensorflow" else NoReplicas()


class NoReplicas:
    """Backends without tf.distribute: never a per-replica seed."""

    def seed(self, training, optimizer=None):
        return None


class ReplicaSeeds:
    """Stateless seeds for the random draws of each replica and step.

    A seed is (a base drawn once from NumPy's seeded generator, a step counter
    and the replica id). Training steps count with the optimizer's
    ``iterations``; evaluation steps, which do not move it, with a counter of
    their own and another base, so every validation batch draws its own noise
    and none repeats a training step's. Create it inside the strategy's scope:
    the evaluation counter is a variable that only the first replica advances.
    """

    def __init__(self):
        import tensorflow as tf

        self.base = None  # drawn on first use, after keras.utils.set_random_seed
        self.evaluation_steps = tf.Variable(
            0,
            dtype=tf.int64,
            trainable=False,
            name="evaluation_steps",
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )

    def seed(self, training, optimizer=None):
        """None on one replica; under a multi-replica strategy a stateless seed, shape (2,)."""
        import tensorflow as tf

        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas == 1:
            return None
        if self.base is None:
            # NumPy's global generator: keras.utils.set_random_seed seeds it.
            self.base = int(np.random.randint(0, 2**31 - 1))  # noqa: NPY002
        base = self.base
        replica = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.int32)
        if training:
            step = (
                tf.cast(optimizer.iterations, tf.int32)
                if optimizer is not None
                else tf.constant(0, tf.int32)
            )
        else:
            base = (base + 1) % (2**31 - 1)
            # assign_add returns the new value, the same on every replica.
            step = tf.cast(self.evaluation_steps.assign_add(1), tf.int32) - 1
        return tf.stack(
            [tf.constant(base, tf.int32), (step * replicas + replica) * STREAMS_PER_STEP]
        )

    def draws(self, images, times_shape, seed):
        """(noises like ``images``, diffusion times) of one replica's step, from its seed."""
        import tensorflow as tf

        noises = tf.random.stateless_normal(tf.shape(images), seed)
        diffusion_times = tf.random.stateless_uniform(times_shape, seed + [0, 1])
        return noises, diffusion_times

    def flip_coins(self, flips_shape, seed):
        """Uniform draws in [0, 1) deciding which images of a replica's step are mirrored."""
        import tensorflow as tf

        return tf.random.stateless_uniform(flips_shape, seed + [0, 3])

    def label_coins(self, coins_shape, seed):
        """Uniform draws in [0, 1) deciding which labels of a replica's step are dropped.

        Keyed by another base (the seed's first part + 2: evaluation uses + 1), so
        the streams above keep their numbers and an unconditional run its draws.
        """
        import tensorflow as tf

        return tf.random.stateless_uniform(coins_shape, seed + [2, 0])

    def kid_noise(self, images, seed):
        """The starting noise of the KID samples of one replica's evaluation step."""
        import tensorflow as tf

        return tf.random.stateless_normal(tf.shape(images), seed + [0, 2])


def step_logs(metrics):
    """{name: result} of ``metrics``, the value of a train/test step.

    Under a multi-worker MultiWorkerMirroredStrategy Keras 3.15 reduces each
    step's outputs with ``strategy.reduce(MEAN, value, axis=0)``, which fails on
    scalars; as shape (1,) tensors the values reduce to the same scalars (the
    metrics already hold the all-replica result).
    """
    logs = {metric.name: metric.result() for metric in metrics}
    if keras.backend.backend() != "tensorflow":
        return logs
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()
    if (
        isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        and getattr(strategy.extended, "_in_multi_worker_mode", lambda: False)()
    ):
        logs = {name: ops.reshape(value, (1,)) for name, value in logs.items()}
    return logs
