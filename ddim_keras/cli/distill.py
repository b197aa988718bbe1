"""``python -m ddim_keras.distill``: progressive distillation of a trained run into a student.

Thin front end of :mod:`ddim_keras.model.distillation`: reads the teacher run, checks
the output (a new folder, or the same distillation to resume), then runs the
halving rounds ``teacher_steps -> teacher_steps / 2 -> ... -> --steps``, each a
``model.fit`` with the package's callbacks on the teacher's data pipeline. The
run directory's layout is in :mod:`ddim_keras.io.distill_run`.
"""

import os
import sys
import time

from ddim_keras.cli.args import add_debug_argument, add_verbose_argument
from ddim_keras.cli.runner import ArgumentParser, run_cli
from ddim_keras.core.errors import DdimError, UsageError

SAMPLE_SEED = 42
DEFAULT_TEACHER_STEPS = 32
DEFAULT_EPOCHS_PER_HALVING = 1


def build_parser():
    parser = ArgumentParser(
        prog="python -m ddim_keras.distill",
        description="Progressive distillation (Salimans & Ho 2022): train a student run that "
        "samples in --steps DDIM steps what the teacher run samples in --teacher-steps.",
    )
    parser.add_argument("--run", required=True, help="the teacher's run directory")
    parser.add_argument(
        "--output", required=True, help="the student's run directory (new, or one to resume)"
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=4,
        help="DDIM steps of the final student; --teacher-steps divided by a power of two "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--teacher-steps",
        type=int,
        default=DEFAULT_TEACHER_STEPS,
        help="DDIM steps of the teacher the first round distils (default: %(default)s)",
    )
    parser.add_argument(
        "--epochs-per-halving",
        type=int,
        default=DEFAULT_EPOCHS_PER_HALVING,
        help="epochs of the teacher's training data per round (default: %(default)s)",
    )
    parser.add_argument(
        "--prediction",
        choices=("teacher", "velocity", "image", "noise"),
        default="teacher",
        help="what the student's network outputs: velocity or image (the paper's), noise, "
        "or the teacher's own, whose first student starts as the teacher itself "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--learning-rate",
        type=float,
        help="AdamW's step size at the start of each round, annealed linearly to 0 "
        "(default: a tenth of the teacher's learning_rate)",
    )
    parser.add_argument(
        "--steps-per-epoch",
        type=int,
        help="cap the training (and validation) batches per epoch (quick tests)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws (default: 0)")
    add_verbose_argument(parser)
    add_debug_argument(parser)
    return parser


def check_args(args):
    from ddim_keras.model.distillation import halving_rounds

    for flag, value in (
        ("--steps", args.steps),
        ("--teacher-steps", args.teacher_steps),
        ("--epochs-per-halving", args.epochs_per_halving),
        ("--steps-per-epoch", args.steps_per_epoch),
    ):
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}.")
    if args.learning_rate is not None and not args.learning_rate > 0:
        raise UsageError(f"--learning-rate must be positive, got {args.learning_rate}.")
    try:
        return halving_rounds(args.teacher_steps, args.steps)
    except ValueError:
        halvings = (args.teacher_steps >> k for k in range(1, 5) if args.teacher_steps >> k)
        raise UsageError(
            f"--steps {args.steps} must be --teacher-steps {args.teacher_steps} halved one or "
            "more times (each round halves the steps): e.g. "
            f"{', '.join(str(steps) for steps in halvings)}"
            "; or pick a --teacher-steps that is --steps times a power of two."
        ) from None


def read_teacher(path):
    """(RunDir, config, run info, checkpoint) of the teacher; refuses what cannot teach."""
    from ddim_keras.io.run_dir import RunDir

    teacher_dir = RunDir(path)
    if not os.path.isdir(teacher_dir.path):
        raise UsageError(
            f"the teacher run {teacher_dir.path} does not exist; pass --run the folder that "
            "`python -m ddim_keras.train --output` wrote (e.g. runs/demo)."
        )
    config = teacher_dir.read_config()
    checkpoint = teacher_dir.checkpoint_for_inference()
    info = teacher_dir.read_run_info()
    if not info.get("dataset"):
        raise UsageError(
            f"the teacher run {teacher_dir.path} has no run.json naming its dataset, whose "
            "training images the student learns on; distil a run that train wrote."
        )
    if config.num_classes:
        raise UsageError(
            f"the teacher run {teacher_dir.path} is class-conditional; distillation supports "
            "unconditional runs only so far."
        )
    return teacher_dir, config, info, checkpoint


def distill(args):
    from ddim_keras.io import distill_run
    from ddim_keras.io.run_dir import RunDir, check_writable_folder

    rounds = check_args(args)
    teacher_dir, teacher_config, teacher_info, teacher_checkpoint = read_teacher(args.run)
    run_dir = RunDir(args.output)
    if run_dir.path == teacher_dir.path:
        raise UsageError("--output must be another folder than the teacher's --run.")
    settings = {
        "teacher_run": teacher_dir.path,
        "teacher_checkpoint": os.path.relpath(teacher_checkpoint, teacher_dir.path),
        "teacher_steps": args.teacher_steps,
        "steps": args.steps,
        "epochs_per_halving": args.epochs_per_halving,
        "prediction": args.prediction,
        "learning_rate": args.learning_rate or teacher_config.learning_rate / 10.0,
        "steps_per_epoch": args.steps_per_epoch,
        "seed": args.seed,
    }
    done_epochs = distill_run.check_output(run_dir, settings)
    total_epochs = len(rounds) * args.epochs_per_halving
    if done_epochs >= total_epochs and os.path.isfile(run_dir.best_checkpoint):
        print(f"{run_dir.path} is already distilled to {args.steps} steps.", file=sys.stderr)
        return 0
    check_writable_folder(run_dir.path, create_levels=None)
    return _distill_rounds(
        args, rounds, settings, teacher_config, teacher_info, run_dir, done_epochs
    )


def _round_config(teacher_config, args, settings, steps, round_number):
    from ddim_keras.model.distillation import student_config

    prediction = teacher_config.prediction if args.prediction == "teacher" else args.prediction
    return student_config(
        teacher_config,
        prediction,
        steps,
        round_number,
        settings["teacher_run"],
    ).replace(learning_rate=settings["learning_rate"])


def _distill_rounds(args, rounds, settings, teacher_config, teacher_info, run_dir, done_epochs):
    import keras

    from ddim_keras.core.datasets import background_rgb
    from ddim_keras.core.devices import machine_description
    from ddim_keras.data.loaders import load_datasets
    from ddim_keras.io import distill_run
    from ddim_keras.io.loading import load_model

    teacher = load_model(
        run=settings["teacher_run"],
        checkpoint=os.path.join(settings["teacher_run"], settings["teacher_checkpoint"]),
        kid_weights=None,
    )
    train_ds, val_ds = load_datasets(
        teacher_info["dataset"],
        teacher_config,
        data_dir=teacher_info.get("data_dir"),
        seed=teacher_info.get("seed", 0),
        background=background_rgb(teacher_info.get("background")),
        cache="memory",
    )
    if args.steps_per_epoch:
        train_ds = train_ds.repeat()
    final_config = _round_config(teacher_config, args, settings, args.steps, len(rounds))
    run_info = {
        # The teacher's data: its seed picks the shapes' images and the splits.
        **{key: teacher_info.get(key) for key in ("dataset", "data_dir", "background", "seed")},
        "distill_seed": args.seed,
        "kid_encoder": teacher_info.get("kid_encoder"),
        "teacher_run": settings["teacher_run"],
        "machine": machine_description(),
    }
    try:
        run_dir.make()
        final_config.save(run_dir.config_path)
        run_dir.write_json(distill_run.settings_path(run_dir), settings)
        run_dir.write_json(run_dir.run_info_path, run_info)
    except OSError as error:
        raise DdimError(
            f"cannot write the run directory {run_dir.path}: {error.strerror or error}."
        ) from None
    if not done_epochs:
        _save_teacher_grid(teacher, run_dir, settings["teacher_steps"])

    started = time.time()
    per_round = args.epochs_per_halving
    state = run_dir.read_state()
    for index, steps in enumerate(rounds):
        round_number = index + 1
        config = _round_config(teacher_config, args, settings, steps, round_number)
        student = distill_run.student_dir(run_dir, steps)
        first_epoch, last_epoch = index * per_round, round_number * per_round
        if done_epochs >= last_epoch and os.path.isfile(student.best_checkpoint):
            teacher = load_model(run=student.path, kid_weights=None)
            continue
        keras.utils.set_random_seed(args.seed + index)
        model = _round_model(config, teacher, steps, settings, train_ds, args)
        initial_epoch = max(done_epochs, first_epoch)
        if initial_epoch > first_epoch:
            model.optimizer.build(model.network.trainable_weights)
            model.load_weights(run_dir.last_checkpoint)
        else:
            model.start_from(teacher)
        print(
            f"Round {round_number}/{len(rounds)}: {steps * 2} teacher steps -> {steps} student "
            f"steps, epochs {first_epoch + 1}..{last_epoch}.",
            file=sys.stderr,
        )
        if initial_epoch < last_epoch:
            _fit_round(model, run_dir, train_ds, val_ds, initial_epoch, last_epoch, state, args)
            state = run_dir.read_state()
            if int(state.get("epoch", 0)) < last_epoch:
                raise DdimError(
                    f"round {round_number} diverged (a loss became NaN or infinite); its last "
                    f"good epoch is in {run_dir.last_checkpoint}. Lower --learning-rate and "
                    "distil into a new --output."
                )
        seconds = {"distill_seconds": run_dir.read_state().get("train_seconds")}
        teacher = _finish_round(
            model, run_dir, config, {**run_info, **seconds}, steps, round_number
        )
    import shutil

    shutil.copyfile(
        distill_run.student_dir(run_dir, args.steps).best_checkpoint, run_dir.best_checkpoint
    )
    minutes = (time.time() - started) / 60.0
    print(
        f"Done in {minutes:.1f} min ({state.get('train_seconds', 0.0) / 60.0:.1f} min of "
        f"training in all rounds). Student: {run_dir.path} ({args.steps} steps) | each "
        f"round's: {os.path.join(run_dir.path, 'students')} | grids: {run_dir.samples_dir}"
    )
    return 0


def _round_model(config, teacher, steps, settings, train_ds, args):
    import keras

    from ddim_keras.model.distillation import DistillationModel

    model = DistillationModel(config, teacher=teacher, student_steps=steps)
    learning_rate = settings["learning_rate"]
    batches = _batches_per_epoch(train_ds, args.steps_per_epoch)
    if batches:
        # Annealed linearly to 0 over the round (the paper's schedule).
        learning_rate = keras.optimizers.schedules.PolynomialDecay(
            learning_rate, batches * args.epochs_per_halving, end_learning_rate=0.0
        )
    model.compile(
        optimizer=keras.optimizers.AdamW(
            learning_rate=learning_rate, weight_decay=config.weight_decay
        )
    )
    return model


def _batches_per_epoch(train_ds, steps_per_epoch):
    if steps_per_epoch:
        return steps_per_epoch
    try:
        return int(len(train_ds))
    except (TypeError, ValueError):
        return None


def _fit_round(model, run_dir, train_ds, val_ds, initial_epoch, last_epoch, state, args):
    import keras

    from ddim_keras import callbacks as cb

    round_checkpoint = cb.AtomicCheckpoint(run_dir.last_checkpoint)
    callbacks = [
        cb.StopOnNonFinite(),
        round_checkpoint,
        keras.callbacks.CSVLogger(run_dir.history_path, append=bool(initial_epoch)),
        cb.RunState(
            run_dir.state_path, round_checkpoint, train_seconds=state.get("train_seconds", 0.0)
        ),
        cb.SampleGrid(
            run_dir.samples_dir,
            diffusion_steps=model.student_steps,
            seed=SAMPLE_SEED,
            log_dir=run_dir.logs_dir,
        ),
        cb.tensorboard(run_dir.logs_dir, write_graph=False),
    ]
    verbose = args.verbose if args.verbose is not None else (1 if sys.stdout.isatty() else 2)
    model.fit(
        train_ds,
        epochs=last_epoch,
        initial_epoch=initial_epoch,
        validation_data=val_ds,
        steps_per_epoch=args.steps_per_epoch,
        validation_steps=args.steps_per_epoch,
        shuffle=False,
        callbacks=callbacks,
        verbose=verbose,
    )


def _finish_round(model, run_dir, config, run_info, steps, round_number):
    """Write the round's student and grid; return it as the next round's teacher."""
    from ddim_keras.core.durable import write_durably
    from ddim_keras.io import distill_run
    from ddim_keras.io.images import save_grid
    from ddim_keras.io.loading import load_model

    grid_path = distill_run.round_grid_path(run_dir, round_number, steps)
    grid = model.generate(18, steps, seed=SAMPLE_SEED)
    write_durably(grid_path, lambda tmp_path: save_grid(grid, tmp_path))
    student = distill_run.write_student_dir(
        run_dir, steps, config, run_info, run_dir.last_checkpoint, grid_path
    )
    print(f"Round {round_number}: student of {steps} steps in {student.path}", file=sys.stderr)
    return load_model(run=student.path, kid_weights=None)


def _save_teacher_grid(teacher, run_dir, steps):
    from ddim_keras.core.durable import write_durably
    from ddim_keras.io import distill_run
    from ddim_keras.io.images import save_grid

    grid = teacher.generate(18, steps, seed=SAMPLE_SEED)
    path = distill_run.teacher_grid_path(run_dir, steps)
    write_durably(path, lambda tmp_path: save_grid(grid, tmp_path))


def main(argv=None):
    args = build_parser().parse_args(argv)
    return distill(args)


if __name__ == "__main__":
    sys.exit(run_cli(main))
