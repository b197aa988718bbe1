"""The user-facing errors and warnings, and the exit codes commands give for them.

Anything a user can fix raises :class:`DdimError` (or a subclass): a command
(:func:`ddim_keras.cli.runner.run_cli`) turns it into a one-line message on
stderr and an exit code, without a Python traceback unless ``--debug`` was given.
"""

#: Exit codes shared by every command.
EXIT_RUNTIME = 1


EXIT_USAGE = 2


class DdimError(Exception):
    """An error whose message is meant for the user, not the developer."""

    exit_code = EXIT_RUNTIME


class UsageError(DdimError, ValueError):
    """Bad command-line flags, config values or paths (exit code 2)."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """A DiffusionConfig value or config file that cannot be used."""


class DataError(DdimError):
    """A dataset that cannot be found, downloaded or decoded (exit code 1)."""


class CheckpointError(DdimError):
    """A checkpoint that is missing, unreadable or does not match (exit code 1)."""


class UnreadableImagesWarning(UserWarning):
    """Some files in an image folder could not be decoded and were skipped."""


class SmallImagesWarning(UserWarning):
    """Some images are smaller than image_size and are upscaled."""
