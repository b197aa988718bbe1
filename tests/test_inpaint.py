"""Inpainting and image-to-image: the math against NumPy and the float64 reference
samplers, the library functions on a tiny model, and ``generate --mode inpaint|img2img``.

The math tests use the Gaussian toy of ``reference_samplers.py`` (data ~ N(MU, SCALE**2)
per pixel, exact denoiser): image-to-image from a start step must be the reference
sampler run over the rest of the grid from the input noised (in NumPy) to that
step's rates, for every sampler and spacing.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
import pytest
import reference_samplers as reference
from conftest import BACKEND, TINY, assert_not_saturated, assert_one_error, compiled, unsaturate
from keras import ops
from PIL import Image

from ddim_keras.core.checks import SAMPLERS, SPACINGS
from ddim_keras.core.config import DiffusionConfig
from ddim_keras.core.errors import UsageError
from ddim_keras.core.schedules import cosine_schedule
from ddim_keras.sampling import editing
from ddim_keras.sampling.edit_loop import edit_diffusion_graph
from ddim_keras.sampling.loops import reverse_diffusion_graph

backends = pytest.mark.backends  # `make test` runs these on every backend

SHAPE = (3, 2, 2, 3)
RNG = np.random.default_rng(7)
NOISE = RNG.standard_normal(SHAPE).astype("float32")
KNOWN = RNG.standard_normal(SHAPE).astype("float32")


def schedule(times):
    return cosine_schedule(times, reference.MIN_SIGNAL, reference.MAX_SIGNAL)


def toy_denoise(x, noise_rates, signal_rates):
    """The toy's exact denoiser in keras.ops: (predicted noises, predicted images)."""
    pred_images = reference.denoise(x, signal_rates, noise_rates)
    return (x - signal_rates * pred_images) / noise_rates, pred_images


def reference_start(spacing, steps, strength):
    """The start step in NumPy: the first grid point no noisier than time ``strength``."""
    if strength >= 1:
        return 0
    _, grid_noise = reference.grid(spacing, steps)
    _, target_noise = reference.cosine_rates(strength)
    below = np.flatnonzero(grid_noise <= target_noise + 1e-6)
    return int(below[0]) if below.size else steps


# -- the math ------------------------------------------------------------------------------


@backends
@pytest.mark.parametrize("spacing", SPACINGS)
def test_start_step_is_the_first_grid_point_no_noisier_than_the_strength(spacing):
    for steps in (1, 4, 10, 20):
        for strength in (1.0, 0.999, 0.75, 0.5, 0.3, 0.1, 0.04, 1e-3):
            start = editing.start_step(schedule, spacing, steps, strength)
            assert start == reference_start(spacing, steps, strength), (steps, strength)
    # The time grid is t = 1 - i/K: strength S runs floor(S K) steps, from t = S when S K
    # is whole, and none (the input back) below 1/K.
    if spacing == "time":
        assert editing.start_step(schedule, spacing, 10, 0.3) == 7
        assert editing.start_step(schedule, spacing, 20, 0.5) == 10
        assert editing.start_step(schedule, spacing, 20, 0.04) == 20
    else:  # their last point is t = 0: at least one step
        assert editing.start_step(schedule, spacing, 20, 1e-4) == 19


@backends
def test_noised_images_and_paste_match_numpy():
    noise_rates, signal_rates = 0.6, 0.8
    expected = signal_rates * KNOWN.astype(np.float64) + noise_rates * NOISE
    known, noises = ops.convert_to_tensor(KNOWN), ops.convert_to_tensor(NOISE)
    noised = ops.convert_to_numpy(editing.noised_images(known, noises, noise_rates, signal_rates))
    np.testing.assert_allclose(noised, expected, rtol=0, atol=1e-6)
    masks = (RNG.uniform(size=SHAPE[:3] + (1,)) < 0.5).astype("float32")
    pasted = ops.convert_to_numpy(editing.paste_known(NOISE, KNOWN, masks))
    np.testing.assert_array_equal(pasted, np.where(masks == 1, NOISE, KNOWN))


@backends
def test_jump_back_is_the_forward_transition_with_the_right_marginal():
    """x_t = (a_t/a_s) x_s + sqrt(s_t^2 - (a_t/a_s)^2 s_s^2) z: if x_s ~ N(a_s x0, s_s^2),
    then x_t ~ N(a_t x0, s_t^2), the forward process at the noisier level t."""
    rng = np.random.default_rng(3)
    rates = reference.cosine_rates([0.7, 0.55])
    (signal_t, signal_s), (noise_t, noise_s) = (map(float, pair) for pair in rates)
    images = rng.uniform(-1.5, 1.5, (4, 64, 64, 3))
    x_s = signal_s * images + noise_s * rng.standard_normal(images.shape)
    z = rng.standard_normal(images.shape)
    x_s_tensor, z_tensor = (ops.convert_to_tensor(a, "float32") for a in (x_s, z))
    x_t = ops.convert_to_numpy(
        editing.jump_back(x_s_tensor, z_tensor, noise_t, signal_t, noise_s, signal_s)
    )
    ratio = signal_t / signal_s
    expected = ratio * x_s + np.sqrt(noise_t**2 - ratio**2 * noise_s**2) * z
    np.testing.assert_allclose(x_t, expected, rtol=0, atol=1e-5)
    residual = (x_t - signal_t * images).ravel()  # should be N(0, noise_t^2)
    assert abs(residual.mean()) < 0.01
    assert abs(residual.var() / noise_t**2 - 1) < 0.02
    # Equal levels: no change (the variance clamps at 0, no NaN).
    same = editing.jump_back(x_s_tensor[:1], z_tensor[:1], noise_s, signal_s, noise_s, signal_s)
    np.testing.assert_allclose(ops.convert_to_numpy(same), x_s[:1], atol=1e-5)


@backends
def test_network_calls_of_an_edit():
    assert editing.edit_network_calls("ddim", 20, start=10) == 10
    assert editing.edit_network_calls("heun", 20, start=10) == 19
    assert editing.edit_network_calls("ddim", 20, start=0, resample=3) == 19 * 3 + 1
    assert editing.edit_network_calls("heun", 5, start=2, resample=2) == 2 * 2 * 2 + 1
    assert editing.edit_network_calls("ddim", 20, start=20) == 0


def edit_graph(sampler, spacing, paste=False, resampling=False):
    """The editing loop on the toy, compiled as production compiles it."""
    function = compiled(
        lambda x, known, masks, k, start, resample: edit_diffusion_graph(
            toy_denoise,
            schedule,
            x,
            known,
            masks,
            k,
            start_step=start,
            resample=resample,
            sampler=sampler,
            spacing=spacing,
            paste=paste,
            resampling=resampling,
        )
    )

    def run(steps, start, masks=None, resample=1):
        masks = np.ones(SHAPE[:3] + (1,), "float32") if masks is None else masks
        arguments = (NOISE, KNOWN, masks, steps, start, resample)
        tensors = [ops.convert_to_tensor(a) for a in arguments[:3]]
        tensors += [ops.convert_to_tensor(a, "int32") for a in arguments[3:]]
        return ops.convert_to_numpy(function(*tensors))

    return run


@backends
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_image_to_image_is_the_reference_sampler_from_the_noised_input(sampler, spacing):
    run = edit_graph(sampler, spacing)
    for steps, strength in ((5, 0.6), (12, 0.75), (12, 0.3), (20, 0.5), (4, 1.0)):
        start = reference_start(spacing, steps, strength)
        signal, noise = reference.grid(spacing, steps)
        # Step 0 starts from pure noise, as generation; later from the noised input.
        x = NOISE if start == 0 else signal[start] * KNOWN.astype(np.float64) + noise[start] * NOISE
        if sampler == "ddim":
            expected = reference.ddim(x, signal[start:], noise[start:])
        elif sampler == "heun":
            expected = reference.heun(x, signal[start:], noise[start:])
        else:
            order = {"dpmpp_2m": 2, "dpmpp_3m": 3}[sampler]
            expected = reference.dpm_solver_pp(x, signal[start:], noise[start:], order)
        tolerance = reference.float32_tolerance(sampler, spacing, steps - start) * 4
        np.testing.assert_allclose(
            run(steps, start), expected, rtol=0, atol=tolerance, err_msg=f"{steps} {strength}"
        )


@backends
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_pasting_leaves_independent_pixels_as_generated(sampler):
    """The toy's denoiser works pixel by pixel: pasting the known pixels must not change
    the regenerated ones, which then follow plain generation from the same noise."""
    masks = (RNG.uniform(size=SHAPE[:3] + (1,)) < 0.5).astype("float32")
    inpainted = edit_graph(sampler, "karras", paste=True)(6, 0, masks)
    generated = ops.convert_to_numpy(
        compiled(
            lambda x, k: reverse_diffusion_graph(
                toy_denoise, schedule, x, k, sampler=sampler, spacing="karras"
            )
        )(ops.convert_to_tensor(NOISE), ops.convert_to_tensor(6, "int32"))
    )
    regenerated = np.broadcast_to(masks == 1, SHAPE)
    np.testing.assert_allclose(inpainted[regenerated], generated[regenerated], atol=1e-5)
    # The known pixels end near the known images: the toy's denoiser of a pasted state.
    kept = ~regenerated
    assert (
        np.abs(inpainted[kept] - KNOWN[kept]).mean() < np.abs(generated[kept] - KNOWN[kept]).mean()
    )


@backends
@pytest.mark.skipif(BACKEND == "jax", reason="jax traces a while loop's body once")
@pytest.mark.parametrize("sampler", ["ddim", "heun"])
def test_resampling_makes_the_network_calls_it_says(sampler):
    calls = []

    def counting_denoise(x, noise_rates, signal_rates):
        calls.append(1)
        return toy_denoise(x, noise_rates, signal_rates)

    masks = np.zeros(SHAPE[:3] + (1,), "float32")
    edit_diffusion_graph(
        counting_denoise,
        schedule,
        NOISE,
        KNOWN,
        masks,
        6,
        start_step=1,
        resample=3,
        sampler=sampler,
        paste=True,
        resampling=True,
    )
    assert len(calls) == editing.edit_network_calls(sampler, 6, start=1, resample=3)


# -- the library functions on a tiny model -------------------------------------------------

S = TINY["image_size"]


@pytest.fixture(scope="module")
def model():
    from ddim_keras.model.diffusion_model import DiffusionModel

    return unsaturate(DiffusionModel(DiffusionConfig(**TINY), kid_weights=None))


@pytest.fixture(scope="module")
def pictures():
    rng = np.random.default_rng(11)
    images = rng.uniform(0.15, 0.85, (3, S, S, 3)).astype("float32")
    masks = np.zeros((3, S, S), "float32")
    masks[:, :, S // 2 :] = 1  # the right half regenerated
    masks[1, : S // 2] = 1  # and, for image 1, the top half too
    return images, masks


@backends
@pytest.mark.parametrize(
    "sampler,options",
    [
        ("ddim", {}),
        ("ddim", {"eta": 1.0, "resample": 3, "spacing": "logsnr"}),
        ("dpmpp_2m", {}),
        ("dpmpp_3m", {"spacing": "karras", "strength": 0.7}),
        ("heun", {"resample": 2}),
    ],
)
def test_inpainting_keeps_the_known_part_exactly(model, pictures, sampler, options):
    images, masks = pictures
    results = model.inpaint(images, masks, 4, seed=3, sampler=sampler, **options)
    kept = np.broadcast_to(masks[..., None] == 0, images.shape)
    np.testing.assert_array_equal(results[kept], images[kept])
    assert_not_saturated(results)
    # The regenerated part is new (not the input), and repeatable.
    assert np.abs(results[~kept] - images[~kept]).mean() > 0.02
    again = model.inpaint(images, masks, 4, seed=3, sampler=sampler, **options)
    np.testing.assert_array_equal(results, again)


@backends
def test_seeds_chunks_and_the_ends_of_the_mask(model, pictures):
    images, masks = pictures
    results = model.inpaint(images, masks, 3, seed=5, eta=0.5, batch_size=3)
    other = model.inpaint(images, masks, 3, seed=6, eta=0.5, batch_size=3)
    assert np.abs(results - other).mean() > 0.01
    # Image i's noise is keyed by its index: chunks of 1 give the same images.
    chunked = model.inpaint(images, masks, 3, seed=5, eta=0.5, batch_size=1)
    np.testing.assert_allclose(results, chunked, atol=1e-4)
    # Nothing to regenerate: the input back.
    kept = model.inpaint(images, np.zeros((S, S)), 3, seed=5)
    np.testing.assert_array_equal(kept, images)
    # Everything regenerated from pure noise, each step once: generation itself.
    generated = model.generate(3, 3, seed=5, eta=0.5)
    everything = model.inpaint(images, np.ones((S, S, 1)), 3, seed=5, eta=0.5)
    np.testing.assert_allclose(everything, generated, atol=1e-6)


@backends
def test_image_to_image_ends(model, pictures):
    images, _ = pictures
    generated = model.generate(3, 4, seed=2)
    np.testing.assert_allclose(model.image_to_image(images, 1.0, 4, seed=2), generated, atol=1e-6)
    half = model.image_to_image(images, 0.5, 4, seed=2)
    assert_not_saturated(half)
    assert np.abs(half - images).mean() < np.abs(generated - images).mean()
    # Below the time grid's last point (1/K) no step is left: the input comes back.
    np.testing.assert_array_equal(model.image_to_image(images, 0.2, 4, seed=2), images)


@backends
@pytest.mark.parametrize(
    "call,words",
    [
        (lambda m, i, k: m.image_to_image(i, 0.0, 3), ["strength", "above 0"]),
        (lambda m, i, k: m.image_to_image(i, 1.5, 3), ["strength", "at most 1"]),
        (lambda m, i, k: m.inpaint(i, k, 3, resample=0), ["resample", "at least 1"]),
        (
            lambda m, i, k: m.inpaint(i, k, 3, resample=2, sampler="dpmpp_2m"),
            ["resample 2", "one-step sampler", "dpmpp_2m"],
        ),
        (lambda m, i, k: m.inpaint(i, k * 0.5, 3), ["masks", "threshold"]),
        (lambda m, i, k: m.inpaint(i, k[:, :8], 3), ["masks", "shape"]),
        (lambda m, i, k: m.inpaint(i[:, :8], k, 3), ["images", "shape"]),
        (lambda m, i, k: m.inpaint(i * 255, k, 3), ["[0, 1]"]),
        (lambda m, i, k: m.image_to_image(i, 0.5, 3, eta=2), ["eta"]),
    ],
)
def test_bad_arguments(model, pictures, call, words):
    images, masks = pictures
    with pytest.raises(UsageError) as error:
        call(model, images, masks)
    for word in words:
        assert word in str(error.value)


# -- python -m ddim_keras.generate --mode inpaint | img2img -------------------------------

SCALE = 8  # the default enlargement of 16 px images
PAD = 2


def cells(path, count):
    """The first ``count`` tiles of a one-row image_grid PNG, back at the model's size."""
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    tile = S * SCALE
    return np.stack(
        [
            pixels[PAD : PAD + tile : SCALE, PAD + col * (tile + PAD) :][:, :tile:SCALE]
            for col in range(count)
        ]
    )


@pytest.fixture(scope="module")
def edit_files(tmp_path_factory):
    """A 20 x 16 RGBA picture with a transparent corner, its mask (right half white)."""
    root = tmp_path_factory.mktemp("edit")
    rng = np.random.default_rng(4)
    rgba = rng.integers(0, 256, (16, 20, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    rgba[:4, :6, 3] = 0  # transparent: the run's background (white) shows
    Image.fromarray(rgba, "RGBA").save(root / "photo.png")
    mask = np.zeros((16, 20), np.uint8)
    mask[:, 10:] = 255
    Image.fromarray(mask, "L").save(root / "mask.png")
    Image.fromarray(np.zeros((16, 16), np.uint8), "L").save(root / "black.png")
    Image.fromarray(np.full((10, 30), 255, np.uint8), "L").save(root / "wide.png")
    (root / "fake.png").write_text("not an image")
    # The picture as the model sees it, in NumPy: the centre 16 x 16 (columns 2..17),
    # composited onto white; no resize at 16 px.
    crop = rgba[:, 2:18].astype(np.float64)
    alpha = crop[..., 3:] / 255.0
    expected = np.rint(crop[..., :3] * alpha + 255.0 * (1 - alpha)).astype(np.uint8)
    files = {name: str(root / f"{name}.png") for name in ("photo", "mask", "black", "wide", "fake")}
    files.update(root=str(root), expected=expected, missing=str(root / "missing.png"))
    return files


def run_generate(capsys, *argv):
    from conftest import run_command

    from ddim_keras.cli import generate

    return run_command(capsys, generate.main, *argv)


def test_inpaint_command(sampling_run, edit_files, tmp_path, capsys):
    out = tmp_path / "inpainted.png"
    argv = ["--run", sampling_run, "--mode", "inpaint", "--image", edit_files["photo"]]
    argv += ["--mask", edit_files["mask"], "--steps", "3", "--seed", "1", "--num-images", "3"]
    code, stdout, err = run_generate(capsys, *argv, "--output", out, "--resample", "2")
    assert code == 0, err
    assert stdout.split() == [str(out)]
    picture, mask, *results = cells(out, 5)
    np.testing.assert_array_equal(picture, edit_files["expected"])
    # The mask's centre crop: columns 10.. of 20 are columns 8.. of the 16 seen.
    assert (mask[:, 8:] == 255).all() and (mask[:, :8] == 0).all()
    for result in results:
        np.testing.assert_array_equal(result[:, :8], picture[:, :8])
    assert np.abs(results[0][:, 8:].astype(int) - results[1][:, 8:]).mean() > 1
    # The default name says what was made; the same seed makes the same file.
    code, stdout, err = run_generate(capsys, *argv, "--output", tmp_path, "--resample", "2")
    assert code == 0, err
    assert os.path.basename(stdout.strip()) == (
        "inpaint_photo_seed1_steps3_eta0_strength1_resample2.png"
    )
    assert open(stdout.strip(), "rb").read() == out.read_bytes()


def test_img2img_command(sampling_run, edit_files, tmp_path, capsys):
    argv = ["--run", sampling_run, "--mode", "img2img", "--image", edit_files["photo"]]
    argv += ["--steps", "4", "--seed", "2", "--sampler", "heun", "--output", tmp_path]
    code, stdout, err = run_generate(capsys, *argv)
    assert code == 0, err
    path = stdout.strip()
    assert os.path.basename(path) == "img2img_photo_seed2_steps4_eta0_strength0.6_heun.png"
    picture, *results = cells(path, 5)
    np.testing.assert_array_equal(picture, edit_files["expected"])
    assert all(np.abs(result.astype(int) - picture).mean() > 1 for result in results)


BAD_EDITS = [
    # (name, argv with {placeholders}, words the message must contain)
    ("inpaint without --image", ["--mode", "inpaint", "--mask", "{mask}"], ["needs --image"]),
    ("inpaint without --mask", ["--mode", "inpaint", "--image", "{photo}"], ["needs --mask"]),
    (
        "--mask with img2img",
        ["--mode", "img2img", "--image", "{photo}", "--mask", "{mask}"],
        ["--mask is for --mode inpaint", "not --mode img2img"],
    ),
    ("--image with grid", ["--image", "{photo}"], ["--image is for", "not --mode grid"]),
    ("--strength with grid", ["--strength", "0.5"], ["--strength is for", "--mode grid"]),
    (
        "--resample with img2img",
        ["--mode", "img2img", "--image", "{photo}", "--resample", "2"],
        ["--resample is for --mode inpaint"],
    ),
    (
        "strength 0",
        ["--mode", "img2img", "--image", "{photo}", "--strength", "0"],
        ["--strength", "above 0"],
    ),
    (
        "strength 1.5",
        ["--mode", "img2img", "--image", "{photo}", "--strength", "1.5"],
        ["--strength", "at most 1"],
    ),
    (
        "strength nan",
        ["--mode", "img2img", "--image", "{photo}", "--strength", "nan"],
        ["--strength"],
    ),
    (
        "resample 0",
        ["--mode", "inpaint", "--image", "{photo}", "--mask", "{mask}", "--resample", "0"],
        ["--resample", "at least 1"],
    ),
    (
        "resample with dpmpp_2m",
        [
            "--mode",
            "inpaint",
            "--image",
            "{photo}",
            "--mask",
            "{mask}",
            "--resample",
            "3",
            "--sampler",
            "dpmpp_2m",
        ],
        ["--resample 3", "one-step sampler", "--sampler ddim"],
    ),
    (
        "missing picture",
        ["--mode", "img2img", "--image", "{missing}"],
        ["--image", "missing.png", "does not exist"],
    ),
    (
        "not a picture",
        ["--mode", "img2img", "--image", "{fake}"],
        ["--image", "fake.png", "not an image"],
    ),
    ("picture is a folder", ["--mode", "img2img", "--image", "{root}"], ["not a file"]),
    (
        "mask of another size",
        ["--mode", "inpaint", "--image", "{photo}", "--mask", "{wide}"],
        ["--mask", "30x10", "20x16", "square"],
    ),
    (
        "black mask",
        ["--mode", "inpaint", "--image", "{photo}", "--mask", "{black}"],
        ["--mask", "marks nothing to regenerate", "white"],
    ),
    (
        "not a mask",
        ["--mode", "inpaint", "--image", "{photo}", "--mask", "{fake}"],
        ["--mask", "not an image"],
    ),
    (
        "existing output",
        ["--mode", "img2img", "--image", "{photo}", "--output", "{photo}"],
        ["already exists", "--overwrite"],
    ),
]


@pytest.mark.parametrize("name,argv,words", BAD_EDITS, ids=[case[0] for case in BAD_EDITS])
def test_bad_edit_input(sampling_run, edit_files, tmp_path, capsys, name, argv, words):
    files = {key: value for key, value in edit_files.items() if isinstance(value, str)}
    argv = [arg.format(**files) for arg in argv]
    if "--output" not in argv:
        argv += ["--output", str(tmp_path / "out.png")]
    before = open(edit_files["photo"], "rb").read()
    code, _, err = run_generate(capsys, "--run", sampling_run, "--steps", "1", *argv)
    assert code == 2, err
    assert_one_error(err, words)
    assert not os.path.exists(tmp_path / "out.png")
    assert open(edit_files["photo"], "rb").read() == before
