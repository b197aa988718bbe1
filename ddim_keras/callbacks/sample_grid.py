"""A grid of samples every N epochs: PNG, TensorBoard image, inline in notebooks."""

import os

import keras
import numpy as np

from ddim_keras.callbacks import notebook
from ddim_keras.callbacks.base import Configurable, logs_are_finite
from ddim_keras.callbacks.tensorboard import summaries_available
from ddim_keras.core import pictures
from ddim_keras.core.durable import write_bytes


class SampleGrid(Configurable, keras.callbacks.Callback):
    """A ``num_rows x num_cols`` grid of samples every ``every`` epochs.

    Each sample is enlarged ``scale`` times, nearest neighbour
    (``scale=None``: :func:`ddim_keras.core.pictures.default_scale` of the image size,
    tiles of at least 128 px; 1: the model's resolution).

    The grid is generated with ``model.generate`` (the EMA network) from noise
    drawn from the same ``seed`` at every epoch, so grids show how the same
    noise is decoded as training goes on. Each grid is

    - saved as ``directory/filename`` (PNG; ``directory=None`` saves no file),
    - logged to TensorBoard as an image summary with tag ``tag`` in the run
      ``log_dir/samples`` when ``log_dir`` is given (step: the epoch index
      that Keras' ``TensorBoard`` callback uses for the epoch scalars, so
      images and scalars line up; epoch 1 is step 0; the same enlarged pixels
      as the PNG, so TensorBoard shows them at a visible size),
    - shown inline when training runs in a Jupyter or Colab notebook (detected
      with :func:`in_notebook`; ``inline=False`` turns it off, ``inline=True``
      forces it).

    Needs a model with ``generate(num_images, diffusion_steps, eta=, seed=)``
    returning images in [0, 1], such as :class:`ddim_keras.DiffusionModel`;
    ``sampler`` and ``spacing`` other than the example's ("ddim", "time") are
    passed on to it too (see ``DiffusionModel.compiled_reverse_diffusion``).
    A class-conditional model (``diffusion_config.num_classes`` > 0) shows one
    class per row (row r: class r; the first ``num_rows`` classes of a model with
    more), sampled with guidance scale ``guidance``.

    Example::

        from ddim_keras.callbacks import SampleGrid

        model.fit(train_ds, epochs=10, callbacks=[
            SampleGrid("samples", diffusion_steps=20, seed=42, log_dir="logs"),
            keras.callbacks.TensorBoard("logs"),
        ])
        # samples/epoch_0001.png ... samples/epoch_0010.png; `tensorboard --logdir logs`
        # shows them under Images, tag "samples".
    """

    def __init__(
        self,
        directory="samples",
        num_rows=3,
        num_cols=6,
        diffusion_steps=20,
        seed=42,
        every=1,
        eta=0.0,
        filename="epoch_{epoch:04d}.png",
        log_dir=None,
        tag="samples",
        inline=None,
        scale=None,
        sampler="ddim",
        spacing="time",
        guidance=1.0,
    ):
        super().__init__()
        from ddim_keras.core.checks import check_sampler
        from ddim_keras.core.classes import check_guidance

        self.sampler, self.spacing, self.eta = check_sampler(sampler, spacing, eta)
        if int(every) < 1:
            raise ValueError(f"every must be at least 1, got {every!r}")
        if scale is not None and (isinstance(scale, bool) or int(scale) != scale or scale < 1):
            raise ValueError(f"scale must be a whole number of at least 1, got {scale!r}")
        self.directory = directory
        self.num_rows = num_rows
        self.num_cols = num_cols
        self.diffusion_steps = diffusion_steps
        self.seed = seed
        self.every = int(every)
        self.filename = filename
        self.log_dir = log_dir
        self.tag = tag
        self.inline = inline
        self.scale = None if scale is None else int(scale)
        self.guidance = check_guidance(guidance)
        self.last_path = None
        self._writer = None

    def get_config(self):
        return {
            "directory": self.directory,
            "num_rows": self.num_rows,
            "num_cols": self.num_cols,
            "diffusion_steps": self.diffusion_steps,
            "seed": self.seed,
            "every": self.every,
            "eta": self.eta,
            "filename": self.filename,
            "log_dir": self.log_dir,
            "tag": self.tag,
            "inline": self.inline,
            "scale": self.scale,
            "sampler": self.sampler,
            "spacing": self.spacing,
            "guidance": self.guidance,
        }

    def make_grid(self):
        """Generate one grid, (H, W, 3) floats in [0, 1]; the same weights give the same grid.

        Enlarged by ``scale`` (default: the rule of ``pictures.default_scale``).
        """
        # The example's sampler is asked for with the example's arguments only, so any
        # model with the example's generate() signature works.
        extra = (
            {}
            if (self.sampler, self.spacing) == ("ddim", "time")
            else dict(sampler=self.sampler, spacing=self.spacing)
        )
        config = getattr(self.model, "diffusion_config", None)
        if getattr(config, "num_classes", 0):
            from ddim_keras.core.classes import class_rows

            extra.update(
                labels=class_rows(config.num_classes, self.num_rows, self.num_cols),
                guidance=self.guidance,
            )
        samples = self.model.generate(
            self.num_rows * self.num_cols,
            self.diffusion_steps,
            eta=self.eta,
            seed=self.seed,
            **extra,
        )
        scale = self.scale or pictures.default_scale(min(samples.shape[1:3]))
        return pictures.image_grid(samples, self.num_rows, self.num_cols, scale=scale)

    def _show_inline(self):
        return notebook.in_notebook() if self.inline is None else bool(self.inline)

    @property
    def writer_dir(self):
        """The TensorBoard run directory the images go to (None without ``log_dir``)."""
        return None if self.log_dir is None else os.path.join(self.log_dir, "samples")

    def log_image(self, pixels, step):
        """Write one (H, W, 3) uint8 image as an image summary at ``step``.

        Does nothing without TensorFlow (see :func:`summaries_available`).
        """
        if not summaries_available():
            return
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.writer_dir)
        with self._writer.as_default():
            tf.summary.image(
                self.tag,
                pixels[np.newaxis],
                step=int(step),
                max_outputs=1,
                description=f"{self.num_rows}x{self.num_cols} samples, "
                f"{self.diffusion_steps} steps, seed {self.seed}",
            )
        self._writer.flush()

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every or not logs_are_finite(logs):
            return  # nothing worth drawing from diverged weights
        pixels = pictures.to_uint8(self.make_grid())
        data = notebook.png_bytes(pixels)
        if self.directory is not None:
            os.makedirs(self.directory, exist_ok=True)
            self.last_path = os.path.join(self.directory, self.filename.format(epoch=epoch + 1))
            write_bytes(self.last_path, data)
        if self.log_dir is not None:
            self.log_image(pixels, epoch)
        if self._show_inline():
            print(f"Samples after epoch {epoch + 1}:")
            notebook.display_png(notebook.png_bytes(notebook.enlarge(pixels)))

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
