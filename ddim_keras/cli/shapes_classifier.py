"""``python -m ddim_keras.shapes_classifier``: train the shapes classifier and save its weights."""

import os
import sys

from ddim_keras.cli.args import add_debug_argument
from ddim_keras.cli.runner import ArgumentParser, run_cli
from ddim_keras.metrics.shapes_classifier import (
    CLASSIFIER_IMAGE_SIZE,
    HELD_OUT_IMAGES,
    HELD_OUT_SEED,
    OUTPUTS,
    WEIGHTS_PATH,
    build_classifier,
    held_out_accuracy,
    load_classifier,
    train_classifier,
)


def _describe(accuracy):
    parts = ", ".join(f"{name} {accuracy[name]:.3f}" for name in OUTPUTS)
    return f"exact {accuracy['exact']:.3f} ({parts})"


def build_parser():
    parser = ArgumentParser(
        prog="python -m ddim_keras.shapes_classifier",
        description="The shapes classifier behind --kid-encoder shapes: print its held-out "
        "accuracy, or retrain it (deterministic; a minute or two on a CPU).",
    )
    parser.add_argument(
        "--retrain", action="store_true", help="train it again and write the weights file"
    )
    parser.add_argument(
        "--output",
        default=WEIGHTS_PATH,
        help="weights file to write with --retrain (default: the shipped one)",
    )
    add_debug_argument(parser)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.retrain:
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            # TensorFlow's switch for deterministic kernels (an only-TensorFlow setting).
            tf.config.experimental.enable_op_determinism()
        model = train_classifier(verbose=2)
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        # From an uncompiled copy: the file then holds no optimizer state.
        bare = build_classifier()
        bare.set_weights(model.get_weights())
        bare.save_weights(args.output)
        print(f"wrote {args.output}", file=sys.stderr)
        classifier = load_classifier(args.output)
    else:
        classifier = load_classifier()
    for size in (CLASSIFIER_IMAGE_SIZE, 16, 64):
        accuracy = held_out_accuracy(classifier, image_size=size)
        print(
            f"held-out accuracy at {size} px ({HELD_OUT_IMAGES} images, seed "
            f"{HELD_OUT_SEED}): {_describe(accuracy)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
