"""A real TensorBoard server reads the training command's logs/ and serves its tags."""

import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from PIL import Image

from ddim_keras.core.config import DiffusionConfig

READY_TIMEOUT_S = 60


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(base, route, **params):
    url = f"{base}/{route}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def get_json(base, route, **params):
    return json.loads(get(base, route, **params))


def complete(scalars, images):
    """True once the server has loaded every run's tags (it loads in the background)."""
    return (
        {"epoch_n_loss", "epoch_learning_rate"} <= set(scalars.get("train", {}))
        and "epoch_n_loss" in scalars.get("validation", {})
        and images.get("samples", {}).get("samples", {}).get("samples", 0) >= 1
    )


@pytest.fixture(scope="module")
def server(tiny_run, tmp_path_factory):
    """``tensorboard --logdir RUN/logs`` on a free local port; yields its base URL."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("tensorboard") / "server.log", "w+")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            os.path.join(tiny_run, "logs"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--reload_interval",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if process.poll() is not None:
                log.seek(0)
                pytest.fail(f"tensorboard exited with {process.returncode}:\n{log.read()}")
            try:
                scalars = get_json(base, "data/plugin/scalars/tags")
                images = get_json(base, "data/plugin/images/tags")
                if complete(scalars, images):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass  # not listening yet
            if time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(
                    f"tensorboard did not serve the run's tags within "
                    f"{READY_TIMEOUT_S} s:\n{log.read()}"
                )
            time.sleep(0.5)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_runs_are_train_validation_and_samples(server):
    assert sorted(get_json(server, "data/runs")) == ["samples", "train", "validation"]


def test_epoch_scalars_are_served(server):
    tags = get_json(server, "data/plugin/scalars/tags")
    # Keras names epoch scalars epoch_<metric>; validation metrics drop their val_
    # prefix and live in the "validation" run.
    assert {"epoch_n_loss", "epoch_i_loss", "epoch_learning_rate"} <= set(tags["train"])
    assert {"epoch_n_loss", "epoch_i_loss"} <= set(tags["validation"])
    for run in ("train", "validation"):
        points = get_json(server, "data/plugin/scalars/scalars", run=run, tag="epoch_n_loss")
        assert [step for _, step, _ in points] == [0, 1]  # the tiny run's 2 epochs


def test_learning_rate_is_logged_per_epoch(server, tiny_run):
    config = DiffusionConfig.load(os.path.join(tiny_run, "config.json"))
    points = get_json(server, "data/plugin/scalars/scalars", run="train", tag="epoch_learning_rate")
    assert [step for _, step, _ in points] == [0, 1]
    for _, _, value in points:
        assert value == pytest.approx(config.learning_rate)


def test_sample_grids_are_served_as_images(server, tiny_run):
    tags = get_json(server, "data/plugin/images/tags")
    assert list(tags) == ["samples"] and list(tags["samples"]) == ["samples"]
    entries = get_json(server, "data/plugin/images/images", run="samples", tag="samples")
    assert [entry["step"] for entry in entries] == [0, 1]
    # The served image is the PNG of the epoch's grid, pixel for pixel.
    for entry in entries:
        data = get(server, "data/plugin/images/individualImage?" + entry["query"])
        served = Image.open(io.BytesIO(data))
        assert served.format == "PNG"
        path = os.path.join(tiny_run, "samples", f"epoch_{entry['step'] + 1:04d}.png")
        with Image.open(path) as saved:
            assert served.size == saved.size
            assert served.convert("RGB").tobytes() == saved.convert("RGB").tobytes()
