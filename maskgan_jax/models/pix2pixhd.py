"""The pix2pixHD global generator's down and up paths, shared by the DMN backbone and the blender.

Parameter names are `model_<index>` as in the reference nn.Sequential, so imports map one to one.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from maskgan_jax.models.layers import (BiasInit, Conv2D, Dtype, ReflectConv, UpConv, normalise, reflect_pad,
                                      upsample_nearest_2x, zero_bias)


class Pix2PixHDEncoder(nn.Module):
    """pix2pixHD global generator down path: reflect pad 3, conv 7x7, IN, ReLU, then n_downsample x
    [conv 3x3 stride 2 zero pad 1, IN, ReLU] doubling the width. Parameter names are model_<index>
    as in the reference nn.Sequential (conv layers at 1, 4, 7, ...)."""

    ngf: int
    n_downsample: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """(N, H, W, Cin) -> (N, H / 2^n, W / 2^n, ngf * 2^n)."""
        x = Conv2D(self.ngf, 7, dtype=self.dtype, name="model_1")(reflect_pad(x, 3))
        x = nn.relu(normalise(self, "norm_1", x))
        for i in range(self.n_downsample):
            x = Conv2D(self.ngf * 2 ** (i + 1), 3, strides=2, padding=1, dtype=self.dtype,
                       name=f"model_{4 + 3 * i}")(x)
            x = nn.relu(normalise(self, f"norm_{4 + 3 * i}", x))
        return x


UPSAMPLINGS = ("transpose", "resize")


class Pix2PixHDDecoder(nn.Module):
    """pix2pixHD global generator up path: n_upsample x [transposed conv 3x3 s2, IN, ReLU] halving the
    width, then reflect pad 3 and conv 7x7 to out_channels (no output activation here).

    Attributes:
      first_index: index of the first transposed conv in the reference nn.Sequential, for names.
      upsample: "transpose" (the reference's stride-2 transposed conv) or "resize" (nearest 2x, then a
        reflect-padded 3x3 conv: every output pixel sees the same number of input taps, so no
        checkerboard; Odena et al. 2016). Same parameter count; "resize" keeps its weights under
        `model_<i>/conv`, so only "transpose" imports the reference's weights.
      out_bias_init: the output conv's bias init (the only bias of the path that no InstanceNorm
        cancels, so the only one whose init changes what the network computes).
    """

    ngf: int
    n_upsample: int
    out_channels: int
    first_index: int
    out_bias_init: BiasInit = zero_bias
    upsample: str = "transpose"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """(N, h, w, ngf * 2^n) -> (N, h * 2^n, w * 2^n, out_channels), pre-activation."""
        if self.upsample not in UPSAMPLINGS:
            raise ValueError(f"upsample={self.upsample!r}: expected one of {UPSAMPLINGS}")
        for i in range(self.n_upsample):
            width = self.ngf * 2 ** (self.n_upsample - i - 1)
            name = f"model_{self.first_index + 3 * i}"
            if self.upsample == "transpose":
                x = UpConv(width, dtype=self.dtype, name=name)(x)
            else:
                x = ReflectConv(width, 3, 1, 1, dtype=self.dtype, name=name)(upsample_nearest_2x(x))
            x = nn.relu(normalise(self, f"norm_{self.first_index + 3 * i}", x))
        last = self.first_index + 3 * self.n_upsample + 1
        return Conv2D(self.out_channels, 7, bias_init=self.out_bias_init, dtype=self.dtype,
                      name=f"model_{last}")(reflect_pad(x, 3))


class ResnetBlock(nn.Module):
    """pix2pixHD's plain residual block: x + [reflect pad 1, conv 3x3, IN, ReLU, reflect pad 1, conv 3x3, IN](x)."""

    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """(N, H, W, C) -> (N, H, W, C)."""
        c = x.shape[-1]
        y = nn.relu(normalise(self, "norm_1", ReflectConv(c, 3, 1, 1, dtype=self.dtype, name="conv_block_1")(x)))
        return x + normalise(self, "norm_5", ReflectConv(c, 3, 1, 1, dtype=self.dtype, name="conv_block_5")(y))
