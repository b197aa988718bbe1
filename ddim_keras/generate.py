"""``python -m ddim_keras.generate``: runs :mod:`ddim_keras.cli.generate`."""

from ddim_keras.cli.generate import main

__all__ = ["main"]

if __name__ == "__main__":
    import sys

    from ddim_keras.cli.runner import run_cli

    sys.exit(run_cli(main))
