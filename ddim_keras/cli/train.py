"""``python -m ddim_keras.train``: train a diffusion model into a run directory.

Thin front end: resolves the config, prepares the run directory and data, then
calls ``model.fit`` with the package's callbacks. Re-running the same command
on an existing run directory resumes it.
"""

import os
import sys
import time

from ddim_keras.cli.args import (
    add_background_argument,
    add_conditional_arguments,
    add_dataset_argument,
    add_debug_argument,
    add_kid_encoder_argument,
    add_objective_arguments,
    add_verbose_argument,
    check_resumed_classes,
    conditional_config,
    describe_classes,
    objective_changes,
)
from ddim_keras.cli.gan_args import add_model_kind_argument, load_config_of_kind
from ddim_keras.cli.runner import ArgumentParser, run_cli
from ddim_keras.core.config import PRESETS, is_gan, preset
from ddim_keras.core.datasets import (
    CACHE_MODES,
    dataset_slug,
    format_background,
)
from ddim_keras.core.devices import (
    PRECISIONS,
    machine_description,
    resolve_precision_name,
    xla_rejects_mixed_precision,
)
from ddim_keras.core.durable import write_durably
from ddim_keras.core.errors import DdimError, UsageError
from ddim_keras.io.resume import (
    clear_run,
    completed_history_rows,
    prepare_run_dir,
    resolve_background,
    worker_state,
)
from ddim_keras.io.run_dir import RunDir, check_writable_folder
from ddim_keras.model.distribute import (
    JIT_CHOICES,
    STRATEGIES,
    check_strategy_args,
    describe_placement,
    is_chief,
    parse_jit_compile,
)

SAMPLE_SEED = 42


def build_parser():
    parser = ArgumentParser(
        prog="python -m ddim_keras.train",
        description="Train a denoising diffusion model (keras.io DDIM example) into a run "
        "directory.",
    )
    add_dataset_argument(
        parser,
        "flowers (tfds oxford_flowers102), celeba (tfds celeb_a), "
        "folder (your images, with --data-dir), shapes (offline "
        "procedural demo) or tfds:NAME[:SPLITS] (any TFDS image "
        "dataset, e.g. tfds:cifar10 or tfds:mnist:train,test)",
        required=True,
    )
    parser.add_argument(
        "--data-dir",
        help="image folder for 'folder'; tfds data_dir for "
        "flowers/celeba/tfds:NAME (manual downloads, "
        "prepared data)",
    )
    add_background_argument(parser, "the resumed run's, else white")
    parser.add_argument(
        "--cache",
        choices=CACHE_MODES,
        help="where decoded images are kept between epochs: memory (uint8, "
        "117 MiB per 10k images at 64 px), disk (for collections "
        "larger than memory; RUN_DIR/cache unless --cache-dir) or none "
        "(decode every epoch) (default: memory, disk with --cache-dir)",
    )
    parser.add_argument("--cache-dir", help="folder of the disk cache (implies --cache disk)")
    parser.add_argument("--output", help="run directory (default: runs/DATASET)")
    parser.add_argument("--config", help="JSON config file; keys it omits come from the preset")
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="starting config (default: the dataset's own, flowers for folder)",
    )
    parser.add_argument("--epochs", type=int, help="total number of epochs to train to")
    parser.add_argument("--batch-size", type=int, help="override the config's batch_size")
    parser.add_argument(
        "--kid-weights",
        default="imagenet",
        help="InceptionV3 weights for KID: 'imagenet' (download), a local "
        "no-top .h5 file, or 'none' (random; smoke tests only)",
    )
    add_kid_encoder_argument(parser)
    parser.add_argument(
        "--no-kid",
        action="store_true",
        help="skip KID; the best checkpoint is then chosen by val_n_loss",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for data order and weights")
    parser.add_argument(
        "--steps-per-epoch", type=int, help="cap the training batches per epoch (quick experiments)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --output (also automatic when it exists with the same config)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start over in an existing run directory with a different config",
    )
    add_verbose_argument(parser)
    add_objective_arguments(parser)
    add_conditional_arguments(parser)
    add_model_kind_argument(parser)
    speed = parser.add_argument_group("speed and multiple devices")
    speed.add_argument(
        "--steps-per-execution",
        type=int,
        default=1,
        help="training batches per compiled call (model.compile's "
        "steps_per_execution; default: %(default)s)",
    )
    speed.add_argument(
        "--jit-compile",
        default="auto",
        choices=JIT_CHOICES,
        help="XLA for the train step (default: auto, Keras' choice: off on "
        "CPU-only machines, where it measured slower)",
    )
    speed.add_argument(
        "--mixed-precision",
        default="off",
        choices=PRECISIONS,
        help="compute in float16 (with loss scaling) or bfloat16, weights and "
        "losses in float32; auto: float16 on GPU, bfloat16 on TPU and on "
        "CPUs with native bfloat16 (AVX512_BF16/AMX), else off (default: "
        "%(default)s)",
    )
    speed.add_argument(
        "--strategy",
        default="auto",
        choices=STRATEGIES,
        help="tf.distribute strategy (default: auto, mirrored over the local "
        "GPUs when there are several, else one device); the config's "
        "batch_size is the global batch",
    )
    speed.add_argument(
        "--devices",
        help="comma-separated devices for --strategy mirrored (default: all "
        "local GPUs), e.g. /gpu:0,/gpu:1",
    )
    speed.add_argument(
        "--worker-dir",
        help="multi-worker: where a worker other than the chief writes its "
        "checkpoints and logs (default: a temporary folder, deleted at the "
        "end); only the chief writes --output",
    )
    add_debug_argument(parser)
    return parser


def resolve_config(args):
    base = preset(args.preset or (args.dataset if args.dataset in PRESETS else "flowers"))
    config = load_config_of_kind(args.config, base, args.model)
    changes = {}
    if args.epochs is not None:
        changes["epochs"] = args.epochs
    if args.batch_size is not None:
        changes["batch_size"] = args.batch_size
    if args.no_kid:
        changes["kid"] = False
    changes.update(objective_changes(args))
    return config.replace(**changes) if changes else config


def check_args(args):
    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs must be at least 1, got {args.epochs}.")
    if args.steps_per_epoch is not None and args.steps_per_epoch < 1:
        raise UsageError(f"--steps-per-epoch must be at least 1, got {args.steps_per_epoch}.")
    if args.dataset == "folder" and not args.data_dir:
        raise UsageError("--dataset folder needs --data-dir DIR, the folder of your images.")
    from ddim_keras.data.sources import check_source_available

    check_source_available(args.dataset)  # TFDS sources need TensorFlow
    if args.cache_dir and args.cache not in (None, "disk"):
        raise UsageError(
            f"--cache-dir is the folder of a disk cache and contradicts --cache "
            f"{args.cache}; leave out one of them."
        )
    if args.cache_dir:
        check_writable_folder(
            os.path.abspath(os.path.expanduser(args.cache_dir)), create_levels=None
        )
    if args.steps_per_execution < 1:
        raise UsageError(
            f"--steps-per-execution must be at least 1, got {args.steps_per_execution}."
        )
    check_strategy_args(args.strategy, args.devices)
    if args.jit_compile == "true" and args.mixed_precision != "off":
        # Lists physical devices only: safe before a multi-worker strategy exists.
        tpu = args.strategy == "tpu"
        precision = resolve_precision_name(args.mixed_precision, tpu=tpu)
        if xla_rejects_mixed_precision(True, precision, tpu=tpu):
            raise UsageError(
                f"--jit-compile true cannot be combined with --mixed-precision {precision} on "
                "a machine without a GPU: TensorFlow's XLA for CPU refuses mixed-precision "
                "training graphs (and XLA measured slower on CPU anyway). Drop one of the two "
                "flags."
            )


def train(args):
    check_args(args)
    config, classes = conditional_config(args, resolve_config(args))
    args.classes = classes
    run_dir = RunDir(args.output or os.path.join("runs", dataset_slug(args.dataset)))
    if not args.overwrite:
        check_resumed_classes(run_dir, classes)
    if classes:
        print(describe_classes(classes), file=sys.stderr)
    # Multi-worker: only the chief decides about (and writes) the run directory.
    chief = args.strategy != "multi-worker" or is_chief()
    state = (
        prepare_run_dir(run_dir, config, args.dataset, args.background, args.resume, args.overwrite)
        if chief
        else worker_state(run_dir, args.overwrite)
    )
    initial_epoch = int(state.get("epoch", 0))
    if initial_epoch >= config.epochs:
        print(
            f"{run_dir.path} already finished {initial_epoch} of {config.epochs} epochs; "
            "pass a larger --epochs to train further.",
            file=sys.stderr,
        )
        return 0

    import keras

    from ddim_keras.core.devices import POLICIES, resolve_precision_name
    from ddim_keras.model.distribute import make_strategy

    # The strategy first: MultiWorkerMirroredStrategy must exist before other TF work.
    devices = [d.strip() for d in args.devices.split(",") if d.strip()] if args.devices else None
    strategy = make_strategy(args.strategy, devices)
    if config.batch_size % strategy.num_replicas_in_sync:
        raise UsageError(
            f"batch_size {config.batch_size} is the global batch and must split evenly over "
            f"the {strategy.num_replicas_in_sync} replicas of --strategy {args.strategy}; "
            "pass a --batch-size that is a multiple of it."
        )
    # Always said: a broken GPU setup would otherwise train on the CPU without a word.
    print(describe_placement(strategy, config.batch_size), file=sys.stderr)
    temporary = None
    if chief:
        write_dir = run_dir
    else:
        # The standard multi-worker pattern: the others train alongside the chief
        # and write the same files into their own folder, which nobody reads.
        import tempfile

        if not args.worker_dir:
            temporary = tempfile.mkdtemp(prefix="ddim-worker-")
        write_dir = RunDir(args.worker_dir or temporary)
    # The dtype policy applies to layers built from now on; set back afterwards
    # so that a notebook calling main() twice is not left in mixed precision.
    precision = resolve_precision_name(args.mixed_precision, tpu=args.strategy == "tpu")
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(POLICIES[precision])
    try:
        with strategy.scope():
            return _train_in_scope(args, config, run_dir, write_dir, state, initial_epoch)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
        if temporary:
            import shutil

            shutil.rmtree(temporary, ignore_errors=True)


def _train_in_scope(args, config, source_dir, run_dir, state, initial_epoch):
    """Build, (resume,) fit and sample; ``run_dir`` is where this process writes.

    ``source_dir`` is the run directory resumed from: the same as ``run_dir``
    except on a multi-worker non-chief, which writes into its own folder.
    """
    import keras

    from ddim_keras import callbacks as cb
    from ddim_keras.data.loaders import adapt_normalizer, load_datasets
    from ddim_keras.io.loading import load_weights
    from ddim_keras.metrics.kid import build_encoder, resolve_weights
    from ddim_keras.model.kinds import build_model

    kid_weights = resolve_weights(args.kid_weights)
    keras.utils.set_random_seed(args.seed)
    # The model first, straight after the seed: its initial weights then depend on
    # --seed alone, not on what the data or the KID encoder drew before them.
    model = build_model(config, kid_weights=kid_weights)
    background = resolve_background(args.background, source_dir, args.overwrite)
    cache = args.cache or ("disk" if args.cache_dir else "memory")
    train_ds, val_ds = load_datasets(
        args.dataset,
        config,
        data_dir=args.data_dir,
        seed=args.seed,
        background=background,
        cache=cache,
        cache_dir=args.cache_dir or os.path.join(run_dir.path, "cache"),
        conditional=bool(args.classes),
        attribute=args.label,
    )
    if config.kid:
        # Built now: a failed weights download should stop the run before an hour
        # of training, not after the first epoch.
        model.kid.use_encoder(
            build_encoder(
                config.image_size, config.kid_image_size, kid_weights, encoder_name=args.kid_encoder
            )
        )
    model.compile(
        steps_per_execution=args.steps_per_execution,
        jit_compile=parse_jit_compile(args.jit_compile),
    )
    if initial_epoch:
        # Build the optimizer first so that its saved state (moments, step
        # counter) is restored along with the weights.
        model.optimizer.build(model.network.trainable_weights)
        load_weights(
            model,
            source_dir.last_checkpoint,
            advice=(
                f"Cannot resume {source_dir.path}; nothing was changed. Restore that file, or pass "
                "--overwrite to start the run again (this deletes its checkpoints and history)."
            ),
        )
        # The checkpoint brought back the old step size; a resumed run may change it.
        model.optimizer.learning_rate = config.learning_rate
        completed_history_rows(run_dir.history_path, initial_epoch)
    elif model.normalizer is not None:  # (a GAN has none)
        print("Adapting the normalizer to the training set...", file=sys.stderr)
        adapt_normalizer(model.normalizer, train_ds)
    if args.steps_per_epoch:
        # Every epoch exactly N batches, going on through the data; without the
        # repeat Keras cuts short the epoch in which the data runs out.
        train_ds = train_ds.repeat()
    try:
        if args.overwrite and run_dir is source_dir and run_dir.exists():
            clear_run(run_dir)  # the chief replaces the old run, as late as possible
        run_dir.make()
        config.save(run_dir.config_path)
        run_dir.write_json(
            run_dir.run_info_path,
            {
                "dataset": args.dataset,
                "data_dir": os.path.abspath(args.data_dir) if args.data_dir else None,
                "kid_weights": kid_weights if isinstance(kid_weights, str) else None,
                "kid_encoder": args.kid_encoder,
                "background": format_background(background),
                "seed": args.seed,
                "machine": machine_description(),
                **({"classes": args.classes, "label": args.label} if args.classes else {}),
            },
        )
    except OSError as error:
        raise DdimError(
            f"cannot write the run directory {run_dir.path}: {error.strerror or error}."
        ) from None

    monitor = "val_kid" if config.kid else None if is_gan(config) else "val_n_loss"
    best_checkpoint = cb.AtomicCheckpoint(
        run_dir.best_checkpoint, monitor=monitor, best=state.get("best")
    )
    stopper = cb.StopOnNonFinite(*model.CURVE_KEYS[:1] if is_gan(config) else ())
    callbacks = [
        stopper,
        # Checkpoints, history and state.json first, with nothing slow between
        # them: a kill in between should cost as little as possible.
        best_checkpoint,
        cb.AtomicCheckpoint(run_dir.last_checkpoint),
        keras.callbacks.CSVLogger(run_dir.history_path, append=bool(initial_epoch)),
        # state.json moves on only once the checkpoints and history are on disk.
        cb.RunState(
            run_dir.state_path, best_checkpoint, train_seconds=state.get("train_seconds", 0.0)
        ),
        # Also an image summary in logs/samples, and inline in a notebook.
        cb.SampleGrid(
            run_dir.samples_dir,
            diffusion_steps=config.plot_diffusion_steps,
            seed=SAMPLE_SEED,
            log_dir=run_dir.logs_dir,
        ),
        cb.tensorboard(run_dir.logs_dir, write_graph=False),  # needs TensorFlow
        # curves.png after every epoch; a resumed run's earlier epochs come from history.csv.
        (
            curves := cb.LossCurvePlot(
                os.path.join(run_dir.path, "curves.png"),
                every_epoch=True,
                history_csv=run_dir.history_path if initial_epoch else None,
                **({"loss_keys": model.CURVE_KEYS} if is_gan(config) else {}),
            )
        ),
    ]
    verbose = args.verbose if args.verbose is not None else (1 if sys.stdout.isatty() else 2)
    started = time.time()
    model.fit(
        train_ds,
        epochs=config.epochs,
        initial_epoch=initial_epoch,
        validation_data=val_ds,
        steps_per_epoch=args.steps_per_epoch,
        shuffle=False,  # the pipelines (tf.data or numpy_data) shuffle themselves
        callbacks=callbacks,
        verbose=verbose,
    )
    if stopper.stopped_at is not None:
        good = int(run_dir.read_state().get("epoch", 0))
        kept = (
            f"The checkpoints in {run_dir.checkpoint_dir} are from epoch {good}, the last "
            "good one, and were not replaced"
            if good
            else "No epoch was completed, so no checkpoint was written"
        )
        raise DdimError(
            f"training diverged: the noise loss became NaN or infinite in epoch {good + 1}, "
            f"batch {stopper.stopped_at + 1}. {kept}. Lower learning_rate in a --config file "
            "(a resumed run may change it), then re-run the command with it to "
            f"{'resume' if good else 'start again'}."
        )

    # The final grid comes from the best checkpoint, as the example does.
    checkpoint = run_dir.checkpoint_for_inference()
    load_weights(model, checkpoint)
    from ddim_keras.io.images import save_grid

    final_grid = os.path.join(run_dir.samples_dir, "final.png")
    grid = model.generate(
        18, config.plot_diffusion_steps, seed=SAMPLE_SEED, labels=_grid_labels(config)
    )
    # Enlarged like the per-epoch grids (images.default_scale: tiles of at least 128 px).
    write_durably(final_grid, lambda tmp_path: save_grid(grid, tmp_path))
    minutes = (time.time() - started) / 60.0
    logs = (
        f" | logs: {os.path.relpath(run_dir.logs_dir, run_dir.path)} (tensorboard --logdir "
        f"{run_dir.logs_dir})"
        if cb.summaries_available()
        else ""
    )
    print(
        f"Done in {minutes:.1f} min. Run: {run_dir.path} | best checkpoint: "
        f"{os.path.relpath(checkpoint, run_dir.path)} | samples: "
        f"{os.path.relpath(final_grid, run_dir.path)} | curves: "
        f"{os.path.relpath(curves.path, run_dir.path)}{logs}"
    )
    return 0


def _grid_labels(config):
    # A conditional run's grids: one class per row (SampleGrid's rule).
    from ddim_keras.core.classes import class_rows

    return class_rows(config.num_classes, 3, 6) if config.num_classes else None


def main(argv=None):
    args = build_parser().parse_args(argv)
    return train(args)


if __name__ == "__main__":
    sys.exit(run_cli(main))
