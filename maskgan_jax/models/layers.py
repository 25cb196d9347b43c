"""Layers shared by the MaskGAN networks: padding, initialisers, convs with bias, SFT, up-sampling.

All tensors are NHWC. The numerical operations (convolutions, InstanceNorm, AdaIN) come from
`maskgan_jax.ops`, which computes them in the form `config.model.layer_forms` selects (the XLA:CPU
forms with custom VJPs, or plain lax); the modules here hold only parameters and wiring.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from maskgan_jax.ops import (INSTANCE_NORM_EPS, adain, conv2d, instance_norm, instance_statistics,
                            upsample_conv_transpose)

__all__ = ["ENCODER_INITS", "NORM_STATISTICS", "SFT", "BiasInit", "torch_default_bias", "zero_bias",
           "Conv2D", "ReflectConv", "UpConv", "adain", "conv2d", "conv_kernel_init",
           "edge_pad", "encoder_kernel_init", "instance_norm", "normalise", "reflect_pad", "torch_default_kernel_init",
           "upsample_conv_transpose", "upsample_nearest_2x"]

Dtype = Any
Initializer = Callable[..., jax.Array]

# The reference initialises every (non-transposed) conv weight from N(0, 0.02) (pix2pixHD's weights_init).
conv_kernel_init: Initializer = nn.initializers.normal(stddev=0.02)
# PyTorch's default conv init (kaiming_uniform with a=sqrt(5)), bound 1/sqrt(fan_in); used where the
# reference leaves the framework default (transposed convs). Biases start at zero (flax's default).
torch_default_kernel_init: Initializer = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
# He (fan_in, gain 2) init for the DMN's label and style encoders and SFT layers, which have no
# normalisation (config.model.generator.encoder_init="he", this project's choice). With the reference's
# N(0, 0.02) kernels their activations shrink ~3x per layer and the style vector hardly depends on the
# image: swapping the style image moves the output by ~5e-8 at init (with the reference's PyTorch-default
# biases, "reference"; ~2e-8 with zero biases, which also left the AdaIN parameters near 1e-5 and the
# residual blocks without gradient). He init keeps the activation scale, so the style reaches the output
# from the first step (0.12 there). Measured against the exact reference init (README, "Initialisation"):
# 500 DMN steps of the quickstart, same data and seed: He 16.6 vs 15.6 dB PSNR on unedited pixels and
# 0.768 vs 0.749 parser pixel accuracy over the image; reference 0.363 vs 0.351 in edited regions (within
# the intervals). He stays the default.
encoder_kernel_init: Initializer = nn.initializers.he_normal()
# The DMN's encoder init by name (config.model.generator.encoder_init): "he", or "reference" (N(0, 0.02)).
ENCODER_INITS: dict[str, Initializer] = {"he": encoder_kernel_init, "reference": conv_kernel_init}

# The variable collection through which the backbone's InstanceNorm and AdaIN statistics are recorded
# (apply with it mutable) or held (apply with it given): editing with the face's own statistics
# (maskgan_jax.edit, config.edit.norm_statistics). Absent in training, where `normalise` is plain
# ops.instance_norm / ops.adain.
NORM_STATISTICS = "norm_statistics"


def normalise(module: nn.Module, name: str, x: jax.Array, scale: jax.Array | None = None,
              bias: jax.Array | None = None) -> jax.Array:
    """InstanceNorm of x (scale and bias None) or AdaIN (x normalised, times scale, plus bias), inside `module`.

    With the NORM_STATISTICS collection mutable (and not initialising), x's own statistics are also
    recorded there as `{name}_mean`, `{name}_var`; with the collection given, the statistics found
    there replace x's (the layer then normalises by another input's mean and variance).

    Args:
      module: the calling module (the variables live in its scope). name: unique within it.
      x: (N, H, W, C). scale, bias: (N, C) or None.
    Returns:
      x's shape and dtype.
    """
    recording = module.is_mutable_collection(NORM_STATISTICS) and not module.is_initializing()
    holding = not recording and module.has_variable(NORM_STATISTICS, f"{name}_mean")
    if not (recording or holding):
        return instance_norm(x) if scale is None else adain(x, scale, bias)
    if holding:
        mean, var = (module.get_variable(NORM_STATISTICS, f"{name}_{part}") for part in ("mean", "var"))
    else:
        mean, var = instance_statistics(x)
        module.put_variable(NORM_STATISTICS, f"{name}_mean", mean)
        module.put_variable(NORM_STATISTICS, f"{name}_var", var)
    y = (x.astype(jnp.float32) - mean) * jax.lax.rsqrt(var + INSTANCE_NORM_EPS)
    if scale is not None:
        y = y * scale[:, None, None, :].astype(jnp.float32) + bias[:, None, None, :].astype(jnp.float32)
    return y.astype(x.dtype)


# A bias initialiser given the layer's fan-in (k * k * Cin): biases are (features,), so the fan-in that
# PyTorch's default bias bound depends on is not in the shape an initialiser sees.
BiasInit = Callable[[int], Initializer]


def zero_bias(fan_in: int) -> Initializer:
    """Biases start at 0 (flax's default; this project's choice wherever it picks the init)."""
    del fan_in
    return nn.initializers.zeros_init()


def torch_default_bias(fan_in: int) -> Initializer:
    """PyTorch's default conv bias, U(-1/sqrt(fan_in), 1/sqrt(fan_in)): what the reference leaves in
    place, since pix2pixHD's weights_init re-draws conv weights only."""
    bound = fan_in ** -0.5

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


# ----------------------------------------------------------------------------------------------
# Padding.


def reflect_pad(x: jax.Array, pad: int) -> jax.Array:
    """Reflect-pads H and W of an NHWC array by `pad` (PyTorch ReflectionPad2d). (N,H,W,C) -> (N,H+2p,W+2p,C)."""
    if pad == 0:
        return x
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


def edge_pad(x: jax.Array, pad: int) -> jax.Array:
    """Replication padding of H and W (PyTorch ReplicationPad2d). (N,H,W,C) -> (N,H+2p,W+2p,C)."""
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")


# ----------------------------------------------------------------------------------------------
# Convolutions.


class Conv2D(nn.Module):
    """Conv with bias and zero padding, computed by `ops.conv2d`. Parameters `kernel` (k, k, Cin, features)
    and `bias` (features,), created as nn.Conv creates them (same names, shapes, order, initialisers),
    so it is a drop-in for nn.Conv(features, (k, k), strides, padding=p or "VALID").

    Attributes:
      features: output channels.
      kernel_size: square kernel size k.
      strides: stride s.
      padding: zero padding p on each side.
    """

    features: int
    kernel_size: int
    strides: int = 1
    padding: int = 0
    kernel_init: Initializer = conv_kernel_init
    bias_init: BiasInit = zero_bias
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """(N, H, W, Cin) -> (N, (H + 2p - k) // s + 1, ..., features)."""
        k = self.kernel_size
        kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", self.bias_init(k * k * x.shape[-1]), (self.features,), jnp.float32)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        return conv2d(x, kernel, bias, self.strides, self.padding)


class SFT(nn.Module):
    """Spatial feature transform: modulates `features` with maps computed from `condition`.

    scale = conv1x1(leaky_relu_0.1(conv1x1(condition))), shift likewise with its own two convs;
    out = features * scale + shift (no "+1", as in the reference).

    Attributes:
      channels: C, the channel count of both inputs and of every 1x1 conv.
    """

    channels: int
    kernel_init: Initializer = encoder_kernel_init
    bias_init: BiasInit = zero_bias
    dtype: Dtype = jnp.float32

    def _branch(self, condition: jax.Array, name: str) -> jax.Array:
        conv = lambda suffix: nn.Conv(
            self.channels, (1, 1), kernel_init=self.kernel_init, bias_init=self.bias_init(self.channels),
            dtype=self.dtype, name=f"{name}_conv{suffix}")
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

    Parameters live in a child named `conv` (`conv/kernel` (k, k, Cin, features), `conv/bias`), as
    they would in an nn.Conv child.

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
    bias_init: BiasInit = zero_bias
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """(N, H, W, Cin) -> (N, (H + 2p - k) // s + 1, ..., features)."""
        conv = Conv2D(self.features, self.kernel_size, self.strides, 0, kernel_init=self.kernel_init,
                      bias_init=self.bias_init, dtype=self.dtype, name="conv")
        return conv(reflect_pad(x, self.padding))


def upsample_nearest_2x(x: jax.Array) -> jax.Array:
    """Nearest-neighbour x2 upsampling (PyTorch nn.Upsample(scale_factor=2), mode 'nearest').

    Args:
      x: (N, H, W, C).
    Returns:
      (N, 2H, 2W, C); output pixel (i, j) copies input pixel (i // 2, j // 2).
    """
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class UpConv(nn.Module):
    """The reference's up-sampling layer, ConvTranspose2d(k=3, s=2, p=1, output_padding=1), with bias.

    Parameters: `kernel` (3, 3, Cin, Cout) in the scatter orientation described in
    `ops.upsample_conv_transpose`, `bias` (Cout,): the same count as the PyTorch layer.
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
