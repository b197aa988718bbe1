"""``python -m ddim_keras.distill``: runs :mod:`ddim_keras.cli.distill`."""

from ddim_keras.cli.distill import main

__all__ = ["main"]

if __name__ == "__main__":
    import sys

    from ddim_keras.cli.runner import run_cli

    sys.exit(run_cli(main))
