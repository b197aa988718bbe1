"""What sampling keeps between calls: reduced-precision network copies and compiled loops.

Both are built on first use and reused, so a model samples in float32, bfloat16
or float16 with one compiled graph loop each (and one more each when the
trajectory is recorded), whatever the number of steps. The model holds its
cache out of Keras' tracking (see :mod:`ddim_keras.core.untracked`): nothing here
reaches a checkpoint.
"""

from ddim_keras.core.devices import POLICIES
from ddim_keras.model.network import build_network
from ddim_keras.sampling.compiled import (
    CONDITION_ARGUMENTS,
    EDITOR_ARGUMENTS,
    SAMPLER_ARGUMENTS,
    compile_loop,
)
from ddim_keras.sampling.edit_loop import edit_diffusion_graph
from ddim_keras.sampling.loops import reverse_diffusion_graph


class SamplerCache:
    def __init__(self, config):
        self.config = config
        self.copies = {}  # precision -> network computing in that precision
        # (record, precision, sampler, spacing) -> compiled sampler; editing loops under
        # ("edit", precision, sampler, spacing, paste, resampling).
        self.functions = {}

    def network(self, ema_network, precision="float32"):
        """The network that samples in ``precision``: "float32", "bfloat16" or "float16".

        float32 is ``ema_network`` itself. The others are a copy of it whose
        layers compute in that precision (a mixed dtype policy: the weights stay
        float32), with the EMA weights copied in on every call, so it always
        samples with the current weights.
        """
        if precision not in POLICIES:
            raise ValueError(
                f"unknown sampling precision {precision!r}; use one of {', '.join(POLICIES)}"
            )
        if precision == "float32":
            return ema_network
        if precision not in self.copies:
            self.copies[precision] = build_network(
                self.config, name=f"residual_unet_{precision}", dtype=POLICIES[precision]
            )
        network = self.copies[precision]
        for target, source in zip(network.weights, ema_network.weights):
            target.assign(source)
        return network

    def compiled(
        self,
        denoise_fn,
        schedule_fn,
        record,
        precision,
        sampler="ddim",
        spacing="time",
        network=None,
        guided=None,
    ):
        """The compiled sampler for (record, precision, sampler, spacing, guided), traced once.

        ``denoise_fn(noisy_images, noise_rates, signal_rates)`` must use
        ``network``, the network of ``precision``; it is bound on the first
        call for that key. The function takes (initial_noise, diffusion_steps,
        eta, seed, first_image) and returns what
        :func:`ddim_keras.sampling.loops.reverse_diffusion_graph` returns. New values
        do not retrace it, except ``record``: a recording's shape is its number
        of steps, so it is part of the key (False, or the number of steps).
        Each backend compiles in its own way, see :func:`compile_loop`.
        A class-conditional model's function takes (labels, guidance) last,
        passed on to ``denoise_fn`` as its fourth and fifth arguments; ``guided``
        (whether it mixes two predictions) is part of the key.
        """
        # An unconditional model's keys name no guidance.
        key = (record, precision, sampler, spacing) + (() if guided is None else (guided,))
        if key not in self.functions:

            def run(initial_noise, diffusion_steps, eta, seed, first_image, *condition):
                return reverse_diffusion_graph(
                    _bind(denoise_fn, condition),
                    schedule_fn,
                    initial_noise,
                    diffusion_steps,
                    eta=eta,
                    seed=seed,
                    record=record,
                    first_image=first_image,
                    sampler=sampler,
                    spacing=spacing,
                )

            self.functions[key] = compile_loop(
                run, network, self.config.image_size, self._arguments(SAMPLER_ARGUMENTS)
            )
        return self.functions[key]

    def compiled_editor(
        self,
        denoise_fn,
        schedule_fn,
        precision,
        sampler,
        spacing,
        paste,
        resampling,
        network,
        guided=None,
    ):
        """The compiled editing loop for (precision, sampler, spacing, paste, resampling).

        Like :meth:`compiled`; the function takes (initial_noise, known_images,
        masks, diffusion_steps, start_step, resample, eta, seed, first_image) and
        returns what :func:`ddim_keras.sampling.edit_loop.edit_diffusion_graph`
        returns (a conditional model's take (labels, guidance) last, as in
        :meth:`compiled`). ``paste`` (inpainting) and ``resampling`` (RePaint's
        repeated steps) are part of the graph; new numbers do not retrace it.
        """
        key = ("edit", precision, sampler, spacing, paste, resampling)
        key += () if guided is None else (guided,)
        if key not in self.functions:

            def run(
                initial_noise,
                known_images,
                masks,
                diffusion_steps,
                start_step,
                resample,
                eta,
                seed,
                first_image,
                *condition,
            ):
                return edit_diffusion_graph(
                    _bind(denoise_fn, condition),
                    schedule_fn,
                    initial_noise,
                    known_images,
                    masks,
                    diffusion_steps,
                    start_step=start_step,
                    resample=resample,
                    eta=eta,
                    seed=seed,
                    first_image=first_image,
                    sampler=sampler,
                    spacing=spacing,
                    paste=paste,
                    resampling=resampling,
                )

            self.functions[key] = compile_loop(
                run, network, self.config.image_size, self._arguments(EDITOR_ARGUMENTS)
            )
        return self.functions[key]

    def _arguments(self, arguments):
        # A conditional model's loops take (labels, guidance) as well.
        return arguments + CONDITION_ARGUMENTS if self.config.num_classes else arguments


def _bind(denoise_fn, condition):
    """``denoise_fn`` with a conditional loop's (labels, guidance) bound; unchanged without."""
    if not condition:
        return denoise_fn
    labels, guidance = condition
    return lambda noisy_images, noise_rates, signal_rates: denoise_fn(
        noisy_images, noise_rates, signal_rates, labels, guidance
    )
