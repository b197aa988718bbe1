"""Showing pictures inline when training runs in a Jupyter or Colab notebook."""

import io
import sys

from ddim_keras.core import pictures


def in_notebook():
    """True inside a Jupyter/Colab kernel, where rich output can be shown inline.

    Detected, not configured: the IPython shell of a notebook kernel is a
    ``ZMQInteractiveShell`` (Colab's shell is a subclass of it). A terminal
    IPython, a plain ``python`` process and pytest all give False. IPython is
    never imported here: a process that has not imported it is no notebook.
    """
    ipython = sys.modules.get("IPython")
    if ipython is None or not hasattr(ipython, "get_ipython"):
        return False
    shell = ipython.get_ipython()
    if shell is None:
        return False
    names = {cls.__name__ for cls in type(shell).__mro__}
    return "ZMQInteractiveShell" in names or "google.colab" in sys.modules


def png_bytes(pixels):
    """PNG file contents of one (H, W, 3) uint8 image."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def display_png(data):
    """Show PNG bytes as a notebook output (``image/png``)."""
    from IPython.display import Image, display

    display(Image(data=data, format="png"))


def enlarge(pixels, min_width=384):
    """Nearest-neighbour upscale by a whole factor so small grids are visible inline."""
    return pictures.upscale(pixels, max(1, min_width // pixels.shape[1]))
