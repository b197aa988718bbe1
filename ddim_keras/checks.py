"""Checks of sampling arguments, shared by the library and every command.

Plain Python (no Keras import), so commands can check their flags before the
heavy imports. Each check raises :class:`~ddim_keras.errors.UsageError`,
which is a ``ValueError`` for library callers and exit code 2 in a command;
``name`` is how the value is called in the message (``"eta"`` in the
library, ``"--eta"`` in a command).
"""

import math
import numbers

from ddim_keras.errors import UsageError

#: Seeds are 31-bit: they travel as int32 into TensorFlow's stateless ops.
SEED_LIMIT = 2**31 - 1


def check_eta(eta, name="eta"):
    """eta in [0, 1]: 0 is deterministic DDIM, 1 the DDPM posterior variance.

    Above 1 the fresh noise would need more variance than the next noise level
    has (the DDIM paper's sigma exceeds the next noise rate), which the sampler
    could only clamp silently; below 0 means nothing.
    """
    if not isinstance(eta, numbers.Real) or not math.isfinite(eta) or not 0 <= eta <= 1:
        raise UsageError(f"{name} must be between 0 (deterministic DDIM) and 1 (DDPM), got "
                         f"{eta}; above 1 the added noise would exceed the next step's noise "
                         "level.")
    return float(eta)


def check_at_least(value, minimum, name, why=""):
    """An integer count of at least ``minimum`` (steps, images, batch sizes)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise UsageError(f"{name} must be a whole number of at least {minimum}{why}, got "
                         f"{value}.")
    return int(value)


def check_steps(steps, name="diffusion_steps"):
    return check_at_least(steps, 1, name)


def check_seed(seed, name="seed"):
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < SEED_LIMIT:
        raise UsageError(f"{name} must be between 0 and {SEED_LIMIT - 1}, got {seed}.")
    return int(seed)


def draw_seed():
    """A fresh random seed for a caller that gave none (printed, so it can be repeated)."""
    import numpy as np

    return int(np.random.SeedSequence().generate_state(1)[0] % SEED_LIMIT)
