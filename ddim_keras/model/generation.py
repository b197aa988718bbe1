"""Sampling: :class:`~ddim_keras.model.DiffusionModel`'s ``generate`` and the loops behind it.

A mixin, so that the model's module holds the example's training math and this
one its sampling: the example's Python loop (``reverse_diffusion``), every
sampler compiled into one graph loop (``compiled_reverse_diffusion``) and
``generate``, which runs it in chunks (:mod:`ddim_keras.sampling.chunks`). A
class-conditional model samples with classifier-free guidance (see
:mod:`ddim_keras.model.conditioning`).
"""

import numpy as np

from ddim_keras.core import checks
from ddim_keras.core.classes import check_guidance, check_labels, class_rows
from ddim_keras.model.conditioning import one_prediction
from ddim_keras.model.distilled_steps import warn_distilled_steps
from ddim_keras.sampling.chunks import sample
from ddim_keras.sampling.compiled import no_gradients
from ddim_keras.sampling.loops import reverse_diffusion_loop


class Generation:
    """``generate`` and its loops: a mixin of
    :class:`~ddim_keras.model.diffusion_model.DiffusionModel`."""

    def sampling_network(self, precision="float32"):
        """The network that samples in ``precision``: "float32", "bfloat16" or "float16".

        float32 is ``ema_network`` itself; the others are a copy of it computing
        in that precision, holding the current EMA weights (see
        :class:`~ddim_keras.model.sampler_cache.SamplerCache`). On the development
        CPU, which has native bfloat16 instructions (AVX512_BF16), bfloat16
        sampled 1.7x faster than float32 at the default config, with images
        about 1 % of the pixel range apart; see the docs' "Generating" page.
        """
        return self._samplers.value.network(self.ema_network, precision)

    def reverse_diffusion(self, initial_noise, diffusion_steps, eta=0.0, seed=0, first_image=0):
        """Step-by-step sampling loop (the example's), returns normalized images.

        ``eta=0`` is deterministic DDIM; ``eta=1`` is DDPM-like stochastic
        sampling with noise drawn statelessly from ``seed`` and ``first_image``
        (the index of the chunk's first image); eta must lie in [0, 1].
        (Unconditional: a conditional model samples with
        :meth:`compiled_reverse_diffusion`.)
        """
        with no_gradients():
            return reverse_diffusion_loop(
                self._denoise_eval,
                self.diffusion_schedule,
                initial_noise,
                checks.check_steps(diffusion_steps),
                eta=checks.check_eta(eta),
                seed=seed,
                first_image=first_image,
            )

    def compiled_reverse_diffusion(
        self,
        initial_noise,
        diffusion_steps,
        eta=0.0,
        seed=0,
        record=False,
        precision="float32",
        first_image=0,
        sampler="ddim",
        spacing="time",
        labels=None,
        guidance=1.0,
    ):
        """Any sampler compiled into one graph; no retrace per step count.

        ``sampler``: "ddim" (the example's, with ``eta``), "dpmpp_2m",
        "dpmpp_3m" or "heun"; ``spacing``: "time" (the example's), "logsnr" or
        "karras" (see :mod:`ddim_keras.sampling`). ``precision`` other than
        "float32" samples with :meth:`sampling_network`.
        ``first_image`` keys the fresh noise (eta > 0) with ``seed``: pass the
        index of the chunk's first image (see :mod:`ddim_keras.sampling.chunks`).
        ``labels`` (one int per image, None: "no class") and ``guidance``, for a
        class-conditional model only, are inputs of the compiled loop: new
        values do not retrace it.
        """
        diffusion_steps = checks.check_steps(diffusion_steps)
        sampler, spacing, eta = checks.check_sampler(sampler, spacing, eta)
        network = self.sampling_network(precision)
        num_classes = self.diffusion_config.num_classes
        labels = check_labels(labels, len(initial_noise), num_classes)
        guidance = check_guidance(guidance)
        guided = None
        if num_classes:
            labels, guided = one_prediction(labels, guidance, num_classes)

        def denoise(noisy_images, noise_rates, signal_rates, labels=None, guidance=None):
            return self.denoise(
                noisy_images,
                noise_rates,
                signal_rates,
                training=False,
                network=network,
                labels=labels,
                guidance=guidance if guided else None,
            )

        # A recording's shape is its step count: record mode compiles per count.
        record = int(diffusion_steps) if record else False
        function = self._samplers.value.compiled(
            denoise,
            self.diffusion_schedule,
            record,
            precision,
            sampler,
            spacing,
            network=network,
            guided=guided,
        )
        arguments = (
            initial_noise,
            int(diffusion_steps),
            float(eta),
            int(seed) % checks.SEED_LIMIT,
            int(first_image),
        )
        if num_classes:
            arguments += (labels, guidance)
        return function(*arguments)

    def initial_noise(self, num_images, seed=None):
        """Standard normal noise drawn with NumPy from ``seed``.

        Drawn on the host so the same seed gives the same noise whatever the
        device or chunk size.
        """
        rng = np.random.default_rng(seed)
        shape = (num_images, self.image_size, self.image_size, 3)
        return rng.standard_normal(shape, dtype=np.float32)

    def generate(
        self,
        num_images,
        diffusion_steps,
        eta=0.0,
        seed=None,
        batch_size=None,
        progress=None,
        precision="float32",
        sampler="ddim",
        spacing="time",
        labels=None,
        guidance=1.0,
    ):
        """Sample ``num_images`` images in [0, 1] as a NumPy array (N, S, S, 3).

        Works in chunks of ``batch_size`` (default: the config's batch size) so
        that memory stays bounded; the result does not depend on the chunking,
        nor on the Keras backend (up to float rounding). ``progress`` is an
        optional callable(done, total).
        ``precision``: "float32" (default), "bfloat16" or "float16", see
        :meth:`sampling_network`. ``sampler`` and ``spacing``: see
        :meth:`compiled_reverse_diffusion`; the defaults are the example's. A
        step is one network call, except with "heun" (see
        :func:`ddim_keras.sampling.step_rules.network_calls`).

        A class-conditional model (``num_classes`` > 0) takes ``labels``: one
        class index for all images or one per image (None: unconditional
        samples), and the guidance scale ``guidance`` w >= 0: each step predicts
        ``unconditional + w * (conditional - unconditional)`` from one network
        call on a doubled batch (1: the plain conditional prediction).
        """
        checks.check_at_least(num_images, 1, "num_images")
        labels = check_labels(labels, num_images, self.diffusion_config.num_classes)
        guidance = check_guidance(guidance)
        warn_distilled_steps(self.diffusion_config, diffusion_steps, sampler, spacing)
        if seed is None:
            seed = checks.draw_seed()
        on_chunk = None if progress is None else (lambda done: progress(done, num_images))
        return sample(
            self,
            self.initial_noise(num_images, seed),
            diffusion_steps,
            eta=eta,
            seed=seed,
            batch_size=batch_size,
            precision=precision,
            on_chunk=on_chunk,
            sampler=sampler,
            spacing=spacing,
            labels=labels,
            guidance=guidance,
        )

    def plot_images(self, epoch=None, logs=None, num_rows=3, num_cols=6, seed=None):
        """Show a grid of generated images with matplotlib (as in the example).

        A class-conditional model shows one class per row (the first
        ``num_rows`` classes).
        """
        import matplotlib.pyplot as plt

        from ddim_keras.core.pictures import image_grid

        num_classes = self.diffusion_config.num_classes
        labels = class_rows(num_classes, num_rows, num_cols) if num_classes else None
        images = self.generate(
            num_rows * num_cols,
            self.diffusion_config.plot_diffusion_steps,
            seed=seed,
            labels=labels,
        )
        grid = image_grid(images, num_rows, num_cols)
        plt.figure(figsize=(num_cols * 2.0, num_rows * 2.0))
        plt.imshow(grid)
        plt.axis("off")
        plt.tight_layout()
        plt.show()
        plt.close()
        return grid
