"""Training objectives: what the network predicts, how each example's loss is
weighted, and the EMA's decay over training.

Pure ``keras.ops`` functions of the rates; the model chooses among them by its
config (``prediction``, ``loss_weighting``, ``snr_gamma``, ``ema_warmup``).
Every schedule here is variance preserving (``signal_rate**2 + noise_rate**2 ==
1``, see :mod:`ddim_keras.core.schedules`), which the velocity formulas use.

With ``noisy = signal_rate * image + noise_rate * noise``:

* ``"noise"`` (the example's): the network outputs the noise; the image is
  ``(noisy - noise_rate * noise) / signal_rate``.
* ``"velocity"`` (Salimans & Ho 2022): it outputs
  ``velocity = signal_rate * noise - noise_rate * image``; then
  ``image = signal_rate * noisy - noise_rate * velocity`` and
  ``noise = noise_rate * noisy + signal_rate * velocity``. Neither divides by a
  rate, so both ends of the schedule are well posed.
* ``"image"``: it outputs the image; the noise is
  ``(noisy - signal_rate * image) / noise_rate``.

Whatever the prediction, :meth:`DiffusionModel.denoise` returns
``(pred_noises, pred_images)``, so every sampler, KID and command works
unchanged on any run.
"""

from keras import ops


def components(prediction, outputs, noisy_images, noise_rates, signal_rates):
    """``(pred_noises, pred_images)`` from the network's ``outputs`` under ``prediction``."""
    if prediction == "noise":
        # The example's expression, operation for operation (the parity test).
        pred_noises = outputs
        pred_images = (noisy_images - noise_rates * pred_noises) / signal_rates
    elif prediction == "velocity":
        pred_images = signal_rates * noisy_images - noise_rates * outputs
        pred_noises = noise_rates * noisy_images + signal_rates * outputs
    elif prediction == "image":
        pred_images = outputs
        pred_noises = (noisy_images - signal_rates * pred_images) / noise_rates
    else:
        raise ValueError(f"unknown prediction {prediction!r}")
    return pred_noises, pred_images


def target(prediction, images, noises, noise_rates, signal_rates):
    """What the network should output for clean ``images`` noised with ``noises``."""
    if prediction == "noise":
        return noises
    if prediction == "velocity":
        return signal_rates * noises - noise_rates * images
    if prediction == "image":
        return images
    raise ValueError(f"unknown prediction {prediction!r}")


def min_snr_weights(prediction, noise_rates, signal_rates, snr_gamma):
    """Min-SNR-gamma loss weights (Hang et al. 2023), one per example, shaped like the rates.

    With ``snr = signal_rate**2 / noise_rate**2``, the weight that makes each
    target's loss the image loss capped at ``snr_gamma``:
    ``min(snr, gamma) / snr`` for noise, ``min(snr, gamma) / (snr + 1)`` for
    velocity and ``min(snr, gamma)`` for images. (The paper derives them for
    the mean squared error; with the example's absolute error they weight the
    same way, which the experiments measure rather than assume.)
    """
    snr = ops.square(signal_rates) / ops.square(noise_rates)
    capped = ops.minimum(snr, snr_gamma)
    if prediction == "noise":
        return capped / snr
    if prediction == "velocity":
        return capped / (snr + 1.0)
    if prediction == "image":
        return capped
    raise ValueError(f"unknown prediction {prediction!r}")


#: diffusers' EMA warm-up (``EMAModel(use_ema_warmup=True)``): its defaults.
EMA_WARMUP_INV_GAMMA = 1.0
EMA_WARMUP_POWER = 2.0 / 3.0


def ema_decay(updates, max_decay):
    """The warmed-up EMA decay after ``updates`` optimizer steps, capped by ``max_decay``.

    ``1 - (1 + step / inv_gamma) ** -power`` with ``step = updates - 1``, as
    diffusers counts: the first update copies the network (decay 0), the decay
    then rises (0.37 after 2 steps, 0.9 after 31, 0.99 after 1,000) until it
    reaches the config's ``ema``. With a fixed 0.999 the average of the first
    thousand steps would be dominated by the random initial weights.
    """
    step = ops.maximum(ops.cast(updates, "float32") - 1.0, 0.0)
    decay = 1.0 - ops.power(1.0 + step / EMA_WARMUP_INV_GAMMA, -EMA_WARMUP_POWER)
    return ops.minimum(decay, max_decay)
