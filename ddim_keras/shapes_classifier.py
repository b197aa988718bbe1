"""``python -m ddim_keras.shapes_classifier``: runs :mod:`ddim_keras.cli.shapes_classifier`."""

from ddim_keras.cli.shapes_classifier import main

__all__ = ["main"]

if __name__ == "__main__":
    import sys

    from ddim_keras.cli.runner import run_cli

    sys.exit(run_cli(main))
