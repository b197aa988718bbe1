"""How every command runs: flag errors as usage errors, user errors as one line and an exit code."""

import argparse
import sys

from ddim_keras.cli.quiet import quiet_tensorflow
from ddim_keras.core.backend import prepare_command_backend
from ddim_keras.core.errors import DdimError, UsageError


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

    First the Keras backend is settled and, on JAX, XLA:CPU's YNNPACK flag set
    for this process (:func:`ddim_keras.core.backend.prepare_command_backend`);
    then TensorFlow's C++ logs and Keras' internal warnings are hidden
    (:mod:`ddim_keras.cli.quiet`), unless ``--debug`` is given.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    prepare_command_backend()
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
