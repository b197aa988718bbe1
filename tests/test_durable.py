"""ddim_keras.core.durable: every file is written to a temporary file, fsynced, renamed, and its
folder fsynced, through one function that every writer in the package uses."""

import errno
import glob
import os
import re

import pytest

from ddim_keras.core import durable
from ddim_keras.core.errors import DdimError
from ddim_keras.io import sweep_results

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ddim_keras")

needs_proc = pytest.mark.skipif(
    not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd to name fsynced descriptors"
)


@pytest.fixture
def events(monkeypatch):
    """Record ("fsync", path) and ("replace", src, dst) in the order they happen."""
    log = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        log.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst, *args, **kwargs):
        log.append(("replace", os.path.abspath(src), os.path.abspath(dst)))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return log


def assert_durable(events, path):
    """``path`` was written to a temp file, fsynced, renamed, then its folder fsynced."""
    path = os.path.realpath(path)
    tmp = os.path.realpath(durable.temporary_path(path))
    folder = os.path.dirname(path)
    replaces = [i for i, e in enumerate(events) if e[0] == "replace" and e[2] == path]
    assert len(replaces) == 1, events
    at = replaces[0]
    assert events[at][1] == tmp
    assert ("fsync", tmp) in events[:at], "the file was not fsynced before the rename"
    assert ("fsync", folder) in events[at + 1 :], "the folder was not fsynced after the rename"
    assert not os.path.exists(tmp)


def test_temporary_names_keep_the_extension_the_writer_needs():
    assert durable.temporary_path("a/last.weights.h5") == "a/last.tmp.weights.h5"
    assert durable.temporary_path("a/grid.png") == "a/grid.tmp.png"
    assert durable.temporary_path("a/state.json") == "a/state.tmp.json"
    assert durable.temporary_path("a/name") == "a/name.tmp"


@needs_proc
def test_the_file_is_fsynced_before_the_rename_and_the_folder_after(tmp_path, events):
    path = tmp_path / "state.json"
    path.write_text("old")
    assert durable.write_json(path, {"epoch": 3}) == str(path)
    assert path.read_text() == '{\n  "epoch": 3\n}\n'
    assert_durable(events, path)
    assert os.listdir(tmp_path) == ["state.json"]


@pytest.mark.parametrize(
    "write",
    [
        lambda path: durable.write_bytes(path, b"half"),
        lambda path: durable.write_text(path, "half"),
    ],
)
def test_conveniences_write_their_content(tmp_path, write):
    path = tmp_path / "x.txt"
    write(path)
    assert path.read_bytes() == b"half"


def test_a_save_that_fails_halfway_keeps_the_previous_file(tmp_path):
    path = tmp_path / "last.weights.h5"
    path.write_bytes(b"good checkpoint" * 100)

    def save(tmp_path_):
        with open(tmp_path_, "wb") as handle:
            handle.write(b"half a")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        durable.write_durably(path, save)
    assert path.read_bytes() == b"good checkpoint" * 100
    assert os.listdir(tmp_path) == ["last.weights.h5"]


def test_a_failing_fsync_keeps_the_previous_file_and_removes_the_temp(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    path.write_text("old")

    def fsync(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="Input/output"):
        durable.write_text(path, "new")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["config.json"]


def test_user_error_turns_an_os_error_into_a_one_line_ddim_error(tmp_path):
    path = tmp_path / "missing" / "out.json"
    with pytest.raises(DdimError, match=r"could not write .*out\.json: No such file"):
        durable.write_json(path, {}, user_error=True)
    with pytest.raises(FileNotFoundError):
        durable.write_json(path, {})


@needs_proc
@pytest.mark.parametrize(
    "code, ignored", [(errno.EINVAL, True), (errno.EBADF, True), (errno.EIO, False)]
)
def test_only_a_folder_fsync_the_platform_refuses_is_ignored(tmp_path, monkeypatch, code, ignored):
    real_fsync = os.fsync

    def fsync(fd):
        if os.path.isdir(os.readlink(f"/proc/self/fd/{fd}")):
            raise OSError(code, os.strerror(code))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    path = tmp_path / "a.txt"
    if ignored:
        durable.write_text(path, "new")
    else:
        with pytest.raises(OSError, match=os.strerror(code)):
            durable.write_text(path, "new")
    assert path.read_text() == "new"  # the rename had happened either way
    assert os.listdir(tmp_path) == ["a.txt"]


def test_only_durable_py_renames_files():
    offenders = []
    for path in sorted(glob.glob(os.path.join(PACKAGE, "*.py"))):
        if os.path.basename(path) == "durable.py":
            continue
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if re.search(r"\bos\.(replace|rename)\(", line):
                    offenders.append(f"{os.path.basename(path)}:{number}: {line.strip()}")
    assert offenders == []


def test_durable_imports_nothing_heavy():
    import subprocess
    import sys

    code = (
        "import sys, ddim_keras.core.durable; "
        "print(sorted(m for m in ('keras', 'tensorflow', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


# -- the package's writers go through it --------------------------------------------------


@needs_proc
def test_the_checkpoint_callback_writes_durably(tmp_path, events):
    import keras

    from ddim_keras.callbacks import AtomicCheckpoint

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    path = tmp_path / "checkpoints" / "last.weights.h5"
    callback = AtomicCheckpoint(str(path))
    callback.set_model(model)
    callback.on_epoch_end(0, {"n_loss": 0.5, "i_loss": 0.5})
    assert_durable(events, path)
    model.load_weights(str(path))


@needs_proc
def test_config_save_writes_durably(tmp_path, events, tiny_config):
    from ddim_keras.core.config import DiffusionConfig

    path = tmp_path / "config.json"
    tiny_config.save(str(path))
    assert_durable(events, path)
    assert DiffusionConfig.load(str(path)) == tiny_config


@needs_proc
def test_run_json_files_write_durably(tmp_path, events):
    from ddim_keras.io.run_dir import write_json_atomic

    path = tmp_path / "state.json"
    write_json_atomic(str(path), {"epoch": 1})
    assert_durable(events, path)
    with pytest.raises(DdimError, match="could not write"):
        write_json_atomic(str(tmp_path / "missing" / "state.json"), {})


@needs_proc
def test_generated_images_write_durably(tmp_path, events):
    import numpy as np

    from ddim_keras.cli.generate import write_atomically
    from ddim_keras.io import images

    path = tmp_path / "grid.png"
    write_atomically(images.save_png, np.zeros((4, 4, 3), np.float32), str(path))
    assert_durable(events, path)
    assert path.read_bytes().startswith(b"\x89PNG")


@needs_proc
def test_csv_writers_write_durably(tmp_path, events):
    from ddim_keras.io import resume

    history = tmp_path / "history.csv"
    history.write_text("epoch,n_loss\r\n0,1.0\r\n1,0.5\r\n2,0.4\r\n")
    resume.completed_history_rows(str(history), 2)
    assert history.read_bytes() == b"epoch,n_loss\r\n0,1.0\r\n1,0.5\r\n"
    assert_durable(events, history)

    rows = tmp_path / "sweep.csv"
    sweep_results.write_rows(str(rows), [])
    assert_durable(events, rows)


@needs_proc
def test_sample_grids_and_curves_write_durably(tmp_path, events):
    import types

    import numpy as np

    from ddim_keras.callbacks import LossCurvePlot, SampleGrid

    grid = SampleGrid(str(tmp_path / "samples"), num_rows=1, num_cols=2, inline=False)
    grid.set_model(
        types.SimpleNamespace(
            generate=lambda count, steps, eta, seed: np.zeros((count, 4, 4, 3), np.float32)
        )
    )
    grid.on_epoch_end(0, {"n_loss": 0.5})
    assert_durable(events, grid.last_path)

    curves = LossCurvePlot(str(tmp_path / "curves.png"), every_epoch=True)
    curves.on_epoch_end(0, {"n_loss": 0.5, "val_n_loss": 0.6})
    assert_durable(events, tmp_path / "curves.png")
