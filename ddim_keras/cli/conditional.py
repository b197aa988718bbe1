"""Class-conditional runs in the commands: ``train --conditional``, ``--class``, ``--guidance``.

A conditional run records its class names in run.json (``"classes"``, index =
label; celeba's ``"label"`` attribute too); every command reads them back from
there (:func:`run_classes`).
"""

import argparse

from ddim_keras.core.classes import check_guidance, resolve_class
from ddim_keras.core.errors import UsageError
from ddim_keras.io.run_info import run_classes


def add_training_arguments(parser):
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
