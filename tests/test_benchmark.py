"""The benchmark command (and its library, ddim_keras.bench) on a tiny config: every field,
the FLOP count, and its refusals; its runs on JAX and PyTorch without TensorFlow, --skip,
--backends, and tools/gpu_benchmark.sh.

No timing is asserted: only that every number is there, positive and finite,
and that the derived numbers follow from the measured ones.
"""

import contextlib
import io
import json
import math
import os
import shutil
import subprocess
import sys

import pytest
from conftest import without_tensorflow_env, write_config

from ddim_keras.bench import backends, data_pipeline, tables
from ddim_keras.bench.defaults import PARTS
from ddim_keras.bench.flops import forward_flops
from ddim_keras.cli import benchmark
from ddim_keras.cli.runner import run_cli
from ddim_keras.core.backend import BACKENDS, jaxlib_takes_xla_cpu_library_flag
from ddim_keras.core.config import PRESETS
from ddim_keras.core.errors import UsageError

TINY_ARGS = [
    "--steps",
    "2",
    "--train-steps",
    "2",
    "--num-images",
    "4",
    "--matmul-size",
    "256",
    "--repeats",
    "2",
    "--mixed-precision",
    "bfloat16",
    "--data-files",
    "8",
]

REQUIRED = {
    "train": ("images_per_s", "first_step_s", "step_s"),
    "sampling": ("compiled_images_per_s", "loop_images_per_s", "ratio"),
    "data": ("images_per_s", "train_images_per_s", "ratio", "seconds"),
    "memory": ("peak_rss_mb",),
    "flops": ("per_image", "achieved_per_s", "matmul_per_s", "utilization"),
}


def conv_flops(size, kernel, channels_in, channels_out):
    """2 FLOPs per multiply-add, plus one per output for the bias (per image)."""
    return (
        2 * size * size * kernel * kernel * channels_in * channels_out + size * size * channels_out
    )


def unet_flops(image_size, widths, block_depth, embedding_dims):
    """The U-Net of network.py, counted from its description, not from Keras layers."""
    total = 0

    def residual_block(size, channels_in, width):
        flops = 0 if channels_in == width else conv_flops(size, 1, channels_in, width)
        return flops + conv_flops(size, 3, channels_in, width) + conv_flops(size, 3, width, width)

    size = image_size
    total += conv_flops(size, 1, 3, widths[0])
    channels = widths[0] + embedding_dims  # the embedding is concatenated
    skips = []
    for width in widths[:-1]:
        for _ in range(block_depth):
            total += residual_block(size, channels, width)
            channels = width
            skips.append(channels)
        size //= 2
    for _ in range(block_depth):
        total += residual_block(size, channels, widths[-1])
        channels = widths[-1]
    for width in reversed(widths[:-1]):
        size *= 2
        for _ in range(block_depth):
            total += residual_block(size, channels + skips.pop(), width)
            channels = width
    return total + conv_flops(size, 1, channels, 3)


@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    config = write_config(root / "tiny.json")  # 16 px, widths [8, 16], depth 1, batch 4
    output = root / "bench.json"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = benchmark.main(["--config", config, "--output", str(output)] + TINY_ARGS)
    assert code == 0
    with open(output, encoding="utf-8") as handle:
        result = json.load(handle)
    result["printed"] = printed.getvalue()
    return result


def test_json_has_every_field_positive_and_finite(tiny_result):
    assert isinstance(tiny_result["device"], str)
    assert tiny_result["device"].startswith(("CPU: ", "GPU: "))
    assert tiny_result["batch_size"] == 4 and tiny_result["steps"] == 2
    assert tiny_result["config"]["image_size"] == 16
    assert tiny_result["config"]["widths"] == [8, 16]
    backend = tiny_result["backend"]
    assert backend in BACKENDS
    assert set(tiny_result["versions"]) >= {"python", "keras", backend}
    assert tiny_result["skipped"] == {}
    for section, keys in REQUIRED.items():
        for key in keys:
            value = tiny_result[section][key]
            assert isinstance(value, (int, float)) and not isinstance(value, bool), (section, key)
            assert math.isfinite(value) and value > 0, (section, key, value)
    flops = tiny_result["flops"]
    assert flops["matmul_per_s"] == max(flops["matmul_per_s_first"], flops["matmul_per_s_last"])
    load = tiny_result["machine_load"]
    assert load["wall_s"] > 0
    if "other_processes_cpu_share" in load:  # Linux
        assert 0.0 <= load["other_processes_cpu_share"] <= 1.0
    assert tiny_result["train"]["timed_steps"] == 2
    assert len(tiny_result["train"]["step_s_all"]) == 2
    assert tiny_result["train"]["pipelined_images_per_s"] > 0
    assert isinstance(tiny_result["train"]["compiler"], str)
    assert tiny_result["sampling"]["num_images"] == 4
    assert tiny_result["sampling"]["loop"].startswith("eager ")


def test_derived_numbers_follow_from_the_measured_ones(tiny_result):
    train, sampling, flops = tiny_result["train"], tiny_result["sampling"], tiny_result["flops"]
    assert sampling["ratio"] == pytest.approx(
        sampling["compiled_images_per_s"] / sampling["loop_images_per_s"], rel=1e-12
    )
    assert sampling["compiled_images_per_s"] == pytest.approx(4 / sampling["compiled_s"])
    assert train["images_per_s"] == pytest.approx(4 / train["step_s"])
    assert train["step_s"] == pytest.approx(sum(train["step_s_all"]) / 2)
    assert train["pipelined_images_per_s"] == pytest.approx(4 * 2 / train["pipelined_s"])
    assert sampling["compiled_image_steps_per_s"] == pytest.approx(
        2 * sampling["compiled_images_per_s"]
    )
    assert flops["train_per_image"] == 3 * flops["per_image"]
    assert flops["sampling_per_image"] == 2 * flops["per_image"]
    assert flops["achieved_per_s"] == pytest.approx(3 * flops["per_image"] * train["images_per_s"])
    assert flops["utilization"] == pytest.approx(flops["achieved_per_s"] / flops["matmul_per_s"])


def test_data_pipeline_is_measured_beside_the_train_step(tiny_result):
    pipeline, train = tiny_result["data"], tiny_result["train"]
    assert pipeline["format"] == "JPEG" and pipeline["num_files"] == 8
    assert pipeline["pipeline"] == "tf.data" and pipeline["num_images"] == 8
    assert pipeline["file_size"] == 256 and pipeline["image_size"] == 16
    assert len(pipeline["seconds_all"]) == pipeline["repeats"]
    assert pipeline["images_per_s"] == pytest.approx(8 / pipeline["seconds"])
    assert pipeline["train_images_per_s"] == train["images_per_s"]
    assert pipeline["ratio"] == pytest.approx(pipeline["images_per_s"] / train["images_per_s"])
    assert "data: JPEG decode + preprocess images/s" in tiny_result["printed"]


def test_benchmark_jpegs_go_through_the_folder_pipeline(tmp_path):
    import numpy as np

    from ddim_keras.data import tf_pipeline as data_tf_pipeline

    paths = data_pipeline.write_benchmark_jpegs(str(tmp_path), 3, size=32)
    images = list(data_tf_pipeline.image_files_dataset(paths, 16).as_numpy_iterator())
    assert len(images) == 3
    assert all(image.shape == (16, 16, 3) and image.dtype == np.uint8 for image in images)
    assert len({image.tobytes() for image in images}) == 3


@pytest.mark.parametrize("tensorflow", [True, False], ids=["tf.data", "numpy"])
def test_data_line_times_the_pipeline_training_would_use(tmp_path, monkeypatch, tensorflow):
    from ddim_keras.core import optional
    from ddim_keras.core.config import DiffusionConfig

    if tensorflow:
        pytest.importorskip("tensorflow")
    monkeypatch.setattr(optional, "tensorflow_installed", lambda: tensorflow)
    config = DiffusionConfig(image_size=16, widths=(8, 16), block_depth=1, batch_size=4)
    paths = data_pipeline.write_benchmark_jpegs(str(tmp_path), 6, size=32)
    name, one_pass, expected = data_pipeline.folder_pipeline(paths, config)
    assert name == ("tf.data" if tensorflow else "NumPy/Pillow")
    # tf.data keeps the last, incomplete batch; the NumPy batches drop it, as in training.
    assert one_pass() == expected == (6 if tensorflow else 4)
    result = data_pipeline.measure_data_pipeline(config, 6, train_images_per_s=10.0, repeats=1)
    assert result["pipeline"] == name and result["num_images"] == expected
    if not tensorflow:
        with pytest.raises(UsageError, match="less than one batch"):
            data_pipeline.measure_data_pipeline(config, 3, train_images_per_s=10.0)


def test_reduced_precision_sampler_is_measured(tiny_result):
    sampling, mixed = tiny_result["sampling"], tiny_result["sampling"]["mixed"]
    assert mixed["precision"] == "bfloat16"
    for key in ("compiled_s", "images_per_s", "ratio", "speedup_over_float32"):
        assert math.isfinite(mixed[key]) and mixed[key] > 0, key
    assert mixed["images_per_s"] == pytest.approx(4 / mixed["compiled_s"])
    assert mixed["ratio"] == pytest.approx(mixed["images_per_s"] / sampling["loop_images_per_s"])
    assert mixed["speedup_over_float32"] == pytest.approx(
        mixed["images_per_s"] / sampling["compiled_images_per_s"]
    )
    assert mixed["image_steps_per_s"] == pytest.approx(2 * mixed["images_per_s"])
    # bfloat16 keeps about 3 significant digits: close, but not float32's result.
    assert 0.0 < mixed["max_rel_diff"] < 0.1
    assert "bfloat16" in tiny_result["printed"]


def test_reduced_precision_training_is_measured(tiny_result):
    train, mixed = tiny_result["train"], tiny_result["train"]["mixed"]
    assert mixed["precision"] == "bfloat16"
    for key in ("first_step_s", "step_s", "images_per_s", "speedup_over_float32"):
        assert math.isfinite(mixed[key]) and mixed[key] > 0, key
    assert mixed["timed_steps"] == 2
    assert mixed["speedup_over_float32"] == pytest.approx(
        mixed["images_per_s"] / train["images_per_s"]
    )
    assert "train: bfloat16 step time" in tiny_result["printed"]
    memory = tiny_result["memory"]
    assert (
        memory["peak_rss_mb_at_end"] >= memory["peak_rss_mb"] >= memory["peak_rss_mb_before_model"]
    )


def test_samplers_are_timed_repeatedly_and_the_median_counts(tiny_result):
    sampling = tiny_result["sampling"]
    assert sampling["repeats"] == 2
    for name in ("compiled", "loop"):
        times = sampling[f"{name}_s_all"]
        assert len(times) == 2 and all(t > 0 for t in times)
        assert sampling[f"{name}_s"] == pytest.approx(sum(times) / 2)  # median of two
    assert len(sampling["mixed"]["compiled_s_all"]) == 2


def test_compiled_sampler_and_python_loop_agree(tiny_result):
    assert tiny_result["sampling"]["agree"]
    assert tiny_result["sampling"]["max_abs_diff"] < 1e-3


def test_flops_of_the_tiny_network(tiny_result):
    # By hand: input 1x1 conv 14,336; down block 67,584 + 591,872 + 296,960; middle
    # block at 8 px 17,408 + 148,480 + 295,936; up block 100,352 + 886,784 + 296,960;
    # output 1x1 conv 13,056.
    assert tiny_result["flops"]["per_image"] == 2_729_728
    assert unet_flops(16, [8, 16], 1, embedding_dims=8) == 2_729_728


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_flops_of_the_presets_match_an_independent_count(name):
    from ddim_keras.model.network import build_network

    config = PRESETS[name]
    expected = unet_flops(
        config.image_size, list(config.widths), config.block_depth, config.embedding_dims
    )
    assert forward_flops(build_network(config)) == expected


def test_table_is_printed(tiny_result):
    out = tiny_result["printed"]
    assert "bench.json" in out
    for words in (
        "train: images/s",
        "sampling: compiled / loop",
        "memory: peak RSS",
        "FLOPs: training utilization",
    ):
        assert words in out


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--batch-size", "0"], ["--batch-size", "at least 1"]),
        (["--steps", "0"], ["--steps", "at least 1"]),
        (["--train-steps", "-1"], ["--train-steps"]),
        (["--num-images", "0"], ["--num-images"]),
        (["--steps", "many"], ["--steps", "invalid int"]),
        (["--preset", "imagenet"], ["unknown preset", "imagenet"]),
        (["--config", "{missing}"], ["cannot read config file"]),
        (["--config", "{not_json}"], ["not valid JSON"]),
        (["--config", "{bad_value}"], ["image_size", "divisible"]),
        (["--jit-compile", "maybe"], ["--jit-compile"]),
        (["--repeats", "0"], ["--repeats", "at least 1"]),
        (["--data-files", "-1"], ["--data-files"]),
        (["--mixed-precision", "float64"], ["--mixed-precision"]),
        (["--output", "{no_folder}/bench.json"], ["does not exist"]),
        (["--skip", "sampling,everything"], ["--skip", "everything"]),
        (["--backends", "tensorflow,mxnet"], ["--backends", "mxnet"]),
        (["--backends", ","], ["--backends", "at least one"]),
        (["--rounds", "0"], ["--rounds", "at least 1"]),
    ],
)
def test_bad_input_is_refused_with_exit_code_2(tmp_path, capsys, argv, words):
    paths = {
        "missing": tmp_path / "missing.json",
        "not_json": tmp_path / "broken.json",
        "bad_value": tmp_path / "bad.json",
        "no_folder": tmp_path / "nowhere",
    }
    paths["not_json"].write_text("{image_size: 16", encoding="utf-8")
    paths["bad_value"].write_text('{"image_size": 30}', encoding="utf-8")
    argv = [arg.format(**paths) for arg in argv]
    assert run_cli(benchmark.main, argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    for word in words:
        assert word in err
    assert len(err.strip().split("\n\n")) == 1  # one paragraph


def test_debug_raises_the_error():
    with pytest.raises(UsageError):
        run_cli(benchmark.main, ["--steps", "0", "--debug"])


def test_command_line_refusal_has_no_traceback():
    process = subprocess.run(
        [sys.executable, "-m", "ddim_keras.benchmark", "--batch-size", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode == 2
    assert "--batch-size" in process.stderr and "Traceback" not in process.stderr


def test_jit_compile_flag_reaches_the_train_step(tmp_path):
    config = write_config(tmp_path / "tiny.json")
    output = tmp_path / "bench.json"
    with contextlib.redirect_stdout(io.StringIO()):
        assert (
            benchmark.main(
                ["--config", config, "--output", str(output), "--jit-compile", "true"] + TINY_ARGS
            )
            == 0
        )
    result = json.loads(output.read_text(encoding="utf-8"))
    assert result["train"]["jit_compile"] is True
    assert math.isfinite(result["train"]["images_per_s"])
    if result["backend"] == "tensorflow" and not result["device"].startswith("GPU"):
        # TensorFlow's XLA for CPU refuses mixed-precision train steps: reported, not
        # crashed on.
        assert "XLA" in result["train"]["mixed"]["skipped"]


# -- parts left out, other backends, the backend comparison, the GPU script -----------

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_skipped_parts_are_left_out_and_said_so(tmp_path):
    config = write_config(tmp_path / "tiny.json")
    output = tmp_path / "bench.json"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert (
            benchmark.main(
                [
                    "--config",
                    config,
                    "--output",
                    str(output),
                    "--skip",
                    "matmul,sampling, data",
                    "--mixed-precision",
                    "off",
                ]
                + TINY_ARGS[:4]
            )
            == 0
        )
    result = json.loads(output.read_text(encoding="utf-8"))
    assert result["sampling"] is None and result["data"] is None
    assert set(result["skipped"]) == {"sampling", "loop", "data", "matmul"}
    assert result["train"]["timed_steps"] == 2 and result["train"]["mixed"] is None
    flops = result["flops"]
    assert flops["matmul_per_s"] is None and flops["utilization"] is None
    assert flops["achieved_per_s"] == pytest.approx(
        3 * flops["per_image"] * result["train"]["images_per_s"]
    )
    out = printed.getvalue()
    assert "skipped: matmul" in out and "train: images/s" in out
    assert "sampling:" not in out and "FLOPs: float32 matmul" not in out


def test_names_are_parsed_in_their_canonical_order():
    assert benchmark.parse_names("torch, tensorflow", BACKENDS, "--backends") == (
        "tensorflow",
        "torch",
    )
    assert benchmark.parse_names("", PARTS, "--skip") == ()
    with pytest.raises(UsageError, match="--skip got train2"):
        benchmark.parse_names("train2", PARTS, "--skip")


def test_backend_children_measure_the_train_step_at_the_same_config():
    args = benchmark.build_parser().parse_args(
        [
            "--backends",
            "jax",
            "--preset",
            "shapes",
            "--batch-size",
            "8",
            "--train-steps",
            "4",
            "--steps",
            "7",
        ]
    )
    argv = backends.child_argv(args, "out.json")
    assert argv[:3] == [sys.executable, "-m", "ddim_keras.benchmark"]
    flags = dict(zip(argv[3::2], argv[4::2]))
    assert flags == {
        "--skip": "sampling,data,matmul",
        "--train-steps": "4",
        "--jit-compile": "auto",
        "--mixed-precision": "auto",
        "--output": "out.json",
        "--preset": "shapes",
        "--batch-size": "8",
    }


def _child(images_per_s, mixed=None, pipelined=None):
    train = {
        "images_per_s": images_per_s,
        "pipelined_images_per_s": pipelined or images_per_s,
        "step_s": 8 / images_per_s,
        "first_step_s": 1.0,
        "compiler": "c",
        "mixed": mixed,
    }
    return {"train": train, "versions": {"keras": "3"}, "device": "CPU: test"}


def test_backend_summary_takes_medians_and_ratios_to_tensorflow():
    runs = {
        "tensorflow": [_child(100.0), _child(120.0), _child(110.0)],
        "jax": [
            _child(50.0, mixed={"precision": "bfloat16", "images_per_s": 80.0}),
            _child(70.0),
            {"error": "exit 1: boom"},
        ],
        "torch": [{"error": "exit 1: no torch"}],
    }
    summary = backends.summarize_backends(runs)
    assert summary["tensorflow"]["images_per_s"] == 110.0
    assert summary["tensorflow"]["ratio_to_tensorflow"] == 1.0
    jax = summary["jax"]
    assert jax["images_per_s"] == 60.0 and jax["images_per_s_all"] == [50.0, 70.0]
    assert jax["ratio_to_tensorflow"] == pytest.approx(60.0 / 110.0)
    assert jax["within_parity"] is False  # more than 1.5x slower
    assert jax["errors"] == ["exit 1: boom"] and jax["runs"] == 3
    assert jax["mixed"]["images_per_s"] == 80.0
    assert "ratio_to_tensorflow" not in jax["mixed"]  # TensorFlow measured no bfloat16
    assert "images_per_s" not in summary["torch"]
    table = tables.format_backends_table(
        {
            "config": {"image_size": 16, "widths": [8, 16], "block_depth": 1},
            "batch_size": 8,
            "train_steps": 2,
            "rounds": 3,
            "backends": summary,
            "machine_load": {},
        }
    )
    assert "NOT within 1.5x" in table and "FAILED: exit 1: no torch" in table
    summary = backends.summarize_backends({"tensorflow": [_child(100.0)], "jax": [_child(70.0)]})
    assert summary["jax"]["within_parity"] is True


def test_backends_compares_in_child_processes(tmp_path):
    pytest.importorskip("tensorflow")
    config = write_config(tmp_path / "tiny.json")
    output = tmp_path / "backends.json"
    process = subprocess.run(
        [
            sys.executable,
            "-m",
            "ddim_keras.benchmark",
            "--backends",
            "tensorflow",
            "--config",
            config,
            "--train-steps",
            "2",
            "--mixed-precision",
            "off",
            "--output",
            str(output),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert process.returncode == 0, process.stderr[-3000:]
    result = json.loads(output.read_text(encoding="utf-8"))
    entry = result["backends"]["tensorflow"]
    assert entry["ratio_to_tensorflow"] == 1.0 and entry["runs"] == 1
    assert entry["versions"]["tensorflow"] and entry["errors"] == []
    assert result["runs"]["tensorflow"][0]["skipped"] == {
        "sampling": "--skip",
        "loop": "--skip sampling",
        "data": "--skip",
        "matmul": "--skip",
    }
    assert "TensorFlow" in process.stdout and "1.00x TensorFlow's" in process.stdout


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_runs_on_another_backend_without_tensorflow(tmp_path, backend):
    pytest.importorskip(backend)
    config = write_config(tmp_path / "tiny.json")
    output = tmp_path / "bench.json"
    hide = tmp_path / "hide_tensorflow"
    hide.mkdir()
    process = subprocess.run(
        [sys.executable, "-m", "ddim_keras.benchmark", "--config", config, "--output", str(output)]
        + TINY_ARGS,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=without_tensorflow_env(hide, backend),
    )
    assert process.returncode == 0, process.stderr[-3000:]
    result = json.loads(output.read_text(encoding="utf-8"))
    assert result["backend"] == backend and backend in result["versions"]
    assert "tensorflow" not in result["versions"]
    # Without TensorFlow the data line times the NumPy/Pillow folder pipeline.
    assert result["skipped"] == {} and result["data"]["pipeline"] == "NumPy/Pillow"
    assert result["data"]["num_images"] == 8
    assert result["train"]["mixed"]["precision"] == "bfloat16"
    assert result["sampling"]["agree"] and result["sampling"]["loop"].startswith("eager ")
    # Where this jaxlib takes the YNNPACK flag the commands set on JAX, the line says so.
    ynnpack = ", YNNPACK on CPU" if jaxlib_takes_xla_cpu_library_flag() else ""
    compilers = {"jax": "XLA (jax.jit)" + ynnpack, "torch": "eager PyTorch"}
    assert result["train"]["compiler"] == compilers[backend]
    assert "(NumPy/Pillow; 8 files" in process.stdout


def test_gpu_script_refuses_bad_arguments():
    script = os.path.join(ROOT, "tools", "gpu_benchmark.sh")
    assert subprocess.run(["bash", "-n", script]).returncode == 0
    for argv in ([], ["out", "--fast"], ["out", "--cpu-smoke", "extra"]):
        process = subprocess.run(
            ["bash", script] + argv, capture_output=True, text=True, timeout=60
        )
        assert process.returncode == 2 and "usage:" in process.stderr


#: A stand-in for the GPU script's interpreter: the real one for every step but two: the
#: check that it imports JAX (env.txt imports it anyway), and the benchmark, which only
#: writes a result saying it ran on $FAKE_DEVICE (seconds, not minutes).
FAKE_PYTHON = """#!/usr/bin/env bash
if [ "$1" = -c ] && [ "$2" = "import jax" ]; then
    exit 0
fi
if [ "$1" = -m ] && [ "$2" = ddim_keras.benchmark ]; then
    while [ $# -gt 0 ]; do
        if [ "$1" = --output ]; then
            printf '{"backend": "jax", "device": "%s"}' "$FAKE_DEVICE" > "$2"
        fi
        shift
    done
    exit 0
fi
exec PYTHON "$@"
"""


def _gpu_script_with_fake_benchmark(tmp_path, device, site=None):
    """tools/gpu_benchmark.sh in GPU mode on this CPU, the benchmark replaced by a stand-in
    that reports ``device``: (exit code, stdout and stderr, env.txt)."""
    pytest.importorskip("jax")
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON.replace("PYTHON", sys.executable), encoding="utf-8")
    fake.chmod(0o755)
    empty = tmp_path / "no_wheels"
    empty.mkdir()
    hide = tmp_path / "hide_tensorflow"  # as on the GPU machine, and faster
    hide.mkdir()
    env = dict(
        without_tensorflow_env(hide),
        PYTHON=str(fake),
        FAKE_DEVICE=device,
        WHEELS=str(empty),
        SITE=str(site or tmp_path / "site"),
        JAX_COMPILATION_CACHE_DIR=str(tmp_path / "cache"),
    )
    out = tmp_path / "out"
    process = subprocess.run(
        ["bash", os.path.join(ROOT, "tools", "gpu_benchmark.sh"), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    return (
        process.returncode,
        process.stdout + process.stderr,
        (out / "env.txt").read_text(encoding="utf-8"),
    )


@pytest.mark.parametrize("device", ["CPU: fake", "GPU: NVIDIA H100"])
def test_gpu_script_warns_when_the_benchmark_ran_on_no_gpu(tmp_path, device):
    """The warning follows the device the benchmark reports; it once searched env.txt for
    "gpu", which its own "mode: gpu" line always matched, so it never fired."""
    code, output, env_txt = _gpu_script_with_fake_benchmark(tmp_path, device)
    assert code == 0, output[-3000:]
    assert "mode: gpu" in env_txt
    assert f"device: {device}" in output
    if device.startswith("CPU"):
        assert "warning: no GPU: the benchmark ran jax_default on CPU: fake" in output
    else:
        assert "warning: no GPU" not in output


@pytest.mark.parametrize("changed", [False, True], ids=["same", "subpackage_differs"])
def test_gpu_script_runs_the_checkout_when_the_wheel_differs(tmp_path, changed):
    """The installed package counts as the checkout's only if every module is the same,
    those of the subpackages included (the code lives in ddim_keras/<part>/)."""
    site = tmp_path / "site"
    shutil.copytree(
        os.path.join(ROOT, "ddim_keras"),
        site / "ddim_keras",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    if changed:
        with open(site / "ddim_keras" / "bench" / "run.py", "a", encoding="utf-8") as handle:
            handle.write("# another version\n")
    code, output, env_txt = _gpu_script_with_fake_benchmark(tmp_path, "GPU: test", site)
    assert code == 0, output[-3000:]
    assert f"ddim_keras from: {'checkout' if changed else 'wheel'}" in env_txt


def test_gpu_script_cpu_smoke(tmp_path):
    """The GPU script's own path at a tiny config with JAX on this CPU (about a minute)."""
    pytest.importorskip("jax")
    out = tmp_path / "out"
    empty = tmp_path / "no_wheels"
    empty.mkdir()
    env = dict(
        os.environ,
        PYTHON=sys.executable,
        WHEELS=str(empty),
        SITE=str(tmp_path / "site"),
        JAX_COMPILATION_CACHE_DIR=str(tmp_path / "cache"),
        PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])),
        # The 7.5-minute default budget is sized for the GPU machine's command limit; a CPU
        # shared with other test workers once ran out of it here and skipped a step.
        BUDGET_S="1500",
    )
    process = subprocess.run(
        ["bash", os.path.join(ROOT, "tools", "gpu_benchmark.sh"), str(out), "--cpu-smoke"],
        capture_output=True,
        text=True,
        timeout=1600,
        env=env,
    )
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["mode"] == "cpu-smoke"
    assert summary["train"]["images_per_s"] > 0 and summary["train"]["meets_goal"] is None
    assert summary["sampling"]["image_steps_per_s"] > 0
    for name in ("jax_default", "jax_sampling"):
        assert json.loads((out / f"{name}.json").read_text(encoding="utf-8"))["backend"] == "jax"
    assert "keras" in (out / "env.txt").read_text(encoding="utf-8")
    assert summary["skipped"] == []
    assert (
        json.loads((out / "jax_float16.json").read_text(encoding="utf-8"))["train"]["mixed"][
            "precision"
        ]
        == "float16"
    )
