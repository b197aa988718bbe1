"""What sampling keeps between calls: reduced-precision network copies and compiled loops.

Both are built on first use and reused, so a model samples in float32, bfloat16
or float16 with one compiled graph loop each (and one more each when the
trajectory is recorded), whatever the number of steps. The model holds its
cache out of Keras' tracking (see :mod:`ddim_keras.untracked`): nothing here
reaches a checkpoint.
"""

import tensorflow as tf

from ddim_keras import sampling
from ddim_keras.distribute import POLICIES
from ddim_keras.network import build_network


class SamplerCache:
    def __init__(self, config):
        self.config = config
        self.copies = {}     # precision -> network computing in that precision
        self.functions = {}  # (record, precision, sampler, spacing) -> compiled sampler

    def network(self, ema_network, precision="float32"):
        """The network that samples in ``precision``: "float32", "bfloat16" or "float16".

        float32 is ``ema_network`` itself. The others are a copy of it whose
        layers compute in that precision (a mixed dtype policy: the weights stay
        float32), with the EMA weights copied in on every call, so it always
        samples with the current weights.
        """
        if precision not in POLICIES:
            raise ValueError(f"unknown sampling precision {precision!r}; use one of "
                             f"{', '.join(POLICIES)}")
        if precision == "float32":
            return ema_network
        if precision not in self.copies:
            self.copies[precision] = build_network(self.config,
                                                   name=f"residual_unet_{precision}",
                                                   dtype=POLICIES[precision])
        network = self.copies[precision]
        for target, source in zip(network.weights, ema_network.weights):
            target.assign(source)
        return network

    def compiled(self, denoise_fn, schedule_fn, record, precision, sampler="ddim",
                 spacing="time"):
        """The compiled sampler for (record, precision, sampler, spacing), traced once.

        ``denoise_fn(noisy_images, noise_rates, signal_rates)`` must use the
        network of ``precision``; it is bound on the first call for that key.
        The function takes (initial_noise, diffusion_steps, eta, seed,
        first_image), all tensors, so new values do not retrace it.
        """
        key = (record, precision, sampler, spacing)
        if key not in self.functions:
            def run(initial_noise, diffusion_steps, eta, seed, first_image):
                return sampling.reverse_diffusion_graph(
                    denoise_fn, schedule_fn, initial_noise, diffusion_steps, eta=eta,
                    seed=seed, record=record, first_image=first_image, sampler=sampler,
                    spacing=spacing)

            size = self.config.image_size
            self.functions[key] = tf.function(
                run,
                input_signature=[
                    tf.TensorSpec((None, size, size, 3), tf.float32),
                    tf.TensorSpec((), tf.int32),    # diffusion_steps
                    tf.TensorSpec((), tf.float32),  # eta
                    tf.TensorSpec((), tf.int32),    # seed
                    tf.TensorSpec((), tf.int32),    # first_image
                ],
                jit_compile=False,
            )
        return self.functions[key]
