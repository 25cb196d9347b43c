"""The face parser: a U-Net from a face image to per-pixel logits over the 19 CelebAMask-HQ classes.

Shaped like the reference's face-parsing U-Net (MaskGAN's `face_parsing/unet.py` with
feature_scale 4: widths 16, 32, 64, 128, 256 over four 2x downsamplings, two 3x3 conv + norm + ReLU
per level, transposed-conv upsampling, skip connections by concatenation at every level including the
full resolution). Differences, each for a reason:
- InstanceNorm with a learned affine (or GroupNorm) instead of BatchNorm: the network stays a pure
  function of (params, image), with no batch statistics to carry, and parses a face the same at batch 1
  in the CLI as at batch 8 in training. InstanceNorm runs in layers' fast form, ~20% faster per training
  step on CPU than flax's GroupNorm at the quickstart's size;
- the convs are `layers.Conv2D` and the upsampling `layers.UpConv` (3x3 stride-2 transposed conv, where
  the reference's is 2x2): their XLA:CPU-friendly forms train ~2x faster on CPU than nn.Conv and
  nn.ConvTranspose, whose automatic transposes XLA:CPU runs slowly (see layers' module doc).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from maskgan_jax import ops
from maskgan_jax.models.layers import Conv2D, Dtype, UpConv, encoder_kernel_init, instance_norm

NORMS = ("group", "instance", "none")
UPSAMPLINGS = ("transpose", "resize")
# UNet.layer_forms: "inherit" keeps the forms the caller traces in (config.model.layer_forms).
INHERIT_FORMS = "inherit"


class AffineInstanceNorm(nn.Module):
    """InstanceNorm (layers.instance_norm, its fast XLA:CPU form) with a learned per-channel scale and bias."""

    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = self.param("scale", nn.initializers.ones_init(), (x.shape[-1],), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (x.shape[-1],), jnp.float32)
        return (instance_norm(x) * scale.astype(self.dtype) + bias.astype(self.dtype)).astype(self.dtype)


class ConvBlock(nn.Module):
    """`convs` x (3x3 conv, norm, ReLU) at one width."""

    width: int
    convs: int = 2
    norm: str = "instance"
    groups: int = 8
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i in range(self.convs):
            x = Conv2D(self.width, 3, padding=1, kernel_init=encoder_kernel_init, dtype=self.dtype,
                       name=f"conv_{i}")(x)
            if self.norm == "group":
                x = nn.GroupNorm(num_groups=min(self.groups, self.width), dtype=self.dtype, name=f"norm_{i}")(x)
            elif self.norm == "instance":
                x = AffineInstanceNorm(dtype=self.dtype, name=f"norm_{i}")(x)
            x = nn.relu(x)
        return x


class UNet(nn.Module):
    """Face image -> class logits. Defaults: the reference's widths (feature_scale 4), 2,161,955 parameters.

    Attributes:
      num_classes: output classes (the run's `num_classes`).
      widths: channels per level, full resolution first; len(widths) - 1 downsamplings, so H and W
        must be multiples of 2^(len(widths) - 1).
      convs_per_level: 3x3 convs in each encoder and decoder level.
      norm: 'instance' (InstanceNorm with a learned affine, in layers' fast form), 'group' (GroupNorm,
        `groups` groups or fewer) or 'none'.
      upsample: 'transpose' (3x3 stride-2 transposed conv) or 'resize' (nearest 2x, then a 3x3 conv).
      layer_forms: the forms its layers compute in (one of maskgan_jax.ops.FORMS), or 'inherit': those
        of the caller (config.model.layer_forms). The fast XLA:CPU forms pay off on wide convs; a
        narrow parser may run faster in the plain ones (README, "The face parser").
      dtype: compute dtype; the logits are float32.
    """

    num_classes: int = 19
    widths: Sequence[int] = (16, 32, 64, 128, 256)
    convs_per_level: int = 2
    norm: str = "instance"
    groups: int = 8
    upsample: str = "transpose"
    layer_forms: str = INHERIT_FORMS
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, image: jax.Array) -> jax.Array:
        """Parses faces.

        Args:
          image: (N, H, W, 3) in [-1, 1]; H, W multiples of 2^(len(widths) - 1).
        Returns:
          float32 (N, H, W, num_classes) logits.
        """
        if self.norm not in NORMS:
            raise ValueError(f"UNet.norm: expected one of {NORMS}, got {self.norm!r}")
        if self.upsample not in UPSAMPLINGS:
            raise ValueError(f"UNet.upsample: expected one of {UPSAMPLINGS}, got {self.upsample!r}")
        if self.layer_forms != INHERIT_FORMS and self.layer_forms not in ops.FORMS:
            raise ValueError(f"UNet.layer_forms: expected {INHERIT_FORMS!r} or one of {ops.FORMS}, "
                             f"got {self.layer_forms!r}")
        forms = contextlib.nullcontext() if self.layer_forms == INHERIT_FORMS else ops.layer_forms(self.layer_forms)
        with forms:
            return self._logits(image)

    def _logits(self, image: jax.Array) -> jax.Array:
        factor = 2 ** (len(self.widths) - 1)
        if image.shape[1] % factor or image.shape[2] % factor:
            raise ValueError(f"UNet with {len(self.widths) - 1} downsamplings needs H and W multiples of {factor}, "
                             f"got {image.shape[1]}x{image.shape[2]}")
        block = dict(convs=self.convs_per_level, norm=self.norm, groups=self.groups, dtype=self.dtype)
        x = image.astype(self.dtype)
        skips = []
        for level, width in enumerate(self.widths):
            if level:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
            x = ConvBlock(width, **block, name=f"down_{level}")(x)
            skips.append(x)
        for level in reversed(range(len(self.widths) - 1)):
            width = self.widths[level]
            if self.upsample == "transpose":
                x = UpConv(width, dtype=self.dtype, name=f"upsample_{level}")(x)
            else:
                x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
                x = Conv2D(width, 3, padding=1, kernel_init=encoder_kernel_init, dtype=self.dtype,
                           name=f"upsample_{level}")(x)
            x = ConvBlock(width, **block, name=f"up_{level}")(jnp.concatenate([skips[level], x], axis=-1))
        logits = Conv2D(self.num_classes, 1, kernel_init=encoder_kernel_init, dtype=self.dtype, name="classifier")(x)
        return logits.astype(jnp.float32)
