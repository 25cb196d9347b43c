"""The Dense Mapping Network (G_A): a pix2pixHD backbone driven by the wanted mask, whose residual
blocks take AdaIN parameters from a spatial-aware style encoder (SFT layers) reading the target face.

Module and parameter names follow the public PyTorch generator so that `maskgan_jax.convert` maps
its state_dict one to one (see `maskgan_jax.convert.OFFICIAL_KEYS`).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from maskgan_jax.models.layers import (ENCODER_INITS, SFT, BiasInit, Dtype, Initializer, ReflectConv, normalise,
                                      encoder_kernel_init, torch_default_bias, zero_bias)
from maskgan_jax.models.pix2pixhd import Pix2PixHDDecoder, Pix2PixHDEncoder


# The biases that go with each encoder_init: "reference" leaves PyTorch's default U(+-1/sqrt(fan_in)) on
# the encoders' and SFT layers' convs and on the output conv (the biases no InstanceNorm or AdaIN cancels;
# the others cannot change what the network computes or learns); "he" starts them at 0.
BIAS_INITS: dict[str, BiasInit] = {"he": zero_bias, "reference": torch_default_bias}


def style_dim(n_blocks: int, channels: int) -> int:
    """Length of the style vector: 2 AdaIN layers per block, each taking C biases and C scales."""
    return n_blocks * 2 * 2 * channels


def split_style(style: jax.Array, n_blocks: int, channels: int) -> list[tuple[jax.Array, jax.Array]]:
    """Splits a style vector into per-AdaIN-layer (scale, bias) pairs in the reference layout.

    AdaIN layer k (k = 2 * block + conv, module order) reads its bias from [2Ck, 2Ck + C) and its
    scale from [2Ck + C, 2C(k + 1)) (MUNIT's assign_adain_params).

    Args:
      style: (N, style_dim(n_blocks, channels)).
    Returns:
      2 * n_blocks pairs of (scale, bias), each (N, channels).
    """
    expected = style_dim(n_blocks, channels)
    if style.shape[-1] != expected:
        raise ValueError(f"style vector has {style.shape[-1]} entries, expected {expected}")
    pairs = []
    for k in range(2 * n_blocks):
        start = 2 * channels * k
        pairs.append((style[:, start + channels:start + 2 * channels], style[:, start:start + channels]))
    return pairs


class LabelEncoder(nn.Module):
    """Encodes the target mask M_t into the two condition maps of the SFT layers.

    Attributes:
      widths: channels of the 7x7 stem and the two stride-2 convs, e.g. (16, 32, 64).
      n_deep: stride-2 convs from fea1 to fea2 (3 in the reference: H/4 -> H/32).
    """

    widths: tuple[int, int, int] = (16, 32, 64)
    n_deep: int = 3
    kernel_init: Initializer = encoder_kernel_init
    bias_init: BiasInit = zero_bias
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        """mask: (N, H, W, num_classes) one-hot -> fea1 (N, H/4, W/4, C), fea2 (N, H/4/2^n_deep, ..., C)."""
        conv = lambda f, k, s, p, name: ReflectConv(f, k, s, p, kernel_init=self.kernel_init,
                                                    bias_init=self.bias_init, dtype=self.dtype, name=name)
        x = nn.relu(conv(self.widths[0], 7, 1, 3, "model_0")(mask))
        x = nn.relu(conv(self.widths[1], 4, 2, 1, "model_1")(x))
        fea1 = conv(self.widths[2], 4, 2, 1, "model_2")(x)
        x = nn.relu(fea1)
        for i in range(1, self.n_deep + 1):
            x = conv(self.widths[2], 4, 2, 1, f"model_last_{i}")(x)
            if i < self.n_deep:
                x = nn.relu(x)
        return fea1, x


class StyleEncoder(nn.Module):
    """Spatial-aware style encoder: reads I_t, modulated by the label features through two SFT layers.

    Attributes:
      widths: channels of the 7x7 stem and the two stride-2 convs (the last equals the label features').
      n_deep: stride-2 convs between the two SFT layers.
      out_dim: style vector length.
    """

    out_dim: int
    widths: tuple[int, int, int] = (16, 32, 64)
    n_deep: int = 3
    kernel_init: Initializer = encoder_kernel_init
    bias_init: BiasInit = zero_bias
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, image: jax.Array, fea1: jax.Array, fea2: jax.Array) -> jax.Array:
        """image (N, H, W, 3) in [-1, 1]; fea1, fea2 from LabelEncoder -> style (N, out_dim)."""
        conv = lambda f, k, s, p, name: ReflectConv(f, k, s, p, kernel_init=self.kernel_init,
                                                    bias_init=self.bias_init, dtype=self.dtype, name=name)
        x = nn.relu(conv(self.widths[0], 7, 1, 3, "model_0")(image))
        x = nn.relu(conv(self.widths[1], 4, 2, 1, "model_1")(x))
        x = nn.relu(conv(self.widths[2], 4, 2, 1, "model_2")(x))
        x = SFT(self.widths[2], kernel_init=self.kernel_init, bias_init=self.bias_init, dtype=self.dtype,
                name="sft1")(x, fea1)
        for i in range(self.n_deep):
            x = nn.relu(conv(self.widths[2], 4, 2, 1, f"model_middle_{i}")(x))
        x = SFT(self.widths[2], kernel_init=self.kernel_init, bias_init=self.bias_init, dtype=self.dtype,
                name="sft2")(x, fea2)
        pooled = jnp.mean(x.astype(jnp.float32), axis=(1, 2), keepdims=True).astype(x.dtype)
        style = nn.Conv(self.out_dim, (1, 1), kernel_init=self.kernel_init,
                        bias_init=self.bias_init(self.widths[2]), dtype=self.dtype, name="model_last_1")(pooled)
        return style[:, 0, 0, :]


class AdaINResBlock(nn.Module):
    """x + [reflect pad 1, conv 3x3, AdaIN, ReLU, reflect pad 1, conv 3x3, AdaIN](x); no activation after."""

    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, adain_params: list[tuple[jax.Array, jax.Array]]) -> jax.Array:
        """x: (N, H, W, C); adain_params: two (scale, bias) pairs of (N, C) -> (N, H, W, C)."""
        c = x.shape[-1]
        (scale0, bias0), (scale1, bias1) = adain_params
        y = ReflectConv(c, 3, 1, 1, dtype=self.dtype, name="conv_block_0")(x)
        y = nn.relu(normalise(self, "norm_0", y, scale0, bias0))
        y = ReflectConv(c, 3, 1, 1, dtype=self.dtype, name="conv_block_1")(y)
        return x + normalise(self, "norm_1", y, scale1, bias1)


class DenseMappingNetwork(nn.Module):
    """G_A(I_t, M_t, M_src): renders the face of I_t, with its style, on the layout of M_src.

    Attributes (defaults are the reference sizes: 89,702,595 parameters):
      num_classes: mask classes (19).
      ngf: backbone width after the stem (64); the bottleneck has ngf * 2^n_downsample channels.
      n_downsample: stride-2 convs in the backbone (4: 512 -> 32).
      n_blocks: AdaIN residual blocks (4).
      encoder_widths: channels of the label and style encoders' stem and two stride-2 convs.
      n_encoder_deep: stride-2 convs from the H/4 features to the H/32 features (3).
      encoder_init: init of the label and style encoders and SFT layers, which have no
        normalisation: "he" (default; He-normal kernels, zero biases) or "reference" (the reference's:
        N(0, 0.02) kernels, as every conv of it, and PyTorch's default biases; see BIAS_INITS).
        With "reference" the style moves the output by only ~1e-8 at the start and short
        trainings learn to ignore it (see `layers.encoder_kernel_init`).
      upsample: the backbone's up-sampling, "transpose" (the reference) or "resize" (nearest 2x + conv,
        no checkerboard); see `Pix2PixHDDecoder`.
      dtype: compute dtype (float32 or bfloat16); parameters and norm statistics stay float32.
    """

    num_classes: int = 19
    ngf: int = 64
    n_downsample: int = 4
    n_blocks: int = 4
    encoder_widths: tuple[int, int, int] = (16, 32, 64)
    n_encoder_deep: int = 3
    encoder_init: str = "he"
    upsample: str = "transpose"
    output_channels: int = 3
    dtype: Dtype = jnp.float32

    @property
    def bottleneck_channels(self) -> int:
        return self.ngf * 2 ** self.n_downsample

    @nn.compact
    def __call__(self, image_t: jax.Array | None, mask_t: jax.Array | None, mask_src: jax.Array | None, *,
                 style: jax.Array | None = None, style_only: bool = False) -> jax.Array:
        """Renders I_t's style on M_src's layout.

        Args:
          image_t: (N, H, W, 3) target face in [-1, 1].
          mask_t: (N, H, W, num_classes) one-hot mask of image_t.
          mask_src: (N, H, W, num_classes) one-hot wanted mask.
          H and W must be multiples of 4 * 2^n_encoder_deep and of 2^n_downsample.
          style: (N, style_dim) from an earlier `style_only` call: image_t and mask_t are then not
            read (None is fine), so an interactive editor encodes a face once and renders many masks.
          style_only: return the style vector (N, style_dim) of (image_t, mask_t); mask_src unused.
        Returns:
          (N, H, W, 3) in [-1, 1], in the compute dtype; with `style_only`, (N, style_dim).
        """
        given = (("mask_t", mask_t),) if style is None else ()
        given += () if style_only else (("mask_src", mask_src),)
        for name, mask in given:
            if mask.shape[-1] != self.num_classes:
                raise ValueError(f"{name} has {mask.shape[-1]} channels, expected one-hot over "
                                 f"{self.num_classes} classes")
        if self.encoder_init not in ENCODER_INITS:
            raise ValueError(f"encoder_init={self.encoder_init!r}: expected one of {sorted(ENCODER_INITS)}")
        kernel_init, bias_init = ENCODER_INITS[self.encoder_init], BIAS_INITS[self.encoder_init]
        channels = self.bottleneck_channels
        if style is None:
            fea1, fea2 = LabelEncoder(self.encoder_widths, self.n_encoder_deep, kernel_init, bias_init,
                                      dtype=self.dtype, name="enc_label")(mask_t)
            style = StyleEncoder(style_dim(self.n_blocks, channels), self.encoder_widths, self.n_encoder_deep,
                                 kernel_init, bias_init, dtype=self.dtype, name="enc_style")(image_t, fea1, fea2)
        if style_only:
            return style
        adain_params = split_style(style, self.n_blocks, channels)
        x = Pix2PixHDEncoder(self.ngf, self.n_downsample, dtype=self.dtype, name="down")(mask_src)
        first_block = 1 + 3 * (self.n_downsample + 1)
        for b in range(self.n_blocks):
            x = AdaINResBlock(dtype=self.dtype, name=f"model_{first_block + b}")(
                x, adain_params[2 * b:2 * b + 2])
        x = Pix2PixHDDecoder(self.ngf, self.n_downsample, self.output_channels,
                             first_index=first_block + self.n_blocks, out_bias_init=bias_init,
                             upsample=self.upsample, dtype=self.dtype, name="up")(x)
        return jnp.tanh(x)
