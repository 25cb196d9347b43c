"""The layers' maths in plain lax ops, differentiated by JAX: the reference forms (and the fast ones
on GPUs and TPUs, whose convolutions and autodiff transposes are already fast).

All tensors are NHWC, kernels HWIO. Normalisation statistics are float32 whatever the input dtype.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

INSTANCE_NORM_EPS = 1e-5
DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


def zero_pad(x: jax.Array, low: int, high: int) -> jax.Array:
    """Zero-pads H and W of an NHWC array by `low` before and `high` after."""
    return jnp.pad(x, ((0, 0), (low, high), (low, high), (0, 0)))


def lax_conv(x: jax.Array, kernel: jax.Array, stride: int = 1, padding: Any = "VALID") -> jax.Array:
    return jax.lax.conv_general_dilated(x, kernel, (stride, stride), padding,
                                        dimension_numbers=DIMENSION_NUMBERS)


def add_channel_bias(y: jax.Array, bias: jax.Array | None) -> jax.Array:
    """y + bias broadcast over the last axis (no-op for None). y: (..., C); bias: (C,)."""
    return y if bias is None else y + bias


def instance_statistics(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-sample, per-channel mean and biased variance over H, W: (N,H,W,C) -> two (N,1,1,C) float32."""
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=(1, 2), keepdims=True)
    # E[(x - mean)^2] rather than E[x^2] - mean^2: no cancellation for large activations.
    var = jnp.mean(jnp.square(x32 - mean), axis=(1, 2), keepdims=True)
    return mean, var


def instance_norm(x: jax.Array, eps: float = INSTANCE_NORM_EPS) -> jax.Array:
    """InstanceNorm2d without affine parameters. (N,H,W,C) -> same shape and dtype."""
    mean, var = instance_statistics(x)
    return ((x.astype(jnp.float32) - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype)


def adain(x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float = INSTANCE_NORM_EPS) -> jax.Array:
    """instance_norm(x) * scale + bias; x (N,H,W,C), scale and bias (N,C). Returns x's shape and dtype."""
    normalised = instance_norm(x, eps).astype(jnp.float32)
    return (normalised * scale[:, None, None, :].astype(jnp.float32)
            + bias[:, None, None, :].astype(jnp.float32)).astype(x.dtype)


def conv2d(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None, stride: int = 1,
           padding: int = 0) -> jax.Array:
    """Zero-padded conv plus optional bias: (N,H,W,Cin) x (kh,kw,Cin,Cout) -> (N,Ho,Wo,Cout)."""
    return add_channel_bias(lax_conv(x, kernel, stride, ((padding, padding), (padding, padding))), bias)


def interleave_phases(ee: jax.Array, eo: jax.Array, oe: jax.Array, oo: jax.Array) -> jax.Array:
    """Interleaves four (N, H, W, C) phase images into (N, 2H, 2W, C): out[2m+a, 2n+b] = phase_ab[m, n]."""
    n, h, w, c = ee.shape
    rows_even = jnp.stack([ee, eo], axis=3)  # (N, H, W, 2, C), index 3 = column parity
    rows_odd = jnp.stack([oe, oo], axis=3)
    out = jnp.stack([rows_even, rows_odd], axis=2)  # (N, H, 2, W, 2, C)
    return out.reshape(n, 2 * h, 2 * w, c)


def upsample_phases(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """PyTorch ConvTranspose2d(k=3, stride=2, padding=1, output_padding=1) without bias, as 4 stride-1
    phase convs (see `maskgan_jax.models.layers.UpConv`). (N,H,W,Cin) -> (N,2H,2W,Cout)."""
    # One zero row/column past the bottom/right edge supplies the "m + 1" taps (output_padding=1).
    x_next = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
    h, w = x.shape[1], x.shape[2]
    # Along each axis the even phase uses kernel index 1; the odd phase uses index 2 at offset 0 and
    # index 0 at offset 1, i.e. the slice [::-2].
    ee = lax_conv(x, kernel[1:2, 1:2])
    eo = lax_conv(x_next[:, :h], kernel[1:2, ::-2])
    oe = lax_conv(x_next[:, :, :w], kernel[::-2, 1:2])
    oo = lax_conv(x_next, kernel[::-2, ::-2])
    return interleave_phases(ee, eo, oe, oo)


def upsample_dilated(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """The same transposed conv as the op flax's nn.ConvTranspose calls (an lhs-dilated conv); PyTorch's
    layer is this with the spatially flipped kernel and padding (1, 2) of the dilated input."""
    return jax.lax.conv_transpose(x, kernel[::-1, ::-1], (2, 2), ((1, 2), (1, 2)),
                                  dimension_numbers=DIMENSION_NUMBERS)
