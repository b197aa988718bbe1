"""Progressive distillation (issue #23): the two-step target, one round's training, the command.

The targets are checked against the teacher's DDIM steps computed here in NumPy from
the teacher's own predictions, not against the module's formula.
"""

import json
import os
import warnings

import keras
import numpy as np
import pytest

from ddim_keras.core.config import DiffusionConfig
from ddim_keras.model.diffusion_model import DiffusionModel
from ddim_keras.model.distillation import (
    DistillationModel,
    halving_rounds,
    student_config,
    two_step_target,
)
from tests.conftest import TINY, run_command, unsaturate


def _teacher(seed=0):
    return unsaturate(DiffusionModel(DiffusionConfig(**TINY), kid_weights=None), seed=seed)


def _rates(model, time):
    noise_rates, signal_rates = model.diffusion_schedule(np.full((1, 1, 1, 1), time, "float32"))
    noise_rates, signal_rates = (
        keras.ops.convert_to_numpy(noise_rates),
        keras.ops.convert_to_numpy(signal_rates),
    )
    return float(noise_rates.ravel()[0]), float(signal_rates.ravel()[0])


def _teacher_prediction(teacher, noisy_images, time):
    noise_rate, signal_rate = _rates(teacher, time)
    shape = (len(noisy_images), 1, 1, 1)
    pred_noises, pred_images = teacher.denoise(
        keras.ops.convert_to_tensor(noisy_images),
        keras.ops.convert_to_tensor(np.full(shape, noise_rate, "float32")),
        keras.ops.convert_to_tensor(np.full(shape, signal_rate, "float32")),
        training=False,
    )
    return keras.ops.convert_to_numpy(pred_noises), keras.ops.convert_to_numpy(pred_images)


def _teacher_ddim(teacher, noisy_images, times):
    """The teacher's deterministic DDIM from times[0] through times[1:], by hand.

    Returns (the last noisy images, the prediction at the last time)."""
    for time, next_time in zip(times[:-1], times[1:]):
        pred_noises, pred_images = _teacher_prediction(teacher, noisy_images, time)
        next_noise_rate, next_signal_rate = _rates(teacher, next_time)
        noisy_images = next_signal_rate * pred_images + next_noise_rate * pred_noises
    return noisy_images, _teacher_prediction(teacher, noisy_images, times[-1])[1]


def test_halving_rounds():
    assert halving_rounds(16, 4) == [8, 4]
    assert halving_rounds(16, 1) == [8, 4, 2, 1]
    assert halving_rounds(2, 1) == [1]
    for teacher_steps, steps in ((16, 3), (12, 4), (4, 4), (4, 8), (8, 0)):
        with pytest.raises(ValueError):
            halving_rounds(teacher_steps, steps)


@pytest.mark.backends
def test_one_student_step_lands_where_two_teacher_steps_do():
    teacher = _teacher()
    steps = 4  # student steps: times 1, 3/4, 1/2, 1/4
    rng = np.random.default_rng(1)
    images = rng.normal(size=(4, 16, 16, 3)).astype("float32")
    noises = rng.normal(size=images.shape).astype("float32")
    times = np.array([1.0, 0.75, 0.5, 0.25], "float32").reshape(4, 1, 1, 1)
    noise_rates, signal_rates = (
        keras.ops.convert_to_numpy(r) for r in teacher.diffusion_schedule(times)
    )
    noisy_images = signal_rates * images + noise_rates * noises
    targets = keras.ops.convert_to_numpy(
        two_step_target(
            lambda x, n, s: teacher.denoise(x, n, s, training=False),
            teacher.diffusion_schedule,
            keras.ops.convert_to_tensor(noisy_images),
            keras.ops.convert_to_tensor(times),
            steps,
        )
    )
    for index, time in enumerate(times.ravel()):
        z = noisy_images[index : index + 1]
        teacher_next, teacher_last_image = _teacher_ddim(
            teacher, z, [time, time - 0.125, time - 0.25]
        )
        if time == 0.25:
            # The last student step returns the teacher's prediction after its first step.
            z_mid, prediction = _teacher_ddim(teacher, z, [time, time - 0.125])
            np.testing.assert_allclose(targets[index : index + 1], prediction, atol=1e-4)
            continue
        # One DDIM step of a student predicting the target lands on the teacher's z.
        noise_rate, signal_rate = _rates(teacher, time)
        next_noise_rate, next_signal_rate = _rates(teacher, time - 0.25)
        target = targets[index : index + 1]
        target_noise = (z - signal_rate * target) / noise_rate
        student_next = next_signal_rate * target + next_noise_rate * target_noise
        np.testing.assert_allclose(student_next, teacher_next, atol=2e-4)


def _student_sample_error(student, teacher_two_steps, noise):
    samples = keras.ops.convert_to_numpy(student.compiled_reverse_diffusion(noise, 1))
    return float(np.sqrt(np.mean((samples - teacher_two_steps) ** 2)))


@pytest.mark.backends
def test_a_round_makes_one_student_step_match_two_teacher_steps():
    keras.utils.set_random_seed(0)
    teacher = _teacher()
    config = student_config(teacher.diffusion_config, "velocity", 1, 1, "teacher").replace(
        learning_rate=3e-3, ema=0.8
    )
    student = DistillationModel(config, teacher=teacher, student_steps=1)
    student.start_from(teacher)
    student.compile()
    noise = np.random.default_rng(7).normal(size=(8, 16, 16, 3)).astype("float32")
    # The teacher's two DDIM steps from the same noise (t = 1 -> 1/2, prediction at 1/2).
    _, teacher_two_steps = _teacher_ddim(teacher, noise, [1.0, 0.5])
    before = _student_sample_error(student, teacher_two_steps, noise)
    images = np.random.default_rng(3).uniform(size=(32, 16, 16, 3)).astype("float32")
    history = student.fit(images, batch_size=8, epochs=12, verbose=0, shuffle=False)
    losses = history.history["n_loss"]
    after = _student_sample_error(student, teacher_two_steps, noise)
    assert losses[-1] < 0.5 * losses[0], losses
    assert after < 0.5 * before, (before, after)
    # The student's checkpoint is a plain DiffusionModel's.
    plain = DiffusionModel(config, kid_weights=None)
    plain.set_weights(student.get_weights())
    assert _student_sample_error(plain, teacher_two_steps, noise) == pytest.approx(after, rel=1e-4)


def _distil(capsys, teacher_run, output, *extra):
    from ddim_keras.cli import distill

    return run_command(
        capsys,
        distill.main,
        "--run",
        teacher_run,
        "--output",
        output,
        "--teacher-steps",
        4,
        "--epochs-per-halving",
        1,
        "--steps-per-epoch",
        2,
        "--verbose",
        0,
        *extra,
    )


def test_distill_command_writes_a_student_per_round(sampling_run, tmp_path, capsys):
    from ddim_keras.io.loading import load_model

    output = tmp_path / "student"
    code, out, err = _distil(capsys, sampling_run, output, "--steps", 1)
    assert code == 0, err
    # 4 -> 2 -> 1: two rounds, one epoch each.
    config = json.loads((output / "config.json").read_text())
    assert (config["distilled_steps"], config["distillation_rounds"]) == (1, 2)
    assert config["teacher_run"] == os.path.abspath(sampling_run)
    assert config["prediction"] == "noise"  # the teacher's (--prediction teacher)
    samples = sorted(os.listdir(output / "samples"))
    assert samples == [
        "epoch_0001.png",
        "epoch_0002.png",
        "round_1_2steps.png",
        "round_2_1steps.png",
        "teacher_4steps.png",
    ]
    assert sorted(os.listdir(output / "students")) == ["1steps", "2steps"]
    two = json.loads((output / "students" / "2steps" / "config.json").read_text())
    assert (two["distilled_steps"], two["distillation_rounds"]) == (2, 1)
    assert json.loads((output / "state.json").read_text())["epoch"] == 2
    assert len((output / "history.csv").read_text().strip().splitlines()) == 3

    model = load_model(run=str(output), kid_weights=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.generate(2, 1, seed=0)  # as distilled: no warning
    with pytest.warns(UserWarning, match="distilled for 1 DDIM step"):
        model.generate(2, 3, seed=0)

    # Done already: re-running changes nothing.
    before = (output / "checkpoints" / "best.weights.h5").stat().st_mtime_ns
    code, _, err = _distil(capsys, sampling_run, output, "--steps", 1)
    assert code == 0 and "already distilled" in err
    assert (output / "checkpoints" / "best.weights.h5").stat().st_mtime_ns == before
    # Interrupted after round 1: the same command resumes with round 2.
    state = json.loads((output / "state.json").read_text())
    (output / "state.json").write_text(json.dumps({**state, "epoch": 1}))
    for name in ("students/1steps/checkpoints/best.weights.h5", "checkpoints/best.weights.h5"):
        os.remove(output / name)
    code, _, err = _distil(capsys, sampling_run, output, "--steps", 1)
    assert code == 0, err
    assert "Round 1/2" not in err and "Round 2/2" in err
    assert (output / "students" / "1steps" / "checkpoints" / "best.weights.h5").is_file()
    assert json.loads((output / "state.json").read_text())["epoch"] == 2
    # Other settings on the same output: refused, nothing written.
    code, _, err = _distil(capsys, sampling_run, output, "--steps", 2)
    assert code != 0 and "other settings" in err and "Traceback" not in err


def test_distill_refuses_bad_input(sampling_run, tmp_path, capsys):
    code, _, err = _distil(capsys, tmp_path / "missing", tmp_path / "a", "--steps", 2)
    assert code != 0 and "does not exist" in err and "Traceback" not in err
    code, _, err = _distil(capsys, sampling_run, tmp_path / "b", "--steps", 3)
    assert code != 0 and "--steps 3" in err
    assert not (tmp_path / "b").exists()
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    code, _, err = _distil(capsys, sampling_run, taken, "--steps", 2)
    assert code != 0 and "not a distillation run" in err
    assert os.listdir(taken) == ["notes.txt"]
