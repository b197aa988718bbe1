"""``python -m ddim_keras.sampler_error``: runs :mod:`ddim_keras.cli.sampler_error`."""

from ddim_keras.cli.sampler_error import main

__all__ = ["main"]

if __name__ == "__main__":
    import sys

    from ddim_keras.cli.runner import run_cli

    sys.exit(run_cli(main))
