"""The commands: ``python -m ddim_keras.<command>`` runs ``ddim_keras.cli.<command>``.

Each command parses its flags, calls the library and prints; what commands share
is here too: flags (:mod:`~ddim_keras.cli.args`), the runner that turns errors into
messages and exit codes (:mod:`~ddim_keras.cli.runner`), quiet TensorFlow
(:mod:`~ddim_keras.cli.quiet`) and progress bars (:mod:`~ddim_keras.cli.progress`).
No library module imports a command.
"""
