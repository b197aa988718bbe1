"""Command-line flags shared by several commands."""

import argparse

from ddim_keras.core.classes import check_guidance, resolve_class
from ddim_keras.core.config import AUGMENTS, LOSS_WEIGHTINGS, PREDICTIONS
from ddim_keras.core.datasets import check_dataset_name, parse_background
from ddim_keras.core.errors import UsageError
from ddim_keras.io.run_info import run_classes


def add_model_arguments(parser):
    """The flags that choose a model (``ddim_keras.generate`` and ``ddim_keras.evaluate``);
    their values go to ``loading.resolve_source`` and ``loading.load_checked_model``."""
    source = parser.add_argument_group("model")
    source.add_argument(
        "--run",
        help="run directory written by ddim_keras.train (uses its best "
        "checkpoint, else the last, and its config.json)",
    )
    source.add_argument(
        "--checkpoint",
        help="a .keras file, or a .weights.h5 file (with --config, the "
        "config.json of the run it belongs to, or else the keras.io "
        "example's default config); with --run, replaces its best checkpoint",
    )
    source.add_argument("--config", help="config JSON the checkpoint was trained with")
    source.add_argument(
        "--kid-weights",
        default="imagenet",
        help="InceptionV3 weights for KID: 'imagenet', a local no-top .h5 file, "
        "or 'none' (random). (default: %(default)s)",
    )


def add_objective_arguments(parser):
    """``train``'s flags of the training objective; each overrides its config field."""
    objective = parser.add_argument_group(
        "training objective (defaults: the config's, which are the example's)"
    )
    objective.add_argument(
        "--prediction",
        choices=PREDICTIONS,
        help="what the network outputs: noise (the example), velocity "
        "(signal_rate*noise - noise_rate*image) or image; fixed for a run",
    )
    objective.add_argument(
        "--loss-weighting",
        choices=LOSS_WEIGHTINGS,
        help="per-example loss weights: none (the example) or min_snr (min-SNR-gamma)",
    )
    objective.add_argument(
        "--snr-gamma",
        type=float,
        help="the cap gamma of --loss-weighting min_snr (config default 5)",
    )
    objective.add_argument(
        "--augment",
        choices=AUGMENTS,
        help="training augmentation: none (the example) or flip (random horizontal flips)",
    )
    objective.add_argument(
        "--ema-warmup",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="warm the EMA decay up from 0 to the config's ema (diffusers' schedule)",
    )


#: The config field each objective flag sets.
OBJECTIVE_FLAGS = {
    "prediction": "prediction",
    "loss_weighting": "loss_weighting",
    "snr_gamma": "snr_gamma",
    "augment": "augment",
    "ema_warmup": "ema_warmup",
}


def objective_changes(args):
    """``{config field: value}`` of the objective flags given on the command line."""
    return {
        field: getattr(args, name)
        for name, field in OBJECTIVE_FLAGS.items()
        if getattr(args, name) is not None
    }


def _argparse_type(parse):
    """An argparse ``type`` from a parser that raises ValueError: its message for argparse."""

    def convert(text):
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    convert.__name__ = parse.__name__
    return convert


#: argparse ``type`` of ``--dataset``: the rule is ``config.check_dataset_name``.
dataset_type = _argparse_type(check_dataset_name)
#: argparse ``type`` of ``--background``: (R, G, B) from white, black or R,G,B.
background_type = _argparse_type(parse_background)


def add_dataset_argument(parser, help_text, **kwargs):
    """``--dataset``: a name of ``config.DATASETS`` or ``tfds:NAME[:SPLITS]``."""
    from ddim_keras.core.datasets import DATASET_METAVAR

    parser.add_argument(
        "--dataset", type=dataset_type, metavar=DATASET_METAVAR, help=help_text, **kwargs
    )


def add_background_argument(parser, default_text):
    """``--background``: the colour transparent pixels are composited onto."""
    parser.add_argument(
        "--background",
        type=background_type,
        metavar="white|black|R,G,B",
        help="colour under the transparent pixels of images with alpha (PNG, "
        f"GIF, WebP, TIFF) (default: {default_text})",
    )


def add_kid_encoder_argument(parser):
    """``--kid-encoder``: the KID feature extractor (``checks.KID_ENCODERS``)."""
    from ddim_keras.core.checks import KID_ENCODERS

    parser.add_argument(
        "--kid-encoder",
        choices=KID_ENCODERS,
        default="inception",
        help="KID features: 'inception' (InceptionV3, see --kid-weights) or "
        "'shapes' (the shipped classifier trained on the shapes dataset's "
        "labels: the offline quality measure for shapes runs; "
        "--kid-weights then does not apply) (default: %(default)s)",
    )


def add_sampler_arguments(
    parser,
    eta_help="0 = deterministic DDIM (default), 1 = DDPM-like "
    "sampling; values between mix the two (at most 1)",
):
    """--sampler, --spacing and --eta (generate, evaluate); checked by
    ``checks.check_sampler(args.sampler, args.spacing, args.eta, SAMPLER_FLAGS)``."""
    from ddim_keras.core import checks

    group = parser.add_argument_group("sampler")
    group.add_argument(
        "--sampler",
        choices=checks.SAMPLERS,
        default="ddim",
        help="step rule: ddim (the example's, default; with --eta), "
        "dpmpp_2m / dpmpp_3m (multistep DPM-Solver++, 2nd / 3rd order), "
        "heun (EDM's 2nd order, two network calls per step but the last). "
        "See the docs' 'Which sampler' page",
    )
    group.add_argument(
        "--spacing",
        choices=checks.SPACINGS,
        default="time",
        help="where the steps' network calls fall: time (the example's, "
        "default), logsnr (uniform in log signal-to-noise ratio) or karras "
        "(EDM's, rho 7)",
    )
    group.add_argument("--eta", type=float, default=0.0, help=eta_help)
    return group


def add_samplers_list_argument(parser, default, default_text):
    """--samplers: a list of SAMPLER[/SPACING] (sweep, sampler_error); parsed by
    ``checks.parse_samplers``."""
    from ddim_keras.core import checks

    parser.add_argument(
        "--samplers",
        default=default,
        help="comma-separated SAMPLER or SAMPLER/SPACING, e.g. "
        "ddim,dpmpp_2m/logsnr,heun/karras (samplers: "
        f"{', '.join(checks.SAMPLERS)}; spacings: "
        f"{', '.join(checks.SPACINGS)}; default: {default_text})",
    )


#: How add_sampler_arguments' flags are named in error messages.
SAMPLER_FLAGS = ("--sampler", "--spacing", "--eta")


def add_debug_argument(parser):
    """--debug, which every command takes (runner.run_cli and quiet.py read it from argv)."""
    parser.add_argument(
        "--debug", action="store_true", help="show Python tracebacks and TensorFlow's logs"
    )


def add_verbose_argument(parser):
    """--verbose, Keras' fit verbosity, of the commands that train (train, distill)."""
    parser.add_argument(
        "--verbose",
        type=int,
        default=None,
        choices=(0, 1, 2),
        help="Keras fit verbosity (default: progress bar on a terminal, "
        "one line per epoch otherwise)",
    )


def add_result_file_arguments(parser, what="the result file"):
    """--overwrite, --no-progress and --debug of a command that writes results and shows a
    progress bar (generate, evaluate, sampler_error)."""
    parser.add_argument(
        "--overwrite", action="store_true", help=f"replace {what} if it exists (refused otherwise)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_debug_argument(parser)


#: generate's modes that edit a given picture, and the flags that only they take.
EDIT_MODES = ("inpaint", "img2img")
EDIT_FLAGS = {
    "image": EDIT_MODES,
    "mask": ("inpaint",),
    "strength": EDIT_MODES,
    "resample": ("inpaint",),
}
#: --strength of --mode img2img unless given (inpaint: 1, from pure noise).
DEFAULT_IMG2IMG_STRENGTH = 0.6


def add_edit_arguments(parser):
    """--image, --mask, --strength, --resample (generate's inpaint and img2img modes);
    checked by :func:`check_edit_arguments`."""
    group = parser.add_argument_group("inpaint and img2img")
    group.add_argument(
        "--image",
        help="the picture to edit (--mode inpaint, img2img): any format Pillow reads, "
        "turned upright (EXIF), centre-cropped and resized to the model's size as "
        "training images are, transparent pixels on the run's background",
    )
    group.add_argument(
        "--mask",
        help="--mode inpaint: white where the picture is regenerated, black where it "
        "is kept; the picture's size, or square (its centre square); resized "
        "nearest-neighbour and thresholded at half brightness",
    )
    group.add_argument(
        "--strength",
        type=float,
        help="the diffusion time in (0, 1] the picture is noised to before the sampler "
        "runs from there; lower keeps more of it and makes fewer network calls "
        f"(img2img: default {DEFAULT_IMG2IMG_STRENGTH}; inpaint: default 1, the "
        "regenerated part from pure noise)",
    )
    group.add_argument(
        "--resample",
        type=int,
        help="--mode inpaint: do every step but the last N times, jumping back to its "
        "noise level in between (RePaint), for a better blend at N times the network "
        "calls; ddim and heun only (default 1)",
    )


def check_edit_arguments(args):
    """The edit flags fit ``args.mode``, and their values are valid (before any heavy import)."""
    from ddim_keras.core import checks
    from ddim_keras.core.errors import UsageError

    mode = args.mode
    for name, modes in EDIT_FLAGS.items():
        if getattr(args, name) is not None and mode not in modes:
            raise UsageError(
                f"--{name} is for --mode {' or '.join(modes)}, not --mode {mode}; drop "
                f"--{name}, or pass --mode {modes[0]}."
            )
    if mode in EDIT_MODES and args.image is None:
        raise UsageError(f"--mode {mode} needs --image FILE, the picture to edit.")
    if mode == "inpaint" and args.mask is None:
        raise UsageError(
            "--mode inpaint needs --mask FILE: white where the picture is regenerated, "
            "black where it is kept."
        )
    if args.strength is not None:
        checks.check_strength(args.strength, "--strength")
    if args.resample is not None:
        checks.check_resample(args.resample, args.sampler, ("--resample", "--sampler"))


# -- class-conditional runs: train --conditional, generate --class and --guidance ----------
# A conditional run records its class names in run.json ("classes", index = label;
# celeba's "label" attribute too); the commands read them back with run_classes.


def add_conditional_arguments(parser):
    """``train``'s --conditional, --label and --label-dropout."""
    group = parser.add_argument_group("class-conditional training")
    group.add_argument(
        "--conditional",
        action="store_true",
        help="train a class-conditional model (classifier-free guidance): the classes are "
        "flowers' 102 species, celeba's --label attribute (2 classes), tfds:NAME's 'label', "
        "folder's first-level subfolders (sorted), shapes' main (front) shape kind",
    )
    group.add_argument(
        "--label",
        metavar="ATTRIBUTE",
        help="with --dataset celeba --conditional: the attribute whose two values are the "
        "classes, e.g. Smiling",
    )
    group.add_argument(
        "--label-dropout",
        type=float,
        help="share of training images shown without their class, which teaches the "
        "unconditional prediction guidance needs (config label_dropout, default 0.1)",
    )


#: A conditional run's --mode grid shows one row per class, at most this many
#: unless --rows says otherwise (flowers has 102 classes).
MAX_CLASS_ROWS = 10


def add_guidance_argument(parser):
    """--guidance W (a conditional run's guidance scale; default 1)."""
    parser.add_argument(
        "--guidance",
        type=_guidance,
        metavar="W",
        help="classifier-free guidance scale of a conditional run: unconditional + W * "
        "(conditional - unconditional); 0 ignores the class, 1 the plain conditional model "
        "(the default), 3-7 follows it more closely",
    )


def add_generate_arguments(parser):
    """``generate``'s --class and --guidance."""
    group = parser.add_argument_group("class-conditional runs")
    group.add_argument(
        "--class",
        dest="class_name",
        metavar="NAME|INDEX",
        help="sample this class of a conditional run (name or index; see the run's "
        "run.json). Without it --mode grid shows one row per class (the first "
        f"{MAX_CLASS_ROWS} unless --rows is given) and other modes sample without a class",
    )
    add_guidance_argument(group)


def sampling_classes(args, config, run_path):
    """``(class names, chosen class index or None, guidance)`` of a generate command.

    Refuses --class and --guidance on an unconditional run. A conditional run
    without run.json (a .keras file, a bare checkpoint) names its classes by index.
    """
    num_classes = config.num_classes
    classes = run_classes(run_path) if num_classes else []
    if num_classes and len(classes) != num_classes:
        classes = [str(index) for index in range(num_classes)]
    if args.guidance is not None and not num_classes:
        raise UsageError(
            "--guidance needs a class-conditional run, and this one is unconditional (it was "
            "trained without --conditional). Leave out --guidance."
        )
    chosen = None if args.class_name is None else resolve_class(args.class_name, classes)
    guidance = 1.0 if args.guidance is None else args.guidance
    return classes, chosen, guidance


def _guidance(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    try:
        return check_guidance(value, "--guidance")
    except UsageError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def conditional_config(args, config):
    """``(config, class names)`` of a ``train`` command: num_classes from the source's classes.

    Unconditional (no --conditional): the config as it is and no classes.
    """
    if args.label and not args.conditional:
        raise UsageError("--label picks the classes of --conditional training; add --conditional.")
    if args.label_dropout is not None and not args.conditional:
        raise UsageError("--label-dropout needs --conditional (it drops class labels).")
    if not args.conditional:
        if config.num_classes:
            raise UsageError(
                f"the config has num_classes {config.num_classes}, a class-conditional model, "
                "but --conditional was not given, so the data would come without labels. "
                "Pass --conditional, or set num_classes to 0."
            )
        return config, []
    from ddim_keras.data.loaders import source_classes

    classes = source_classes(args.dataset, args.data_dir, args.label)
    if config.num_classes and config.num_classes != len(classes):
        raise UsageError(
            f"the config has num_classes {config.num_classes}, but --dataset {args.dataset} "
            f"has {len(classes)} classes. Leave num_classes out of the config (--conditional "
            "sets it), or set it to the number of classes."
        )
    changes = {"num_classes": len(classes)}
    if args.label_dropout is not None:
        changes["label_dropout"] = args.label_dropout
    return config.replace(**changes), classes


def check_resumed_classes(run_dir, classes):
    """Refuse to resume a run whose recorded classes differ (e.g. renamed subfolders)."""
    recorded = run_dir.read_run_info().get("classes") if run_dir.exists() else None
    if recorded and classes and recorded != classes:
        raise UsageError(
            f"run directory {run_dir.path} was trained on the classes {', '.join(recorded)}, "
            f"and the data now has {', '.join(classes)}. Nothing was changed. Resume it on "
            "the same classes, choose another --output, or pass --overwrite to replace it."
        )


def describe_classes(classes, limit=12):
    """One line naming a conditional run's classes, for the commands' output."""
    more = f", ... ({len(classes)} in all)" if len(classes) > limit else ""
    shown = ", ".join(classes[:limit]) + more
    return f"class-conditional, {len(classes)} classes: {shown}"


def describe_sampling(plan):
    """What a ``generate`` plan of a conditional run samples, in one line."""
    classes = plan.classes
    if plan.chosen is not None:
        what = f"class {plan.chosen} ({classes[plan.chosen]})"
    elif plan.class_rows:
        shown = min(plan.rows, len(classes))
        what = f"one row per class, classes 0 to {shown - 1} of {len(classes)}"
        what += "" if shown == len(classes) else " (--rows N shows more)"
    else:
        what = "no class (the unconditional prediction; --class NAME picks one)"
    return f"{describe_classes(classes)}. Sampling {what}, guidance {plan.guidance:g}."
