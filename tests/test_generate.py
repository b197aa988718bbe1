"""``python -m ddim_keras.generate``: every mode from the tiny trained run, the ways
of loading a model, repeatability, and bad input."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import (
    assert_not_saturated,
    assert_one_error,
    refuse_opening,
    run_command,
    write_config,
)
from PIL import Image

from ddim_keras.cli import generate
from ddim_keras.cli.runner import run_cli

S = 16  # the tiny run's image size
PAD = 2  # image_grid's padding
F = 8  # the default enlargement of 16 px images (tiles of at least 128 px)
T = S * F  # the side of a tile in grids, strips and GIF frames


def grid_size(rows, cols, size=T):
    """(width, height) of an image_grid PNG."""
    return cols * size + (cols + 1) * PAD, rows * size + (rows + 1) * PAD


def run_generate(capsys, *argv):
    return run_command(capsys, generate.main, *argv)


def ok(capsys, *argv):
    code, out, err = run_generate(capsys, *argv)
    assert code == 0, err
    assert "Traceback" not in err
    return [line for line in out.splitlines() if line.strip()], err


def frames(path):
    with Image.open(path) as image:
        return image.n_frames, image.size


def png_size(path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def grid_cells(path, rows, cols, size=T):
    """The images of an image_grid PNG, (rows * cols, size, size, 3) uint8, row by row."""
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    return np.stack(
        [
            pixels[PAD + row * (size + PAD) :][:size, PAD + col * (size + PAD) :][:, :size]
            for row in range(rows)
            for col in range(cols)
        ]
    )


# -- pure helpers ------------------------------------------------------------------------


def test_slerp_end_points_are_the_inputs():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 4, 4, 3))
    np.testing.assert_allclose(generate.slerp(a, b, 0.0), a, atol=1e-12)
    np.testing.assert_allclose(generate.slerp(a, b, 1.0), b, atol=1e-12)
    assert generate.slerp(a, b, 0.5).shape == a.shape


def test_slerp_stays_on_the_sphere():
    a = np.array([1.0, 0.0, 0.0])
    b = np.array([0.0, 1.0, 0.0])
    for fraction in np.linspace(0, 1, 7):
        point = generate.slerp(a, b, fraction)
        assert np.linalg.norm(point) == pytest.approx(1.0)
        # Equal steps in fraction are equal steps in angle.
        assert np.arctan2(point[1], point[0]) == pytest.approx(fraction * np.pi / 2)


def test_slerp_keeps_gaussian_noise_at_its_norm():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 16 * 16 * 3))
    middle = generate.slerp(a, b, 0.5)
    # Independent high-dimensional noises are nearly orthogonal, so a straight
    # line's midpoint shrinks by about 1/sqrt(2); the slerp midpoint does not.
    assert np.linalg.norm(middle) == pytest.approx(np.linalg.norm(a), rel=0.06)
    assert np.linalg.norm((a + b) / 2) < 0.8 * np.linalg.norm(a)


def test_slerp_of_parallel_inputs_is_a_straight_line():
    a = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(generate.slerp(a, 2 * a, 0.5), 1.5 * a)
    np.testing.assert_allclose(generate.slerp(a, a, 0.3), a)
    with pytest.raises(ValueError):
        generate.slerp(a, np.ones(4), 0.5)


def test_strip_columns_and_progress_line():
    assert generate.strip_columns(5, max_columns=10) == [0, 1, 2, 3, 4]
    columns = generate.strip_columns(100, max_columns=10)
    assert len(columns) == 10 and columns[0] == 0 and columns[-1] == 99
    frame = np.zeros((4, 10, 3), np.float32)
    barred = generate.with_progress_line(frame, 0.5, height=2)
    assert barred.shape == (6, 10, 3)
    assert np.all(barred[4:, :5] < 1) and np.all(barred[4:, 5:] == 1)


def test_importing_the_clis_does_not_load_tensorflow():
    # What keeps `--help` and flag errors instant.
    code = (
        "import sys, ddim_keras.generate, ddim_keras.evaluate; "
        "heavy = [m for m in ('tensorflow', 'keras') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    result = subprocess.run(
        [sys.executable, "-m", "ddim_keras.generate", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    for flag in (
        "--run",
        "--checkpoint",
        "--mode",
        "--eta",
        "--overwrite",
        "--scale",
        "interpolation",
    ):
        assert flag in result.stdout


# -- every mode from the tiny run -----------------------------------------------------------


@pytest.mark.backends  # also run on jax and torch by `make test`
def test_mixed_precision_samples_close_to_float32_under_its_own_name(
    sampling_run, tmp_path, capsys
):
    base = ("--run", sampling_run, "--steps", 2, "--seed", 4, "--output", tmp_path, "--no-progress")
    (exact,), _ = ok(capsys, *base)
    (reduced,), err = ok(capsys, *base, "--mixed-precision", "bfloat16")
    assert os.path.basename(exact) == "grid_seed4_steps2_eta0.png"
    assert os.path.basename(reduced) == "grid_seed4_steps2_eta0_bfloat16.png"
    assert "bfloat16" in err
    assert_not_saturated(grid_cells(exact, 3, 6))
    exact_pixels = np.asarray(Image.open(exact), dtype=np.int16)
    reduced_pixels = np.asarray(Image.open(reduced), dtype=np.int16)
    assert exact_pixels.shape == reduced_pixels.shape
    assert np.abs(exact_pixels - reduced_pixels).mean() < 4  # grey levels of 255

    code, _, err = run_generate(capsys, *base, "--mixed-precision", "double")
    assert code == 2
    assert_one_error(err, ["--mixed-precision"])


@pytest.mark.backends  # also run on jax and torch by `make test`
def test_samplers_and_spacings_from_the_command_line(sampling_run, tmp_path, capsys):
    """Other samplers write under their own names and land close to the example's
    sampler at many steps (the same ODE), unlike a sample from other noise."""
    base = (
        "--run",
        sampling_run,
        "--seed",
        4,
        "--output",
        tmp_path,
        "--no-progress",
        "--rows",
        1,
        "--cols",
        3,
    )
    (reference,), _ = ok(capsys, *base, "--steps", 60)
    assert_not_saturated(grid_cells(reference, 1, 3))
    reference_cells = grid_cells(reference, 1, 3).astype(np.int16)
    (other_seed,), _ = ok(capsys, *base, "--steps", 60, "--seed", 5)
    far = np.abs(grid_cells(other_seed, 1, 3).astype(np.int16) - reference_cells).mean()
    for sampler, spacing, steps in (
        ("dpmpp_2m", "logsnr", 10),
        ("dpmpp_3m", "karras", 10),
        ("heun", "time", 6),
        ("ddim", "logsnr", 30),
    ):
        (path,), _ = ok(capsys, *base, "--steps", steps, "--sampler", sampler, "--spacing", spacing)
        suffix = "".join(f"_{v}" for v in (sampler, spacing) if v not in ("ddim", "time"))
        assert os.path.basename(path) == f"grid_seed4_steps{steps}_eta0{suffix}.png"
        gap = np.abs(grid_cells(path, 1, 3).astype(np.int16) - reference_cells).mean()
        assert gap < 0.25 * far, (sampler, spacing, gap, far)


@pytest.mark.backends  # also run on jax and torch by `make test`
def test_grid(tiny_run, tmp_path, capsys):
    path = tmp_path / "grid.png"
    printed, err = ok(capsys, "--run", tiny_run, "--steps", 2, "--seed", 1, "--output", path)
    assert printed == [str(path)]
    assert png_size(path) == grid_size(3, 6)  # the example's 3 x 6 by default
    assert "sampling" in err  # the progress bar

    path = tmp_path / "small.png"
    ok(
        capsys,
        "--run",
        tiny_run,
        "--steps",
        1,
        "--rows",
        2,
        "--cols",
        3,
        "--seed",
        1,
        "--output",
        path,
        "--no-progress",
    )
    assert png_size(path) == grid_size(2, 3)

    # --num-images alone: as many rows of (at most) 6 as needed.
    path = tmp_path / "seven.png"
    ok(capsys, "--run", tiny_run, "--steps", 1, "--num-images", 7, "--seed", 1, "--output", path)
    assert png_size(path) == grid_size(2, 6)

    # --scale 1: the model's resolution; --scale 3: three times it. Same samples.
    native, tripled = tmp_path / "native.png", tmp_path / "tripled.png"
    for path, scale in ((native, 1), (tripled, 3)):
        ok(
            capsys,
            "--run",
            tiny_run,
            "--steps",
            1,
            "--rows",
            2,
            "--cols",
            3,
            "--seed",
            1,
            "--scale",
            scale,
            "--output",
            path,
            "--no-progress",
        )
    assert png_size(native) == grid_size(2, 3, size=S)
    assert png_size(tripled) == grid_size(2, 3, size=3 * S)
    small = grid_cells(native, 2, 3, size=S)
    np.testing.assert_array_equal(
        grid_cells(tripled, 2, 3, size=3 * S), small.repeat(3, axis=1).repeat(3, axis=2)
    )
    np.testing.assert_array_equal(
        grid_cells(tmp_path / "small.png", 2, 3), small.repeat(F, axis=1).repeat(F, axis=2)
    )


@pytest.mark.backends  # also run on jax and torch by `make test`
def test_images(tiny_run, tmp_path, capsys):
    folder = tmp_path / "singles"
    printed, err = ok(
        capsys,
        "--run",
        tiny_run,
        "--mode",
        "images",
        "--num-images",
        3,
        "--steps",
        2,
        "--seed",
        2,
        "--output",
        folder,
    )
    assert printed == [str(folder)]
    assert sorted(os.listdir(folder)) == ["image_0000.png", "image_0001.png", "image_0002.png"]
    assert all(png_size(folder / name) == (S, S) for name in os.listdir(folder))
    assert "Wrote 3 images" in err
    # An explicit --scale enlarges them too.
    ok(
        capsys,
        "--run",
        tiny_run,
        "--mode",
        "images",
        "--num-images",
        1,
        "--steps",
        2,
        "--seed",
        2,
        "--scale",
        2,
        "--output",
        tmp_path / "big",
        "--no-progress",
    )
    assert png_size(tmp_path / "big" / "image_0000.png") == (2 * S, 2 * S)


@pytest.mark.backends  # also run on jax and torch by `make test`
def test_process(sampling_run, tmp_path, capsys):
    printed, _ = ok(
        capsys,
        "--run",
        sampling_run,
        "--mode",
        "process",
        "--num-images",
        2,
        "--steps",
        3,
        "--seed",
        3,
        "--output",
        tmp_path / "process.gif",
    )
    gif, png = tmp_path / "process.gif", tmp_path / "process.png"
    assert printed == [str(gif), str(png)]
    count, (width, height) = frames(gif)
    assert count == 3  # one frame per step
    # Noisy images above predicted ones, plus the 2-pixel progress line.
    frame_w, half_h = grid_size(1, 2)
    assert (width, height) == (frame_w, 2 * half_h + 2)
    # The strip: 2 rows of noisy images, 2 of predictions, one column per step.
    assert png_size(png) == grid_size(4, 3)

    # Top left: the first image's initial noise; bottom right: its final sample.
    from ddim_keras.core.pictures import to_uint8, upscale
    from ddim_keras.io.loading import load_model

    model = load_model(run=sampling_run, kid_weights=None)
    strip = np.asarray(Image.open(png), np.int16)

    def cell(row, col):
        top, left = PAD + row * (T + PAD), PAD + col * (T + PAD)
        return strip[top : top + T, left : left + T]

    noise = model.initial_noise(2, seed=3)
    np.testing.assert_array_equal(cell(0, 0), upscale(to_uint8(model.denormalize(noise[:1])[0]), F))
    samples = model.generate(2, 3, seed=3)
    assert_not_saturated(samples)
    final = upscale(to_uint8(samples[0]), F).astype(np.int16)
    assert np.abs(cell(2, 2) - final).max() <= 1


@pytest.mark.backends  # also run on jax and torch by `make test`
def test_steps(sampling_run, tmp_path, capsys):
    printed, _ = ok(
        capsys,
        "--run",
        sampling_run,
        "--mode",
        "steps",
        "--num-images",
        2,
        "--steps",
        3,
        "--seed",
        4,
        "--output",
        tmp_path / "steps",
    )
    gif, png = tmp_path / "steps.gif", tmp_path / "steps.png"
    assert printed == [str(gif), str(png)]
    count, size = frames(gif)
    assert count == 3  # decoded with 1, 2 and 3 steps
    assert size == (grid_size(1, 2)[0], grid_size(1, 2)[1] + 2)
    assert png_size(png) == grid_size(3, 2)  # one row per step count

    # The last row is the ordinary 3-step sample of the same seed.
    grid_path = tmp_path / "reference.png"
    ok(
        capsys,
        "--run",
        sampling_run,
        "--num-images",
        2,
        "--steps",
        3,
        "--seed",
        4,
        "--output",
        grid_path,
    )
    assert_not_saturated(grid_cells(grid_path, 1, 2))
    strip = np.asarray(Image.open(png))
    reference = np.asarray(Image.open(grid_path))
    np.testing.assert_array_equal(strip[-(T + 2 * PAD) :], reference)


@pytest.mark.backends  # also run on jax and torch by `make test`
def test_interpolation(sampling_run, tmp_path, capsys):
    printed, _ = ok(
        capsys,
        "--run",
        sampling_run,
        "--mode",
        "interpolation",
        "--num-images",
        4,
        "--steps",
        2,
        "--seed",
        5,
        "--output",
        tmp_path / "walk.png",
    )
    gif, png = tmp_path / "walk.gif", tmp_path / "walk.png"
    assert printed == [str(gif), str(png)]
    count, size = frames(gif)
    assert count == 4
    assert size == (grid_size(1, 1)[0], grid_size(1, 1)[1] + 2)
    assert png_size(png) == grid_size(1, 4)

    # The end frames are the samples of the two noises themselves.
    ends = tmp_path / "ends.png"
    ok(
        capsys,
        "--run",
        sampling_run,
        "--num-images",
        2,
        "--steps",
        2,
        "--seed",
        5,
        "--cols",
        2,
        "--output",
        ends,
    )
    assert_not_saturated(grid_cells(ends, 1, 2))
    strip, pair = np.asarray(Image.open(png)), np.asarray(Image.open(ends))
    np.testing.assert_array_equal(strip[:, : T + 2 * PAD], pair[:, : T + 2 * PAD])
    np.testing.assert_array_equal(strip[:, -(T + 2 * PAD) :], pair[:, -(T + 2 * PAD) :])


# -- repeatability, default paths, ways of loading -------------------------------------------


@pytest.mark.backends  # also run on jax and torch by `make test`
def test_same_seed_gives_byte_identical_files(sampling_run, tmp_path, capsys):
    # Stochastic sampling (eta=1) too; eta=0 is compared across ways of loading
    # and across processes below.
    common = ["--run", sampling_run, "--num-images", 4, "--steps", 2, "--eta", 1, "--no-progress"]
    ok(capsys, *common, "--seed", 7, "--output", tmp_path / "a.png")
    ok(capsys, *common, "--seed", 7, "--output", tmp_path / "b.png")
    ok(capsys, *common, "--seed", 8, "--output", tmp_path / "c.png")
    assert_not_saturated(grid_cells(tmp_path / "a.png", 1, 4))
    first = (tmp_path / "a.png").read_bytes()
    assert first == (tmp_path / "b.png").read_bytes()
    assert first != (tmp_path / "c.png").read_bytes()


def test_default_output_is_inside_the_run(tiny_run, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    printed, err = ok(capsys, "--run", run, "--mode", "process", "--num-images", 1, "--steps", 2)
    seed = int(err.split("Seed ")[1].split()[0])  # a random seed is chosen and printed
    stem = run / "generated" / f"process_seed{seed}_steps2_eta0"
    assert printed == [f"{stem}.gif", f"{stem}.png"]
    assert os.path.isfile(f"{stem}.gif") and os.path.isfile(f"{stem}.png")

    # An existing folder as --output gets the default names.
    printed, _ = ok(
        capsys, "--run", run, "--steps", 1, "--seed", 3, "--num-images", 2, "--output", tmp_path
    )
    assert printed == [str(tmp_path / "grid_seed3_steps1_eta0.png")]

    # With --checkpoint the default folder is ./generated.
    monkeypatch.chdir(tmp_path)
    printed, _ = ok(
        capsys,
        "--checkpoint",
        run / "checkpoints" / "best.weights.h5",
        "--steps",
        1,
        "--seed",
        3,
        "--num-images",
        2,
    )
    assert printed == [str(tmp_path / "generated" / "grid_seed3_steps1_eta0.png")]


@pytest.mark.backends  # also run on jax and torch by `make test`
def test_every_way_of_loading_gives_the_same_images(sampling_run, tmp_path, capsys):
    from ddim_keras.io.loading import load_model

    common = ["--num-images", 3, "--steps", 2, "--seed", 9, "--no-progress"]
    ok(capsys, "--run", sampling_run, *common, "--output", tmp_path / "run.png")
    assert_not_saturated(grid_cells(tmp_path / "run.png", 1, 3))
    reference = (tmp_path / "run.png").read_bytes()

    best = os.path.join(sampling_run, "checkpoints", "best.weights.h5")
    bare = tmp_path / "bare.weights.h5"
    shutil.copy(best, bare)
    config = write_config(tmp_path / "tiny.json", epochs=2)
    keras_file = tmp_path / "model.keras"
    load_model(run=sampling_run, kid_weights=None).save(str(keras_file))

    sources = {
        "checkpoint in the run (its config.json found)": ["--checkpoint", best],
        "bare weights + --config": ["--checkpoint", bare, "--config", config],
        "run + explicit checkpoint + matching --config": [
            "--run",
            sampling_run,
            "--checkpoint",
            best,
            "--config",
            config,
        ],
        ".keras file": ["--checkpoint", keras_file],
    }
    for index, (name, flags) in enumerate(sources.items()):
        path = tmp_path / f"{index}.png"
        ok(capsys, *flags, *common, "--output", path)
        assert path.read_bytes() == reference, name


def test_module_entry_point_in_a_subprocess(sampling_run, tmp_path, capsys):
    path = tmp_path / "sub.png"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    command = [
        sys.executable,
        "-m",
        "ddim_keras.generate",
        "--run",
        sampling_run,
        "--steps",
        "2",
        "--num-images",
        "2",
        "--seed",
        "11",
        "--output",
        str(path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(path)
    # Same bytes as in this process: nothing depends on the process.
    ok(
        capsys,
        "--run",
        sampling_run,
        "--steps",
        2,
        "--num-images",
        2,
        "--seed",
        11,
        "--output",
        tmp_path / "here.png",
    )
    assert_not_saturated(grid_cells(path, 1, 2))
    assert path.read_bytes() == (tmp_path / "here.png").read_bytes()

    # The exit code of a refusal, and no traceback.
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    assert result.returncode == 2
    assert "already exists" in result.stderr and "Traceback" not in result.stderr


# -- bad input -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, tiny_run):
    root = tmp_path_factory.mktemp("bad")
    garbage = root / "garbage.weights.h5"
    garbage.write_bytes(b"this is not an HDF5 file")
    text = root / "model.txt"
    text.write_text("not a model")
    not_a_run = root / "not_a_run"
    not_a_run.mkdir()
    existing = root / "existing.png"
    existing.write_bytes(b"keep me")
    bare = root / "bare.weights.h5"  # the tiny run's weights, outside any run directory
    shutil.copy(os.path.join(tiny_run, "checkpoints", "best.weights.h5"), bare)
    return {
        "run": tiny_run,
        "best": os.path.join(tiny_run, "checkpoints", "best.weights.h5"),
        "config32": write_config(root / "tiny32.json", image_size=32),
        "config_widths": write_config(root / "wide.json", widths=[8, 32]),
        "garbage": str(garbage),
        "bare": str(bare),
        "text": str(text),
        "not_a_run": str(not_a_run),
        "existing": str(existing),
        "missing": str(root / "missing.weights.h5"),
        "out": str(root / "out.png"),
        "missing_dir_out": str(root / "no" / "such" / "dir" / "out.png"),
    }


BAD_INPUT = [
    # (name, argv with {placeholders}, exit code, words the message must contain)
    ("no model", [], 2, ["--run", "--checkpoint"]),
    ("steps 0", ["--run", "{run}", "--steps", "0"], 2, ["--steps", "at least 1"]),
    ("negative eta", ["--run", "{run}", "--eta", "-0.5"], 2, ["--eta"]),
    ("nan eta", ["--run", "{run}", "--eta", "nan"], 2, ["--eta"]),
    ("no images", ["--run", "{run}", "--num-images", "0"], 2, ["--num-images"]),
    ("batch 0", ["--run", "{run}", "--batch-size", "0"], 2, ["--batch-size"]),
    ("scale 0", ["--run", "{run}", "--scale", "0"], 2, ["--scale", "at least 1"]),
    ("scale not an int", ["--run", "{run}", "--scale", "2.5"], 2, ["--scale", "invalid int"]),
    ("negative seed", ["--run", "{run}", "--seed", "-1"], 2, ["--seed"]),
    ("not an int", ["--run", "{run}", "--steps", "many"], 2, ["--steps", "invalid int"]),
    ("unknown mode", ["--run", "{run}", "--mode", "video"], 2, ["--mode"]),
    (
        "grid too small",
        ["--run", "{run}", "--num-images", "7", "--rows", "2", "--cols", "3"],
        2,
        ["do not fit"],
    ),
    (
        "one-frame interpolation",
        ["--run", "{run}", "--mode", "interpolation", "--num-images", "1"],
        2,
        ["at least 2"],
    ),
    ("missing checkpoint", ["--checkpoint", "{missing}"], 1, ["does not exist"]),
    ("missing run", ["--run", "{missing}"], 1, ["does not exist"]),
    ("folder without config.json", ["--run", "{not_a_run}"], 1, ["not a run directory"]),
    ("not a checkpoint file", ["--checkpoint", "{text}"], 2, ["neither", ".keras"]),
    (
        "corrupt weights",
        ["--checkpoint", "{garbage}", "--config", "{config32}"],
        1,
        ["not a valid weights file"],
    ),
    (
        "16px run, 32px --config",
        ["--run", "{run}", "--config", "{config32}"],
        1,
        ["does not match", "image_size 16 vs 32"],
    ),
    (
        "16px checkpoint, 32px --config",
        ["--checkpoint", "{best}", "--config", "{config32}"],
        1,
        ["belongs to run", "image_size 16 vs 32"],
    ),
    (
        "bare weights, other widths",
        ["--checkpoint", "{bare}", "--config", "{config_widths}"],
        1,
        ["does not match the model's config", "widths [8, 32]"],
    ),
    (
        "bare weights, default config",
        ["--checkpoint", "{bare}"],
        1,
        ["does not match the model's config", "image_size 64"],
    ),
    (
        "output in a missing folder",
        ["--run", "{run}", "--output", "{missing_dir_out}"],
        2,
        ["does not exist"],
    ),
    (
        "existing output",
        ["--run", "{run}", "--output", "{existing}"],
        2,
        ["already exists", "--overwrite"],
    ),
    (
        "missing KID weights file",
        ["--run", "{run}", "--kid-weights", "{missing}", "--output", "{out}"],
        2,
        ["KID weights"],
    ),
    ("unknown sampler", ["--run", "{run}", "--sampler", "euler"], 2, ["--sampler", "euler"]),
    ("unknown spacing", ["--run", "{run}", "--spacing", "cosine"], 2, ["--spacing"]),
    (
        "eta with an ODE solver",
        ["--run", "{run}", "--sampler", "dpmpp_2m", "--eta", "1"],
        2,
        ["--eta", "ddim", "dpmpp_2m"],
    ),
]


@pytest.mark.parametrize("name,argv,code,words", BAD_INPUT, ids=[case[0] for case in BAD_INPUT])
def test_bad_input(bad_files, capsys, name, argv, code, words):
    argv = [arg.format(**bad_files) for arg in argv]
    # Cheap settings, and never the run's own generated/ folder, unless the case sets them.
    for flag, value in (("--steps", "1"), ("--seed", "1"), ("--output", bad_files["out"])):
        if flag not in argv:
            argv += [flag, value]
    exit_code, out, err = run_generate(capsys, *argv)
    assert exit_code == code, err
    # One paragraph, last on stderr (a note about the config used may precede it).
    assert_one_error(err, words)
    assert not os.path.exists(bad_files["out"])
    assert open(bad_files["existing"], "rb").read() == b"keep me"


def test_keras_file_with_a_contradicting_config(tiny_run, tmp_path, capsys):
    from ddim_keras.io.loading import load_model

    keras_file = tmp_path / "model.keras"
    load_model(run=tiny_run, kid_weights=None).save(str(keras_file))
    code, _, err = run_generate(
        capsys,
        "--checkpoint",
        keras_file,
        "--config",
        write_config(tmp_path / "c.json", image_size=32),
        "--output",
        tmp_path / "x.png",
        "--steps",
        "1",
    )
    assert code == 1 and "carries its own config" in err and "Traceback" not in err
    assert not os.path.exists(tmp_path / "x.png")


def test_overwrite_replaces_an_existing_output(tiny_run, tmp_path, capsys):
    path = tmp_path / "grid.png"
    path.write_bytes(b"old")
    code, _, err = run_generate(capsys, "--run", tiny_run, "--output", path, "--steps", "1")
    assert code == 2 and path.read_bytes() == b"old"
    ok(capsys, "--run", tiny_run, "--output", path, "--steps", 1, "--num-images", 2, "--overwrite")
    assert png_size(path) == grid_size(1, 2)
    assert not os.path.exists(f"{path}.tmp")

    # An images folder with files of the same names is refused as well.
    folder = tmp_path / "singles"
    ok(
        capsys,
        "--run",
        tiny_run,
        "--mode",
        "images",
        "--num-images",
        2,
        "--steps",
        1,
        "--seed",
        0,
        "--output",
        folder,
    )
    code, _, err = run_generate(
        capsys,
        "--run",
        tiny_run,
        "--mode",
        "images",
        "--num-images",
        "2",
        "--steps",
        "1",
        "--seed",
        "0",
        "--output",
        folder,
    )
    assert code == 2 and "image_0000.png" in err


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write into read-only folders"
)
def test_read_only_output_folder(tiny_run, tmp_path, capsys):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        code, _, err = run_generate(
            capsys, "--run", tiny_run, "--steps", "1", "--output", folder / "grid.png"
        )
    finally:
        folder.chmod(0o700)
    assert code == 2 and "not writable" in err and "Traceback" not in err


def test_read_only_output_folder_check(tmp_path, monkeypatch):
    # The same check, made to fail the way it does for a non-root user.
    real_access = os.access
    monkeypatch.setattr(
        os,
        "access",
        lambda path, mode: False if str(path) == str(tmp_path) else real_access(path, mode),
    )
    with pytest.raises(generate.UsageError, match="not writable"):
        generate.check_writable_folder(str(tmp_path))


def test_unreadable_checkpoint(bad_files, tmp_path, capsys, monkeypatch):
    locked = tmp_path / "locked.weights.h5"
    shutil.copy(bad_files["best"], locked)
    locked.chmod(0o000)  # unreadable for a normal user, who is stopped by os.access ...
    # ... but root (CI) reads any file, so opening it is refused here as it would be
    # for root on a root-squashed NFS share: os.access passes, the read fails.
    refuse_opening(monkeypatch, locked)
    try:
        code, _, err = run_generate(
            capsys, "--checkpoint", locked, "--steps", "1", "--output", tmp_path / "out.png"
        )
    finally:
        locked.chmod(0o600)
    assert code == 1, err
    assert_one_error(err, ["checkpoint", "locked.weights.h5", "not readable", "permissions"])
    assert not os.path.exists(tmp_path / "out.png")


def test_debug_shows_the_traceback(capsys):
    with pytest.raises(generate.UsageError):
        run_cli(generate.main, ["--steps", "0", "--run", "x", "--debug"])
