"""Quiet commands (issue #12): no TensorFlow C++ logs or Keras-internal warnings
on stderr unless --debug; the package's own warnings stay."""

import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
from conftest import write_config
from PIL import Image

from ddim_keras.cli import quiet
from ddim_keras.cli.runner import run_cli
from ddim_keras.core.errors import UnreadableImagesWarning

COMMANDS = ("train", "generate", "evaluate", "sweep", "report", "benchmark")

#: Lines a quiet command must not print.
NOISE = re.compile(
    r"^[IWEF]\d{4} |^WARNING: All log messages before absl|cuda|oneDNN|cpu_feature_guard"
    r"|ran out of data|shuffle=True",
    re.MULTILINE,
)


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(extra)
    return env


def command(module, *args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", f"ddim_keras.{module}", *args],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=600,
        **kwargs,
    )


def test_train_and_generate_print_no_tensorflow_logs(tmp_path):
    # A folder of images: its dataset has no known length, so Keras would say
    # "Your input ran out of data" at the end of each epoch; one bad file gives
    # the package's own warning, which must stay.
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    (folder / "bad.png").write_bytes(b"not an image")
    config = write_config(tmp_path / "tiny.json")
    run = tmp_path / "run"

    train = command(
        "train",
        "--dataset",
        "folder",
        "--data-dir",
        str(folder),
        "--config",
        config,
        "--output",
        str(run),
        "--verbose",
        "0",
    )
    assert train.returncode == 0, train.stderr
    assert not NOISE.search(train.stderr), train.stderr
    assert "UnreadableImagesWarning: skipping 1 of 21 image file(s)" in train.stderr

    generate = command(
        "generate", "--run", str(run), "--steps", "2", "--num-images", "2", "--no-progress"
    )
    assert generate.returncode == 0, generate.stderr
    assert not NOISE.search(generate.stderr), generate.stderr
    assert re.search(r"Seed \d+ \(pass --seed \d+ to repeat\)", generate.stderr), generate.stderr


def test_command_modules_do_not_import_tensorflow_before_run_cli():
    code = (
        "import sys\n"
        + "".join(f"import ddim_keras.{name}\n" for name in COMMANDS)
        + "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=clean_env(), timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_debug_changes_nothing(monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    meta_path = list(sys.meta_path)
    seen = {}

    def main(argv):
        seen["level"] = os.environ.get("TF_CPP_MIN_LOG_LEVEL")

    with warnings.catch_warnings():
        assert run_cli(main, ["--debug"]) == 0
        assert seen == {"level": None}
        assert sys.meta_path == meta_path
        assert quiet.quiet_tensorflow(["--x", "--debug"]) is False


def test_user_choice_of_log_level_is_kept(monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    monkeypatch.setattr(quiet, "_quiet_python_loggers", lambda: None)
    with warnings.catch_warnings():
        assert quiet.quiet_tensorflow([]) is True
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"


def test_keras_internal_warnings_hidden_package_warnings_kept(monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setattr(quiet, "_quiet_python_loggers", lambda: None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet.quiet_tensorflow([])
        warnings.warn(
            "Your input ran out of data; interrupting training. Make sure ...", stacklevel=1
        )
        warnings.warn(
            "`shuffle=True` was passed, but will be ignored since the data ...", stacklevel=1
        )
        warnings.warn("skipping 1 of 3 image file(s) in x", UnreadableImagesWarning, stacklevel=1)
        warnings.warn("something else from Keras", stacklevel=1)
    assert [str(w.message) for w in caught] == [
        "skipping 1 of 3 image file(s) in x",
        "something else from Keras",
    ]


FAKE_TENSORFLOW = """
import os
os.write(2, b"I0000 00:00:1.0 1 port.cc:153] oneDNN custom operations are on\\n")
os.write(2, b"E0000 00:00:1.0 1 cuda_dnn.cc:8579] Unable to load cuDNN\\n")
if os.environ.get("FAKE_TF_FAILS"):
    raise ImportError("fake tensorflow failed")
"""

IMPORT_QUIETLY = """
import sys
from ddim_keras.cli.quiet import quiet_tensorflow
quiet_tensorflow(sys.argv[1:])
print("before", file=sys.stderr, flush=True)
import tensorflow
print("after", file=sys.stderr, flush=True)
assert tensorflow.__loader__.__class__.__name__ != "_QuietLoader"
"""


def test_import_hook_holds_back_stderr_and_replays_it_on_failure(tmp_path):
    """With a stand-in `tensorflow` that writes to fd 2 while it is imported."""
    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow" / "__init__.py").write_text(FAKE_TENSORFLOW)
    root = os.path.dirname(os.path.dirname(os.path.abspath(quiet.__file__)))
    path = os.pathsep.join([str(tmp_path), root])

    def run(*args, **env):
        return subprocess.run(
            [sys.executable, "-c", IMPORT_QUIETLY, *args],
            capture_output=True,
            text=True,
            env=clean_env(PYTHONPATH=path, **env),
            timeout=120,
        )

    quiet_run = run()
    assert quiet_run.returncode == 0, quiet_run.stderr
    # The info line is held back; the error line (a GPU library that failed) is shown.
    assert (
        quiet_run.stderr
        == "before\nE0000 00:00:1.0 1 cuda_dnn.cc:8579] Unable to load cuDNN\nafter\n"
    )

    debug_run = run("--debug")
    assert "oneDNN custom operations are on" in debug_run.stderr

    failed = run(FAKE_TF_FAILS="1")
    assert failed.returncode == 1
    assert "oneDNN custom operations are on" in failed.stderr  # replayed: it may explain
    assert "ImportError: fake tensorflow failed" in failed.stderr


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_backends_print_no_tensorflow_logs_either(tiny_run, backend, tmp_path):
    """Under JAX and PyTorch TensorFlow is imported later (by tf.data or Keras' dtype
    serialisation), and PyTorch looks it up with find_spec first: the hook must still
    hold back the import's lines."""
    env = clean_env(KERAS_BACKEND=backend)
    generate = subprocess.run(
        [
            sys.executable,
            "-m",
            "ddim_keras.generate",
            "--run",
            tiny_run,
            "--steps",
            "2",
            "--num-images",
            "2",
            "--seed",
            "0",
            "--no-progress",
            "--output",
            str(tmp_path / "grid.png"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert generate.returncode == 0, generate.stderr
    assert not NOISE.search(generate.stderr), generate.stderr
