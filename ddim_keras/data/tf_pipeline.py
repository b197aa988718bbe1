"""The ``tf.data`` pipeline: decode, crop, composite, resize, cache, batch (as the example).

TensorFlow is imported inside the functions only.
"""

from ddim_keras.core.datasets import background_rgb
from ddim_keras.data.decode import ORIENTATIONS, pillow_rgba
from ddim_keras.data.failures import short_reason
from ddim_keras.data.folder import file_entries
from ddim_keras.data.splits import check_one_batch
from ddim_keras.data.tf_passes import DecodeReport, count_decoded, disk_cached


def preprocess_image(image, image_size, background=None):
    """Centre-crop an HxWxC image (values 0..255) to a square and resize it.

    Returns a float32 tensor of shape (image_size, image_size, 3) in [0, 1]: the
    uint8 image of :func:`preprocess_image_uint8` (what the pipelines cache),
    scaled by 1/255.
    """
    return to_unit_range(preprocess_image_uint8(image, image_size, background))


def preprocess_image_uint8(image, image_size, background=None):
    """Centre-crop, composite onto ``background``, resize; uint8 (image_size, image_size, 3).

    ``image`` is HxWxC with C = 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA),
    uint8 or uint16 (scaled to 0..255), or float in 0..255. Alpha is composited
    onto ``background`` (white, black, (R, G, B) or "R,G,B"; default white), so a
    fully transparent pixel becomes exactly the background whatever colour it holds.
    """
    import tensorflow as tf

    image = tf.convert_to_tensor(image)
    if image.dtype == tf.uint16:
        pixels = tf.cast(image, tf.float32) * (255.0 / 65535.0)
    else:
        pixels = tf.cast(image, tf.float32)
    height = tf.shape(pixels)[0]
    width = tf.shape(pixels)[1]
    side = tf.minimum(height, width)
    pixels = tf.image.crop_to_bounding_box(
        pixels, (height - side) // 2, (width - side) // 2, side, side
    )
    pixels = composite(pixels, background)
    # Antialiasing matters when downsampling: without it, resized photos alias.
    pixels = tf.image.resize(pixels, (image_size, image_size), antialias=True)
    # Antialiased (Lanczos-like) kernels overshoot slightly beyond 0..255.
    pixels = tf.round(tf.clip_by_value(pixels, 0.0, 255.0))
    return tf.ensure_shape(tf.cast(pixels, tf.uint8), (image_size, image_size, 3))


def composite(pixels, background=None):
    """RGB float32 (0..255) of HxWxC ``pixels`` (C = 1, 2, 3 or 4), alpha over ``background``.

    Gray becomes RGB; alpha (the last of 2 or 4 channels) blends each pixel with
    the background: ``colour * a + background * (1 - a)``, exact at a = 0 and 1.
    """
    import tensorflow as tf

    pixels = tf.cast(pixels, tf.float32)
    channels = pixels.shape[-1]
    if channels in (2, 4):
        colour, alpha = pixels[..., : channels - 1], pixels[..., channels - 1 :] / 255.0
    else:
        colour, alpha = pixels, None
    if colour.shape[-1] == 1:
        colour = tf.image.grayscale_to_rgb(colour)
    if alpha is None:
        return colour
    rgb = tf.constant(background_rgb(background), tf.float32)
    return colour * alpha + rgb * (1.0 - alpha)


def to_unit_range(images):
    """float32 in [0, 1] of uint8 images (any shape); float images pass unchanged."""
    import tensorflow as tf

    images = tf.convert_to_tensor(images)
    if images.dtype == tf.uint8:
        return tf.cast(images, tf.float32) / 255.0
    return images


def prepare_dataset(images_ds, config, training=True, cache="memory"):
    """Batch a dataset of single preprocessed images the way the keras.io example does.

    ``cache -> repeat(dataset_repetitions) -> shuffle(10 * batch_size) ->
    batch(batch_size, drop_remainder=True) -> prefetch``. Validation data goes
    through the same steps (shuffled too: KID is estimated per batch, so batch
    composition matters). ``training`` only names the split in error messages.

    ``cache`` is "memory" (the example's), "none", or a file name prefix for a
    cache on disk (its folder must exist; see :func:`~ddim_keras.data.tf_passes.disk_cached`
    for how processes share it). Images of dtype uint8 are cached as
    they are (a quarter of float32's memory) and become float32 in [0, 1] after
    batching; float images pass unchanged.

    Raises DataError when there are fewer images than one batch, because with
    ``drop_remainder`` such a dataset would silently yield nothing.
    """
    import tensorflow as tf

    batch_size = config.batch_size
    check_one_batch(_count_images(images_ds, batch_size), batch_size, training)
    if cache == "memory":
        images_ds = images_ds.cache()
    elif cache not in (None, "none"):
        images_ds = disk_cached(images_ds, cache)
    batches = (
        images_ds.repeat(config.dataset_repetitions)
        .shuffle(10 * batch_size)
        .batch(batch_size, drop_remainder=True)
    )
    if isinstance(batches.element_spec, tuple):  # (images, labels) of a conditional run
        if batches.element_spec[0].dtype == tf.uint8:
            batches = batches.map(
                lambda images, labels: (to_unit_range(images), labels),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
    elif batches.element_spec.dtype == tf.uint8:
        batches = batches.map(to_unit_range, num_parallel_calls=tf.data.AUTOTUNE)
    return batches.prefetch(tf.data.AUTOTUNE)


def _count_images(images_ds, enough):
    """The number of images, or at least ``enough`` of them, without a full pass."""
    import tensorflow as tf

    count = int(images_ds.cardinality())
    if count >= 0 or count == int(tf.data.INFINITE_CARDINALITY):
        return count
    # Unknown cardinality (e.g. after skipping undecodable files): decoding
    # `enough` images settles whether one batch can be filled.
    return int(images_ds.take(enough).reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))


def shapes_dataset(images, image_size, labels=None):
    """The drawn images as a tf.data dataset (resized to themselves: exactly the same).

    With ``labels`` (one int per image) its elements are (image, label).
    """
    import tensorflow as tf

    if labels is not None:
        return tf.data.Dataset.from_tensor_slices((images, labels)).map(
            lambda image, label: (preprocess_image_uint8(image, image_size), label),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return tf.data.Dataset.from_tensor_slices(images).map(
        lambda image: preprocess_image_uint8(image, image_size),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def image_files_dataset(paths, image_size, background=None):
    """Unbatched uint8 dataset of the image files ``paths``, preprocessed as a folder's are.

    Each file is decoded the way :func:`load_datasets` decodes a folder's (the
    benchmark times this); files that cannot be decoded are skipped, with a warning.
    """
    return files_dataset(file_entries(paths), image_size, background_rgb(background))


def files_dataset(entries, image_size, background, split=None, folder=None, labels=None):
    """uint8 images of ``(path, decoder, orientation)`` entries, decoded in parallel.

    Files that fail to decode are skipped; at the end of each pass over the files
    an :class:`~ddim_keras.core.errors.UnreadableImagesWarning` says how many of
    them, of which ``split`` (named relative to ``folder``). With ``labels`` (one
    int per entry) the elements are (image, label): a skipped file takes its label along.
    """
    import tensorflow as tf

    paths = tf.constant([path for path, _, _ in entries], dtype=tf.string)
    decoders = tf.constant([decoder for _, decoder, _ in entries], dtype=tf.int32)
    orientations = tf.constant([orientation for _, _, orientation in entries], dtype=tf.int32)

    def read(path, decoder, orientation):
        image = decode_image_file(path, decoder, orientation)
        return preprocess_image_uint8(image, image_size, background)

    def problem_of(entry):
        return decode_problem(entry, image_size, background)

    if labels is None:
        images = tf.data.Dataset.from_tensor_slices((paths, decoders, orientations))
        images = images.map(read, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        images = tf.data.Dataset.from_tensor_slices(
            (paths, decoders, orientations, tf.constant(labels, tf.int32))
        )
        images = images.map(
            lambda path, decoder, orientation, label: (read(path, decoder, orientation), label),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    # For damage the listing-time check cannot see (a file truncated after its
    # header): skip rather than crash mid-training, and count what was skipped.
    images = images.ignore_errors()
    return count_decoded(images, DecodeReport(entries, problem_of, split, folder))


def decode_problem(entry, image_size, background):
    """None if the ``(path, decoder, orientation)`` entry decodes as in :func:`files_dataset`,
    else why not (Pillow's reason where Pillow fails too: it says more)."""
    path, decoder, orientation = entry
    try:
        image = decode_image_file(path, decoder, orientation)
        preprocess_image_uint8(image, image_size, background)
        return None
    except Exception as error:  # TensorFlow's errors, or Pillow's through numpy_function
        reason = short_reason(error)
    try:
        with open(path, "rb") as handle:
            pillow_rgba(handle.read())
    except Exception as error:  # Pillow raises many types for damaged files
        reason = short_reason(error)
    return reason


def decode_image_file(path, decoder, orientation):
    """uint8 HxWx4 (RGBA) of an image file, upright; for use inside ``tf.data``.

    ``decoder`` picks TensorFlow (3 or 4 channels) or Pillow, ``orientation`` is
    the file's EXIF orientation (1..8), applied here: TensorFlow ignores it.
    """
    import tensorflow as tf

    contents = tf.io.read_file(path)

    def tensorflow_rgb():
        rgb = tf.io.decode_image(contents, channels=3, expand_animations=False)
        opaque = tf.fill(tf.concat([tf.shape(rgb)[:2], [1]], 0), tf.constant(255, tf.uint8))
        return tf.concat([rgb, opaque], axis=-1)

    def tensorflow_rgba():
        return tf.io.decode_image(contents, channels=4, expand_animations=False)

    def pillow():
        rgba = tf.numpy_function(pillow_rgba, [contents], tf.uint8, stateful=False)
        return tf.ensure_shape(rgba, (None, None, 4))

    image = tf.switch_case(tf.cast(decoder, tf.int32), [tensorflow_rgb, tensorflow_rgba, pillow])
    return apply_orientation(tf.ensure_shape(image, (None, None, 4)), orientation)


def apply_orientation(image, orientation):
    """Turn an HxWxC image upright by its EXIF orientation (1..8), as Pillow's exif_transpose."""
    import tensorflow as tf

    def upright(transpose, axes):
        turned = tf.transpose(image, (1, 0, 2)) if transpose else image
        return tf.reverse(turned, list(axes)) if axes else turned

    branches = [lambda rule=ORIENTATIONS[key]: upright(*rule) for key in sorted(ORIENTATIONS)]
    index = tf.clip_by_value(tf.cast(orientation, tf.int32) - 1, 0, 7)
    return tf.switch_case(index, branches)
