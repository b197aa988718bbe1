"""DiffusionConfig: every hyperparameter of a run, its presets, JSON round trip.

The defaults are the keras.io DDIM example's hyperparameters, so
``DiffusionConfig()`` is that example's model. A config is validated when it is
constructed: a value that could only fail later (inside a traced graph, or an
hour into training) is refused here with a message naming the field.
"""

import dataclasses
import json
import math

from ddim_keras.core.errors import ConfigError

LOSSES = ("mae", "mse")


SCHEDULES = ("cosine", "linear")

#: What the network is trained to output: the noise (the example's), the
#: velocity ``signal_rate * noise - noise_rate * image`` (Salimans & Ho 2022) or
#: the image itself. See :mod:`ddim_keras.model.objectives`.
PREDICTIONS = ("noise", "velocity", "image")
#: Per-example loss weights: none (the example's) or min-SNR-gamma (Hang et al. 2023).
LOSS_WEIGHTINGS = ("none", "min_snr")
#: Training-time augmentation: none (the example's) or random horizontal flips.
AUGMENTS = ("none", "flip")
#: The kind of model a run trains: the diffusion model (the example's) or the GAN
#: baseline of :mod:`ddim_keras.model.gan` (keras.io's data-efficient GAN with
#: adaptive discriminator augmentation).
MODELS = ("diffusion", "gan")


@dataclasses.dataclass(frozen=True)
class DiffusionConfig:
    # data
    image_size: int = 64
    dataset_repetitions: int = 5
    epochs: int = 50  # the example advises "at least 50 epochs for good results"
    # KID = kernel inception distance, measured on the validation set
    kid_image_size: int = 75
    kid_diffusion_steps: int = 5
    plot_diffusion_steps: int = 20
    kid: bool = True
    # sampling
    min_signal_rate: float = 0.02
    max_signal_rate: float = 0.95
    schedule: str = "cosine"
    # architecture
    embedding_dims: int = 32
    embedding_max_frequency: float = 1000.0
    widths: tuple[int, ...] = (32, 64, 96, 128)
    block_depth: int = 2
    # additions to the example's U-Net, off by default (see model/network.py): heads of
    # self-attention at the lowest resolution, and the noise level in every block
    attention_heads: int = 0
    block_embedding: bool = False
    # optimization
    batch_size: int = 64
    ema: float = 0.999
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    loss: str = "mae"
    # training objective (the defaults are the example's; see model/objectives.py)
    prediction: str = "noise"
    loss_weighting: str = "none"
    snr_gamma: float = 5.0
    augment: str = "none"
    ema_warmup: bool = False
    # class conditioning (0 classes: unconditional, the example's; see model/conditioning.py)
    num_classes: int = 0
    label_dropout: float = 0.1
    # the GAN baseline (model "gan"; the defaults are the keras.io ADA example's). A
    # diffusion config leaves these out of its dict and config.json.
    model: str = "diffusion"
    gan_noise_size: int = 64
    gan_width: int = 128
    gan_depth: int = 4
    gan_dropout: float = 0.4
    gan_leaky_relu_slope: float = 0.2
    gan_beta_1: float = 0.5
    gan_target_accuracy: float = 0.85
    gan_integration_steps: int = 1000
    gan_max_translation: float = 0.125
    gan_max_rotation: float = 0.125
    gan_max_zoom: float = 0.25
    # progressive distillation (0: an ordinary run; see model/distillation.py): the DDIM
    # step count a student was distilled for, its halving rounds and its teacher's run
    distilled_steps: int = 0
    distillation_rounds: int = 0
    teacher_run: str = ""

    def __post_init__(self):
        # JSON gives lists; keep widths hashable and immutable.
        if isinstance(self.widths, list):
            object.__setattr__(self, "widths", tuple(self.widths))
        self._check_types()
        self._check_values()

    # -- validation -----------------------------------------------------------

    def _check_types(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            expected = _FIELD_TYPES[field.name]
            if expected is int:
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif expected is float:
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
                if ok:
                    object.__setattr__(self, field.name, float(value))
            elif expected is bool:
                ok = isinstance(value, bool)
            elif expected is str:
                ok = isinstance(value, str)
            else:  # tuple of ints
                ok = isinstance(value, tuple) and all(
                    isinstance(v, int) and not isinstance(v, bool) for v in value
                )
            if not ok:
                raise ConfigError(
                    f"config field '{field.name}' must be {_TYPE_WORDS[expected]}, "
                    f"got {value!r} ({type(value).__name__})."
                )

    def _check_values(self):
        def refuse(field, why):
            raise ConfigError(f"config field '{field}' = {getattr(self, field)!r}: {why}")

        for name in (
            "image_size",
            "batch_size",
            "dataset_repetitions",
            "epochs",
            "kid_diffusion_steps",
            "plot_diffusion_steps",
            "block_depth",
            "embedding_dims",
        ):
            if getattr(self, name) < 1:
                refuse(name, "must be at least 1.")
        if self.attention_heads < 0:
            refuse("attention_heads", "must be 0 (no self-attention, the example's) or positive.")
        if self.attention_heads and self.widths and self.widths[-1] % self.attention_heads:
            refuse(
                "attention_heads",
                f"must divide the lowest resolution's width {self.widths[-1]} "
                "(each head attends over an equal share of its channels).",
            )
        if not self.widths:
            refuse("widths", "needs at least one width (the example uses [32, 64, 96, 128]).")
        if any(w < 1 for w in self.widths):
            refuse("widths", "every width must be a positive number of channels.")
        factor = 2 ** (len(self.widths) - 1)
        if self.model == "gan":
            self._check_gan_values(refuse)
        elif self.image_size % factor:
            refuse(
                "image_size",
                f"must be divisible by 2**(len(widths)-1) = {factor} so that "
                f"the U-Net's {len(self.widths) - 1} poolings come out even; use e.g. "
                f"{max(factor, self.image_size // factor * factor)}.",
            )
        if self.embedding_dims % 2:
            refuse("embedding_dims", "must be even (half sines, half cosines).")
        if not self.embedding_max_frequency > 1.0:
            refuse("embedding_max_frequency", "must be greater than the minimum frequency 1.0.")
        if not 0.0 < self.min_signal_rate < self.max_signal_rate:
            refuse(
                "min_signal_rate",
                f"must be > 0 and below max_signal_rate "
                f"({self.max_signal_rate}); at 0 the predicted images divide by zero.",
            )
        if self.max_signal_rate > 1.0:
            refuse("max_signal_rate", "must be at most 1 (a signal rate is a cosine).")
        if not 0.0 <= self.ema < 1.0:
            refuse("ema", "the EMA momentum must be in [0, 1).")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            refuse("learning_rate", "must be a positive number.")
        if self.weight_decay < 0:
            refuse("weight_decay", "must be zero or positive.")
        if self.loss not in LOSSES:
            refuse("loss", f"must be one of {', '.join(LOSSES)}.")
        for name, allowed in (
            ("prediction", PREDICTIONS),
            ("loss_weighting", LOSS_WEIGHTINGS),
            ("augment", AUGMENTS),
        ):
            if getattr(self, name) not in allowed:
                refuse(name, f"must be one of {', '.join(allowed)}.")
        for name in ("distilled_steps", "distillation_rounds"):
            if getattr(self, name) < 0:
                refuse(name, "must be 0 (not distilled) or positive.")
        if self.num_classes < 0:
            refuse("num_classes", "must be 0 (unconditional) or the number of classes.")
        if self.num_classes == 1:
            refuse("num_classes", "a conditional model needs at least 2 classes; use 0 for none.")
        if not 0.0 <= self.label_dropout < 1.0:
            refuse(
                "label_dropout",
                "the probability of training without the label must be in [0, 1) "
                "(0.1 is usual; 0 learns no unconditional prediction, so no guidance).",
            )
        if not (self.snr_gamma > 0 and math.isfinite(self.snr_gamma)):
            refuse("snr_gamma", "the min-SNR cap must be a positive number (the paper uses 5).")
        if self.model not in MODELS:
            refuse("model", f"must be one of {', '.join(MODELS)}.")
        if self.schedule not in SCHEDULES:
            refuse("schedule", f"must be one of {', '.join(SCHEDULES)}.")
        if self.kid and self.kid_image_size < 75:
            refuse("kid_image_size", "InceptionV3 needs inputs of at least 75x75 pixels.")
        if self.kid and self.batch_size < 2:
            refuse(
                "batch_size",
                "KID compares pairs of images within a batch, so it needs at "
                "least 2; raise batch_size or turn KID off (--no-kid).",
            )

    def _check_gan_values(self, refuse):
        if self.image_size % 2**self.gan_depth or self.gan_depth < 1:
            refuse(
                "gan_depth",
                f"the generator doubles its {self.image_size // 2**self.gan_depth or 0} px start "
                f"gan_depth times up to image_size {self.image_size}: image_size must be "
                "divisible by 2**gan_depth, and gan_depth at least 1.",
            )
        for name in ("gan_noise_size", "gan_width", "gan_integration_steps"):
            if getattr(self, name) < 1:
                refuse(name, "must be at least 1.")
        for name in ("gan_dropout", "gan_beta_1", "gan_max_zoom"):
            if not 0.0 <= getattr(self, name) < 1.0:
                refuse(name, "must be in [0, 1).")
        for name in ("gan_target_accuracy", "gan_max_translation", "gan_max_rotation"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                refuse(name, "must be in [0, 1].")
        if self.gan_leaky_relu_slope < 0:
            refuse("gan_leaky_relu_slope", "must be zero or positive.")

    # -- conversions ------------------------------------------------------------

    def replace(self, **changes):
        """A copy with some fields changed (validated like a new config)."""
        unknown = sorted(set(changes) - set(_FIELD_TYPES))
        if unknown:
            raise ConfigError(_unknown_keys_message(unknown))
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        data = dataclasses.asdict(self)
        data["widths"] = list(self.widths)
        if self.model == "diffusion":
            # A diffusion run's config.json stays the one it was before the GAN existed.
            for key in GAN_FIELDS:
                del data[key]
        return data

    @classmethod
    def from_dict(cls, data):
        if not isinstance(data, dict):
            raise ConfigError(
                f"a config must be a JSON object of fields, got {type(data).__name__}."
            )
        unknown = sorted(set(data) - set(_FIELD_TYPES))
        if unknown:
            raise ConfigError(_unknown_keys_message(unknown))
        return cls(**data)

    def to_json(self, indent=2):
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"the config is not valid JSON ({error}).") from None
        return cls.from_dict(data)

    def save(self, path):
        """Write the config as JSON durably (temporary file, fsync, rename)."""
        from ddim_keras.core.durable import write_text

        write_text(path, self.to_json())

    @classmethod
    def load(cls, path, base=None):
        """Read a JSON config file.

        Keys the file omits come from ``base`` (a config or preset name), so a
        file may hold only the fields it changes.
        """
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as error:
            raise ConfigError(f"cannot read config file {path}: {error.strerror}.") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"config file {path} is not valid JSON ({error}).") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a JSON object of fields.")
        if base is None:
            return cls.from_dict(data)
        if isinstance(base, str):
            base = preset(base)
        unknown = sorted(set(data) - set(_FIELD_TYPES))
        if unknown:
            raise ConfigError(f"config file {path}: " + _unknown_keys_message(unknown))
        return base.replace(**data)


_FIELD_TYPES = {
    field.name: {"int": int, "float": float, "bool": bool, "str": str}.get(
        field.type if isinstance(field.type, str) else field.type.__name__, tuple
    )
    for field in dataclasses.fields(DiffusionConfig)
}


#: The fields of the GAN baseline, ``model`` first: absent from a diffusion config's dict.
GAN_FIELDS = tuple(name for name in _FIELD_TYPES if name == "model" or name.startswith("gan_"))

#: Fields that define a GAN's networks (checked like :data:`ARCHITECTURE_FIELDS`
#: whenever either config is a GAN's).
GAN_ARCHITECTURE_FIELDS = ("model", "gan_noise_size", "gan_width", "gan_depth")

_TYPE_WORDS = {
    int: "an integer",
    float: "a number",
    bool: "true or false",
    str: "a string",
    tuple: "a list of integers",
}


def _unknown_keys_message(keys):
    return (
        f"unknown config key(s): {', '.join(repr(k) for k in keys)}. "
        f"Known keys are: {', '.join(_FIELD_TYPES)}."
    )


#: Config fields that define the network, so that a checkpoint's weights fit a
#: model only if they agree. Keras alone does not catch every difference: the
#: U-Net is convolutional, so the weights of a 16 px run load into a 32 px model
#: without complaint (and only make noise there).
ARCHITECTURE_FIELDS = (
    "image_size",
    "widths",
    "block_depth",
    "embedding_dims",
    "embedding_max_frequency",
    # What the network's output means: a noise model's weights predict no velocity.
    "prediction",
    # A conditional network has a class embedding (and a label input) of this size.
    "num_classes",
    # Layers the example's U-Net does not have.
    "attention_heads",
    "block_embedding",
)

#: The value an architecture field has in a config.json written before the field
#: existed (runs of release 0.1.0 predate ``prediction``; unconditional runs predate
#: ``num_classes``).
_ARCHITECTURE_FIELD_BEFORE = {
    "prediction": "noise",
    "num_classes": 0,
    "model": "diffusion",
    "attention_heads": 0,
    "block_embedding": False,
}


#: Config fields a resumed run may change: how long it trains and the optimizer's
#: step size (lowering learning_rate is the way on after a diverged run), and the
#: parts of the objective that weigh, augment or average the same network's output.
RESUME_MAY_CHANGE = (
    "epochs",
    "learning_rate",
    "weight_decay",
    "loss_weighting",
    "snr_gamma",
    "augment",
    "ema_warmup",
)


def architecture_fields(config, with_gan=False):
    """``(field, value)`` for each of :data:`ARCHITECTURE_FIELDS` (widths as a list)."""
    data = config.to_dict() if isinstance(config, DiffusionConfig) else dict(config)
    if "widths" in data:
        data["widths"] = list(data["widths"])
    before = _ARCHITECTURE_FIELD_BEFORE
    keys = ARCHITECTURE_FIELDS + (GAN_ARCHITECTURE_FIELDS if with_gan or is_gan(data) else ())
    return [(key, data.get(key, before.get(key))) for key in keys]


def is_gan(config):
    """Whether a config (or its dict) is the GAN baseline's."""
    data = config.to_dict() if isinstance(config, DiffusionConfig) else config
    return data.get("model", "diffusion") == "gan"


def as_gan(config):
    """``config`` turned into the GAN baseline's: the ADA example's optimizer and EMA,
    and as many generator doublings as go from 4 x 4 to ``image_size`` (4 at 64 px)."""
    depth = max(1, (config.image_size // 4).bit_length() - 1)
    while config.image_size % 2**depth:
        depth -= 1
    return config.replace(model="gan", learning_rate=2e-4, ema=0.99, gan_depth=max(depth, 1))


def architecture_differences(a, b):
    """``"field A vs B"`` for each architecture field where configs ``a`` and ``b`` differ.

    Empty when a checkpoint of one fits a model of the other. ``a`` and ``b`` are
    DiffusionConfigs (or their ``to_dict()``).
    """
    gan = is_gan(a) or is_gan(b)
    return [
        f"{key} {value_a!r} vs {value_b!r}"
        for (key, value_a), (_, value_b) in zip(
            architecture_fields(a, gan), architecture_fields(b, gan)
        )
        if value_a != value_b
    ]


#: Named starting points. ``flowers`` is the keras.io example exactly.
PRESETS = {
    "flowers": DiffusionConfig(),
    "celeba": DiffusionConfig(dataset_repetitions=1, epochs=20),
    # Small enough to learn recognisable shapes on 2 CPU cores in minutes
    # (~0.2 s per step there): 32 px, narrow widths, 24 short epochs.
    "shapes": DiffusionConfig(
        image_size=32,
        widths=(16, 32, 64),
        block_depth=2,
        batch_size=32,
        dataset_repetitions=1,
        epochs=24,
        kid=False,
        plot_diffusion_steps=20,
        learning_rate=2e-3,
        ema=0.99,
    ),
}


def preset(name):
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}.") from None
