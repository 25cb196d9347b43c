"""The MaskGAN networks as pure-functional flax.linen modules (NHWC, images in [-1, 1])."""

from maskgan_jax.models.blender import AlphaBlender
from maskgan_jax.models.generator import DenseMappingNetwork
from maskgan_jax.models.masks import one_hot_mask

__all__ = ["AlphaBlender", "DenseMappingNetwork", "one_hot_mask"]
