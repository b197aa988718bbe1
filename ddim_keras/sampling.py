"""Sampler math: one reverse-diffusion step, as a pure function.

The generalised update of the DDIM paper (Song et al. 2020, Eq. 12, with the
noise scale sigma of Eq. 16), written with this package's rates: a noisy image
is ``signal_rate * image + noise_rate * noise`` with ``signal_rate**2 +
noise_rate**2 == 1`` (signal_rate = sqrt(alpha) in the paper's notation).

``eta = 0`` is deterministic DDIM, the keras.io example's sampler; ``eta = 1``
uses the DDPM posterior variance. Nothing here knows about a network.
"""

from keras import ops


def step_sigmas(signal_rates, next_signal_rates, eta):
    """Standard deviation of the fresh noise added in a step (paper Eq. 16).

    sigma = eta * sqrt((1 - a_next) / (1 - a)) * sqrt(1 - a / a_next), with
    a = signal_rate**2 the paper's alpha at the current and next time.
    """
    alphas = ops.square(signal_rates)
    next_alphas = ops.square(next_signal_rates)
    variance = (1.0 - next_alphas) / (1.0 - alphas) * (1.0 - alphas / next_alphas)
    # Rounding can make the variance a hair below zero when the rates are equal.
    return eta * ops.sqrt(ops.maximum(variance, 0.0))


def reverse_step(pred_noises, pred_images, next_noise_rates, next_signal_rates,
                 sigmas=0.0, fresh_noises=None):
    """Remix the predicted components at the next noise level.

    The direction pointing to the noisy image keeps a noise rate of
    sqrt(next_noise_rate**2 - sigma**2); the removed variance sigma**2 is put
    back as fresh Gaussian noise. With sigma = 0 this is the example's
    ``next_signal_rates * pred_images + next_noise_rates * pred_noises``.
    """
    direction_rates = ops.sqrt(ops.maximum(ops.square(next_noise_rates) - ops.square(sigmas), 0.0))
    next_noisy_images = next_signal_rates * pred_images + direction_rates * pred_noises
    if fresh_noises is not None:
        next_noisy_images = next_noisy_images + sigmas * fresh_noises
    return next_noisy_images


def ddim_step(noisy_images, pred_noises, pred_images, noise_rates, signal_rates,
              next_noise_rates, next_signal_rates, eta=0.0, fresh_noises=None):
    """One full reverse step from time t to the next (smaller) time.

    ``noisy_images`` and ``noise_rates`` are accepted so the signature mirrors
    the paper's update; the prediction already carries what is needed from them.
    """
    del noisy_images, noise_rates
    sigmas = step_sigmas(signal_rates, next_signal_rates, eta)
    # Without fresh noise this is the mean of the eta-step (z = 0 in Eq. 12),
    # whose direction term still shrinks by sigma.
    return reverse_step(pred_noises, pred_images, next_noise_rates, next_signal_rates,
                        sigmas, fresh_noises)


def step_times(step, diffusion_steps):
    """Diffusion time at the start of step ``step`` of ``diffusion_steps`` (1 -> 0)."""
    return 1.0 - ops.cast(step, "float32") / ops.cast(diffusion_steps, "float32")


# -- the reverse process ----------------------------------------------------------
#
# ``denoise_fn(noisy_images, noise_rates, signal_rates) -> (pred_noises, pred_images)``
# and ``schedule_fn(diffusion_times) -> (noise_rates, signal_rates)`` are passed in,
# so the loops below know neither the network nor the schedule.


#: Fresh-noise streams are keyed by (seed, first image of the chunk, step); the
#: step takes the low 32 bits of the second seed word, so no two keys collide.
STEP_BITS = 32


def fresh_noise_seed(seed, first_image, step):
    """The stateless seed of the fresh noise of one step of one chunk.

    ``[seed, first_image * 2**32 + step]`` as int64: distinct for every
    (seed, first image, step), so two calls whose seeds differ never share a
    chunk's noise (seeding with ``seed + first_image`` made seed 0's second
    chunk of 8 and seed 8's first chunk identical).
    """
    import tensorflow as tf

    stream = tf.cast(first_image, tf.int64) * (2**STEP_BITS) + tf.cast(step, tf.int64)
    return tf.stack([tf.cast(seed, tf.int64), stream])


def _fresh_noise(shape, seed, first_image, step):
    # Stateless: the same key always gives the same noise, in the graph loop and
    # the Python loop alike, which makes seeded DDPM sampling repeatable.
    import tensorflow as tf

    return tf.random.stateless_normal(shape, seed=fresh_noise_seed(seed, first_image, step))


def _reverse_step_at(denoise_fn, schedule_fn, noisy_images, step, diffusion_steps, eta, seed,
                     first_image=0):
    """Separate the noisy images at step ``step`` and remix them one step on."""
    import tensorflow as tf

    num_images = tf.shape(noisy_images)[0]
    step_size = 1.0 / tf.cast(diffusion_steps, "float32")
    # At the first step the "noisy image" is pure noise, but its signal rate is
    # taken as min_signal_rate: the schedule never reaches zero signal.
    diffusion_times = tf.fill([num_images, 1, 1, 1], 1.0 - tf.cast(step, "float32") * step_size)
    noise_rates, signal_rates = schedule_fn(diffusion_times)
    pred_noises, pred_images = denoise_fn(noisy_images, noise_rates, signal_rates)
    next_noise_rates, next_signal_rates = schedule_fn(diffusion_times - step_size)
    sigmas = step_sigmas(signal_rates, next_signal_rates, eta)
    fresh_noises = _fresh_noise(tf.shape(noisy_images), seed, first_image, step)
    next_noisy_images = reverse_step(
        pred_noises, pred_images, next_noise_rates, next_signal_rates, sigmas, fresh_noises
    )
    return next_noisy_images, pred_images


def reverse_diffusion_loop(denoise_fn, schedule_fn, initial_noise, diffusion_steps,
                           eta=0.0, seed=0, first_image=0):
    """Reference sampler: a plain Python loop, one network call per step.

    Returns the predicted images of the last step (normalized space).
    ``first_image``: index of the chunk's first image, which keys its fresh
    noise together with ``seed`` (see :func:`fresh_noise_seed`).
    """
    # A tensor, not a NumPy array: a Keras network refuses a mix of both.
    noisy_images = ops.convert_to_tensor(initial_noise, "float32")
    initial_noise = noisy_images
    pred_images = initial_noise
    for step in range(int(diffusion_steps)):
        noisy_images, pred_images = _reverse_step_at(
            denoise_fn, schedule_fn, noisy_images, step, diffusion_steps, eta, seed, first_image
        )
    return pred_images


def reverse_diffusion_graph(denoise_fn, schedule_fn, initial_noise, diffusion_steps,
                            eta=0.0, seed=0, record=False, first_image=0):
    """The same sampler as one graph while-loop over steps.

    ``diffusion_steps`` may be a tensor, so a compiled caller does not retrace
    when it changes. With ``record=True`` also returns the noisy and predicted
    images of every step, stacked on a leading axis (for animations).
    """
    import tensorflow as tf

    diffusion_steps = tf.cast(diffusion_steps, tf.int32)
    eta = tf.cast(eta, "float32")
    initial_noise = tf.convert_to_tensor(initial_noise, "float32")
    noisy_trajectory = tf.TensorArray("float32", size=diffusion_steps if record else 0,
                                      dynamic_size=False, element_shape=initial_noise.shape)
    pred_trajectory = tf.TensorArray("float32", size=diffusion_steps if record else 0,
                                     dynamic_size=False, element_shape=initial_noise.shape)

    def body(step, noisy_images, pred_images, noisy_trajectory, pred_trajectory):
        next_noisy_images, pred_images = _reverse_step_at(
            denoise_fn, schedule_fn, noisy_images, step, diffusion_steps, eta, seed, first_image
        )
        if record:
            noisy_trajectory = noisy_trajectory.write(step, noisy_images)
            pred_trajectory = pred_trajectory.write(step, pred_images)
        return step + 1, next_noisy_images, pred_images, noisy_trajectory, pred_trajectory

    _, _, pred_images, noisy_trajectory, pred_trajectory = tf.while_loop(
        lambda step, *_: step < diffusion_steps,
        body,
        (tf.constant(0), initial_noise, initial_noise, noisy_trajectory, pred_trajectory),
    )
    if record:
        return pred_images, noisy_trajectory.stack(), pred_trajectory.stack()
    return pred_images
