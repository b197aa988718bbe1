"""The layout of a run directory, and loading a trained model back from it.

::

    RUN_DIR/
      config.json                 the DiffusionConfig the run trains
      run.json                    dataset, data dir, KID weights, seed, machine of the run
      state.json                  last completed epoch, best value so far, training seconds
      history.csv                 one row of metrics per epoch
      checkpoints/best.weights.h5 best by val_kid (val_n_loss without KID)
      checkpoints/last.weights.h5 after every epoch, optimizer state included
      samples/epoch_0001.png ...  3x6 grid per epoch (fixed seed), final.png at the end
      curves.png                  losses and KID per epoch
      logs/                       TensorBoard event files (scalars, sample grids)
      generated/                  default output folder of ddim_keras.generate
"""

import json
import os

from ddim_keras.config import DiffusionConfig, architecture_differences, architecture_fields
from ddim_keras.errors import CheckpointError, ConfigError, UsageError


class RunDir:
    def __init__(self, path):
        self.path = os.path.abspath(path)

    def __repr__(self):
        return f"RunDir({self.path!r})"

    # paths
    @property
    def config_path(self):
        return os.path.join(self.path, "config.json")

    @property
    def run_info_path(self):
        return os.path.join(self.path, "run.json")

    @property
    def state_path(self):
        return os.path.join(self.path, "state.json")

    @property
    def history_path(self):
        return os.path.join(self.path, "history.csv")

    @property
    def checkpoint_dir(self):
        return os.path.join(self.path, "checkpoints")

    @property
    def best_checkpoint(self):
        return os.path.join(self.checkpoint_dir, "best.weights.h5")

    @property
    def last_checkpoint(self):
        return os.path.join(self.checkpoint_dir, "last.weights.h5")

    @property
    def samples_dir(self):
        return os.path.join(self.path, "samples")

    @property
    def logs_dir(self):
        return os.path.join(self.path, "logs")

    def exists(self):
        return os.path.isfile(self.config_path)

    def make(self):
        for folder in (self.path, self.checkpoint_dir, self.samples_dir, self.logs_dir):
            os.makedirs(folder, exist_ok=True)

    # files
    def read_config(self):
        if not os.path.isfile(self.config_path):
            raise CheckpointError(
                f"{self.path} is not a run directory: it has no config.json. Pass the folder "
                "that `python -m ddim_keras.train --output` wrote."
            )
        try:
            return DiffusionConfig.load(self.config_path)
        except ConfigError as error:
            raise CheckpointError(f"the run's config.json is unusable: {error}") from None

    def read_json(self, path, default=None):
        if not os.path.isfile(path):
            return default
        try:
            with open(path, encoding="utf-8") as handle:
                return json.load(handle)
        except (OSError, ValueError) as error:  # unreadable, or not JSON (edited by hand?)
            raise CheckpointError(
                f"{path} is unusable ({type(error).__name__}: {_first_line(error)}); fix or "
                "remove it."
            ) from None

    def write_json(self, path, data):
        write_json_atomic(path, data)

    def read_state(self):
        return self.read_json(self.state_path, default={})

    def read_run_info(self):
        return self.read_json(self.run_info_path, default={})

    def checkpoint_for_inference(self):
        """The best checkpoint if there is one, else the last."""
        for path in (self.best_checkpoint, self.last_checkpoint):
            if os.path.isfile(path):
                return path
        raise CheckpointError(
            f"run directory {self.path} has no checkpoint yet (looked for "
            f"{os.path.relpath(self.best_checkpoint, self.path)} and "
            f"{os.path.relpath(self.last_checkpoint, self.path)}); train it first."
        )


def check_writable_folder(folder, create_levels=0):
    """Check that files can be written into ``folder`` (a usage error if not).

    Up to ``create_levels`` missing folders at the end of the path may be
    created when writing (``None``: any number, like ``mkdir -p``); the first
    existing one must be a writable folder. Missing folders beyond that are an
    error, not created.
    """
    target = os.path.abspath(folder)
    levels = 0
    while not os.path.exists(target) and (create_levels is None or levels < create_levels):
        target = os.path.dirname(target)
        levels += 1
    if not os.path.exists(target):
        raise UsageError(f"output folder {target} does not exist; create it first or choose "
                         "another --output.")
    if not os.path.isdir(target):
        raise UsageError(f"output path {target} is a file, not a folder; choose another "
                         "--output.")
    if not os.access(target, os.W_OK | os.X_OK):
        raise UsageError(f"output folder {target} is not writable; choose another --output.")


def check_output_files(paths, overwrite):
    """Refuse before any work when an output would replace a file (or is a folder)."""
    for path in paths:
        if os.path.isdir(path):
            raise UsageError(f"output {path} is a folder; choose a file name for --output.")
    existing = [path for path in paths if os.path.exists(path)]
    if existing and not overwrite:
        shown = ", ".join(existing[:3]) + (f" and {len(existing) - 3} more" if len(existing) > 3
                                           else "")
        raise UsageError(f"output {shown} already exists; pass --overwrite to replace it, or "
                         "choose another --output or --seed.")


def write_json_atomic(path, data):
    """Write JSON durably (see ddim_keras.durable); an OSError becomes DdimError."""
    from ddim_keras.durable import write_json

    write_json(path, data, user_error=True)


def owner_run_dir(checkpoint):
    """The run directory a checkpoint file belongs to, or None.

    That is the folder holding a config.json next to the file, or one level up
    (``RUN/checkpoints/best.weights.h5`` belongs to ``RUN``).
    """
    folder = os.path.dirname(os.path.abspath(checkpoint))
    for candidate in (folder, os.path.dirname(folder)):
        if os.path.isfile(os.path.join(candidate, "config.json")):
            return candidate
    return None


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
    from ddim_keras.model import DiffusionModel

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
        raise CheckpointError(f"checkpoint {checkpoint} is not readable "
                              f"({error.strerror or error}; check its permissions).") from None

    if checkpoint.endswith(".keras"):
        import keras

        try:
            return keras.models.load_model(checkpoint, compile=False)
        except Exception as error:  # corrupt zip, foreign model, ...
            raise CheckpointError(
                f"could not load {checkpoint} as a ddim_keras model ({type(error).__name__}: "
                f"{_first_line(error)})."
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
    model = DiffusionModel(config, kid_weights=kid_weights)
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


def load_weights(model, checkpoint, advice="Pass the config.json the checkpoint was trained "
                 "with."):
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
        fields = ", ".join(f"{key} {value!r}"
                           for key, value in architecture_fields(model.diffusion_config))
        raise CheckpointError(
            f"checkpoint {checkpoint} does not match the model's config ({fields}) or is not "
            f"a valid weights file ({type(error).__name__}: {_first_line(error)}). {advice}"
        ) from None


def _first_line(error):
    text = str(error).strip().splitlines()
    return text[0][:300] if text else ""
