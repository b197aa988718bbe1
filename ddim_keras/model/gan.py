"""GANModel: the baseline diffusion is compared with (keras.io's data-efficient GAN).

The design of the keras.io example "Data-efficient GANs with Adaptive
Discriminator Augmentation" (by the DDIM example's author): a DCGAN-style
generator and discriminator (:mod:`ddim_keras.model.gan_networks`), the
non-saturating loss, an exponential moving average of the generator for
sampling and evaluation, and adaptive augmentation of everything the
discriminator sees (:mod:`ddim_keras.model.gan_augment`), its probability
steered by the discriminator's accuracy on real images.

The model speaks the package's sampling interface, so the callbacks, ``generate``
(grid, images), ``evaluate`` and ``sweep`` use it as they use a
:class:`~ddim_keras.model.diffusion_model.DiffusionModel`: ``initial_noise``
draws the latent vectors, ``compiled_reverse_diffusion`` is one call of the
EMA generator whatever the step count (one network call per image), and
``denormalize`` leaves its [0, 1] pixels as they are.
"""

import keras
import numpy as np
from keras import ops

from ddim_keras.core import PACKAGE, checks
from ddim_keras.core.config import DiffusionConfig, as_gan, is_gan
from ddim_keras.metrics.kid import KID
from ddim_keras.model import gan_steps
from ddim_keras.model.diffusion_model import ConfiguredModel
from ddim_keras.model.ema import update_ema
from ddim_keras.model.gan_augment import AdaptiveAugmenter
from ddim_keras.model.gan_networks import build_discriminator, build_generator
from ddim_keras.model.replicas import step_logs


def generator_loss(generated_logits):
    """Non-saturating generator loss: cross-entropy of "real" on the generated logits."""
    return ops.mean(ops.softplus(-generated_logits))


def discriminator_loss(real_logits, generated_logits):
    """Cross-entropy of real images as real and generated ones as generated, averaged."""
    losses = ops.concatenate(
        [ops.softplus(-ops.ravel(real_logits)), ops.softplus(ops.ravel(generated_logits))]
    )
    return ops.mean(losses)


@keras.saving.register_keras_serializable(package=PACKAGE)
class GANModel(ConfiguredModel, keras.Model):
    """Generator, EMA generator, discriminator and augmenter, trained adversarially.

    Example::

        config = as_gan(preset("shapes"))
        model = GANModel(config, kid_weights=None)
        model.compile()  # Adam(learning_rate, beta_1=gan_beta_1) for both networks
        model.fit(train_dataset, epochs=24)
        images = model.generate(18, seed=0)  # one generator call per image

    A config that is not a GAN's (``model`` "diffusion") is turned into one
    with :func:`~ddim_keras.core.config.as_gan`.
    """

    #: No data statistics: the generator outputs pixels in [0, 1] directly.
    normalizer = None
    #: What a run's curves.png plots (the losses and the augmentation probability); the
    #: first is what training watches for NaN.
    CURVE_KEYS = ("d_loss", "g_loss", "aug_p", "val_d_loss", "val_g_loss")

    def __init__(self, config=None, kid_weights="imagenet", kid_encoder=None, **kwargs):
        super().__init__(**kwargs)
        if config is None:
            config = DiffusionConfig()
        elif isinstance(config, dict):
            config = DiffusionConfig.from_dict(config)
        if not is_gan(config):
            config = as_gan(config)
        self.diffusion_config = config
        self.kid_weights = kid_weights
        self.generator = build_generator(config)
        self.ema_generator = keras.models.clone_model(self.generator)
        self.ema_generator.set_weights(self.generator.get_weights())
        self.discriminator = build_discriminator(config)
        self.augmenter = AdaptiveAugmenter(
            target_accuracy=config.gan_target_accuracy,
            integration_steps=config.gan_integration_steps,
            max_translation=config.gan_max_translation,
            max_rotation=config.gan_max_rotation,
            max_zoom=config.gan_max_zoom,
            name="augmenter",
        )
        self.generator_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.discriminator_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.real_accuracy = keras.metrics.Mean(name="real_acc")
        self.generated_accuracy = keras.metrics.Mean(name="gen_acc")
        self.augmentation_probability = keras.metrics.Mean(name="aug_p")
        self.kid = KID(
            name="kid",
            image_size=config.image_size,
            kid_image_size=config.kid_image_size,
            weights=kid_weights,
            encoder=kid_encoder,
        )
        # The latent draws of training and validation (a variable: JAX's steps carry it).
        self.seed_generator = keras.random.SeedGenerator(name="seed_generator")
        self.built = True

    # -- configuration ----------------------------------------------------------------

    @property
    def network(self):
        """The trained generator (the name the package's tools use for the trained network)."""
        return self.generator

    @property
    def ema_network(self):
        return self.ema_generator

    @property
    def trained_weights(self):
        """What the optimizer updates: the generator's weights, then the discriminator's."""
        return self.generator.trainable_weights + self.discriminator.trainable_weights

    def compile(self, optimizer=None, **kwargs):
        """Compile with Adam(learning_rate, beta_1=gan_beta_1) unless another is given.

        One optimizer updates both networks: Adam keeps its moments per weight,
        and both networks step once per train step, so this is exactly the
        example's two Adams of equal settings, with one set of variables that
        every backend's trainer carries.
        """
        config = self.diffusion_config
        if optimizer is None:
            optimizer = keras.optimizers.Adam(
                learning_rate=config.learning_rate, beta_1=config.gan_beta_1
            )
        super().compile(optimizer=optimizer, **kwargs)
        if not self.optimizer.built:
            self.optimizer.build(self.trained_weights)

    def compile_from_config(self, config):
        self.compile(**keras.saving.deserialize_keras_object(config))

    @property
    def metrics(self):
        trackers = [
            self.generator_loss_tracker,
            self.discriminator_loss_tracker,
            self.real_accuracy,
            self.generated_accuracy,
            self.augmentation_probability,
        ]
        return trackers + [self.kid] if self.diffusion_config.kid else trackers

    # -- sampling (the package's interface) -------------------------------------------

    def initial_noise(self, num_images, seed=None):
        """Latent vectors (num_images, gan_noise_size), standard normal, drawn with NumPy."""
        rng = np.random.default_rng(seed)
        return rng.standard_normal(
            (num_images, self.diffusion_config.gan_noise_size), dtype=np.float32
        )

    def denormalize(self, images):
        return ops.clip(ops.convert_to_tensor(images, "float32"), 0.0, 1.0)

    def compiled_reverse_diffusion(self, initial_noise, diffusion_steps=1, record=False, **ignored):
        """The EMA generator's images of ``initial_noise`` latents: one call, any step count."""
        if record:
            raise ValueError("a GAN has no reverse process to record")
        return self.ema_generator(ops.convert_to_tensor(initial_noise, "float32"), training=False)

    def generate(
        self, num_images, diffusion_steps=1, seed=None, batch_size=None, progress=None, **_
    ):
        """``num_images`` samples in [0, 1] (N, S, S, 3): one EMA generator call per image.

        Takes the diffusion model's arguments so that the callbacks and commands
        call both alike; ``diffusion_steps``, ``eta`` and the sampler's are ignored.
        """
        checks.check_at_least(num_images, 1, "num_images")
        if seed is None:
            seed = checks.draw_seed()
        latents = self.initial_noise(num_images, seed)
        batch_size = int(batch_size or self.diffusion_config.batch_size)
        parts = []
        for first in range(0, num_images, batch_size):
            images = self.compiled_reverse_diffusion(latents[first : first + batch_size])
            parts.append(ops.convert_to_numpy(self.denormalize(images)))
            if progress is not None:
                progress(min(first + batch_size, num_images), num_images)
        return np.concatenate(parts, axis=0)

    # -- training ---------------------------------------------------------------------

    def draw(self, real_images):
        """The random draws of one train step: latents and both augmentations' parameters."""
        batch = ops.shape(real_images)[0]
        latents = keras.random.normal(
            (batch, self.diffusion_config.gan_noise_size), seed=self.seed_generator
        )
        return latents, self.augmenter.draw(real_images), self.augmenter.draw(real_images)

    def step_losses(self, real_images, draws, generator, discriminator):
        """(generator loss, discriminator loss, real logits, generated logits) of one step.

        ``generator`` and ``discriminator`` are the networks or callables(inputs,
        training) standing for them (JAX's stateless calls). The generated images
        reach the discriminator through the augmentation, so the generator's
        gradient flows through it too.
        """
        latents, real_draws, generated_draws = draws
        generated = ops.cast(generator(latents, training=True), "float32")
        real = self.augmenter.apply(ops.cast(real_images, "float32"), real_draws)
        generated = self.augmenter.apply(generated, generated_draws)
        real_logits = ops.cast(discriminator(real, training=True), "float32")
        generated_logits = ops.cast(discriminator(generated, training=True), "float32")
        return (
            generator_loss(generated_logits),
            discriminator_loss(real_logits, generated_logits),
            real_logits,
            generated_logits,
        )

    def train_step(self, *args):
        """One step of both networks; each backend's way is in :mod:`ddim_keras.model.gan_steps`."""
        return gan_steps.train_step(self, *args)

    def finish_train_step(self, gradients, losses, apply_gradients=None):
        """Apply both networks' gradients, steer the augmentation, update the EMA and metrics."""
        g_loss, d_loss, real_logits, generated_logits = losses
        if apply_gradients is None:
            self.optimizer.apply(gradients, self.trained_weights)
        else:
            apply_gradients(gradients)
        self.augmenter.update(real_logits)
        update_ema(self.generator.weights, self.ema_generator.weights, self.diffusion_config.ema)
        self._track(g_loss, d_loss, real_logits, generated_logits)
        return step_logs(self._trackers())

    def _trackers(self):
        return self.metrics[:5]

    def _track(self, g_loss, d_loss, real_logits, generated_logits):
        self.generator_loss_tracker.update_state(g_loss)
        self.discriminator_loss_tracker.update_state(d_loss)
        self.real_accuracy.update_state(ops.mean(ops.cast(real_logits > 0.0, "float32")))
        self.generated_accuracy.update_state(ops.mean(ops.cast(generated_logits < 0.0, "float32")))
        self.augmentation_probability.update_state(self.augmenter.probability)

    def test_step(self, *args):
        """Validation losses and accuracies (no augmentation), and KID when configured."""
        return gan_steps.test_step(self, *args)

    def evaluate_batch(self, images):
        """Update the metrics with one validation batch; return their logs."""
        images = ops.cast(images, "float32")
        latents = keras.random.normal(
            (ops.shape(images)[0], self.diffusion_config.gan_noise_size),
            seed=self.seed_generator,
        )
        generated = ops.cast(self.ema_generator(latents, training=False), "float32")
        real_logits = self.discriminator(images, training=False)
        generated_logits = self.discriminator(generated, training=False)
        self._track(
            generator_loss(generated_logits),
            discriminator_loss(real_logits, generated_logits),
            real_logits,
            generated_logits,
        )
        if self.diffusion_config.kid:
            self.kid.update_state(images, generated)
        return step_logs(self.metrics)
