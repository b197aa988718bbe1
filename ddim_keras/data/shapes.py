"""The ``shapes`` source: coloured circles, squares and triangles drawn with NumPy.

Needs no download, so it is the offline demo and the source the tests use; the
generator also records what it drew (:func:`shapes_images_with_labels`), which
trains the shapes classifier behind the offline KID.
"""

import numpy as np

from ddim_keras.core.errors import UsageError

#: The shapes demo's default sizes; ``shapes_count`` overrides the train count.
SHAPES_TRAIN_COUNT = 2000


SHAPES_VALIDATION_COUNT = 500


def shapes_images(num_images, image_size, seed=0):
    """Draw ``num_images`` RGB images of 1-2 coloured circles, squares and triangles.

    Backgrounds are plain (3 in 4) or a linear gradient. The same seed gives the same
    images. Shapes are rasterised on a finer grid and averaged down, so their
    edges are antialiased. Returns uint8 of shape (N, image_size, image_size, 3).
    """
    return draw_shapes(np.random.default_rng(seed), num_images, image_size)


#: The shape kinds the generator draws, in the order of its ``kind`` codes 0/1/2.
SHAPE_KINDS = ("circle", "square", "triangle")


#: A drawn shape counts as visible when at least this share of its area is not
#: painted over by a later shape.
VISIBLE_FRACTION = 0.5


def shapes_images_with_labels(num_images, image_size, seed=0):
    """:func:`shapes_images` plus what was drawn in each image.

    The images are exactly those of ``shapes_images(num_images, image_size,
    seed)`` (the labels are recorded without drawing any extra random numbers).
    Returns ``(images, labels)``; ``labels`` is a dict of arrays over images:

    * ``kinds``: (N, 3) uint8 multi-hot over :data:`SHAPE_KINDS`, the kinds of
      the *visible* shapes (at least :data:`VISIBLE_FRACTION` of the shape's area
      is not covered by the shape drawn after it);
    * ``count``: (N,) number of visible shapes (1 or 2; the first-drawn shape
      of two can be mostly covered, so at least 1);
    * ``drawn``: (N,) number of shapes drawn (1 or 2);
    * ``shape_kind``: (N, 2) kind code of each drawn shape, -1 where none;
    * ``visible``: (N, 2) visible share of each drawn shape's area, 0 where none;
    * ``colour``: (N, 2, 3) float32 RGB (0..255) of each drawn shape, 0 where none;
    * ``coverage``: (N, image_size, image_size) float32, the share of each pixel
      covered by any shape (antialiased edges in between): where the shapes are.
    """
    return labelled_shapes(np.random.default_rng(seed), num_images, image_size)


def shapes_validation_with_labels(image_size, seed=0):
    """The ``shapes`` validation split of a training ``seed``, with the labels of
    :func:`shapes_images_with_labels` (the images are exactly the split's)."""
    return labelled_shapes(_split_rng("validation", seed), SHAPES_VALIDATION_COUNT, image_size)


def labelled_shapes(rng, num_images, image_size):
    """``(images, labels)`` of :func:`shapes_images_with_labels`, drawn from ``rng``."""
    labels = []
    images = draw_shapes(rng, num_images, image_size, labels)
    shape_kind = np.full((num_images, 2), -1, dtype=np.int64)
    visible = np.zeros((num_images, 2), dtype=np.float32)
    colour = np.zeros((num_images, 2, 3), dtype=np.float32)
    coverage = np.stack([covered for _, covered in labels]) if labels else None
    for index, (shapes, _) in enumerate(labels):
        for slot, (kind, share, rgb) in enumerate(shapes):
            shape_kind[index, slot] = kind
            visible[index, slot] = share
            colour[index, slot] = rgb
    is_visible = visible >= VISIBLE_FRACTION
    kinds = np.zeros((num_images, len(SHAPE_KINDS)), dtype=np.uint8)
    for code in range(len(SHAPE_KINDS)):
        kinds[:, code] = np.any(is_visible & (shape_kind == code), axis=1)
    return images, {
        "kinds": kinds,
        "count": is_visible.sum(axis=1).astype(np.int64),
        "drawn": (shape_kind >= 0).sum(axis=1).astype(np.int64),
        "shape_kind": shape_kind,
        "visible": visible,
        "colour": colour,
        "coverage": coverage,
    }


def shapes_split_images(split, image_size, seed, shapes_count, labels=None):
    """uint8 (N, image_size, image_size, 3): the drawn images of a split of ``shapes``.

    ``labels``, a list, gets what each image holds (see :func:`draw_shapes`).
    """
    if split == "train":
        count = SHAPES_TRAIN_COUNT if shapes_count is None else shapes_count
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
            raise UsageError(f"the shapes image count must be a positive integer, got {count!r}.")
    else:
        count = SHAPES_VALIDATION_COUNT
    return draw_shapes(_split_rng(split, seed), count, image_size, labels)


def _split_rng(split, seed):
    if split == "train":
        return np.random.default_rng(seed)
    # An independent stream, so validation never repeats training images.
    return np.random.default_rng([seed, 1])


def draw_shapes(rng, num_images, image_size, labels=None):
    """Draw the shapes images; ``labels``, a list, gets one entry per image.

    Each entry is ``(shapes, coverage)``: the drawn shapes as ``(kind, visible share,
    colour)`` and the (image_size, image_size) share of each pixel under any shape.
    Recording labels draws no random numbers, so the images do not change.
    """
    # Supersampling factor: enough sub-pixels per pixel for smooth edges while
    # keeping the fine grid around 128-256 pixels wide.
    factor = int(np.clip(256 // image_size, 2, 4))
    fine = image_size * factor
    # Pixel-centre coordinates in [0, 1) on the fine grid and the output grid.
    fine_coords = (np.arange(fine, dtype=np.float32) + 0.5) / fine
    fine_y, fine_x = np.meshgrid(fine_coords, fine_coords, indexing="ij")
    coarse_coords = (np.arange(image_size, dtype=np.float32) + 0.5) / image_size
    coarse_y, coarse_x = np.meshgrid(coarse_coords, coarse_coords, indexing="ij")

    images = np.empty((num_images, image_size, image_size, 3), dtype=np.uint8)
    for index in range(num_images):
        canvas = draw_background(rng, coarse_x, coarse_y)
        drawn = []  # (kind, coverage, colour) of each shape, for the labels
        # One or two large shapes: few enough that a small model trained for
        # minutes on a CPU learns to draw them.
        for _ in range(rng.integers(1, 3)):
            kind = rng.integers(3)
            radius = rng.uniform(0.18, 0.32)
            centre_x, centre_y = rng.uniform(radius * 0.8, 1.0 - radius * 0.8, size=2)
            angle = rng.uniform(0.0, 2.0 * np.pi)
            inside = _shape_mask(kind, fine_x - centre_x, fine_y - centre_y, radius, angle)
            # Fraction of each output pixel's sub-pixels inside the shape.
            coverage = inside.reshape(image_size, factor, image_size, factor).mean(axis=(1, 3))
            colour = _contrasting_colour(rng, canvas, coarse_x, coarse_y, centre_x, centre_y)
            coverage = coverage[..., None].astype(np.float32)
            canvas = canvas * (1.0 - coverage) + colour * coverage
            if labels is not None:
                drawn.append((int(kind), coverage[..., 0], colour))
        images[index] = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
        if labels is not None:
            uncovered = np.ones((image_size, image_size), dtype=np.float32)
            for _, covered, _ in drawn:
                uncovered *= 1.0 - covered
            labels.append((_visible_shares(drawn), 1.0 - uncovered))
    return images


def _visible_shares(drawn):
    """``(kind, visible share of its area, colour)`` per drawn shape, later shapes on top."""
    shapes = []
    for position, (kind, coverage, colour) in enumerate(drawn):
        shown = coverage.copy()
        for _, later, _ in drawn[position + 1 :]:
            shown *= 1.0 - later
        area = float(coverage.sum())
        shapes.append((kind, float(shown.sum()) / area if area > 0 else 0.0, colour))
    return shapes


def draw_background(rng, x, y):
    start = rng.uniform(0, 255, size=3).astype(np.float32)
    if rng.random() < 0.75:
        return np.broadcast_to(start, x.shape + (3,)).copy()
    end = rng.uniform(0, 255, size=3).astype(np.float32)
    direction = rng.uniform(0.0, 2.0 * np.pi)
    along = x * np.cos(direction) + y * np.sin(direction)
    # Rescale the projection to [0, 1] so the gradient spans the whole image.
    along = (along - along.min()) / max(float(np.ptp(along)), 1e-6)
    return start + (end - start) * along[..., None]


def _shape_mask(kind, dx, dy, radius, angle):
    """Boolean mask of a shape centred at offset (0, 0); kind 0/1/2 = circle/square/triangle."""
    if kind == 0:
        return dx * dx + dy * dy <= radius * radius
    cos, sin = np.cos(angle), np.sin(angle)
    if kind == 1:
        half_side = radius * 0.8  # a square of the same visual weight as the circle
        along = dx * cos + dy * sin
        across = -dx * sin + dy * cos
        return (np.abs(along) <= half_side) & (np.abs(across) <= half_side)
    # Equilateral triangle with circumradius `radius`: inside all three edges,
    # each at distance radius / 2 (the inradius) from the centre.
    inside = np.ones(dx.shape, dtype=bool)
    for edge in range(3):
        normal = angle + np.pi / 3 + edge * 2 * np.pi / 3
        inside &= dx * np.cos(normal) + dy * np.sin(normal) <= radius / 2
    return inside


def _contrasting_colour(rng, canvas, x, y, centre_x, centre_y):
    """A random colour that stands out from the background under the shape's centre."""
    row = int(np.argmin(np.abs(y[:, 0] - centre_y)))
    column = int(np.argmin(np.abs(x[0, :] - centre_x)))
    behind = canvas[row, column]
    colour = rng.uniform(0, 255, size=3).astype(np.float32)
    for _ in range(10):  # rejection sampling; gives up gracefully on bad luck
        if np.linalg.norm(colour - behind) > 100:
            break
        colour = rng.uniform(0, 255, size=3).astype(np.float32)
    return colour
