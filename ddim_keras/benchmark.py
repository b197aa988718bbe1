"""``python -m ddim_keras.benchmark``: runs :mod:`ddim_keras.cli.benchmark`."""

from ddim_keras.cli.benchmark import main

__all__ = ["main"]

if __name__ == "__main__":
    import sys

    from ddim_keras.cli.runner import run_cli

    sys.exit(run_cli(main))
