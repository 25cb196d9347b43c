"""Multi-scale PatchGAN discriminator (pix2pixHD's MultiscaleDiscriminator, getIntermFeat=True).

The discriminator reads concat(one-hot mask, image) (N, H, W, num_classes + 3) and returns, for
each scale, every intermediate feature map (for the feature-matching loss) with the patch logits
last. Scale 0 sees the full-resolution input; scale k sees it average-pooled k times (3x3,
stride 2, pad 1, padding excluded from the average). Each scale has its own parameters.

One scale (n_layers = 3, ndf = 64 at the reference), every conv 4x4 with zero padding 2 and bias:
  conv s2 -> ndf, LeakyReLU 0.2
  for n in 1 .. n_layers - 1: conv s2 -> min(ndf * 2**n, 512), InstanceNorm, LeakyReLU 0.2
  conv s1 -> min(ndf * 2**n_layers, 512), InstanceNorm, LeakyReLU 0.2
  conv s1 -> 1 (raw logits; no sigmoid, the LSGAN loss reads them directly)
InstanceNorm has no affine parameters. A conv of size k, stride s, padding p maps H to
floor((H + 2p - k) / s) + 1, so with k = 4, p = 2 a stride-1 conv grows the map by one pixel
(512 -> 257 -> 129 -> 65 -> 66 -> 67), exactly as PyTorch does.
At 22 input channels, num_d 2, n_layers 3, ndf 64 there are 5,568,386 parameters.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from maskgan_jax.models.layers import Conv2D, Dtype, conv_kernel_init, instance_norm

_LEAKY_SLOPE = 0.2
_KERNEL = 4
_PAD = 2  # pix2pixHD: ceil((kernel - 1) / 2)
_MAX_WIDTH = 512


def avg_pool_3x3_s2_exclude_pad(x: jax.Array) -> jax.Array:
    """PyTorch AvgPool2d(3, stride=2, padding=1, count_include_pad=False) on NHWC.

    Each output is the mean of the input pixels its 3x3 window covers inside the image: windows on
    the border average fewer than 9 pixels (corner windows 4, edge windows 6) instead of counting
    the zero padding.

    Args:
      x: (N, H, W, C) float.
    Returns:
      (N, floor((H - 1) / 2) + 1, floor((W - 1) / 2) + 1, C), same dtype; values stay within the
      input's range.
    """
    window, strides = (1, 3, 3, 1), (1, 2, 2, 1)
    padding = ((0, 0), (1, 1), (1, 1), (0, 0))
    sums = jax.lax.reduce_window(x.astype(jnp.float32), 0.0, jax.lax.add, window, strides, padding)
    ones = jnp.ones((1, x.shape[1], x.shape[2], 1), jnp.float32)
    counts = jax.lax.reduce_window(ones, 0.0, jax.lax.add, window, strides, padding)
    return (sums / counts).astype(x.dtype)


class PatchDiscriminator(nn.Module):
    """One scale of the discriminator (pix2pixHD NLayerDiscriminator with intermediate features).

    Attributes:
      n_layers: number of stride-2 convs plus one (the reference's n_layers_D, 3).
      ndf: width of the first conv; doubles per layer, capped at 512.
      dtype: compute dtype (parameters stay float32; InstanceNorm statistics are float32).

    Submodules: conv_0 .. conv_{n_layers + 1}.
    """

    n_layers: int = 3
    ndf: int = 64
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> list[jax.Array]:
        """Feature maps of one scale.

        Args:
          x: (N, H, W, Cin) float, the mask/image concatenation.
        Returns:
          n_layers + 2 arrays (N, h_i, w_i, c_i): the activation after each conv block; the last
          is the (N, h, w, 1) patch logits (unbounded).
        """
        if self.n_layers < 1 or self.ndf < 1:
            raise ValueError(f"PatchDiscriminator needs n_layers >= 1 and ndf >= 1, got "
                             f"n_layers={self.n_layers}, ndf={self.ndf}")

        def conv(features: int, stride: int, index: int) -> Conv2D:
            # Conv2D: nn.Conv's parameters, computed in config.model.layer_forms (maskgan_jax.ops).
            return Conv2D(features, _KERNEL, stride, _PAD, kernel_init=conv_kernel_init, dtype=self.dtype,
                          name=f"conv_{index}")

        features = []
        x = nn.leaky_relu(conv(self.ndf, 2, 0)(x.astype(self.dtype)), _LEAKY_SLOPE)
        features.append(x)
        # Layers 1 .. n_layers - 1 halve the resolution; layer n_layers keeps it (stride 1).
        for n in range(1, self.n_layers + 1):
            stride = 2 if n < self.n_layers else 1
            width = min(self.ndf * 2**n, _MAX_WIDTH)
            x = nn.leaky_relu(instance_norm(conv(width, stride, n)(x)), _LEAKY_SLOPE)
            features.append(x)
        features.append(conv(1, 1, self.n_layers + 1)(x))
        return features


class MultiScaleDiscriminator(nn.Module):
    """num_d PatchGAN discriminators on successively average-pooled copies of the input.

    Attributes:
      num_d: number of scales (reference 2).
      n_layers: see PatchDiscriminator (reference 3).
      ndf: see PatchDiscriminator (reference 64).
      dtype: compute dtype.

    Submodules: scale_0 (full resolution) .. scale_{num_d - 1}, each a PatchDiscriminator.
    (pix2pixHD numbers its per-scale modules the other way round; no public D weights exist.)
    """

    num_d: int = 2
    n_layers: int = 3
    ndf: int = 64
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> list[list[jax.Array]]:
        """Features of every scale.

        Args:
          x: (N, H, W, Cin) float, concat(one-hot mask, image in [-1, 1]) along channels
            (Cin = 22 at the reference).
        Returns:
          num_d lists (full resolution first), each the n_layers + 2 feature maps of that scale,
          the last of which is the (N, h, w, 1) patch logits.
        """
        if self.num_d < 1:
            raise ValueError(f"MultiScaleDiscriminator.num_d must be >= 1, got {self.num_d}")
        if x.ndim != 4:
            raise ValueError(f"MultiScaleDiscriminator expects NHWC input, got shape {x.shape}")
        outputs = []
        for scale in range(self.num_d):
            if scale > 0:
                x = avg_pool_3x3_s2_exclude_pad(x)
            outputs.append(PatchDiscriminator(self.n_layers, self.ndf, self.dtype,
                                              name=f"scale_{scale}")(x))
        return outputs
