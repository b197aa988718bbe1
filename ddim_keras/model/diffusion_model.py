"""DiffusionModel: the keras.io example's model, built on construction.

Composes the pieces: ``normalizer`` (data statistics), ``network`` (trained
weights), ``ema_network`` (their exponential moving average, used for
sampling and evaluation), a schedule from :mod:`ddim_keras.core.schedules`, the
sampler from :mod:`ddim_keras.sampling` and the KID metric. The public names
and meanings are the example's, so code written against it ports by changing
imports; the attribute layout is the example's too, so its ``.weights.h5``
checkpoints load here.
"""

import keras
from keras import layers, ops

from ddim_keras.core import PACKAGE
from ddim_keras.core.config import DiffusionConfig
from ddim_keras.core.schedules import get_schedule
from ddim_keras.core.untracked import Untracked
from ddim_keras.metrics.kid import KID
from ddim_keras.model import objectives, train_steps
from ddim_keras.model.conditioning import drop_labels, guided_outputs, null_labels
from ddim_keras.model.editing import ImageEditing
from ddim_keras.model.ema import update_ema
from ddim_keras.model.generation import Generation
from ddim_keras.model.network import build_network
from ddim_keras.model.replicas import replica_seeds, step_logs
from ddim_keras.model.sampler_cache import SamplerCache
from ddim_keras.sampling.loops import reverse_diffusion_graph

LOSS_FUNCTIONS = {
    "mae": keras.losses.mean_absolute_error,
    "mse": keras.losses.mean_squared_error,
}


class ConfiguredModel:
    """What a model built from a :class:`DiffusionConfig` saves and is rebuilt from
    (``.keras`` files, safe mode): its name, config and KID weights (a path or name)."""

    @property
    def image_size(self):
        return self.diffusion_config.image_size

    def get_config(self):
        return {
            "name": self.name,
            "config": self.diffusion_config.to_dict(),
            "kid_weights": self.kid_weights
            if isinstance(self.kid_weights, (str, type(None)))
            else None,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        model_config = DiffusionConfig.from_dict(config.pop("config"))
        return cls(config=model_config, **config)


@keras.saving.register_keras_serializable(package=PACKAGE)
class DiffusionModel(ConfiguredModel, Generation, ImageEditing, keras.Model):
    """Denoising diffusion model with DDIM (and DDPM) sampling.

    Example::

        model = DiffusionModel(DiffusionConfig())
        model.compile()  # AdamW(learning_rate, weight_decay) from the config
        model.normalizer.adapt(train_dataset)
        model.fit(train_dataset, validation_data=val_dataset, epochs=50)
        images = model.generate(num_images=18, diffusion_steps=20)

    ``inpaint`` and ``image_to_image`` edit given images (see
    :mod:`ddim_keras.model.editing`); ``generate`` and its loops are in
    :mod:`ddim_keras.model.generation`. With ``num_classes`` > 0 the model is
    class-conditional: it trains on (images, labels) and samples with
    classifier-free guidance (:mod:`ddim_keras.model.conditioning`).
    """

    def __init__(self, config=None, kid_weights="imagenet", kid_encoder=None, **kwargs):
        super().__init__(**kwargs)
        if config is None:
            config = DiffusionConfig()
        elif isinstance(config, dict):
            config = DiffusionConfig.from_dict(config)
        self.diffusion_config = config
        self.kid_weights = kid_weights
        self._schedule_fn = get_schedule(config.schedule)

        shape = (config.image_size, config.image_size, 3)
        # float32 whatever the global dtype policy: the data statistics and the
        # schedule math stay in full precision under mixed precision.
        self.normalizer = layers.Normalization(dtype="float32")
        self.network = build_network(config)
        self.ema_network = keras.models.clone_model(self.network)
        # The EMA starts from the network's own initial weights rather than a
        # second random draw, so early samples are not dominated by noise.
        self.ema_network.set_weights(self.network.get_weights())

        # Metrics live from construction (the example made them in compile());
        # the attribute names are the example's, which keeps checkpoints compatible.
        self.noise_loss_tracker = keras.metrics.Mean(name="n_loss")
        self.image_loss_tracker = keras.metrics.Mean(name="i_loss")
        self.kid = KID(
            name="kid",
            image_size=config.image_size,
            kid_image_size=config.kid_image_size,
            weights=kid_weights,
            encoder=kid_encoder,
        )

        # Built now, normalizer included, so load_weights/save_weights and
        # ModelCheckpoint work before the first fit.
        self.normalizer.build((None,) + shape)
        self.built = True
        # Parts beside the example's model, held out of Keras' tracking so the
        # checkpoint layout stays the example's: the random streams of several
        # replicas, and the reduced-precision copies and compiled loops of sampling.
        self._replica_seeds = Untracked(replica_seeds())
        self._samplers = Untracked(SamplerCache(config))
        # A compiled JAX step cannot draw from Keras' global generator: its draws
        # come from this generator, whose state travels in the step's state (not
        # in checkpoints: Keras saves no seed state). Elsewhere None: the global
        # generator, as in the example.
        self.seed_generator = (
            keras.random.SeedGenerator(name="seed_generator")
            if keras.backend.backend() == "jax"
            else None
        )

    # -- configuration -------------------------------------------------------------

    def compile(self, optimizer=None, loss=None, **kwargs):
        """Compile with the config's AdamW and loss unless others are given."""
        config = self.diffusion_config
        if optimizer is None:
            optimizer = keras.optimizers.AdamW(
                learning_rate=config.learning_rate, weight_decay=config.weight_decay
            )
        # The loss is a plain function of (targets, predictions); it is kept out
        # of Keras' compiled loss because train_step computes it itself.
        self.loss_fn = loss if loss is not None else LOSS_FUNCTIONS[config.loss]
        if self.network.dtype_policy.name == "mixed_float16" and not isinstance(
            optimizer, keras.optimizers.LossScaleOptimizer
        ):
            # float16 gradients underflow without loss scaling; train_step scales
            # the loss with optimizer.scale_loss and apply() unscales the gradients.
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        super().compile(optimizer=optimizer, **kwargs)
        # The optimizer updates the network alone. Built now for those weights:
        # Keras' JAX trainer would otherwise build it for every trainable weight
        # of the model, ema_network's included, and its checkpoints would hold
        # twice the moments and load on no other backend.
        if not self.optimizer.built:
            self.optimizer.build(self.network.trainable_weights)

    def compile_from_config(self, config):
        """Recompile a model loaded from a ``.keras`` file, optimizer included.

        Keras skips this for models that override ``compile``; without it a
        loaded model could not continue training.
        """
        config = keras.saving.deserialize_keras_object(config)
        # compile() builds the optimizer for the weights train_step updates, so
        # that the saved optimizer state has variables to load into.
        self.compile(**config)

    @property
    def metrics(self):
        if self.diffusion_config.kid:
            return [self.noise_loss_tracker, self.image_loss_tracker, self.kid]
        return [self.noise_loss_tracker, self.image_loss_tracker]

    # -- the example's building blocks ---------------------------------------------

    def denormalize(self, images):
        # Back from zero mean / unit variance to pixel values in [0, 1].
        images = ops.convert_to_tensor(images, "float32")
        images = self.normalizer.mean + images * self.normalizer.variance**0.5
        return ops.clip(images, 0.0, 1.0)

    def diffusion_schedule(self, diffusion_times):
        return self._schedule_fn(
            diffusion_times,
            self.diffusion_config.min_signal_rate,
            self.diffusion_config.max_signal_rate,
        )

    def network_outputs(self, noisy_images, noise_rates, training, network=None, labels=None):
        """The network's raw output: noise, velocity or image, by the config's ``prediction``.

        ``labels``: a conditional network's class per image (None: "no class").
        """
        # The exponential moving average weights are used for evaluation.
        if network is None:
            network = self.network if training else self.ema_network
        inputs = [noisy_images, noise_rates**2]
        if self.diffusion_config.num_classes:
            if labels is None:
                labels = null_labels(ops.shape(noisy_images)[0], self.diffusion_config.num_classes)
            inputs.append(ops.cast(labels, "int32"))
        outputs = network(inputs, training=training)
        # Under a mixed precision policy the network computes in float16/bfloat16;
        # its output, the losses and the sampler stay float32.
        return ops.cast(outputs, "float32")

    def denoise(
        self,
        noisy_images,
        noise_rates,
        signal_rates,
        training,
        network=None,
        labels=None,
        guidance=None,
    ):
        """``(pred_noises, pred_images)`` of noisy images, whatever the network predicts.

        A conditional model's ``labels`` (None: "no class"); with ``guidance`` w
        as well, classifier-free guidance from one doubled network call (see
        :func:`~ddim_keras.model.conditioning.guided_outputs`). An unconditional
        model ignores both.
        """
        if guidance is None or labels is None or not self.diffusion_config.num_classes:
            outputs = self.network_outputs(noisy_images, noise_rates, training, network, labels)
        else:
            outputs = guided_outputs(
                lambda x, rates, y: self.network_outputs(x, rates, training, network, y),
                noisy_images,
                noise_rates,
                labels,
                guidance,
                self.diffusion_config.num_classes,
            )
        # Predict one component; the other follows from the noisy image.
        return objectives.components(
            self.diffusion_config.prediction, outputs, noisy_images, noise_rates, signal_rates
        )

    def _denoise_eval(self, noisy_images, noise_rates, signal_rates):
        return self.denoise(noisy_images, noise_rates, signal_rates, training=False)

    # -- training --------------------------------------------------------------------

    def noisy_batch(self, images, training, labels=None):
        """(images, noises, noisy_images, noise_rates, signal_rates) of one step's batch.

        A conditional model's ``labels`` follow as a sixth element, in training
        each one replaced by "no class" with probability ``label_dropout``.
        """
        # Normalize images to unit variance, like the noises they are mixed with.
        images = self.normalizer(images, training=training)
        noises, diffusion_times = self._draw_noises(images, training)
        if training and self.diffusion_config.augment == "flip":
            # Drawn after the example's draws, so those stay the same numbers.
            images = self._random_flips(images)
        noise_rates, signal_rates = self.diffusion_schedule(diffusion_times)
        noisy_images = signal_rates * images + noise_rates * noises
        if labels is None:
            return images, noises, noisy_images, noise_rates, signal_rates
        if training:
            # Drawn after every other draw, so those stay the same numbers.
            labels = self._drop_labels(labels)
        return images, noises, noisy_images, noise_rates, signal_rates, labels

    def _draw_noises(self, images, training):
        """The random draws of one step: (noises like ``images``, diffusion_times).

        One TensorFlow or PyTorch device draws from Keras' global generator, in
        the example's order (noises first, then uniform times). JAX draws from
        the model's own ``seed_generator`` in the same order. Several
        TensorFlow replicas draw statelessly from a seed per replica and step
        (see :mod:`ddim_keras.model.replicas`).
        """
        batch_size = ops.shape(images)[0]  # from the data: a last partial batch works
        times_shape = (batch_size, 1, 1, 1)
        seed = self._replica_seed(training)
        if seed is not None:
            return self._replica_seeds.value.draws(images, times_shape, seed)
        seed = self.seed_generator
        noises = keras.random.normal(shape=ops.shape(images), seed=seed)
        diffusion_times = keras.random.uniform(shape=times_shape, minval=0.0, maxval=1.0, seed=seed)
        return noises, diffusion_times

    def _random_flips(self, images):
        """Each image mirrored left-right with probability 1/2 (``augment="flip"``)."""
        flips_shape = (ops.shape(images)[0], 1, 1, 1)
        seed = self._replica_seed(training=True)
        if seed is not None:
            coins = self._replica_seeds.value.flip_coins(flips_shape, seed)
        else:
            coins = keras.random.uniform(flips_shape, seed=self.seed_generator)
        return ops.where(coins < 0.5, ops.flip(images, axis=2), images)

    def _drop_labels(self, labels):
        """Each label replaced by "no class" with probability ``label_dropout``."""
        coins_shape = (ops.shape(labels)[0],)
        seed = self._replica_seed(training=True)
        if seed is not None:
            coins = self._replica_seeds.value.label_coins(coins_shape, seed)
        else:
            coins = keras.random.uniform(coins_shape, seed=self.seed_generator)
        config = self.diffusion_config
        return drop_labels(labels, coins, config.label_dropout, config.num_classes)

    def _replica_seed(self, training):
        """None on one replica; a stateless seed per replica and step under a strategy."""
        return self._replica_seeds.value.seed(training, self.optimizer)

    def step_losses(self, batch, network):
        """Per-pixel (objective, noise_loss, image_loss), each (batch, height, width).

        ``objective`` is what training differentiates: the loss of the network's
        output against its target (noise, velocity or image), weighted per
        example by ``loss_weighting``. With the example's settings (noise,
        unweighted) it is ``noise_loss`` itself. ``network`` is the network, or a
        callable(inputs, training) standing for it (JAX's stateless call).
        """
        images, noises, noisy_images, noise_rates, signal_rates, *labels = batch
        config = self.diffusion_config
        # Train the network to separate noisy images into their components.
        outputs = self.network_outputs(
            noisy_images, noise_rates, True, network, labels[0] if labels else None
        )
        pred_noises, pred_images = objectives.components(
            config.prediction, outputs, noisy_images, noise_rates, signal_rates
        )
        noise_loss = self.loss_fn(noises, pred_noises)  # a metric (the example's training loss)
        image_loss = self.loss_fn(images, pred_images)  # only used as a metric
        if config.prediction == "noise":
            objective = noise_loss
        else:
            targets = objectives.target(
                config.prediction, images, noises, noise_rates, signal_rates
            )
            objective = self.loss_fn(targets, outputs)
        if config.loss_weighting == "min_snr":
            weights = objectives.min_snr_weights(
                config.prediction, noise_rates, signal_rates, config.snr_gamma
            )
            # (batch, 1, 1, 1) -> (batch, 1, 1): the loss has no channel axis.
            objective = objective * ops.squeeze(weights, axis=-1)
        return objective, noise_loss, image_loss

    def train_step(self, *args):
        """One optimizer step; each backend's way is in :mod:`ddim_keras.model.train_steps`."""
        return train_steps.train_step(self, *args)

    def finish_train_step(
        self, gradients, gradient_factor, noise_loss, image_loss, apply_gradients=None
    ):
        """Apply the gradients, update the loss metrics and the EMA; return the step's logs.

        ``apply_gradients(gradients)`` replaces ``optimizer.apply`` where a
        backend needs its own (JAX's stateless update).
        """
        if gradient_factor is not None:
            gradients = [gradient * gradient_factor for gradient in gradients]
        if apply_gradients is None:
            self.optimizer.apply(gradients, self.network.trainable_weights)
        else:
            apply_gradients(gradients)
        # The metrics average every pixel's loss, as the example's do.
        self.noise_loss_tracker.update_state(noise_loss)
        self.image_loss_tracker.update_state(image_loss)
        self.update_ema()
        # KID is not measured while training: it is too expensive.
        return step_logs((self.noise_loss_tracker, self.image_loss_tracker))

    def update_ema(self):
        """Move every EMA weight (batch-norm statistics included) towards the network's.

        See :func:`ddim_keras.model.ema.update_ema`. (The weight pairs are not cached on
        the model: Keras would track such a list as the model's own weights and
        change the checkpoint layout.)
        """
        config = self.diffusion_config
        ema = (
            objectives.ema_decay(self.optimizer.iterations, config.ema)
            if config.ema_warmup
            else config.ema
        )
        update_ema(self.network.weights, self.ema_network.weights, ema)

    def test_step(self, *args):
        """Validation losses (and KID when configured); see :mod:`ddim_keras.model.train_steps`."""
        return train_steps.test_step(self, *args)

    def evaluate_batch(self, images, labels=None):
        """Update the metrics with one validation batch; return their logs.

        A conditional model's losses use the batch's ``labels``; its KID
        samples are unconditional.
        """
        images, noises, noisy_images, noise_rates, signal_rates = self.noisy_batch(
            images, training=False
        )
        pred_noises, pred_images = self.denoise(
            noisy_images, noise_rates, signal_rates, training=False, labels=labels
        )
        # The metrics average every pixel's loss, as the example's do.
        self.noise_loss_tracker.update_state(self.loss_fn(noises, pred_noises))
        self.image_loss_tracker.update_state(self.loss_fn(images, pred_images))

        if self.diffusion_config.kid:
            # KID between real and generated images; expensive, so few steps.
            real_images = self.denormalize(images)
            seed = self._replica_seed(training=False)
            if seed is not None:
                initial_noise = self._replica_seeds.value.kid_noise(images, seed)
            else:
                initial_noise = keras.random.normal(
                    shape=ops.shape(images), seed=self.seed_generator
                )
            generated_images = self.denormalize(
                reverse_diffusion_graph(
                    self._denoise_eval,
                    self.diffusion_schedule,
                    initial_noise,
                    self.diffusion_config.kid_diffusion_steps,
                )
            )
            self.kid.update_state(real_images, generated_images)
        return step_logs(self.metrics)
