"""Pure helpers of ``generate``'s modes: spherical interpolation, strips, progress bars."""

import math

import numpy as np

#: The process strip shows at most this many steps (evenly spaced, first and last included).
STRIP_MAX_COLUMNS = 20
#: Milliseconds per GIF frame.
FRAME_DURATION_MS = 120


def slerp(start, end, fraction):
    """Spherical interpolation between two arrays of the same shape.

    Walks the great circle from ``start`` (fraction 0) to ``end`` (fraction 1),
    so that the norm is interpolated smoothly rather than shrinking in the
    middle as with a straight line: the interpolated Gaussian noise still looks
    like Gaussian noise to the model. Nearly parallel inputs fall back to a
    straight line.
    """
    start = np.asarray(start, dtype=np.float64)
    end = np.asarray(end, dtype=np.float64)
    if start.shape != end.shape:
        raise ValueError(f"slerp needs arrays of one shape, got {start.shape} and {end.shape}")
    norms = np.linalg.norm(start) * np.linalg.norm(end)
    cosine = float(np.clip(np.vdot(start, end) / norms, -1.0, 1.0)) if norms > 0 else 1.0
    angle = math.acos(cosine)
    if math.sin(angle) < 1e-6:
        return (1.0 - fraction) * start + fraction * end
    return (
        math.sin((1.0 - fraction) * angle) * start + math.sin(fraction * angle) * end
    ) / math.sin(angle)


def strip_columns(num_steps, max_columns=STRIP_MAX_COLUMNS):
    """Indices of the steps shown in a strip: all, or evenly spaced with first and last."""
    if num_steps <= max_columns:
        return list(range(num_steps))
    return sorted({int(round(i)) for i in np.linspace(0, num_steps - 1, max_columns)})


def with_progress_line(frame, fraction, height=2, colour=0.25):
    """A frame with a thin bar below it, filled to ``fraction`` of the width.

    It shows where an animation is, and keeps consecutive frames distinct:
    GIF writers merge identical frames, which would break frame counts.
    """
    width = frame.shape[1]
    bar = np.ones((height, width, frame.shape[2]), dtype=frame.dtype)
    bar[:, : int(round(fraction * width))] = colour
    return np.concatenate([frame, bar], axis=0)


def grid_shape(count, cols):
    cols = max(1, min(cols, count))
    return math.ceil(count / cols), cols
