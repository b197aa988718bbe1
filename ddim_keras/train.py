"""``python -m ddim_keras.train``: runs :mod:`ddim_keras.cli.train`."""

from ddim_keras.cli.train import main

__all__ = ["main"]

if __name__ == "__main__":
    import sys

    from ddim_keras.cli.runner import run_cli

    sys.exit(run_cli(main))
