"""The ground floor: configs, schedules, argument checks, user-facing errors, the machine.

Plain Python and ``keras.ops``; nothing here imports another part of the package.

- :mod:`~ddim_keras.core.config`: ``DiffusionConfig``, presets, field lists;
- :mod:`~ddim_keras.core.datasets`: source names, ``--background``, ``--cache``;
- :mod:`~ddim_keras.core.schedules`: diffusion times -> (noise_rates, signal_rates);
- :mod:`~ddim_keras.core.checks`: sampling arguments, sampler names;
- :mod:`~ddim_keras.core.errors`: the user-facing errors and warnings;
- :mod:`~ddim_keras.core.backend`, :mod:`~ddim_keras.core.optional`,
  :mod:`~ddim_keras.core.devices`: the Keras backend, optional packages, the machine;
- :mod:`~ddim_keras.core.untracked`: objects kept out of Keras' tracking.
"""

#: The package name under which its Keras classes are registered ("ddim_keras>...").
PACKAGE = "ddim_keras"
