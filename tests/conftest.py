"""Shared fixtures: tiny configs and one tiny trained run for the whole session."""

import json
import os
import shutil

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

from ddim_keras.config import DiffusionConfig

# Small enough for a 2-core CPU: 16 px, two resolutions, batch 4.
TINY = dict(image_size=16, widths=(8, 16), block_depth=1, batch_size=4,
            dataset_repetitions=1, epochs=1, kid=False, plot_diffusion_steps=3,
            kid_diffusion_steps=2, embedding_dims=8)


@pytest.fixture
def tiny_config():
    return DiffusionConfig(**TINY)


def write_config(path, **overrides):
    data = DiffusionConfig(**TINY).to_dict()
    data.update(overrides)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    return str(path)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A run directory trained for 2 short epochs on `shapes` (read-only for tests)."""
    from ddim_keras import train

    root = tmp_path_factory.mktemp("tiny_run")
    config_path = write_config(root / "tiny.json", epochs=2)
    run = root / "run"
    code = train.main(["--dataset", "shapes", "--config", config_path, "--output", str(run),
                       "--steps-per-epoch", "3", "--verbose", "0"])
    assert code == 0
    return str(run)


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    """A writable copy of the tiny run (commands write results beside a run)."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    return run


def run_command(capsys, main, *argv):
    """Run a CLI's ``main`` as ``python -m`` would; returns (exit code, stdout, stderr)."""
    from ddim_keras.errors import run_cli

    code = run_cli(main, [str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error(err, words):
    """stderr holds exactly one ``error:`` paragraph, no traceback, naming ``words``."""
    assert "Traceback" not in err
    assert err.count("error: ") == 1
    message = " ".join(err[err.index("error: "):].split())
    for word in words:
        assert word in message, message
