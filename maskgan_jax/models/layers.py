"""Layers shared by the MaskGAN networks: padding, normalisation, AdaIN, SFT, up/down convolutions.

All tensors are NHWC. Normalisation statistics are computed in float32 whatever the compute dtype,
so bfloat16 runs keep float32 statistics.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any
Initializer = Callable[..., jax.Array]

# The reference initialises every (non-transposed) conv weight from N(0, 0.02) (pix2pixHD's weights_init).
conv_kernel_init: Initializer = nn.initializers.normal(stddev=0.02)
# PyTorch's default conv init (kaiming_uniform with a=sqrt(5)), bound 1/sqrt(fan_in); used where the
# reference leaves the framework default (transposed convs). Biases start at zero (flax's default).
torch_default_kernel_init: Initializer = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")

INSTANCE_NORM_EPS = 1e-5


def reflect_pad(x: jax.Array, pad: int) -> jax.Array:
    """Reflect-pads H and W of an NHWC array by `pad` (PyTorch ReflectionPad2d). (N,H,W,C) -> (N,H+2p,W+2p,C)."""
    if pad == 0:
        return x
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


def edge_pad(x: jax.Array, pad: int) -> jax.Array:
    """Replication padding of H and W (PyTorch ReplicationPad2d). (N,H,W,C) -> (N,H+2p,W+2p,C)."""
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")


def instance_statistics(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-sample, per-channel mean and biased variance over H, W, in float32.

    Args:
      x: (N, H, W, C), any float dtype.
    Returns:
      mean, var: (N, 1, 1, C) float32.
    """
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=(1, 2), keepdims=True)
    # E[(x - mean)^2] rather than E[x^2] - mean^2: no cancellation for large activations.
    var = jnp.mean(jnp.square(x32 - mean), axis=(1, 2), keepdims=True)
    return mean, var


def instance_norm(x: jax.Array, eps: float = INSTANCE_NORM_EPS) -> jax.Array:
    """InstanceNorm2d without affine parameters (PyTorch default). (N,H,W,C) -> same shape and dtype."""
    mean, var = instance_statistics(x)
    normalised = (x.astype(jnp.float32) - mean) * jax.lax.rsqrt(var + eps)
    return normalised.astype(x.dtype)


def adain(x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float = INSTANCE_NORM_EPS) -> jax.Array:
    """Adaptive instance normalisation: instance-normalise, then `scale * x + bias` per sample.

    The scale is used as given (no "1 + scale"), as in the reference (MUNIT's AdaptiveInstanceNorm2d).

    Args:
      x: (N, H, W, C).
      scale, bias: (N, C), supplied by the style encoder.
    Returns:
      (N, H, W, C) in x's dtype.
    """
    normalised = instance_norm(x, eps).astype(jnp.float32)
    out = normalised * scale[:, None, None, :].astype(jnp.float32) + bias[:, None, None, :].astype(jnp.float32)
    return out.astype(x.dtype)


class SFT(nn.Module):
    """Spatial feature transform: modulates `features` with maps computed from `condition`.

    scale = conv1x1(leaky_relu_0.1(conv1x1(condition))), shift likewise with its own two convs;
    out = features * scale + shift (no "+1", as in the reference).

    Attributes:
      channels: C, the channel count of both inputs and of every 1x1 conv.
    """

    channels: int
    dtype: Dtype = jnp.float32

    def _branch(self, condition: jax.Array, name: str) -> jax.Array:
        conv = lambda suffix: nn.Conv(  # noqa: E731
            self.channels, (1, 1), kernel_init=conv_kernel_init, dtype=self.dtype, name=f"{name}_conv{suffix}")
        return conv(2)(nn.leaky_relu(conv(1)(condition), negative_slope=0.1))

    @nn.compact
    def __call__(self, features: jax.Array, condition: jax.Array) -> jax.Array:
        """features, condition: (N, H, W, C) with equal shapes -> (N, H, W, C)."""
        if features.shape != condition.shape:
            raise ValueError(f"SFT needs features and condition of one shape, got {features.shape} "
                             f"and {condition.shape}")
        return features * self._branch(condition, "scale") + self._branch(condition, "shift")


class ReflectConv(nn.Module):
    """Reflect padding then a VALID conv with bias (the reference's Conv2dBlock with pad_type='reflect').

    Attributes:
      features: output channels.
      kernel_size: square kernel size k.
      strides: stride s.
      padding: reflect padding p on each side.
    """

    features: int
    kernel_size: int
    strides: int = 1
    padding: int = 0
    kernel_init: Initializer = conv_kernel_init
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """(N, H, W, Cin) -> (N, (H + 2p - k) // s + 1, ..., features)."""
        k = self.kernel_size
        conv = nn.Conv(self.features, (k, k), strides=(self.strides, self.strides), padding="VALID",
                       kernel_init=self.kernel_init, dtype=self.dtype, name="conv")
        return conv(reflect_pad(x, self.padding))


def _interleave_phases(ee: jax.Array, eo: jax.Array, oe: jax.Array, oo: jax.Array) -> jax.Array:
    """Interleaves four (N, H, W, C) phase images into (N, 2H, 2W, C): out[2m+a, 2n+b] = phase_ab[m, n]."""
    n, h, w, c = ee.shape
    rows_even = jnp.stack([ee, eo], axis=3)  # (N, H, W, 2, C), index 3 = column parity
    rows_odd = jnp.stack([oe, oo], axis=3)
    out = jnp.stack([rows_even, rows_odd], axis=2)  # (N, H, 2, W, 2, C)
    return out.reshape(n, 2 * h, 2 * w, c)


def upsample_conv_transpose(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None) -> jax.Array:
    """PyTorch ConvTranspose2d(k=3, stride=2, padding=1, output_padding=1), computed phase by phase.

    The transposed conv scatters each input pixel (iy, ix) into out[2*iy - 1 + ky, 2*ix - 1 + kx]
    through kernel[ky, kx]. Grouping outputs by row/column parity shows each of the four output
    phases is an ordinary stride-1 convolution of the input with a subset of the taps:
      even row  <- kernel row 1 at input row m
      odd row   <- kernel row 2 at input row m, kernel row 0 at input row m + 1 (zero past the edge)
    and likewise for columns. Computing these four small convs and interleaving them gives exactly
    PyTorch's result without multiplying inserted zeros, and its gradients are plain convs, which
    XLA:CPU runs far faster than the weight gradient of a strided transposed conv.

    Args:
      x: (N, H, W, Cin).
      kernel: (3, 3, Cin, Cout) with kernel[ky, kx, i, o] = torch_weight[i, o, ky, kx] (no flip).
      bias: (Cout,) or None.
    Returns:
      (N, 2H, 2W, Cout) in the promoted dtype of x and kernel.
    """
    # One zero row/column past the bottom/right edge supplies the "m + 1" taps (output_padding=1).
    x_next = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
    dn = ("NHWC", "HWIO", "NHWC")

    def conv(inputs: jax.Array, taps: jax.Array) -> jax.Array:
        return jax.lax.conv_general_dilated(inputs, taps, (1, 1), "VALID", dimension_numbers=dn)

    h, w = x.shape[1], x.shape[2]
    # Along each axis the even phase uses kernel index 1; the odd phase uses index 2 at offset 0 and
    # index 0 at offset 1, i.e. the slice [::-2].
    ee = conv(x, kernel[1:2, 1:2])
    eo = conv(x_next[:, :h], kernel[1:2, ::-2])
    oe = conv(x_next[:, :, :w], kernel[::-2, 1:2])
    oo = conv(x_next, kernel[::-2, ::-2])
    out = _interleave_phases(ee, eo, oe, oo)
    if bias is not None:
        out = out + bias
    return out


class UpConv(nn.Module):
    """The reference's up-sampling layer, ConvTranspose2d(k=3, s=2, p=1, output_padding=1), with bias.

    Parameters: `kernel` (3, 3, Cin, Cout) in the scatter orientation described in
    `upsample_conv_transpose`, `bias` (Cout,): the same count as the PyTorch layer.
    """

    features: int
    kernel_init: Initializer = torch_default_kernel_init
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """(N, H, W, Cin) -> (N, 2H, 2W, features)."""
        kernel = self.param("kernel", self.kernel_init, (3, 3, x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        return upsample_conv_transpose(x, kernel, bias)
