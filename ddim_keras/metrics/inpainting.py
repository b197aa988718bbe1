"""Inpainting measured on ``shapes``: does the model draw back what it was shown?

Each validation image loses the half (left, right, top or bottom) that holds the most of
its shapes; the model regenerates that half (``model.inpaint``), and the shapes
classifier labels the result. The figure is the share of results whose four labels
(circle, square, triangle present; one or two shapes) all match the classifier's labels
of the original image. The same share for plain samples of the same seed (no image
shown) is the baseline: what matches by chance, since an unconditional sample
knows nothing of the original.
"""

import numpy as np

from ddim_keras.metrics import shapes_classifier

#: The candidate halves, in the order of :func:`half_masks`' choice codes.
HALVES = ("left", "right", "top", "bottom")


def half_masks(coverage):
    """The half of each image that holds the most shape area, as inpainting masks.

    ``coverage``: (N, S, S) share of each pixel under a shape (the ``shapes``
    generator's ``coverage`` label). Returns ``(masks, choices)``: float32
    (N, S, S) with 1 on the chosen half (regenerate) and 0 on the rest, and the
    index into :data:`HALVES` of each image's half.
    """
    coverage = np.asarray(coverage, dtype=np.float32)
    size = coverage.shape[-1]
    middle = size // 2
    candidates = np.zeros((len(HALVES), size, size), dtype=np.float32)
    candidates[0, :, :middle] = 1.0
    candidates[1, :, middle:] = 1.0
    candidates[2, :middle, :] = 1.0
    candidates[3, middle:, :] = 1.0
    shape_area = np.einsum("nhw,khw->nk", coverage, candidates)
    choices = np.argmax(shape_area, axis=1)
    return candidates[choices], choices


def label_agreement(reference_probabilities, probabilities):
    """Share of rows whose outputs, thresholded at 0.5, all equal the reference's."""
    reference = np.asarray(reference_probabilities) > 0.5
    labels = np.asarray(probabilities) > 0.5
    return float(np.mean(np.all(reference == labels, axis=1)))


def inpainting_agreement(
    model,
    images,
    coverage,
    diffusion_steps,
    seed=0,
    resample=1,
    eta=0.0,
    sampler="ddim",
    spacing="time",
    batch_size=None,
    classifier=None,
    progress=None,
):
    """Inpaint the shape half of ``images`` and compare the classifier's labels.

    ``images``: (N, S, S, 3) in [0, 1] at the model's resolution; ``coverage``:
    their (N, S, S) shape coverage. Returns a dict: ``inpainted`` (share of
    inpainted images whose labels match the original's), ``unconditional`` (the
    same for ``model.generate``'s samples of the same seed, the chance baseline),
    ``recognised_inpainted`` / ``recognised_unconditional`` (the classifier's
    confident share, :func:`~ddim_keras.metrics.shapes_classifier.recognised_fraction`),
    ``halves`` (how many images lost each half) and the arrays ``masks``,
    ``inpainted_images``, ``generated_images``. ``progress(done, total)``, if
    given, counts the images of both passes.
    """
    classifier = classifier or shapes_classifier.load_classifier()
    masks, choices = half_masks(coverage)
    count = len(images)

    def counted(offset):
        return None if progress is None else (lambda done, _: progress(offset + done, 2 * count))

    common = dict(seed=seed, batch_size=batch_size, eta=eta, sampler=sampler, spacing=spacing)
    inpainted = model.inpaint(
        images, masks, diffusion_steps, resample=resample, progress=counted(0), **common
    )
    generated = model.generate(count, diffusion_steps, progress=counted(count), **common)
    originals = shapes_classifier.predict(images, classifier)
    inpainted_probabilities = shapes_classifier.predict(inpainted, classifier)
    generated_probabilities = shapes_classifier.predict(generated, classifier)
    return {
        "inpainted": label_agreement(originals, inpainted_probabilities),
        "unconditional": label_agreement(originals, generated_probabilities),
        # From the probabilities above: the classifier runs once per image set.
        "recognised_inpainted": shapes_classifier.recognised_share(inpainted_probabilities),
        "recognised_unconditional": shapes_classifier.recognised_share(generated_probabilities),
        "halves": {half: int(np.sum(choices == code)) for code, half in enumerate(HALVES)},
        "masks": masks,
        "inpainted_images": inpainted,
        "generated_images": generated,
    }
