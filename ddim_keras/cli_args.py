"""Command-line flags shared by several commands."""


def add_model_arguments(parser):
    """The flags that choose a model (``ddim_keras.generate`` and ``ddim_keras.evaluate``);
    their values go to ``loading.resolve_source`` and ``loading.load_checked_model``."""
    source = parser.add_argument_group("model")
    source.add_argument("--run", help="run directory written by ddim_keras.train (uses its best "
                                      "checkpoint, else the last, and its config.json)")
    source.add_argument("--checkpoint",
                        help="a .keras file, or a .weights.h5 file (with --config, the "
                             "config.json of the run it belongs to, or else the keras.io "
                             "example's default config); with --run, replaces its best checkpoint")
    source.add_argument("--config", help="config JSON the checkpoint was trained with")
    source.add_argument("--kid-weights", default="imagenet",
                        help="InceptionV3 weights for KID: 'imagenet', a local no-top .h5 file, "
                             "or 'none' (random). (default: %(default)s)")
