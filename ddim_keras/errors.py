"""One user-facing error type and the CLI wrapper that prints it.

Commands raise :class:`DdimError` (or a subclass) for anything a user can fix;
:func:`run_cli` turns it into a one-line message on stderr and an exit code,
without a Python traceback unless ``--debug`` was given.
"""

import argparse
import sys

from ddim_keras.quiet import quiet_tensorflow

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


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting, so that run_cli
    reports flag problems like every other usage error (and tests can call main())."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help).")


def format_error(error):
    # One line, left to the terminal to wrap: paths and phrases in it stay whole,
    # so they can be copied and grepped (textwrap broke paths at their hyphens).
    return "error: " + " ".join(str(error).split())


def run_cli(main, argv=None):
    """Run ``main(argv)`` and map errors to exit codes; returns the exit code.

    TensorFlow's C++ logs and Keras' internal warnings are hidden first
    (:mod:`ddim_keras.quiet`), unless ``--debug`` is given.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    quiet_tensorflow(argv)  # before TensorFlow loads; does nothing with --debug
    try:
        result = main(argv)
    except DdimError as error:
        if debug:
            raise
        print(format_error(error), file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        if debug:
            raise
        print("error: interrupted by the user.", file=sys.stderr)
        return 130
    return 0 if result is None else int(result)
