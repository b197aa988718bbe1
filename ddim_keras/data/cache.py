"""Disk caches of decoded images: named by what they hold, never read stale, never clashing."""

import hashlib
import json
import os


def remove_stale_cache_lock(prefix):
    """Delete what a killed process left of an unfinished disk cache at ``prefix``.

    TensorFlow writes ``PREFIX_0.lockfile`` and a temporary data file while it
    fills the cache and removes them when done; a process killed meanwhile leaves
    them, and the next run would stop with "concurrent caching iterator running".
    A cache folder belongs to one training process (its run directory), so an
    unfinished cache found at start-up is stale.
    """
    if os.path.exists(prefix + ".index"):
        return  # complete: read, not written
    folder, base = os.path.split(prefix)
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return
    for name in names:
        if name.startswith(base + "_") and (name.endswith(".lockfile") or ".tempstate" in name):
            try:
                os.remove(os.path.join(folder, name))
            except OSError:
                pass


def fingerprint(identity):
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
