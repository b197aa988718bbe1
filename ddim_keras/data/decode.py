"""Reading image files with Pillow: which decoder a file needs, its EXIF orientation, RGBA pixels.

NumPy and Pillow only: both pipelines (tf.data and NumPy) build on it.
"""

import io
import os
import warnings

import numpy as np

# How a folder's file is decoded, chosen from its header when the folder is listed.
# TensorFlow, 3 channels: JPEG (gray and CMYK too; MPO is the multi-picture JPEG some
# cameras write), GIF without a transparent colour (first frame), 24/32-bit BMP.
DECODE_TF_RGB = 0


# TensorFlow, 4 channels: every PNG (alpha, gray+alpha, palette and colour-key
# transparency become alpha; 16-bit is scaled to 8).
DECODE_TF_RGBA = 1


# Pillow: WebP, TIFF, GIF with a transparent colour (TensorFlow makes it black), the
# BMPs TensorFlow cannot read (1-bit, palette, alpha); any other format Pillow reads.
DECODE_PILLOW = 2


# EXIF tag of the orientation (1 = upright; 2..8 mirror and/or rotate).
_EXIF_ORIENTATION = 0x0112


def inspect_image(path):
    """``(problem, decoder, orientation, (width, height))`` of an image file.

    ``problem`` is None if the file should decode, else a short reason. PIL's
    ``verify`` parses headers and checksums without decoding pixels, so this
    stays cheap even for large folders. ``decoder`` is one of the ``_DECODE_*``
    codes, ``orientation`` the EXIF orientation 1..8 (1 = upright).
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():
            # Large images and damaged metadata (e.g. EXIF) are not reasons to skip a file.
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                image_format, mode, size = image.format, image.mode, image.size
                transparent = "transparency" in image.info
                orientation = _exif_orientation(image)
                image.verify()
    except Image.DecompressionBombError:
        # Just very large: TensorFlow decodes the common formats and resize shrinks them.
        extension = os.path.splitext(path)[1].lower()
        decoder = {
            ".png": DECODE_TF_RGBA,
            ".jpg": DECODE_TF_RGB,
            ".jpeg": DECODE_TF_RGB,
            ".bmp": DECODE_TF_RGB,
            ".gif": DECODE_TF_RGB,
        }.get(extension)
        if decoder is None:
            return "an image too large for Pillow to decode safely", None, 1, None
        return None, decoder, 1, None
    except Exception as error:  # PIL raises many types for damaged files
        return f"{type(error).__name__}: {error}".strip(), None, 1, None
    return None, _decoder_for(image_format, mode, transparent), orientation, size


def _decoder_for(image_format, mode, transparent):
    """Which of TensorFlow's decoders, or Pillow, decodes a file of this kind correctly."""
    if image_format in ("JPEG", "MPO"):
        return DECODE_TF_RGB
    if image_format == "PNG":
        return DECODE_TF_RGBA
    if image_format == "GIF" and not transparent:
        return DECODE_TF_RGB
    if image_format == "BMP" and mode == "RGB":
        return DECODE_TF_RGB
    return DECODE_PILLOW


def _exif_orientation(image):
    """The EXIF orientation (1..8) of an open PIL image; 1 when it has none."""
    # A PNG's EXIF may follow the pixels, and getexif would decode them to find it.
    if image.format not in ("JPEG", "MPO", "TIFF", "WEBP") and "exif" not in image.info:
        return 1
    try:
        value = int(image.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # malformed EXIF: treat the image as upright
        return 1
    return value if 1 <= value <= 8 else 1


#: EXIF orientation (1..8) -> (transpose first, then the axes to reverse): what turns
#: an image upright, as Pillow's exif_transpose does. 1 upright, 2 mirrored left-right,
#: 3 rotated 180, 4 mirrored top-bottom, 5 transposed, 6 needs 90 degrees clockwise,
#: 7 transversed, 8 needs 90 degrees anticlockwise. (The tf.data and NumPy pipelines
#: both read it.)
ORIENTATIONS = {
    1: (False, ()),
    2: (False, (1,)),
    3: (False, (0, 1)),
    4: (False, (0,)),
    5: (True, ()),
    6: (True, (1,)),
    7: (True, (0, 1)),
    8: (True, (0,)),
}


def pillow_rgba(contents):
    """uint8 HxWx4 of an encoded image, decoded by Pillow (first frame; 16-bit scaled)."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(bytes(contents))) as image:
            if image.mode.startswith("I") or image.mode == "F":
                # 16/32-bit gray: converting would clip at 255, so scale 0..65535 instead.
                gray = np.asarray(image, dtype=np.float64)
                if image.mode != "F":
                    gray = gray / 257.0
                elif gray.size and gray.max() <= 1.0:
                    gray = gray * 255.0  # floating-point images usually hold 0..1
                gray = np.clip(np.rint(gray), 0, 255).astype(np.uint8)
                return np.dstack([gray, gray, gray, np.full_like(gray, 255)])
            # Palette and colour-key transparency become alpha here.
            return np.asarray(image.convert("RGBA"), dtype=np.uint8)
