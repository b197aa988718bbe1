"""``python -m ddim_keras.sampler_error``: quality per network call against a long decode."""

import json

import pytest
from conftest import assert_one_error, run_command

from ddim_keras.cli import sampler_error


def test_table_and_json(sampling_run, tmp_path, capsys):
    output = tmp_path / "errors.json"
    code, out, err = run_command(
        capsys,
        sampler_error.main,
        "--run",
        sampling_run,
        "--samplers",
        "ddim,dpmpp_2m/logsnr,heun/karras",
        "--calls",
        "2,4,8",
        "--reference-steps",
        100,
        "--num-images",
        4,
        "--output",
        output,
        "--no-progress",
    )
    assert code == 0, err
    assert "| sampler | 2 calls | 4 calls | 8 calls |" in out
    result = json.loads(output.read_text())
    errors = result["rmse"]
    assert set(errors) == {"ddim", "dpmpp_2m/logsnr", "heun/karras"}
    for row in errors.values():
        assert set(row) == {"2", "4", "8"}
        assert all(0 <= value < 1 for value in row.values())
    # More calls come closer to the long decode of the same noise.
    for label in ("ddim", "dpmpp_2m/logsnr"):
        assert errors[label]["8"] < errors[label]["2"], errors
    # The example's sampler with more steps approaches its own 100-step decode.
    assert errors["ddim"]["8"] < 0.6 * errors["ddim"]["2"]


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--samplers", "euler"], ["--samplers", "euler"]),
        (["--samplers", "ddim/linear"], ["spacing", "linear"]),
        (["--calls", "2,x"], ["--calls"]),
        (["--calls", "0"], ["--calls", "at least 1"]),
    ],
)
def test_bad_flags(sampling_run, capsys, argv, words):
    code, _, err = run_command(capsys, sampler_error.main, "--run", sampling_run, *argv)
    assert code == 2
    assert_one_error(err, words)
