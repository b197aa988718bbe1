"""Progressive distillation (Salimans & Ho 2022, Algorithm 2): one step of the student for two
of the teacher's.

A round distils a teacher sampling with ``2 * K`` deterministic DDIM steps on the
example's time grid (``t = 1, 1 - 1/(2K), ..., 1/(2K)``) into a student that takes
``K`` steps (``t = 1, 1 - 1/K, ..., 1/K``) to the same images. For a training image
``x``, a student time ``t = i / K`` (``i`` uniform in ``1..K``) and noise ``e``,
``z_t = signal_rate(t) * x + noise_rate(t) * e``; the teacher takes two DDIM steps,
``t -> t - 1/(2K) -> t - 1/K``, landing on ``z_next``. The student's target is the
image ``x~`` whose one DDIM step from ``z_t`` lands on ``z_next`` too::

    x~ = (z_next - (noise_rate_next / noise_rate) * z_t)
         / (signal_rate_next - (noise_rate_next / noise_rate) * signal_rate)

At the last student step (``i = 1``) the example's sampler returns the predicted
image itself, not a further noisy image: there the target is the teacher's
prediction at ``t = 1/(2K)``, its own last call, so that the student's K-step
sample is the teacher's 2K-step sample. The student learns ``x~`` in its own
output space (velocity or image, the paper's choices: a noise prediction divides
by the signal rate, 0.02 at ``t = 1``, which a one-step student cannot afford).

:class:`DistillationModel` is a :class:`DiffusionModel` whose training batch carries
these targets instead of the data's: its train step, EMA, metrics and
checkpoints are the model's own, on every backend, and its checkpoints load into
a plain :class:`DiffusionModel` of the student's config. ``n_loss`` and ``i_loss``
then measure the student against the teacher's two steps (noise and image
implied by ``x~``), not against the data.
"""

import keras
from keras import ops

from ddim_keras.core import PACKAGE
from ddim_keras.core.untracked import Untracked
from ddim_keras.model import objectives
from ddim_keras.model.diffusion_model import DiffusionModel

#: What a student may predict: the paper's choices (velocity, image), or noise.
STUDENT_PREDICTIONS = ("velocity", "image", "noise")


def halving_rounds(teacher_steps, student_steps):
    """The step counts of each round's student: ``teacher_steps / 2, ..., student_steps``.

    ``teacher_steps / student_steps`` must be a power of two (at least 2).
    """
    teacher_steps, student_steps = int(teacher_steps), int(student_steps)
    if student_steps < 1 or teacher_steps <= student_steps or teacher_steps % student_steps:
        raise ValueError(f"{student_steps} does not divide {teacher_steps} into halvings")
    ratio = teacher_steps // student_steps
    if ratio & (ratio - 1):
        raise ValueError(f"{teacher_steps} / {student_steps} is not a power of two")
    rounds, steps = [], teacher_steps
    while steps > student_steps:
        steps //= 2
        rounds.append(steps)
    return rounds


def student_time_rates(schedule_fn, diffusion_times, student_steps):
    """``(noise_rates, signal_rates)`` at ``t``, ``t - 1/(2K)`` and ``t - 1/K``: three pairs."""
    half_step = 0.5 / float(student_steps)
    return [schedule_fn(diffusion_times - offset) for offset in (0.0, half_step, 2.0 * half_step)]


def two_step_target(teacher_denoise, schedule_fn, noisy_images, diffusion_times, student_steps):
    """The image ``x~`` a student's one DDIM step from ``noisy_images`` must predict.

    ``teacher_denoise(noisy_images, noise_rates, signal_rates) -> (pred_noises,
    pred_images)`` is the teacher; ``diffusion_times`` (batch, 1, 1, 1) are student
    times ``i / student_steps``. See the module's text for the formula; at
    ``i = 1`` the target is the teacher's prediction after its first step.
    """
    (
        (noise_rates, signal_rates),
        (mid_noise_rates, mid_signal_rates),
        (
            next_noise_rates,
            next_signal_rates,
        ),
    ) = student_time_rates(schedule_fn, diffusion_times, student_steps)
    # The teacher's two deterministic DDIM steps (eta = 0): re-noise its prediction.
    pred_noises, pred_images = teacher_denoise(noisy_images, noise_rates, signal_rates)
    mid_noisy_images = mid_signal_rates * pred_images + mid_noise_rates * pred_noises
    mid_pred_noises, mid_pred_images = teacher_denoise(
        mid_noisy_images, mid_noise_rates, mid_signal_rates
    )
    next_noisy_images = next_signal_rates * mid_pred_images + next_noise_rates * mid_pred_noises
    # The image whose single DDIM step from z_t lands on the teacher's z_next.
    ratio = next_noise_rates / noise_rates
    target_images = (next_noisy_images - ratio * noisy_images) / (
        next_signal_rates - ratio * signal_rates
    )
    last_step = diffusion_times < 1.5 / float(student_steps)
    return ops.where(last_step, mid_pred_images, target_images)


@keras.saving.register_keras_serializable(package=PACKAGE)
class DistillationModel(DiffusionModel):
    """The student of one distillation round; ``teacher`` is a DiffusionModel (its EMA samples).

    ``config`` is the student's (its ``prediction`` velocity or image);
    ``student_steps`` is K, the teacher taking 2K steps. The teacher is held out of
    Keras' tracking (:class:`~ddim_keras.core.untracked.Untracked`), so the student's
    checkpoints have a plain DiffusionModel's layout; its weights are not trained.
    """

    def __init__(self, config, teacher, student_steps, **kwargs):
        kwargs.setdefault("kid_weights", None)
        super().__init__(config, **kwargs)
        if self.diffusion_config.num_classes or teacher.diffusion_config.num_classes:
            raise ValueError("distillation of class-conditional models is not supported")
        self._teacher = Untracked(teacher)
        self.student_steps = int(student_steps)
        teacher.ema_network.trainable = False

    @property
    def teacher(self):
        return self._teacher.value

    def start_from(self, model):
        """Take ``model``'s EMA weights (both networks) and data statistics as the start."""
        weights = model.ema_network.get_weights()
        self.network.set_weights(weights)
        self.ema_network.set_weights(weights)
        self.normalizer.set_weights(model.normalizer.get_weights())

    def teacher_denoise(self, noisy_images, noise_rates, signal_rates):
        """The teacher's ``(pred_noises, pred_images)``, by its own EMA network and objective."""
        return self.teacher.denoise(noisy_images, noise_rates, signal_rates, training=False)

    def draw_student_times(self, batch_size):
        """``i / K`` for ``i`` uniform in ``1..K``, shaped (batch, 1, 1, 1)."""
        indices = keras.random.randint(
            (batch_size, 1, 1, 1), 1, self.student_steps + 1, seed=self.seed_generator
        )
        return ops.cast(indices, "float32") / float(self.student_steps)

    def noisy_batch(self, images, training, labels=None):
        """(target images, their noises, noisy images, noise_rates, signal_rates).

        The structure of :meth:`DiffusionModel.noisy_batch`, the data's images
        replaced by the teacher's two-step targets ``x~`` and the noises by those
        ``x~`` implies, so that the model's losses train the student on them.
        """
        images = self.normalizer(images, training=False)
        noises = keras.random.normal(ops.shape(images), seed=self.seed_generator)
        diffusion_times = self.draw_student_times(ops.shape(images)[0])
        if training and self.diffusion_config.augment == "flip":
            images = self._random_flips(images)
        noise_rates, signal_rates = self.diffusion_schedule(diffusion_times)
        noisy_images = signal_rates * images + noise_rates * noises
        target_images = ops.stop_gradient(
            two_step_target(
                self.teacher_denoise,
                self.diffusion_schedule,
                noisy_images,
                diffusion_times,
                self.student_steps,
            )
        )
        target_noises = (noisy_images - signal_rates * target_images) / noise_rates
        return target_images, target_noises, noisy_images, noise_rates, signal_rates

    def step_losses(self, batch, network):
        """Per-pixel (objective, noise_loss, image_loss) against the teacher's targets.

        The objective is the paper's: the squared error of the predicted image
        against ``x~`` weighted by ``max(SNR, 1)`` ("truncated SNR" weighting),
        whatever the network outputs. For a velocity student it is the squared
        velocity error up to the weight's truncation; for a noise student it
        weighs the image error at high noise, which a noise loss would leave
        almost unweighted (its image is the noise divided by the signal rate).
        """
        target_images, target_noises, noisy_images, noise_rates, signal_rates = batch
        outputs = self.network_outputs(noisy_images, noise_rates, True, network)
        pred_noises, pred_images = objectives.components(
            self.diffusion_config.prediction, outputs, noisy_images, noise_rates, signal_rates
        )
        noise_loss = self.loss_fn(target_noises, pred_noises)
        image_loss = self.loss_fn(target_images, pred_images)
        weights = ops.maximum(ops.square(signal_rates) / ops.square(noise_rates), 1.0)
        # (batch, 1, 1, 1) -> (batch, 1, 1): the loss has no channel axis.
        return image_loss * ops.squeeze(weights, axis=-1), noise_loss, image_loss

    def get_config(self):
        # Saved as what it leaves behind: a DiffusionModel of the student's config.
        return DiffusionModel.get_config(self)


def student_config(teacher_config, prediction, steps, rounds, teacher_run, loss="mse"):
    """The config a student of ``teacher_config`` trains and samples with.

    The teacher's architecture and schedule; ``prediction`` (velocity, image or
    noise), the squared error of the paper, no KID during training, and grids of
    its own step count. The EMA warms up (``ema_warmup``): a round is short, and a
    fixed decay of 0.99 still holds half of the round's starting weights after 62
    steps. ``steps``, ``rounds`` and ``teacher_run`` record what it was distilled
    for, from whom.
    """
    return teacher_config.replace(
        prediction=prediction,
        loss=loss,
        loss_weighting="none",
        kid=False,
        ema_warmup=True,
        plot_diffusion_steps=steps,
        kid_diffusion_steps=steps,
        distilled_steps=steps,
        distillation_rounds=rounds,
        teacher_run=teacher_run,
    )
