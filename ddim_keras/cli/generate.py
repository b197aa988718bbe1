"""``python -m ddim_keras.generate``: sample images from a trained model.

Modes (``--mode``):

* ``grid``: one PNG grid of ``--rows`` x ``--cols`` samples (default 3 x 6);
* ``images``: one PNG per sample, numbered, in a folder;
* ``process``: one batch followed through the reverse process, as an animated
  GIF (one frame per step) and a PNG strip; noisy images on top, the network's
  predicted clean images below;
* ``steps``: the same initial noise decoded with 1, 2, ..., K steps (GIF, and a
  PNG with one row per step count);
* ``interpolation``: initial noises on the great circle between two random
  noises (spherical interpolation), decoded frame by frame (GIF and PNG strip);
* ``inpaint``, ``img2img``: ``--image`` regenerated where ``--mask`` is white; noised to
  time ``--strength`` and denoised. A PNG grid: the picture (and mask), then the results.

Grids, strips and GIF frames are enlarged (nearest neighbour) so that each
image is at least 128 pixels a side; ``--scale`` sets the factor, 1 for the
model's resolution. ``images`` writes the samples as they are.

Everything is repeatable: the same ``--seed`` gives byte-identical files. The
model comes from a run directory (its best checkpoint and config.json), a
``.keras`` file, or a bare ``.weights.h5`` with its config.

Keras and TensorFlow are imported only after the flags have been checked, so
``--help`` and bad flags answer at once.
"""

import math
import os
import sys

import numpy as np

from ddim_keras.cli.args import (
    DEFAULT_IMG2IMG_STRENGTH,
    EDIT_MODES,
    MAX_CLASS_ROWS,
    SAMPLER_FLAGS,
    add_edit_arguments,
    add_generate_arguments,
    add_model_arguments,
    add_result_file_arguments,
    add_sampler_arguments,
    check_edit_arguments,
    describe_sampling,
    sampling_classes,
)
from ddim_keras.cli.gan_args import refuse_diffusion_flags
from ddim_keras.cli.progress import make_progress
from ddim_keras.cli.runner import ArgumentParser, run_cli
from ddim_keras.core import checks
from ddim_keras.core.devices import PRECISIONS, resolve_precision_name
from ddim_keras.core.errors import UsageError
from ddim_keras.core.pictures import (  # noqa: F401 (this module's names before)
    FRAME_DURATION_MS,
    STRIP_MAX_COLUMNS,
    grid_shape,
    slerp,
    strip_columns,
    with_progress_line,
)
from ddim_keras.io.loading import load_checked_model, resolve_source
from ddim_keras.io.run_dir import check_output_files, check_writable_folder

MODES = ("grid", "images", "process", "steps", "interpolation") + EDIT_MODES
DEFAULT_ROWS = 3
DEFAULT_COLS = 6
#: Frames in an interpolation unless --num-images says otherwise.
DEFAULT_INTERPOLATION_FRAMES = 10
#: Results of inpaint and img2img unless --num-images says otherwise.
DEFAULT_VARIATIONS = 4


def build_parser():
    parser = ArgumentParser(
        prog="python -m ddim_keras.generate",
        description="Generate images with a trained diffusion model: a grid, single images, "
        "or animations of the reverse process, of the number of steps and of an "
        "interpolation between noises. Prints the paths it writes.",
    )
    add_model_arguments(parser)
    add_sampler_arguments(
        parser,
        eta_help="0 = deterministic DDIM (default), 1 = DDPM-like "
        "stochastic sampling; values between mix the two (at most 1). Use 0 "
        "for smooth interpolations",
    )
    sampling = parser.add_argument_group("sampling")
    sampling.add_argument(
        "--mode", choices=MODES, default="grid", help="what to write (default: %(default)s)"
    )
    sampling.add_argument(
        "--num-images",
        type=int,
        help="samples (grid, images: default rows*cols; process, steps: "
        f"default cols), frames (interpolation: default "
        f"{DEFAULT_INTERPOLATION_FRAMES}) or results of the same picture "
        f"(inpaint, img2img: default {DEFAULT_VARIATIONS})",
    )
    sampling.add_argument(
        "--steps",
        type=int,
        help="diffusion steps (default: the config's plot_diffusion_steps, "
        "20 in the example); the largest step count in --mode steps",
    )
    sampling.add_argument(
        "--seed",
        type=int,
        help="seed of the initial noise (default: random, and printed); the "
        "same seed gives the same files",
    )
    sampling.add_argument(
        "--batch-size", type=int, help="images sampled at once (default: the config's batch_size)"
    )
    sampling.add_argument(
        "--mixed-precision",
        default="off",
        choices=PRECISIONS,
        help="precision the network samples in: off = float32 (default), "
        "bfloat16, float16, or auto (float16 on a GPU, bfloat16 on a CPU "
        "with native bfloat16, else float32). Reduced precision is "
        "faster where the hardware supports it and changes the images "
        "by about 1 %% of the pixel range; the file names get a "
        "_bfloat16/_float16 suffix",
    )
    add_edit_arguments(parser)
    add_generate_arguments(parser)
    layout = parser.add_argument_group("output")
    layout.add_argument(
        "--rows",
        type=int,
        help=f"grid rows (default {DEFAULT_ROWS}, or as many as --num-images needs)",
    )
    layout.add_argument(
        "--cols",
        type=int,
        help=f"grid columns; images per row in the animations (default {DEFAULT_COLS})",
    )
    layout.add_argument(
        "--output",
        help="grid, inpaint, img2img: the PNG file; images: their folder; animations: the "
        "path without extension (PATH.gif and PATH.png are written). For "
        "the grid and animations an existing folder receives the default "
        "names, MODE[_PICTURE]_seedS_stepsK_etaE. Default: RUN/generated/ with --run, "
        "./generated/ otherwise",
    )
    layout.add_argument(
        "--scale",
        type=int,
        help="enlarge grids, strips and GIF frames N times, nearest neighbour "
        "(each pixel an N x N block). Default: tiles of at least "
        "128 px, ceil(128 / image size): 4 for 32 px images, 1 from 128 px; "
        "1 = the model's resolution. --mode images: 1 unless given",
    )
    add_result_file_arguments(layout, "existing output files")
    return parser


# -- checks before any heavy import -------------------------------------------------------


def check_numbers(args):
    checks.check_sampler(args.sampler, args.spacing, args.eta, names=SAMPLER_FLAGS)
    if args.seed is not None:
        checks.check_seed(args.seed, "--seed")
    for flag in ("steps", "num_images", "batch_size", "rows", "cols", "scale"):
        value = getattr(args, flag, None)
        if value is not None:
            checks.check_at_least(value, 1, "--" + flag.replace("_", "-"))
    check_edit_arguments(args)


# -- the plan: what to sample and where it goes --------------------------------------------


class Plan:
    """Mode, sizes and output paths, all settled (and checked) before sampling."""

    def __init__(self, args, config, run_path, seed, precision="float32"):
        self.mode = args.mode
        self.seed = seed
        self.precision = precision
        self.steps = args.steps or config.plot_diffusion_steps
        self.eta = args.eta
        self.sampler, self.spacing = args.sampler, args.spacing
        self.batch_size = args.batch_size or config.batch_size
        self.cols = args.cols or DEFAULT_COLS
        self.rows = args.rows
        # Files for people to look at are enlarged; single images stay as sampled.
        from ddim_keras.core.pictures import default_scale

        native = self.mode == "images"
        self.edit = self.mode in EDIT_MODES
        self.classes, self.chosen, self.guidance = sampling_classes(args, config, run_path)
        # A conditional run's grid without --class: one row per class.
        self.class_rows = self.mode == "grid" and bool(self.classes) and self.chosen is None
        if self.class_rows and args.num_images is None:
            self.rows = self.rows or min(len(self.classes), MAX_CLASS_ROWS)
        self.scale = getattr(args, "scale", None) or (
            1 if native else default_scale(config.image_size)
        )
        if self.mode in ("grid", "images"):
            if args.num_images is None:
                self.rows = self.rows or DEFAULT_ROWS
                self.num_images = self.rows * self.cols
            else:
                self.num_images = args.num_images
                if args.cols is None:
                    self.cols = min(self.cols, self.num_images)
                self.rows = self.rows or math.ceil(self.num_images / self.cols)
            if self.mode == "grid" and self.rows * self.cols < self.num_images:
                raise UsageError(
                    f"{self.num_images} images do not fit a {self.rows} x "
                    f"{self.cols} grid; raise --rows/--cols or lower --num-images."
                )
        elif self.edit:
            self._plan_edit(args, config, run_path)
        elif self.mode == "interpolation":
            self.num_images = args.num_images or DEFAULT_INTERPOLATION_FRAMES
            if self.num_images < 2:
                raise UsageError(
                    "--mode interpolation needs --num-images of at least 2 (the "
                    "frames from one noise to the other)."
                )
        else:
            self.num_images = args.num_images or self.cols
        self.paths = self._output_paths(args.output, run_path if args.run else None)
        check_output_files(self.paths, args.overwrite)

    def labels(self):
        """The class of each sampled image (None: an unconditional run)."""
        from ddim_keras.core.classes import class_rows

        if not self.classes:
            return None
        if self.class_rows:
            return class_rows(len(self.classes), self.rows, self.cols)[: self.num_images]
        label = len(self.classes) if self.chosen is None else self.chosen  # none: "no class"
        return np.full(self.num_images, label, np.int32)

    def _plan_edit(self, args, config, run_path):
        """The picture (and mask) read and checked, the results' number and grid."""
        from ddim_keras.io.run_info import training_background
        from ddim_keras.io.user_images import read_edit_inputs

        self.num_images = args.num_images or DEFAULT_VARIATIONS
        default = DEFAULT_IMG2IMG_STRENGTH if self.mode == "img2img" else 1.0
        self.strength = args.strength or default  # (0 is refused)
        self.resample = args.resample or 1
        background = training_background(None, run_path if args.run else None)
        self.picture, self.mask = read_edit_inputs(
            args.image, args.mask, config.image_size, background
        )
        self.picture_name = os.path.splitext(os.path.basename(args.image))[0]
        # One grid: the picture, the mask, then the results.
        cells = self.num_images + (2 if self.mask is not None else 1)
        self.cols = args.cols or cells
        self.rows = args.rows or math.ceil(cells / self.cols)
        if self.rows * self.cols < cells:
            raise UsageError(
                f"the picture, mask and {self.num_images} results do not fit a {self.rows} x "
                f"{self.cols} grid; raise --rows/--cols or lower --num-images."
            )

    def _output_paths(self, output, run_path):
        stem = f"{self.mode}_seed{self.seed}_steps{self.steps}_eta{self.eta:g}"
        if self.edit:  # the picture's name, strength and resampling too
            stem = stem.replace("_", f"_{self.picture_name}_", 1) + f"_strength{self.strength:g}"
            stem += f"_resample{self.resample}" if self.resample > 1 else ""
        # Only what differs from the example's sampler shows in the name.
        for value, default in ((self.sampler, "ddim"), (self.spacing, "time")):
            if value != default:
                stem += f"_{value}"
        if self.precision != "float32":
            stem += f"_{self.precision}"
        if self.chosen is not None:
            stem += f"_class{self.chosen}"
        if self.classes and self.guidance != 1.0:
            stem += f"_guidance{self.guidance:g}"
        if self.mode == "images" and output is not None:
            # --output is the images' own folder, existing or not.
            base, create_levels, file_name_given = os.path.abspath(output), 0, True
        elif output is None or os.path.isdir(output) or output.endswith(("/", os.sep)):
            # A folder: default names inside it, created if needed (one level).
            if output is not None:
                folder = os.path.abspath(output)
            elif run_path is not None:
                folder = os.path.join(run_path, "generated")
            else:
                folder = os.path.abspath("generated")
            base, create_levels = os.path.join(folder, stem), 1
            file_name_given = False
        else:
            base, create_levels = os.path.abspath(output), 0
            file_name_given = True

        if self.mode == "images":
            self.images_dir = base
            check_writable_folder(base, create_levels + 1)
            if os.path.exists(base) and not os.path.isdir(base):
                raise UsageError(f"--output {base} exists and is not a folder.")
            digits = max(4, len(str(self.num_images - 1)))
            return [os.path.join(base, f"image_{i:0{digits}d}.png") for i in range(self.num_images)]
        check_writable_folder(os.path.dirname(base), create_levels)
        if self.mode == "grid" or self.edit:
            return [base if file_name_given else base + ".png"]
        root, extension = os.path.splitext(base)
        if file_name_given and extension.lower() in (".gif", ".png"):
            base = root
        return [base + ".gif", base + ".png"]


# -- writing -------------------------------------------------------------------------------


def write_atomically(save, data, path):
    """Write durably (see ddim_keras.io.durable): an interrupted run leaves no half file."""
    from ddim_keras.core.durable import write_durably

    return write_durably(path, lambda tmp_path: save(data, tmp_path), user_error=True)


def edited_cells(model, plan, how, progress):
    """The cells of an edit's grid: the picture, its mask (inpaint), then the results."""
    copies = np.repeat(plan.picture[np.newaxis], plan.num_images, axis=0)
    common = dict(seed=plan.seed, batch_size=plan.batch_size, progress=progress, **how)
    if plan.mask is None:
        results = model.image_to_image(copies, plan.strength, plan.steps, **common)
        return np.concatenate([plan.picture[np.newaxis], results])
    results = model.inpaint(
        copies, plan.mask, plan.steps, strength=plan.strength, resample=plan.resample, **common
    )
    mask_cell = np.repeat(plan.mask, 3, axis=-1)
    return np.concatenate([plan.picture[np.newaxis], mask_cell[np.newaxis], results])


def generate_files(model, plan, progress_enabled):
    from ddim_keras.core import pictures
    from ddim_keras.io import images as image_files
    from ddim_keras.sampling.chunks import sample

    mode, steps, seed = plan.mode, plan.steps, plan.seed
    scale = plan.scale
    count, batch_size = plan.num_images, plan.batch_size
    # How every image is sampled: the step rule, its spacing, eta and precision.
    how = dict(eta=plan.eta, sampler=plan.sampler, spacing=plan.spacing, precision=plan.precision)
    if plan.classes:
        how.update(labels=plan.labels(), guidance=plan.guidance)
    os.makedirs(os.path.dirname(plan.paths[0]), exist_ok=True)

    if mode in ("grid", "images"):
        with make_progress(progress_enabled, count, "sampling", "img") as bar:
            samples = model.generate(
                count,
                steps,
                seed=seed,
                batch_size=batch_size,
                progress=lambda done, total: bar.update(done - bar.n),
                **how,
            )
        if mode == "grid":
            grid = pictures.image_grid(samples, plan.rows, plan.cols, scale=scale)
            return [write_atomically(image_files.save_png, grid, plan.paths[0])]
        return [
            write_atomically(image_files.save_png, pictures.upscale(image, scale), path)
            for image, path in zip(samples, plan.paths)
        ]

    if plan.edit:
        with make_progress(progress_enabled, count, "sampling", "img") as bar:
            cells = edited_cells(model, plan, how, lambda done, _: bar.update(done - bar.n))
        grid = pictures.image_grid(cells, plan.rows, plan.cols, scale=scale)
        return [write_atomically(image_files.save_png, grid, plan.paths[0])]
    rows, cols = grid_shape(count, plan.cols)
    gif_path, png_path = plan.paths
    if mode == "process":
        noise = model.initial_noise(count, seed)
        with make_progress(progress_enabled, count, "sampling", "img") as bar:
            _, noisy, predicted = sample(
                model,
                noise,
                steps,
                seed=seed,
                batch_size=batch_size,
                record=True,
                **how,
                on_chunk=lambda done: bar.update(done - bar.n),
            )
        frames = [
            np.concatenate(
                [
                    pictures.image_grid(noisy[step], rows, cols, scale=scale),
                    pictures.image_grid(predicted[step], rows, cols, scale=scale),
                ],
                axis=0,
            )
            for step in range(steps)
        ]
        shown = strip_columns(steps)
        # Top half: each image's noisy versions along the steps; bottom half: the predictions.
        cells = [noisy[step, index] for index in range(count) for step in shown]
        cells += [predicted[step, index] for index in range(count) for step in shown]
        strip = pictures.image_grid(np.stack(cells), 2 * count, len(shown), scale=scale)
    elif mode == "steps":
        noise = model.initial_noise(count, seed)
        rows_of_images = []
        with make_progress(progress_enabled, steps * (steps + 1) // 2, "sampling", "step") as bar:
            for step_count in range(1, steps + 1):
                rows_of_images.append(
                    sample(model, noise, step_count, seed=seed, batch_size=batch_size, **how)
                )
                bar.update(step_count)
        frames = [pictures.image_grid(images, rows, cols, scale=scale) for images in rows_of_images]
        strip = pictures.image_grid(
            np.concatenate(rows_of_images, axis=0), steps, count, scale=scale
        )
    else:  # interpolation
        start, end = model.initial_noise(2, seed)
        fractions = np.linspace(0.0, 1.0, count)
        noise = np.stack([slerp(start, end, f) for f in fractions]).astype(np.float32)
        with make_progress(progress_enabled, count, "sampling", "frame") as bar:
            decoded = sample(
                model,
                noise,
                steps,
                seed=seed,
                batch_size=batch_size,
                **how,
                on_chunk=lambda done: bar.update(done - bar.n),
            )
        frames = [pictures.image_grid(image[None], 1, 1, scale=scale) for image in decoded]
        strip = pictures.image_grid(decoded, 1, count, scale=scale)

    frames = [
        with_progress_line(frame, (index + 1) / len(frames)) for index, frame in enumerate(frames)
    ]
    save_gif = lambda data, path: image_files.save_gif(  # noqa: E731
        data, path, duration_ms=FRAME_DURATION_MS
    )
    return [
        write_atomically(save_gif, frames, gif_path),
        write_atomically(image_files.save_png, strip, png_path),
    ]


# -- main ----------------------------------------------------------------------------------


def generate(args):
    check_numbers(args)
    say = lambda message: print(message, file=sys.stderr)  # noqa: E731
    checkpoint, config, run_path = resolve_source(args.run, args.checkpoint, args.config, say)
    refuse_diffusion_flags(args, config, "generate")  # a GAN run: grid and images only
    seed = args.seed if args.seed is not None else checks.draw_seed()
    # "auto" asks TensorFlow for GPUs; the other choices need no import.
    precision = resolve_precision_name(args.mixed_precision)
    if config is not None:
        plan = Plan(args, config, run_path, seed, precision)

    # Heavy imports (Keras, TensorFlow) only now that the cheap checks have passed.
    model = load_checked_model(checkpoint, config, args.kid_weights, args.debug)
    if config is None:  # a .keras file: its own config decides the defaults
        refuse_diffusion_flags(args, model.diffusion_config, "generate")
        plan = Plan(args, model.diffusion_config, run_path, seed, precision)
    if args.seed is None:
        say(f"Seed {seed} (pass --seed {seed} to repeat).")
    if args.mixed_precision != "off":
        say(f"Sampling in {precision}.")
    if plan.classes:
        say(describe_sampling(plan))
    paths = generate_files(model, plan, progress_enabled=not args.no_progress)
    for path in paths if plan.mode != "images" else [plan.images_dir]:
        print(path)
    if plan.mode == "images":
        say(f"Wrote {len(paths)} images.")
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    return generate(args)


if __name__ == "__main__":
    sys.exit(run_cli(main))
