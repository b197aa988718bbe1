"""Files that fail at decode time are counted and reported (issue #20, "failures are seen").

A JPEG truncated after its header passes the folder listing (which parses headers
only) and fails when its pixels are decoded. Each pipeline then gives one
UnreadableImagesWarning per pass over the split, counting the files lost and
naming them: tf.data (memory cache: only the pass that fills it; no cache: every
pass), the NumPy pipeline (run with TensorFlow hidden), a user's own ``fit`` and
``python -m ddim_keras.train``.
"""

import json
import os
import subprocess
import sys
import warnings

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
import pytest
from conftest import without_tensorflow_env, write_config
from PIL import Image

from ddim_keras import data
from ddim_keras.core.config import DiffusionConfig
from ddim_keras.data.decode import inspect_image
from ddim_keras.data.failures import undecodable_message
from ddim_keras.data.folder import split_folder

# Seven images, one batch of one: the validation split (one image) is not empty.
CONFIG = DiffusionConfig(image_size=16, batch_size=1, dataset_repetitions=1, kid=False)


def photo(seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:40, 0:48] / 48.0
    base = np.stack([128 + 90 * np.sin(5 * x + c + seed) * np.cos(3 * y - c) for c in range(3)], -1)
    return np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)


def truncated_folder(root, count=7, cut=1):
    """``count`` JPEGs in ROOT/photos; ``cut`` of the training split's cut to 60 % of their
    bytes. Returns the relative paths of the cut files."""
    (root / "photos").mkdir(parents=True)
    for index in range(count):
        Image.fromarray(photo(index)).save(root / "photos" / f"{index}.jpg", quality=90)
    # The split depends on the file names only, so it is the same after the cut.
    train = [path for path, _, _ in split_folder(root)["train"]]
    cut_paths = sorted(train)[:cut]
    for path in cut_paths:
        with open(path, "rb") as handle:
            contents = handle.read()
        with open(path, "wb") as handle:
            handle.write(contents[: int(len(contents) * 0.6)])
        # What the listing sees (headers) is fine; Pillow cannot decode the pixels.
        assert inspect_image(path)[0] is None
        with Image.open(path) as image, pytest.raises(OSError, match="truncated"):
            image.load()
    return [os.path.relpath(path, root) for path in cut_paths]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("truncated")
    (bad,) = truncated_folder(root)
    return root, bad


def unreadable(caught):
    return [str(w.message) for w in caught if issubclass(w.category, data.UnreadableImagesWarning)]


def expected_start(bad, outcome):
    return (
        f"1 of 6 image files of the training split could not be decoded and {outcome}: "
        f"{bad} (OSError: image file is truncated"
    )


@pytest.mark.parametrize("cache,warned", [("memory", 1), ("none", 2)])
def test_tf_data_warns_once_per_pass_over_the_files(folder, cache, warned):
    root, bad = folder
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_ds, val_ds = data.load_datasets("folder", CONFIG, data_dir=root, cache=cache)
        assert unreadable(caught) == []  # the listing saw nothing wrong
        images = [sum(int(batch.shape[0]) for batch in train_ds) for _epoch in range(2)]
        assert sum(int(batch.shape[0]) for batch in val_ds) == 1
    assert images == [5, 5]  # the cut file is skipped
    messages = unreadable(caught)
    assert len(messages) == warned, messages
    for message in messages:
        assert message.startswith(expected_start(bad, "were skipped")), message


def test_a_users_own_fit_sees_the_warning(folder):
    import keras

    root, bad = folder
    train_ds, _ = data.load_datasets("folder", CONFIG, data_dir=root)
    model = keras.Sequential(
        [keras.Input((16, 16, 3)), keras.layers.Flatten(), keras.layers.Dense(1)]
    )
    model.compile(optimizer="sgd", loss="mse")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(train_ds.map(lambda x: (x, x[:, :1, 0, 0])), epochs=2, verbose=0)
    (message,) = unreadable(caught)
    assert message.startswith(expected_start(bad, "were skipped"))


def test_a_pass_that_loses_several_files_names_three(tmp_path):
    bad = truncated_folder(tmp_path, count=12, cut=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_ds, _ = data.load_datasets("folder", CONFIG, data_dir=tmp_path, cache="none")
        assert sum(1 for _ in train_ds) == 6  # 10 training files, 4 cut
    (message,) = unreadable(caught)
    assert message.startswith(
        "4 of 10 image files of the training split could not be decoded and were skipped: "
    )
    assert message.endswith("; and 1 more.")
    assert sum(path in message for path in bad) == 3


def test_the_message_says_how_many_of_how_many(tmp_path):
    assert undecodable_message(1, 1, [], "were skipped") == (
        "1 of 1 image file could not be decoded and were skipped."
    )
    folder = str(tmp_path)
    message = undecodable_message(
        2,
        9,
        [(os.path.join(folder, "a", "x.png"), "OSError: bad")],
        "were skipped",
        "validation",
        folder,
    )
    assert message == (
        "2 of 9 image files of the validation split could not be decoded and were skipped: "
        f"{os.path.join('a', 'x.png')} (OSError: bad); and 1 more."
    )


NUMPY_PIPELINE = r"""
import json, sys, warnings
from ddim_keras import data
from ddim_keras.core.config import DiffusionConfig
from ddim_keras.data import numpy_pipeline

config = DiffusionConfig(image_size=16, batch_size=1, dataset_repetitions=1, kid=False)
found = {}
for cache in ("memory", "none"):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train, _ = data.load_datasets("folder", config, data_dir=sys.argv[1], cache=cache)
        assert isinstance(train, numpy_pipeline.ImageBatches)
        images = []
        for epoch in range(2):  # as Keras' fit goes through a PyDataset
            images.append(sum(len(train[index]) for index in range(len(train))))
            train.on_epoch_end()
    found[cache] = {
        "images": images,
        "messages": [str(w.message) for w in caught
                     if issubclass(w.category, data.UnreadableImagesWarning)],
    }
print(json.dumps(found))
"""


def test_numpy_pipeline_warns_once_per_pass_over_the_files(folder, tmp_path):
    root, bad = folder
    result = subprocess.run(
        [sys.executable, "-c", NUMPY_PIPELINE, str(root)],
        capture_output=True,
        text=True,
        env=without_tensorflow_env(tmp_path),
        cwd=str(tmp_path),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    for cache, warned in (("memory", 1), ("none", 2)):
        assert found[cache]["images"] == [6, 6]  # the cut file's place is taken by another
        messages = found[cache]["messages"]
        assert len(messages) == warned, (cache, messages)
        for message in messages:
            assert message.startswith(
                expected_start(bad, "were replaced by the next image of the split")
            ), message


def test_train_command_prints_the_warning_and_succeeds(folder, tmp_path):
    root, bad = folder
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    train = subprocess.run(
        [
            sys.executable,
            "-m",
            "ddim_keras.train",
            "--dataset",
            "folder",
            "--data-dir",
            str(root),
            "--config",
            write_config(tmp_path / "tiny.json", batch_size=1),
            "--output",
            str(tmp_path / "run"),
            "--verbose",
            "0",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert train.returncode == 0, train.stderr
    lines = [line for line in train.stderr.splitlines() if "UnreadableImagesWarning" in line]
    assert len(lines) == 1, train.stderr
    assert f"UnreadableImagesWarning: {expected_start(bad, 'were skipped')}" in lines[0]
    assert "Premature end of JPEG" not in train.stderr  # TensorFlow's own log stays hidden
