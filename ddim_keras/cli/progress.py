"""Progress bars of the commands (tqdm on stderr; imported only when one is made)."""

import sys


def make_progress(enabled, total, description, unit):
    """A tqdm bar of ``total`` ``unit`` on stderr, a silent one when not ``enabled``."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=description,
        unit=unit,
        file=sys.stderr,
        disable=not enabled,
        dynamic_ncols=True,
        leave=False,
    )
