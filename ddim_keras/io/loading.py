"""Loading a trained model for sampling or evaluation, with its checks.

:func:`load_model` loads a run directory, a ``.keras`` file or a ``.weights.h5``
(:func:`load_weights` with a clear error when the file does not fit). For the
commands, :func:`resolve_source` settles where the model comes from (a run directory, a
``.keras`` file, or a ``.weights.h5`` with a config) and refuses a config that
contradicts the run a checkpoint belongs to, all before Keras is imported;
:func:`load_checked_model` then loads it. Used by ``ddim_keras.generate``,
``ddim_keras.evaluate`` and ``ddim_keras.sweep``. The messages name the
commands' flags (``--run``, ``--checkpoint``, ``--config``).
"""

import os
import warnings

from ddim_keras.core.config import DiffusionConfig, architecture_differences, architecture_fields
from ddim_keras.core.errors import CheckpointError, UsageError
from ddim_keras.io.run_dir import RunDir, first_line, owner_run_dir


def resolve_source(run=None, checkpoint=None, config_path=None, say=None):
    """Check the model's source: (checkpoint path, DiffusionConfig or None, run dir or None).

    ``run`` is a run directory, ``checkpoint`` a ``.keras`` or ``.weights.h5``
    file (with ``run``: replaces its best checkpoint), ``config_path`` the config
    JSON the checkpoint was trained with. The config is None only for a
    ``.keras`` file, which carries its own. A config that contradicts the run the
    checkpoint comes from is refused: the weights of a 16 px run load into a 32 px
    model without complaint (the U-Net is convolutional) but only produce noise.
    """
    from ddim_keras.core.config import DiffusionConfig
    from ddim_keras.io.run_dir import RunDir

    say = say or (lambda message: None)
    if run is None and checkpoint is None:
        raise UsageError(
            "pass a run directory (--run RUN_DIR) or a checkpoint file "
            "(--checkpoint FILE.keras or FILE.weights.h5)."
        )
    config = DiffusionConfig.load(config_path) if config_path else None
    run_path = None
    if run is not None:
        run_dir = RunDir(run)
        if not os.path.isdir(run_dir.path):
            raise CheckpointError(f"run directory {run_dir.path} does not exist.")
        run_path = run_dir.path
        run_config = run_dir.read_config()
        checkpoint = checkpoint or run_dir.checkpoint_for_inference()
        if config is not None:
            differences = architecture_differences(run_config, config)
            if differences:
                raise CheckpointError(
                    f"--config {config_path} does not match the config.json of run {run_path} "
                    f"({'; '.join(differences)}, run vs --config); its checkpoints would not "
                    "fit. Leave out --config to use the run's own."
                )
        else:
            config = run_config
    checkpoint = os.path.abspath(checkpoint)
    if not os.path.exists(checkpoint):
        raise CheckpointError(f"checkpoint {checkpoint} does not exist.")
    if not os.path.isfile(checkpoint):
        raise CheckpointError(f"checkpoint {checkpoint} is not a file.")
    if not os.access(checkpoint, os.R_OK):
        raise CheckpointError(f"checkpoint {checkpoint} is not readable (check its permissions).")
    if not checkpoint.endswith((".keras", ".weights.h5")):
        raise UsageError(
            f"checkpoint {checkpoint} is neither a .keras file nor a .weights.h5 file."
        )

    owner = owner_run_dir(checkpoint)
    if run_path is None and owner is not None:
        run_path = owner
    if checkpoint.endswith(".weights.h5") and run is None:
        config = _owner_config(checkpoint, owner, config, config_path, say)
    return checkpoint, config, run_path


def _owner_config(checkpoint, owner, config, config_path, say):
    """The config for a ``.weights.h5`` given without a run: ``config`` checked against
    its owner run's, else the owner's, else the keras.io example's default."""
    from ddim_keras.core.config import DiffusionConfig
    from ddim_keras.io.run_dir import RunDir

    if owner is not None:
        owner_config = RunDir(owner).read_config()
        if config is None:
            say(f"Using the config of run {owner}.")
            return owner_config
        differences = architecture_differences(owner_config, config)
        if differences:
            raise CheckpointError(
                f"checkpoint {checkpoint} belongs to run {owner}, whose config.json "
                f"differs from --config {config_path} ({'; '.join(differences)}, run vs "
                "--config); the weights would not fit. Leave out --config to use the "
                "run's own."
            )
    elif config is None:
        say(
            "No --config given: assuming the keras.io example's default config "
            "(64 px, widths [32, 64, 96, 128], block_depth 2)."
        )
        return DiffusionConfig()
    return config


def load_checked_model(checkpoint, config, kid_weights="imagenet", debug=False):
    """Load the model (``checkpoint`` and ``config`` from :func:`resolve_source`) and
    check a ``.keras`` file against ``config``.

    ``kid_weights`` is the InceptionV3 weights spec (see ``kid.resolve_weights``);
    ``debug`` keeps Keras's warnings about a mismatched file.
    """
    from ddim_keras.io.loading import load_model
    from ddim_keras.metrics.kid import resolve_weights

    kid_weights = resolve_weights(kid_weights)
    with warnings.catch_warnings():
        if not debug:
            # Keras warns once per layer on a mismatched file; the error says it all.
            warnings.simplefilter("ignore")
        model = load_model(checkpoint=checkpoint, config=config, kid_weights=kid_weights)
    if checkpoint.endswith(".keras") and config is not None:
        differences = architecture_differences(model.diffusion_config, config)
        if differences:
            raise CheckpointError(
                f"--config does not match the model in {checkpoint} "
                f"({'; '.join(differences)}, file vs --config). A .keras file carries its own "
                "config: leave out --config."
            )
    return model


def load_model(run=None, checkpoint=None, config=None, kid_weights=None):
    """A DiffusionModel with trained weights, for sampling or evaluation.

    Accepts a run directory (its best checkpoint and config.json), a ``.keras``
    file, or a ``.weights.h5`` (with ``config``, a config file path; else the
    config.json of the run it belongs to, see :func:`owner_run_dir`; else the
    example's default config). A ``.weights.h5`` of a run whose architecture
    (``config.ARCHITECTURE_FIELDS``) differs from ``config`` is refused with a
    CheckpointError: Keras would load it into another image size without
    complaint.
    """
    from ddim_keras.model.kinds import build_model

    if run is None and checkpoint is None:
        raise UsageError("pass a run directory (--run) or a checkpoint file (--checkpoint).")
    if run is not None:
        run_dir = RunDir(run)
        if not os.path.isdir(run_dir.path):
            raise CheckpointError(f"run directory {run_dir.path} does not exist.")
        if config is None:
            config = run_dir.read_config()
        if checkpoint is None:
            checkpoint = run_dir.checkpoint_for_inference()
    if not os.path.isfile(checkpoint):
        raise CheckpointError(f"checkpoint {checkpoint} does not exist.")
    try:
        # Opening, not os.access: root passes os.access for any file, yet may be
        # refused (root-squashed NFS, ACLs, SELinux), and then Keras would blame
        # the file's contents.
        with open(checkpoint, "rb"):
            pass
    except OSError as error:
        raise CheckpointError(
            f"checkpoint {checkpoint} is not readable "
            f"({error.strerror or error}; check its permissions)."
        ) from None

    if checkpoint.endswith(".keras"):
        import keras

        try:
            return keras.models.load_model(checkpoint, compile=False)
        except Exception as error:  # corrupt zip, foreign model, ...
            raise CheckpointError(
                f"could not load {checkpoint} as a ddim_keras model ({type(error).__name__}: "
                f"{first_line(error)})."
            ) from None
    if not checkpoint.endswith(".weights.h5"):
        raise UsageError(
            f"checkpoint {checkpoint} is neither a .keras file nor a .weights.h5 file."
        )
    if isinstance(config, str):
        config = DiffusionConfig.load(config)
    config = _check_owner_config(checkpoint, config)
    if config is None:
        config = DiffusionConfig()
    model = build_model(config, kid_weights=kid_weights)
    load_weights(model, checkpoint)
    return model


def _check_owner_config(checkpoint, config):
    """The config to load a ``.weights.h5`` into: ``config``, checked against the run
    the file belongs to, or that run's config when ``config`` is None."""
    owner = owner_run_dir(checkpoint)
    if owner is None:
        return config
    if config is None:
        return RunDir(owner).read_config()
    try:
        owner_config = RunDir(owner).read_config()
    except CheckpointError:
        return config  # a config.json that is not a run's: nothing to compare with
    differences = architecture_differences(owner_config, config)
    if differences:
        raise CheckpointError(
            f"checkpoint {checkpoint} belongs to run {owner}, whose config.json differs from "
            f"the config it is being loaded into ({'; '.join(differences)}, run vs given); "
            "its weights would not fit (Keras loads them into another image size without "
            "complaint, and the model then only makes noise). Load it with the run's own "
            "config: pass the run directory, or leave out the config."
        )
    return config


def load_weights(model, checkpoint, advice="Pass the config.json the checkpoint was trained with."):
    """``model.load_weights`` with a clear error (ending in ``advice``) when the file
    does not fit."""
    import warnings

    try:
        with warnings.catch_warnings():
            # The optimizer's state is only needed to resume training.
            warnings.filterwarnings("ignore", message=".*Skipping variable loading for optimizer.*")
            # A mismatched file makes Keras warn once per layer; the error below says it once.
            warnings.filterwarnings("ignore", message=".*Skipping nested container.*")
            model.load_weights(checkpoint)
    except Exception as error:
        fields = ", ".join(
            f"{key} {value!r}" for key, value in architecture_fields(model.diffusion_config)
        )
        raise CheckpointError(
            f"checkpoint {checkpoint} does not match the model's config ({fields}) or is not "
            f"a valid weights file ({type(error).__name__}: {first_line(error)}). {advice}"
        ) from None
