"""A holder that keeps objects out of Keras' attribute tracking.

Keras tracks every layer, variable, list and dict assigned to a layer's or
model's attribute and writes what it tracks into checkpoints. An object
reached only through an :class:`Untracked` is not walked: the KID encoder's
fixed ImageNet weights (~22M values) and the model's reduced-precision
sampling copies stay out of every checkpoint, whose layout stays the
keras.io example's.
"""


class Untracked:
    """``holder.value`` is invisible to Keras' tracking (a plain Python object)."""

    def __init__(self, value=None):
        self.value = value
