"""What the callbacks share: rebuilding from ``get_config``, and telling diverged logs."""

import math


class Configurable:
    """``from_config`` for callbacks whose ``get_config`` holds their arguments."""

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def logs_are_finite(logs, keys=("n_loss", "i_loss")):
    """False when a loss in ``logs`` is NaN or infinite (training diverged)."""
    for key in keys:
        value = (logs or {}).get(key)
        if value is not None and not math.isfinite(float(value)):
            return False
    return True
