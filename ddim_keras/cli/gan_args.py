"""The GAN baseline in the commands: ``train --model gan``, and what a GAN run refuses.

A GAN makes each image in one generator call: it has no steps, sampler, eta or
reverse process, so ``generate`` and ``evaluate`` refuse the flags and modes
that only mean something for diffusion, with a message instead of ignoring
them.
"""

from ddim_keras.core.config import MODELS, DiffusionConfig, as_gan, is_gan
from ddim_keras.core.errors import UsageError

#: generate's modes that a GAN run has (one call per image).
GAN_MODES = ("grid", "images")
#: How a GAN run's one cell is labelled in sweeps and reports (its "sampler").
GAN_LABEL = "GAN (1 call)"


def add_model_kind_argument(parser):
    parser.add_argument(
        "--model",
        choices=MODELS,
        help="what to train: diffusion (the default) or gan, the baseline of keras.io's "
        "data-efficient GAN (adaptive discriminator augmentation; Adam 2e-4, EMA 0.99 "
        "unless the --config file says otherwise). Also read from the config's 'model'",
    )


def load_config_of_kind(path, base, model=None):
    """The config of ``train``: the preset ``base``, the ``--config`` file at ``path``
    (may be None) over it, as the ``--model`` kind (None: the file's, else diffusion).

    A GAN starts from :func:`~ddim_keras.core.config.as_gan` of the preset, so the keys
    the file gives win over the GAN's defaults.
    """
    if model == "gan":
        base = as_gan(base)
    config = DiffusionConfig.load(path, base=base) if path else base
    if is_gan(config) and not is_gan(base):
        config = DiffusionConfig.load(path, base=as_gan(base))
    if model == "diffusion" and is_gan(config):
        raise UsageError(
            f"--model diffusion contradicts the config file {path}, which says "
            '"model": "gan"; leave out one of them.'
        )
    return config


def _given(args, name, default=None):
    value = getattr(args, name, default)
    return value is not None and value != default


def refuse_diffusion_flags(args, config, command):
    """Refuse, for a GAN run, the flags of ``command`` that only a diffusion model has.

    ``config`` is the run's (None: not known yet, nothing to check). On success a
    GAN's ``args.steps`` becomes 1 (the one generator call each image takes), the only
    step count it accepts.
    """
    if config is None or not is_gan(config):
        return
    refused = []
    if getattr(args, "mode", "grid") not in GAN_MODES:
        refused.append(f"--mode {args.mode}")
    if getattr(args, "steps", None) not in (None, 1):  # 1: the one call a GAN makes
        refused.append(f"--steps {args.steps}")
    for flag, name, default in (
        ("--sampler", "sampler", "ddim"),
        ("--spacing", "spacing", "time"),
        ("--eta", "eta", 0.0),
        ("--mixed-precision", "mixed_precision", "off"),
    ):
        if _given(args, name, default):
            refused.append(f"{flag} {getattr(args, name)}")
    if refused:
        modes = " and ".join(f"--mode {mode}" for mode in GAN_MODES)
        raise UsageError(
            f"{', '.join(refused)}: this is a GAN run (the baseline of --model gan), which "
            "makes each image in one generator call; it has no diffusion steps, sampler, eta, "
            f"reduced-precision sampler or reverse process to show. `{command}` on a GAN run "
            f"takes {modes if command == 'generate' else 'no sampling flags'}; leave out the "
            "flags above."
        )
    if hasattr(args, "steps"):
        args.steps = 1
