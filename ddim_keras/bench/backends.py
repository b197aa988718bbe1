"""One backend against another (``--backends``): the train step measured under each
backend in its own child process (``python -m ddim_keras.benchmark``), in turns,
and each one's median images/s and its ratio to TensorFlow's.

Child processes because a process runs one Keras backend; the children run the
command itself, at the same config, so their numbers are those of a single run. So
:func:`compare_backends` and :func:`child_argv` take the command's parsed flags
(``args``: ``preset``, ``config``, ``batch_size``, ``train_steps``, ``jit_compile``,
``mixed_precision``, and ``backends`` and ``rounds``) and hand them on to each child.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile

from ddim_keras.bench.system import CpuShare
from ddim_keras.core.backend import child_environment

#: What a --backends child measures: the train step only.
BACKENDS_CHILD_SKIP = ("sampling", "data", "matmul")
#: A backend within this factor of TensorFlow's training images/s counts as on par.
BACKEND_PARITY_FACTOR = 1.5


def child_argv(args, output):
    """The command line of one --backends measurement: this config, the train step only."""
    argv = [
        sys.executable,
        "-m",
        "ddim_keras.benchmark",
        "--skip",
        ",".join(BACKENDS_CHILD_SKIP),
        "--train-steps",
        str(args.train_steps),
        "--jit-compile",
        args.jit_compile,
        "--mixed-precision",
        args.mixed_precision,
        "--output",
        output,
    ]
    for flag, value in (
        ("--preset", args.preset),
        ("--config", args.config),
        ("--batch-size", args.batch_size),
    ):
        if value is not None:
            argv += [flag, str(value)]
    return argv


def _last_lines(text, count=3):
    return " | ".join(line for line in text.strip().splitlines()[-count:])


def run_backend(args, backend, folder, index):
    """One child process measuring ``backend``'s train step: its result dict, or an error."""
    output = os.path.join(folder, f"{backend}_{index}.json")
    env = child_environment(KERAS_BACKEND=backend)
    process = subprocess.run(
        child_argv(args, output), env=env, capture_output=True, text=True, check=False
    )
    if process.returncode != 0 or not os.path.exists(output):
        return {
            "error": f"exit {process.returncode}: {_last_lines(process.stderr or process.stdout)}"
        }
    with open(output, encoding="utf-8") as handle:
        return json.load(handle)


def summarize_backends(runs, reference="tensorflow"):
    """Per-backend medians of the runs and each one's ratio to ``reference``'s images/s.

    ``runs`` maps a backend to its list of child results (dicts from
    :func:`~ddim_keras.bench.run.run_benchmark`, or ``{"error": ...}``). ``ratio_to_tensorflow`` is
    images/s over TensorFlow's (1 = as fast, 0.5 = half as fast);
    ``within_parity`` says whether the backend is within
    :data:`BACKEND_PARITY_FACTOR` of it.
    """
    summary = {}
    for backend, results in runs.items():
        good = [result for result in results if "error" not in result]
        entry = {"runs": len(results), "errors": [r["error"] for r in results if "error" in r]}
        if good:
            trains = [result["train"] for result in good]
            entry.update(
                images_per_s=statistics.median(t["images_per_s"] for t in trains),
                images_per_s_all=[t["images_per_s"] for t in trains],
                pipelined_images_per_s=statistics.median(
                    t["pipelined_images_per_s"] for t in trains
                ),
                step_s=statistics.median(t["step_s"] for t in trains),
                first_step_s=statistics.median(t["first_step_s"] for t in trains),
                compiler=trains[0]["compiler"],
                versions=good[0]["versions"],
                device=good[0]["device"],
            )
            mixed = [t["mixed"] for t in trains if t.get("mixed") and "skipped" not in t["mixed"]]
            skipped = [t["mixed"] for t in trains if t.get("mixed") and "skipped" in t["mixed"]]
            if mixed:
                entry["mixed"] = {
                    "precision": mixed[0]["precision"],
                    "images_per_s": statistics.median(m["images_per_s"] for m in mixed),
                    "images_per_s_all": [m["images_per_s"] for m in mixed],
                }
            elif skipped:
                entry["mixed"] = skipped[0]
        summary[backend] = entry
    base = summary.get(reference, {})
    for entry in summary.values():
        for section, reference_section in ((entry, base), (entry.get("mixed"), base.get("mixed"))):
            if not section or "images_per_s" not in section:
                continue
            if reference_section and "images_per_s" in reference_section:
                ratio = section["images_per_s"] / reference_section["images_per_s"]
                section["ratio_to_tensorflow"] = ratio
                section["within_parity"] = ratio >= 1.0 / BACKEND_PARITY_FACTOR
    return summary


def compare_backends(args, config):
    """``--backends``: each backend's train step in its own process, in turns; a result dict."""
    runs = {backend: [] for backend in args.backends}
    cpu_share = CpuShare()
    with tempfile.TemporaryDirectory(prefix="ddim-backends-") as folder:
        for index in range(args.rounds):
            for backend in args.backends:
                print(
                    f"round {index + 1}/{args.rounds}: {backend} ...", file=sys.stderr, flush=True
                )
                runs[backend].append(run_backend(args, backend, folder, index))
    return {
        "mode": "backends",
        "reference": "tensorflow",
        "parity_factor": BACKEND_PARITY_FACTOR,
        "config": config.to_dict(),
        "batch_size": config.batch_size,
        "train_steps": args.train_steps,
        "rounds": args.rounds,
        "jit_compile": args.jit_compile,
        "mixed_precision": args.mixed_precision,
        "backends": summarize_backends(runs),
        "runs": runs,
        "machine_load": cpu_share.result(),
    }
