"""The model a config describes: a DiffusionModel, or the GAN baseline's GANModel."""

from ddim_keras.core.config import is_gan


def build_model(config, kid_weights="imagenet", kid_encoder=None):
    """A new model of the config's ``model`` kind (untrained, weights initialised)."""
    if is_gan(config):
        from ddim_keras.model.gan import GANModel

        return GANModel(config, kid_weights=kid_weights, kid_encoder=kid_encoder)
    from ddim_keras.model.diffusion_model import DiffusionModel

    return DiffusionModel(config, kid_weights=kid_weights, kid_encoder=kid_encoder)
