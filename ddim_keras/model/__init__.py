"""The model: the U-Net, ``DiffusionModel`` with the example's names, and how it trains.

- :mod:`~ddim_keras.model.network`: the example's residual U-Net (and
  :mod:`~ddim_keras.model.fused_layers`, its PyTorch kernels);
- :mod:`~ddim_keras.model.diffusion_model`: ``DiffusionModel``;
- :mod:`~ddim_keras.model.train_steps`: the train and test step of each backend;
- :mod:`~ddim_keras.model.ema`, :mod:`~ddim_keras.model.replicas`,
  :mod:`~ddim_keras.model.distribute`: EMA, per-replica draws, strategies;
- :mod:`~ddim_keras.model.sampler_cache`: sampling copies and compiled loops.
"""

__all__ = ["DiffusionModel"]


def __getattr__(name):
    # Keras loads with the model, not with the package: ``ddim_keras.model.distribute``
    # and the others are read by commands before they choose to import Keras.
    if name == "DiffusionModel":
        from ddim_keras.model.diffusion_model import DiffusionModel

        return DiffusionModel
    raise AttributeError(f"module 'ddim_keras.model' has no attribute {name!r}")
