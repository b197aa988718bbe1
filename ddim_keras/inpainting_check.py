"""``python -m ddim_keras.inpainting_check``: runs :mod:`ddim_keras.cli.inpainting_check`."""

from ddim_keras.cli.inpainting_check import main

__all__ = ["main"]

if __name__ == "__main__":
    import sys

    from ddim_keras.cli.runner import run_cli

    sys.exit(run_cli(main))
