"""The alpha blender B of Editing Behavior Simulated Training.

A small pix2pixHD global generator (reference: ngf 32, 3 downsamplings, 3 plain residual blocks)
reading concat(I_inter, I_outer) and predicting a per-pixel, per-channel alpha through a sigmoid;
I_blend = alpha * I_inter + (1 - alpha) * I_outer.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from maskgan_jax.models.layers import Dtype
from maskgan_jax.models.pix2pixhd import Pix2PixHDDecoder, Pix2PixHDEncoder, ResnetBlock


class AlphaBlender(nn.Module):
    """B(I_inter, I_outer) -> (I_blend, alpha). Defaults give the reference's 4,329,443 parameters.

    Attributes:
      ngf: width after the stem.
      n_downsample: stride-2 convs (and as many up-sampling layers).
      n_blocks: plain residual blocks at the bottleneck.
      dtype: compute dtype; the blend itself is computed in float32.
    """

    ngf: int = 32
    n_downsample: int = 3
    n_blocks: int = 3
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, image_a: jax.Array, image_b: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Blends two images of one face.

        Args:
          image_a, image_b: (N, H, W, 3) in [-1, 1]; H, W multiples of 2^n_downsample.
        Returns:
          blend: (N, H, W, 3) float32 in [-1, 1]; alpha: (N, H, W, 3) float32 in (0, 1), the weight
          of image_a.
        """
        if image_a.shape != image_b.shape:
            raise ValueError(f"AlphaBlender needs two images of one shape, got {image_a.shape} and "
                             f"{image_b.shape}")
        x = Pix2PixHDEncoder(self.ngf, self.n_downsample, dtype=self.dtype, name="down")(
            jnp.concatenate([image_a, image_b], axis=-1))
        first_block = 1 + 3 * (self.n_downsample + 1)
        for b in range(self.n_blocks):
            x = ResnetBlock(dtype=self.dtype, name=f"model_{first_block + b}")(x)
        logits = Pix2PixHDDecoder(self.ngf, self.n_downsample, image_a.shape[-1],
                                  first_index=first_block + self.n_blocks, dtype=self.dtype, name="up")(x)
        alpha = jax.nn.sigmoid(logits.astype(jnp.float32))
        blend = alpha * image_a.astype(jnp.float32) + (1.0 - alpha) * image_b.astype(jnp.float32)
        return blend, alpha
