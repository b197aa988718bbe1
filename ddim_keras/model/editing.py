"""Inpainting and image-to-image: :class:`~ddim_keras.model.DiffusionModel`'s methods
beside ``generate``.

They work with any trained model (no retraining) and any sampler and spacing, in
chunks, seeded like ``generate``; the math is in :mod:`ddim_keras.sampling.editing`.
"""

from ddim_keras.core import checks
from ddim_keras.core.classes import check_guidance, check_labels
from ddim_keras.model.conditioning import one_prediction
from ddim_keras.sampling.chunks import edit


class ImageEditing:
    """``inpaint`` and ``image_to_image``: a mixin of
    :class:`~ddim_keras.model.diffusion_model.DiffusionModel`."""

    def inpaint(
        self,
        images,
        masks,
        diffusion_steps,
        strength=1.0,
        resample=1,
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
        """Regenerate the part of ``images`` where ``masks`` is 1; keep the rest exactly.

        ``images``: (N, S, S, 3) in [0, 1] at the model's resolution (or one
        (S, S, 3)); ``masks``: 1 = regenerate, 0 = keep, one (N, S, S) per image
        or one (S, S) for all (:func:`~ddim_keras.core.checks.check_edit_images`).
        After every step the kept part is replaced by the input noised to the
        step's noise level (RePaint); ``resample`` N > 1 does every step but the
        last N times, jumping back in between, which blends the two parts better
        at N times the network calls (``ddim`` and ``heun`` only).
        ``strength`` below 1 starts from the input noised to that diffusion time
        instead of pure noise (see ``image_to_image``), so the regenerated part
        keeps the input's rough colours. The other arguments are those of
        :meth:`~ddim_keras.model.diffusion_model.DiffusionModel.generate`: image i
        of a seed starts from the same noise as ``generate``'s image i, so an
        all-ones mask at strength 1 and resample 1 gives ``generate``'s images
        (up to float rounding), and so do a conditional model's ``labels`` and
        ``guidance``. Returns (N, S, S, 3) in [0, 1], a NumPy array.
        """
        images, masks = checks.check_edit_images(images, masks, self.image_size)
        return self._edit(
            images,
            masks,
            diffusion_steps,
            strength,
            resample,
            eta,
            seed,
            batch_size,
            progress,
            precision,
            sampler,
            spacing,
            labels,
            guidance,
        )

    def image_to_image(
        self,
        images,
        strength,
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
        """Re-imagine ``images`` (N, S, S, 3) in [0, 1]: noise them to time ``strength``, denoise.

        SDEdit: ``strength`` in (0, 1] is the diffusion time the images are
        noised to; the sampler then runs from the first point of its
        ``diffusion_steps`` grid at or below that noise level
        (:func:`~ddim_keras.sampling.editing.start_step`), so lower strengths keep
        more of the input and make fewer network calls (``time`` spacing:
        floor(strength * diffusion_steps)). 1 is plain generation (the input is
        ignored); where no step is left the input comes back unchanged. The other
        arguments are those of
        :meth:`~ddim_keras.model.diffusion_model.DiffusionModel.generate`
        (``labels`` and ``guidance`` included). Returns (N, S, S, 3) in [0, 1],
        a NumPy array.
        """
        images, _ = checks.check_edit_images(images, None, self.image_size)
        return self._edit(
            images,
            None,
            diffusion_steps,
            strength,
            1,
            eta,
            seed,
            batch_size,
            progress,
            precision,
            sampler,
            spacing,
            labels,
            guidance,
        )

    def _edit(
        self,
        images,
        masks,
        diffusion_steps,
        strength,
        resample,
        eta,
        seed,
        batch_size,
        progress,
        precision,
        sampler,
        spacing,
        labels=None,
        guidance=1.0,
    ):
        if seed is None:
            seed = checks.draw_seed()
        num_images = len(images)
        labels = check_labels(labels, num_images, self.diffusion_config.num_classes)
        guidance = check_guidance(guidance)
        on_chunk = None if progress is None else (lambda done: progress(done, num_images))
        return edit(
            self,
            images,
            masks,
            self.initial_noise(num_images, checks.check_seed(seed)),
            diffusion_steps,
            strength=strength,
            resample=resample,
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

    def compiled_edit(
        self,
        initial_noise,
        images,
        masks,
        diffusion_steps,
        start_step,
        resample=1,
        eta=0.0,
        seed=0,
        first_image=0,
        precision="float32",
        sampler="ddim",
        spacing="time",
        paste=True,
        labels=None,
        guidance=1.0,
    ):
        """One chunk of an edit, compiled: the last step's predicted images (normalized).

        ``images`` in [0, 1] (normalized here), ``masks`` (n, S, S, 1); the
        steps ``start_step`` .. ``diffusion_steps - 1`` run (see
        :func:`~ddim_keras.sampling.edit_loop.edit_diffusion_graph`). ``paste``
        False: image-to-image (``masks`` unused). One graph per (precision,
        sampler, spacing, paste, resample > 1). A conditional model's ``labels``
        and ``guidance`` are inputs of the graph, as in ``compiled_reverse_diffusion``.
        """
        network = self.sampling_network(precision)
        num_classes = self.diffusion_config.num_classes
        guided = None
        if num_classes:
            labels = check_labels(labels, len(initial_noise), num_classes)
            guidance = check_guidance(guidance)
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

        function = self._samplers.value.compiled_editor(
            denoise,
            self.diffusion_schedule,
            precision,
            sampler,
            spacing,
            paste=bool(paste),
            resampling=int(resample) > 1,
            network=network,
            guided=guided,
        )
        arguments = (
            initial_noise,
            self.normalizer(images, training=False),
            masks,
            int(diffusion_steps),
            int(start_step),
            int(resample),
            float(eta),
            int(seed) % checks.SEED_LIMIT,
            int(first_image),
        )
        if num_classes:
            arguments += (labels, guidance)
        return function(*arguments)
