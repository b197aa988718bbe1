"""One error style for train, generate and evaluate, through real subprocesses.

Every bad input gives a short message on stderr that names the problem, exit
code 2 for bad usage and 1 for runtime failures, and no Python traceback
(unless --debug). The cases run two at a time: most fail before TensorFlow is
imported and take well under a second, the ones that load data or a model a
few seconds each.
"""

import collections
import concurrent.futures
import hashlib
import os
import shutil
import subprocess
import sys

from conftest import write_config

Case = collections.namedtuple("Case", "command name argv code words traceback", defaults=(False,))

TRAIN_DEFAULTS = (
    ("--config", "{tiny}"),
    ("--output", "{new_run}"),
    ("--steps-per-epoch", "3"),
    ("--verbose", "0"),
)
GENERATE_DEFAULTS = (("--steps", "1"), ("--seed", "1"), ("--output", "{out_png}"))
EVALUATE_DEFAULTS = (
    ("--kid-weights", "none"),
    ("--steps", "1"),
    ("--num-images", "4"),
    ("--output", "{out_json}"),
)
DEFAULTS = {"train": TRAIN_DEFAULTS, "generate": GENERATE_DEFAULTS, "evaluate": EVALUATE_DEFAULTS}

SHAPES = ["--dataset", "shapes"]

CASES = [
    # -- train ---------------------------------------------------------------------------
    Case("train", "unknown dataset", ["--dataset", "imagenet"], 2, ["imagenet"]),
    Case(
        "train",
        "config value out of range",
        SHAPES + ["--config", "{bad_value}"],
        2,
        ["image_size", "divisible"],
    ),
    Case(
        "train", "unknown config key", SHAPES + ["--config", "{unknown_key}"], 2, ["learning_rat"]
    ),
    Case(
        "train",
        "config value of the wrong type",
        SHAPES + ["--config", "{wrong_type}"],
        2,
        ["batch_size", "integer"],
    ),
    Case("train", "missing config file", SHAPES + ["--config", "{missing}"], 2, ["{missing}"]),
    Case("train", "zero epochs", SHAPES + ["--epochs", "0"], 2, ["--epochs"]),
    Case(
        "train",
        "zero steps per epoch",
        SHAPES + ["--steps-per-epoch", "0"],
        2,
        ["--steps-per-epoch"],
    ),
    Case(
        "train",
        "epochs not a number",
        SHAPES + ["--epochs", "many"],
        2,
        ["--epochs", "invalid int"],
    ),
    Case("train", "folder without --data-dir", ["--dataset", "folder"], 2, ["--data-dir"]),
    Case(
        "train",
        "missing data dir",
        ["--dataset", "folder", "--data-dir", "{missing}"],
        2,
        ["{missing}", "does not exist"],
    ),
    Case(
        "train",
        "empty folder",
        ["--dataset", "folder", "--data-dir", "{empty}"],
        1,
        ["{empty}", "contains no images"],
    ),
    Case(
        "train",
        "corrupt images only",
        ["--dataset", "folder", "--data-dir", "{corrupt}"],
        1,
        ["none of the 3 image file(s)", "can be decoded"],
    ),
    Case(
        "train",
        "output inside a file",
        SHAPES + ["--output", "{a_file}/run"],
        2,
        ["is a file, not a folder"],
    ),
    Case(
        "train",
        "existing run with another config",
        SHAPES + ["--config", "{config32}", "--output", "{run}"],
        2,
        ["different config", "image_size: 16 -> 32", "--overwrite"],
    ),
    Case("train", "--resume without a run", SHAPES + ["--resume"], 2, ["no run to resume"]),
    Case(
        "train",
        "unloadable last checkpoint",
        SHAPES + ["--output", "{broken_run}", "--epochs", "3"],
        1,
        ["last.weights.h5", "not a valid weights file", "Cannot resume", "--overwrite"],
    ),
    Case(
        "train",
        "diverging learning rate",
        SHAPES + ["--config", "{diverging}", "--output", "{diverging_run}"],
        1,
        ["training diverged", "No epoch was completed", "Lower learning_rate"],
    ),
    Case(
        "train",
        "missing KID weights file",
        SHAPES + ["--kid-weights", "{missing}"],
        2,
        ["KID weights", "{missing}"],
    ),
    Case(
        "train",
        "--debug shows the traceback",
        SHAPES + ["--config", "{bad_value}", "--debug"],
        1,
        ["Traceback", "ConfigError", "image_size"],
        traceback=True,
    ),
    # -- generate ------------------------------------------------------------------------
    Case("generate", "no model", [], 2, ["--run", "--checkpoint"]),
    Case("generate", "zero steps", ["--run", "{run}", "--steps", "0"], 2, ["--steps"]),
    Case("generate", "negative eta", ["--run", "{run}", "--eta", "-1"], 2, ["--eta"]),
    Case(
        "generate",
        "eta above 1",
        ["--run", "{run}", "--eta", "1.5"],
        2,
        ["--eta", "between 0", "and 1", "1.5"],
    ),
    Case("generate", "zero images", ["--run", "{run}", "--num-images", "0"], 2, ["--num-images"]),
    Case("generate", "unknown mode", ["--run", "{run}", "--mode", "video"], 2, ["video"]),
    Case(
        "generate",
        "missing checkpoint",
        ["--checkpoint", "{missing_h5}"],
        1,
        ["{missing_h5}", "does not exist"],
    ),
    Case("generate", "missing run", ["--run", "{missing}"], 1, ["does not exist"]),
    Case(
        "generate",
        "checkpoint with another config",
        ["--run", "{run}", "--config", "{config32}"],
        1,
        ["image_size 16 vs 32"],
    ),
    Case(
        "generate",
        "corrupt checkpoint",
        ["--checkpoint", "{garbage}", "--config", "{tiny}"],
        1,
        ["not a valid weights file"],
    ),
    Case(
        "generate",
        "weights of another architecture",
        ["--checkpoint", "{bare}", "--config", "{config_widths}"],
        1,
        ["does not match the model's config", "widths [8, 32]"],
    ),
    Case(
        "generate",
        "output in a missing folder",
        ["--run", "{run}", "--output", "{missing_dir_out}"],
        2,
        ["does not exist"],
    ),
    Case(
        "generate",
        "existing output",
        ["--run", "{run}", "--output", "{existing}"],
        2,
        ["already exists", "--overwrite"],
    ),
    # -- evaluate ------------------------------------------------------------------------
    Case("evaluate", "unknown dataset", ["--run", "{run}", "--dataset", "mnist"], 2, ["mnist"]),
    Case(
        "evaluate",
        "one image",
        ["--run", "{run}", "--num-images", "1"],
        2,
        ["--num-images", "at least 2"],
    ),
    Case("evaluate", "batch of one", ["--run", "{run}", "--batch-size", "1"], 2, ["--batch-size"]),
    Case("evaluate", "zero steps", ["--run", "{run}", "--steps", "0"], 2, ["--steps"]),
    Case("evaluate", "missing run", ["--run", "{missing}"], 1, ["does not exist"]),
    Case(
        "evaluate",
        "missing checkpoint",
        ["--checkpoint", "{missing_h5}", *SHAPES],
        1,
        ["does not exist"],
    ),
    Case(
        "evaluate",
        "checkpoint with another config",
        ["--run", "{run}", "--config", "{config32}"],
        1,
        ["image_size 16 vs 32"],
    ),
    Case(
        "evaluate",
        "missing data dir",
        ["--run", "{run}", "--dataset", "folder", "--data-dir", "{missing}"],
        2,
        ["does not exist"],
    ),
    Case(
        "evaluate",
        "empty folder",
        ["--run", "{run}", "--dataset", "folder", "--data-dir", "{empty}"],
        1,
        ["contains no images"],
    ),
    Case(
        "evaluate",
        "corrupt images only",
        ["--run", "{run}", "--dataset", "folder", "--data-dir", "{corrupt}"],
        1,
        ["can be decoded"],
    ),
    Case(
        "evaluate",
        "output in a missing folder",
        ["--run", "{run}", "--output", "{missing_dir_out}"],
        2,
        ["does not exist"],
    ),
]

#: Cases that import TensorFlow (and some load a model): started first, so that
#: the quick ones fill the gaps.
SLOW = {
    "missing data dir",
    "empty folder",
    "corrupt images only",
    "unloadable last checkpoint",
    "diverging learning rate",
    "missing KID weights file",
    "corrupt checkpoint",
    "weights of another architecture",
}


def digests(folder):
    found = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                found[os.path.relpath(path, folder)] = hashlib.sha256(handle.read()).hexdigest()
    return found


def make_files(root, tiny_run):
    empty = root / "empty"
    empty.mkdir()
    corrupt = root / "corrupt"
    corrupt.mkdir()
    for name in ("a.jpg", "b.png", "c.gif"):
        (corrupt / name).write_bytes(b"not an image at all")
    a_file = root / "a_file.txt"
    a_file.write_text("a file, not a folder")
    garbage = root / "garbage.weights.h5"
    garbage.write_bytes(b"this is not an HDF5 file")
    bare = root / "bare.weights.h5"
    shutil.copy(os.path.join(tiny_run, "checkpoints", "best.weights.h5"), bare)
    existing = root / "existing.png"
    existing.write_bytes(b"keep me")
    broken_run = root / "broken_run"  # a copy of the tiny run with a damaged last checkpoint
    shutil.copytree(tiny_run, broken_run)
    (broken_run / "checkpoints" / "last.weights.h5").write_bytes(b"\x89HDF\r\n truncated")
    with open(root / "wrong_type.json", "w") as handle:
        handle.write('{"batch_size": "four"}')
    return {
        "run": tiny_run,
        "broken_run": str(broken_run),
        "new_run": str(root / "new_run"),
        "diverging_run": str(root / "diverging_run"),
        "tiny": write_config(root / "tiny.json"),
        "bad_value": write_config(root / "bad_value.json", image_size=15),
        "unknown_key": write_config(root / "unknown_key.json", learning_rat=0.1),
        "wrong_type": str(root / "wrong_type.json"),
        "config32": write_config(root / "tiny32.json", image_size=32),
        "config_widths": write_config(root / "wide.json", widths=[8, 32]),
        "diverging": write_config(root / "diverging.json", learning_rate=1e30),
        "missing": str(root / "missing"),
        "missing_h5": str(root / "missing.weights.h5"),
        "empty": str(empty),
        "corrupt": str(corrupt),
        "a_file": str(a_file),
        "garbage": str(garbage),
        "bare": str(bare),
        "existing": str(existing),
        "out_png": str(root / "out.png"),
        "out_json": str(root / "out.json"),
        "missing_dir_out": str(root / "no" / "such" / "dir" / "out.png"),
    }


def command_line(case, paths):
    argv = list(case.argv)
    for flag, value in DEFAULTS[case.command]:
        if flag not in argv:
            argv += [flag, value]
    return [
        sys.executable,
        "-m",
        f"ddim_keras.{case.command}",
        *[arg.format(**paths) for arg in argv],
    ]


def check(case, paths, result):
    """The problems with one case's result, as a list of strings (empty: fine)."""
    problems = []
    err = result.stderr
    message = " ".join(err.split())
    if result.returncode != case.code:
        problems.append(f"exit code {result.returncode}, expected {case.code}")
    if case.traceback != ("Traceback (most recent call last)" in err):
        problems.append("a traceback" if not case.traceback else "no traceback")
    if not case.traceback and "error: " not in err:
        problems.append("no 'error: ' line")
    for word in case.words:
        word = word.format(**paths)
        if word not in message:
            problems.append(f"{word!r} not in the message")
    return problems


def test_bad_input_of_every_command(tiny_run, tmp_path):
    paths = make_files(tmp_path, tiny_run)
    run_before = digests(tiny_run)
    broken_before = digests(paths["broken_run"])
    cases = sorted(CASES, key=lambda case: case.name not in SLOW)  # slow ones first

    def run(case):
        return subprocess.run(
            command_line(case, paths),
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
        )

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(run, cases))

    failures = []
    for case, result in zip(cases, results):
        problems = check(case, paths, result)
        if problems:
            failures.append(
                f"{case.command} / {case.name}: {'; '.join(problems)}\n"
                f"  stderr: {result.stderr.strip()[-1500:]}"
            )
    assert not failures, "\n".join(failures)

    # Nothing was written, and the runs the cases pointed at are untouched.
    for name in ("out_png", "out_json", "new_run"):
        assert not os.path.exists(paths[name]), name
    assert open(paths["existing"], "rb").read() == b"keep me"
    assert digests(tiny_run) == run_before
    assert digests(paths["broken_run"]) == broken_before
    assert not os.path.exists(os.path.join(tmp_path, "generated"))
