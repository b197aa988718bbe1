"""Disk caches that cannot go stale or clash (issue #20).

* A cache's name includes the pipeline version, so a cache written before a
  change to decoding is never read after it.
* Several writers may share a cache folder: each fills files of its own, a
  finished cache appears under its final name whole, and only a dead writer's
  leftovers are removed (a live writer holds its lock file, a dead one cannot).
"""

import os
import signal
import subprocess
import sys
import textwrap
import threading

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
import pytest
from PIL import Image

from ddim_keras import data
from ddim_keras.core.config import DiffusionConfig
from ddim_keras.data import cache as data_cache
from ddim_keras.data import numpy_pipeline as numpy_data
from ddim_keras.data.folder import split_folder

CONFIG = DiffusionConfig(image_size=16, batch_size=2, dataset_repetitions=1, kid=False)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def listing(folder):
    return sorted(os.listdir(folder))


def writer_files(folder):
    """The files of writers (unfinished caches) in the folder."""
    return [name for name in listing(folder) if ".writer-" in name]


# -- names -------------------------------------------------------------------------------


def test_the_pipeline_version_is_part_of_every_cache_name(tmp_path, monkeypatch):
    def cache_files():
        train_ds, _ = data.load_datasets(
            "shapes", CONFIG, shapes_count=4, cache="disk", cache_dir=tmp_path
        )
        for _ in train_ds:
            pass
        return {name for name in listing(tmp_path) if name.endswith(".index")}

    first = cache_files()
    assert len(first) == 1 and cache_files() == first  # read again, not rewritten
    monkeypatch.setattr(data_cache, "PIPELINE_VERSION", data_cache.PIPELINE_VERSION + 1)
    second = cache_files() - first
    assert len(second) == 1 and first < cache_files()  # a new cache; the old one kept

    identity = {"source": "shapes", "image_size": 16}
    names = {
        data_cache.cache_prefix("c", "train", identity, pipeline)
        for pipeline in ("tf.data", "numpy")
    }
    assert len(names) == 2


# -- the NumPy pipeline: PREFIX.npy ------------------------------------------------------


@pytest.fixture(scope="module")
def entries(tmp_path_factory):
    root = tmp_path_factory.mktemp("pngs")
    rng = np.random.default_rng(3)
    for index in range(10):
        pixels = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"{index}.png")
    return split_folder(root)["train"]


def image_files(entries, cache):
    return numpy_data.ImageFiles(entries, 16, (255, 255, 255), cache)


def test_two_numpy_writers_neither_disturbs_the_other(entries, tmp_path):
    expected = image_files(entries, "none").uint8(range(len(entries)))
    prefix = str(tmp_path / "train_x")
    first, second = image_files(entries, prefix), image_files(entries, prefix)
    first.uint8([0, 1])  # both half-way
    second.uint8([2])
    writers = {name.split(".writer-")[1].split(".")[0] for name in writer_files(tmp_path)}
    assert len(writers) == 2  # each its own files, neither removed by the other's start
    assert not os.path.exists(prefix + ".npy")

    np.testing.assert_array_equal(first.uint8(range(len(entries))), expected)
    assert os.path.exists(prefix + ".npy")  # published, the second still writing
    assert len(writer_files(tmp_path)) == 2  # its .npy and .lock
    np.testing.assert_array_equal(second.uint8(range(len(entries))), expected)
    assert writer_files(tmp_path) == []  # the second saw the first's and dropped its own
    np.testing.assert_array_equal(np.load(prefix + ".npy"), expected)

    third = image_files(entries, prefix)  # the next run reads the finished cache
    assert isinstance(third._store, np.memmap) and third._filled is None
    np.testing.assert_array_equal(third.uint8(range(len(entries))), expected)


def test_numpy_writers_in_threads(entries, tmp_path):
    expected = image_files(entries, "none").uint8(range(len(entries)))
    prefix = str(tmp_path / "train_y")
    start = threading.Barrier(4)
    results, errors = [None] * 4, []

    def fill(slot):
        try:
            images = image_files(entries, prefix)
            start.wait()
            for index in range(len(entries)):
                images.uint8([index])
            results[slot] = images.uint8(range(len(entries)))
        except Exception as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=fill, args=(slot,)) for slot in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for result in results:
        np.testing.assert_array_equal(result, expected)
    np.testing.assert_array_equal(np.load(prefix + ".npy"), expected)
    assert writer_files(tmp_path) == []


# -- tf.data: PREFIX.index and PREFIX.data-* ------------------------------------------


def numbered(count, offset=0):
    import tensorflow as tf

    return tf.data.Dataset.range(count).map(
        lambda i: tf.fill([2, 2, 3], tf.cast(i + offset, tf.uint8))
    )


def values(dataset):
    return [int(image[0, 0, 0]) for image in dataset.as_numpy_iterator()]


def test_two_tf_data_writers_neither_disturbs_the_other(tmp_path):
    from ddim_keras.data.tf_passes import disk_cached

    prefix = str(tmp_path / "train_z")
    first = iter(disk_cached(numbered(30), prefix).as_numpy_iterator())
    head = [int(next(first)[0, 0, 0]) for _ in range(5)]  # half-way through its pass
    own = set(writer_files(tmp_path))
    assert any(name.endswith(".lock") for name in own) and len(own) >= 2

    assert values(disk_cached(numbered(30), prefix)) == list(range(30))  # a second writer
    assert os.path.exists(prefix + ".index")
    assert own <= set(writer_files(tmp_path))  # the first's files untouched
    assert head + [int(image[0, 0, 0]) for image in first] == list(range(30))
    assert writer_files(tmp_path) == []

    # The finished cache is what the next run reads (not these other images).
    again = disk_cached(numbered(30, offset=100), prefix)
    assert int(again.cardinality()) == 30
    assert values(again) == list(range(30))
    assert writer_files(tmp_path) == []


KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from ddim_keras import data
    from ddim_keras.core.config import DiffusionConfig

    config = DiffusionConfig(image_size=16, batch_size=2, dataset_repetitions=1, kid=False)
    train_ds, _ = data.load_datasets(
        "shapes", config, shapes_count=64, cache="disk", cache_dir=sys.argv[1]
    )
    batches = iter(train_ds)
    next(batches)  # the shuffle buffer has read 20 of 64 images into the cache
    print("writing", flush=True)
    time.sleep(600)
    """
)


def test_a_live_writer_is_left_alone_and_a_dead_ones_leftovers_are_removed(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    other = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(cache)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert other.stdout.readline().strip() == "writing", other.stderr.read()
        theirs = set(writer_files(cache))
        assert any(name.endswith(".lock") for name in theirs) and len(theirs) >= 2

        def train_images():
            train_ds, _ = data.load_datasets(
                "shapes", CONFIG, shapes_count=64, cache="disk", cache_dir=cache
            )
            return np.sort(np.concatenate(list(train_ds.as_numpy_iterator())), axis=None)

        expected = train_images()  # this process writes and publishes its own
        assert theirs == set(writer_files(cache))  # the live writer's files stay
    finally:
        other.send_signal(signal.SIGKILL)
        other.communicate()
    np.testing.assert_array_equal(train_images(), expected)  # reads the finished cache...
    assert writer_files(cache) == []  # ...and removed what the killed writer left
    assert len([name for name in listing(cache) if name.endswith(".index")]) == 1


@pytest.mark.skipif(data_cache.fcntl is None, reason="needs flock")
def test_a_lock_file_held_by_another_process_marks_a_live_writer(tmp_path):
    """The rule itself, with the standard library only: a lock that can be taken is stale."""
    code = textwrap.dedent(
        """
        import sys, time
        from ddim_keras.data.cache import CacheWriter

        writer = CacheWriter.start(sys.argv[1], lambda: False)
        open(writer.path(".npy"), "wb").write(b"half")
        print(writer.token, flush=True)
        time.sleep(600)
        """
    )
    env = dict(os.environ, PYTHONPATH=ROOT)
    other = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path / "train_w")],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        token = other.stdout.readline().strip()
        assert token
        with data_cache.folder_lock(str(tmp_path)):
            data_cache.remove_dead_writers(str(tmp_path))
        assert writer_files(tmp_path) == [
            f"train_w.writer-{token}.lock",
            f"train_w.writer-{token}.npy",
        ]
    finally:
        other.send_signal(signal.SIGKILL)
        other.communicate()
    with data_cache.folder_lock(str(tmp_path)):
        data_cache.remove_dead_writers(str(tmp_path))
    assert writer_files(tmp_path) == []
