"""The MaskGAN networks as pure-functional flax.linen modules (NHWC, images in [-1, 1])."""

from maskgan_jax.models.blender import AlphaBlender
from maskgan_jax.models.classifier import AttributeClassifier
from maskgan_jax.models.discriminator import MultiScaleDiscriminator
from maskgan_jax.models.generator import DenseMappingNetwork
from maskgan_jax.models.mask_vae import MaskVAE
from maskgan_jax.models.masks import one_hot_mask
from maskgan_jax.models.parser import UNet
from maskgan_jax.models.registry import REGISTRY, build_network
from maskgan_jax.models.vgg import VGG19Features, load_vgg19_params

__all__ = ["AlphaBlender", "AttributeClassifier", "DenseMappingNetwork", "MaskVAE", "MultiScaleDiscriminator",
           "REGISTRY", "UNet", "VGG19Features", "build_network", "load_vgg19_params", "one_hot_mask"]
