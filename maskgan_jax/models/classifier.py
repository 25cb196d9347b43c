"""The attribute classifier: a small CNN from a face image to one logit per CelebA attribute it was
trained on (e.g. 'Smiling'), the judge of the CelebAMask-HQ protocol's smile transfer
(maskgan_jax.celeba_protocol).

Per level: a 3x3 conv, InstanceNorm with a learned affine (as the parser, so a face is classified the
same at any batch size), ReLU, then a 2x2 max-pool; after the last level a global average pool and a
dense layer. The first conv strides by `stem_stride`, as an attribute needs no per-pixel detail: the
parser phase's step at the quickstart size (batch 8, 64 px, a loaded 2-core CPU) measured 462 ms with a
full-resolution first level and 400 ms with the stride-2 stem, against 329-388 ms without the
classifier. Convs are `layers.Conv2D` (their XLA:CPU-friendly form, as the parser's).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from maskgan_jax.models.layers import Conv2D, Dtype, encoder_kernel_init
from maskgan_jax.models.parser import AffineInstanceNorm
from tfds_celebamask.labels import ATTRIBUTE_NAMES


class AttributeClassifier(nn.Module):
    """Face image -> attribute logits.

    Attributes:
      attributes: the CelebA attribute names (labels.ATTRIBUTE_NAMES) it predicts, one logit each.
      widths: conv widths, one level each; each level but the last halves the resolution.
      stem_stride: the stride of the first conv (1: the first level at the input's resolution).
    """

    attributes: Sequence[str] = ("Smiling",)
    widths: Sequence[int] = (16, 32, 64, 128)
    stem_stride: int = 2
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, image: jax.Array) -> jax.Array:
        """Classifies faces.

        Args:
          image: (N, H, W, 3) in [-1, 1]; H, W multiples of stem_stride * 2^(len(widths) - 1).
        Returns:
          float32 (N, len(attributes)) logits (sigmoid: the probability the attribute is present).
        """
        unknown = [name for name in self.attributes if name not in ATTRIBUTE_NAMES]
        if unknown or not self.attributes:
            raise ValueError(f"AttributeClassifier.attributes: expected CelebA attribute names "
                             f"(labels.ATTRIBUTE_NAMES), got {list(self.attributes)}")
        if self.stem_stride < 1:
            raise ValueError(f"AttributeClassifier.stem_stride: expected >= 1, got {self.stem_stride}")
        factor = self.stem_stride * 2 ** (len(self.widths) - 1)
        if image.shape[1] % factor or image.shape[2] % factor:
            raise ValueError(f"AttributeClassifier with {len(self.widths)} levels and stem stride {self.stem_stride} "
                             f"needs H and W multiples of {factor}, got {image.shape[1]}x{image.shape[2]}")
        x = image.astype(self.dtype)
        for level, width in enumerate(self.widths):
            x = Conv2D(width, 3, strides=self.stem_stride if level == 0 else 1, padding=1,
                       kernel_init=encoder_kernel_init, dtype=self.dtype, name=f"conv_{level}")(x)
            x = nn.relu(AffineInstanceNorm(dtype=self.dtype, name=f"norm_{level}")(x))
            if level < len(self.widths) - 1:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
        pooled = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        return nn.Dense(len(self.attributes), name="logits")(pooled)
