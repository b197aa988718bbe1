"""The public callbacks in a plain ``model.fit`` of a tiny DiffusionModel."""

import csv
import glob
import io
import json
import os
import sys
import types

import numpy as np
import pytest
from PIL import Image

from ddim_keras import callbacks as cb
from ddim_keras.core import pictures

NATIVE_GRID_SIZE = (6 * 16 + 7 * 2, 3 * 16 + 4 * 2)  # 3x6 grid of 16-px images, 2-px padding
# By default each 16-px image is enlarged 8 times (tiles of at least 128 px); padding stays 2 px.
GRID_SIZE = (6 * 128 + 7 * 2, 3 * 128 + 4 * 2)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A tiny model fitted for 2 epochs with two same-seed SampleGrids and a LossCurvePlot."""
    import keras
    import tensorflow as tf
    from conftest import TINY

    from ddim_keras.core.config import DiffusionConfig
    from ddim_keras.data.shapes import shapes_images
    from ddim_keras.model.diffusion_model import DiffusionModel

    root = tmp_path_factory.mktemp("callbacks")
    config = DiffusionConfig(**TINY)
    pixels = shapes_images(16, config.image_size, seed=0).astype("float32") / 255.0
    train_ds = tf.data.Dataset.from_tensor_slices(pixels).batch(4).repeat()
    val_ds = tf.data.Dataset.from_tensor_slices(pixels[:8]).batch(4)
    keras.utils.set_random_seed(0)
    model = DiffusionModel(config)
    model.compile()
    model.normalizer.adapt(tf.data.Dataset.from_tensor_slices(pixels).batch(4))
    first = cb.SampleGrid(str(root / "a"), diffusion_steps=3, seed=7, log_dir=str(root / "logs"))
    second = cb.SampleGrid(str(root / "b"), diffusion_steps=3, seed=7)
    curves = cb.LossCurvePlot(str(root / "curves.png"))
    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=2,
        steps_per_epoch=2,
        verbose=0,
        shuffle=False,
        callbacks=[first, second, curves],
    )
    return types.SimpleNamespace(root=root, model=model, first=first, second=second, curves=curves)


def read_bytes(path):
    with open(path, "rb") as handle:
        return handle.read()


def test_sample_grid_writes_pngs_of_the_grid_size(fitted):
    for folder in ("a", "b"):
        names = sorted(os.listdir(fitted.root / folder))
        assert names == ["epoch_0001.png", "epoch_0002.png"]
        for name in names:
            with Image.open(fitted.root / folder / name) as image:
                assert image.format == "PNG" and image.mode == "RGB"
                assert image.size == GRID_SIZE
    assert fitted.first.last_path == str(fitted.root / "a" / "epoch_0002.png")


def test_same_seed_gives_identical_grids(fitted):
    # Two callbacks with the same seed, in the same fit, after the same epoch.
    for name in ("epoch_0001.png", "epoch_0002.png"):
        assert read_bytes(fitted.root / "a" / name) == read_bytes(fitted.root / "b" / name)
    # No training in between: the same grid again, and the same as the last file.
    grid = fitted.first.make_grid()
    np.testing.assert_array_equal(grid, fitted.second.make_grid())
    with Image.open(fitted.root / "a" / "epoch_0002.png") as image:
        np.testing.assert_array_equal(np.asarray(image), pictures.to_uint8(grid))


def test_sample_grid_logs_an_image_summary_per_epoch(fitted):
    import tensorflow as tf

    events = glob.glob(str(fitted.root / "logs" / "samples" / "events.out.tfevents.*"))
    assert events
    images = {}
    for path in events:
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == "samples":
                    assert value.metadata.plugin_data.plugin_name == "images"
                    images[event.step] = tf.make_ndarray(value.tensor)
    # Steps are Keras' epoch indices (as for the epoch scalars): epoch 1 is step 0.
    assert sorted(images) == [0, 1]
    for step, tensor in images.items():
        width, height, png = tensor  # the image plugin's [width, height, PNG...] layout
        assert (int(width), int(height)) == GRID_SIZE
        decoded = tf.io.decode_png(png).numpy()
        with Image.open(fitted.root / "a" / f"epoch_{step + 1:04d}.png") as image:
            np.testing.assert_array_equal(decoded, np.asarray(image))
    # The second callback had no log_dir and wrote no events.
    assert fitted.second.writer_dir is None


def test_loss_curve_plot_writes_a_png_after_fit(fitted):
    assert fitted.curves.last_path == str(fitted.root / "curves.png")
    with Image.open(fitted.root / "curves.png") as image:
        assert image.format == "PNG" and image.size[0] > 300 and image.size[1] > 200
    assert sorted(fitted.curves.history) == [1, 2]
    assert {"n_loss", "i_loss", "val_n_loss", "val_i_loss"} <= set(fitted.curves.history[1])


def test_loss_curve_plot_reads_earlier_epochs_from_history_csv(tmp_path):
    history = tmp_path / "history.csv"
    with open(history, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", "i_loss", "n_loss", "val_i_loss", "val_kid", "val_n_loss"])
        writer.writerow([0, 0.9, 0.8, 0.95, 2.0, 0.85])
        writer.writerow([1, 0.7, 0.6, 0.75, 1.5, 0.65])
    plot = cb.LossCurvePlot(
        str(tmp_path / "out" / "curves.png"), history_csv=str(history), every_epoch=True
    )
    plot.on_train_begin()
    plot.on_epoch_end(
        2, {"n_loss": 0.5, "i_loss": 0.6, "val_n_loss": 0.55, "val_i_loss": 0.65, "val_kid": 1.0}
    )
    assert os.path.isfile(tmp_path / "out" / "curves.png")  # written after the epoch
    plot.on_train_end()
    assert sorted(plot.history) == [1, 2, 3]
    assert plot._series("val_kid") == ([1, 2, 3], [2.0, 1.5, 1.0])
    with Image.open(tmp_path / "out" / "curves.png") as image:
        # Losses and KID side by side: twice as wide as a single panel.
        assert image.size == (1200, 400)
    assert not os.path.exists(tmp_path / "out" / "curves.png.tmp")


def test_loss_curve_plot_without_epochs_writes_nothing(tmp_path):
    plot = cb.LossCurvePlot(str(tmp_path / "curves.png"), history_csv=str(tmp_path / "none.csv"))
    plot.on_train_begin()
    plot.on_train_end()
    assert plot.last_path is None and not os.listdir(tmp_path)


def test_notebook_detection_is_false_under_pytest():
    assert cb.in_notebook() is False


class ZMQInteractiveShell:  # the class name a Jupyter kernel's shell has
    pass


class TerminalInteractiveShell:
    pass


@pytest.mark.parametrize(
    "shell, expected",
    [(ZMQInteractiveShell(), True), (TerminalInteractiveShell(), False), (None, False)],
)
def test_notebook_detection_looks_at_the_ipython_shell(monkeypatch, shell, expected):
    fake = types.ModuleType("IPython")
    fake.get_ipython = lambda: shell
    monkeypatch.setitem(sys.modules, "IPython", fake)
    assert cb.in_notebook() is expected


def test_sample_grid_displays_inline_in_a_notebook(fitted, tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr(cb.notebook, "in_notebook", lambda: True)
    monkeypatch.setattr(cb.notebook, "display_png", shown.append)
    grid = cb.SampleGrid(None, diffusion_steps=3, seed=7)  # no files: inline only
    grid.set_model(fitted.model)
    grid.on_epoch_end(0)
    assert len(shown) == 1 and shown[0].startswith(b"\x89PNG")
    # Already enlarged (tiles of 128 px): shown as saved.
    with Image.open(io.BytesIO(shown[0])) as image:
        assert image.size == GRID_SIZE
    assert grid.last_path is None
    # A native grid (scale=1) is nearest-neighbour enlarged by a whole factor to be visible.
    native = cb.SampleGrid(None, diffusion_steps=3, seed=7, scale=1)
    native.set_model(fitted.model)
    native.on_epoch_end(0)
    with Image.open(io.BytesIO(shown[1])) as image:
        assert image.size == (NATIVE_GRID_SIZE[0] * 3, NATIVE_GRID_SIZE[1] * 3)
    del shown[1:]
    # inline=False overrides the detection.
    quiet = cb.SampleGrid(str(tmp_path), diffusion_steps=3, seed=7, inline=False)
    quiet.set_model(fitted.model)
    quiet.on_epoch_end(0)
    assert len(shown) == 1 and os.listdir(tmp_path) == ["epoch_0001.png"]


def test_sample_grid_every_n_epochs(fitted, tmp_path):
    grid = cb.SampleGrid(str(tmp_path), diffusion_steps=1, num_rows=1, num_cols=2, every=2)
    grid.set_model(fitted.model)
    for epoch in range(3):
        grid.on_epoch_end(epoch)
    assert os.listdir(tmp_path) == ["epoch_0002.png"]
    with pytest.raises(ValueError):
        cb.SampleGrid(str(tmp_path), every=0)


def test_sample_grid_scale(fitted, tmp_path):
    native = cb.SampleGrid(str(tmp_path), diffusion_steps=1, num_rows=1, num_cols=2, scale=1)
    native.set_model(fitted.model)
    small = native.make_grid()
    assert small.shape == (16 + 2 * 2, 2 * 16 + 3 * 2, 3)
    tripled = cb.SampleGrid(str(tmp_path), diffusion_steps=1, num_rows=1, num_cols=2, scale=3)
    tripled.set_model(fitted.model)
    big = tripled.make_grid()
    assert big.shape == (3 * 16 + 2 * 2, 2 * 3 * 16 + 3 * 2, 3)
    np.testing.assert_array_equal(
        big[2 : 2 + 48, 2 : 2 + 48], small[2:18, 2:18].repeat(3, axis=0).repeat(3, axis=1)
    )
    for bad in (0, -2, 1.5):
        with pytest.raises(ValueError):
            cb.SampleGrid(str(tmp_path), scale=bad)


@pytest.mark.parametrize(
    "make",
    [
        lambda: cb.SampleGrid(
            "s",
            num_rows=2,
            num_cols=4,
            diffusion_steps=5,
            seed=3,
            every=2,
            eta=0.5,
            log_dir="logs",
            tag="grid",
            inline=False,
            scale=2,
        ),
        lambda: cb.LossCurvePlot(
            "c.png",
            history_csv="h.csv",
            every_epoch=True,
            loss_keys=("n_loss",),
            metric_keys=(),
            title="run",
        ),
        lambda: cb.AtomicCheckpoint("x.weights.h5", monitor="val_kid", mode="min", best=0.5),
        lambda: cb.RunState(
            "state.json", cb.AtomicCheckpoint("b.weights.h5", monitor="val_n_loss")
        ),
        lambda: cb.StopOnNonFinite("i_loss"),
    ],
)
def test_get_config_round_trips(make):
    callback = make()
    config = callback.get_config()
    assert json.loads(json.dumps(config)) == config
    clone = type(callback).from_config(config)
    assert type(clone) is type(callback)
    assert clone.get_config() == config
