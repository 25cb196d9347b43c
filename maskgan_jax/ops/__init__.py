"""The layers' numerical operations, in one of several computational forms (same maths in all).

    ops.conv2d, ops.upsample_conv_transpose, ops.instance_norm, ops.adain, ops.add_channel_bias,
    ops.instance_statistics, ops.spatial_sums

Forms (`config.model.layer_forms`):
  "auto"  (default): "fast" when JAX's default backend is the CPU, else "plain";
  "fast":  the XLA:CPU forms of `maskgan_jax.ops.cpu` (custom VJPs, GEMM forms, dot-with-ones sums);
  "plain": plain lax convs and reductions with JAX autodiff (`maskgan_jax.ops.plain`), the transposed
           conv by output phases: what cuDNN and TPUs run fast;
  "stock": "plain", but the transposed conv as XLA's lhs-dilated conv (flax nn.ConvTranspose's form).

The form is read when a function is traced: a training step traced inside `layer_forms(...)` keeps
that form for every later call of the compiled step. Outside any context, "auto" applies.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Iterator

import jax

from maskgan_jax.ops import cpu, plain
from maskgan_jax.ops.cpu import spatial_sums
from maskgan_jax.ops.plain import INSTANCE_NORM_EPS

__all__ = ["FORMS", "INSTANCE_NORM_EPS", "LAYER_FORMS", "adain", "add_channel_bias", "conv2d",
           "current_layer_forms", "instance_norm", "instance_statistics", "layer_forms", "resolve", "spatial_sums",
           "traced_in", "upsample_conv_transpose"]

# The computational forms; "auto" (a config value) resolves to one of them.
LAYER_FORMS = ("fast", "plain", "stock")
FORMS = ("auto", *LAYER_FORMS)
_FORMS: contextvars.ContextVar[str | None] = contextvars.ContextVar("maskgan_jax_layer_forms", default=None)


def resolve(forms: str) -> str:
    """A config value of `FORMS` -> one of LAYER_FORMS ("auto": "fast" on the CPU backend, else "plain").

    Raises ValueError naming the value and the accepted ones.
    """
    if forms not in FORMS:
        raise ValueError(f"layer forms: unknown forms {forms!r}, expected one of {FORMS}")
    if forms == "auto":
        # The custom forms are 1.5-20x faster on XLA:CPU; cuDNN/TPU convolutions and their autodiff
        # transposes are already fast, and the plain forms leave XLA free to fuse.
        return "fast" if jax.default_backend() == "cpu" else "plain"
    return forms


@contextlib.contextmanager
def layer_forms(forms: str) -> Iterator[None]:
    """Computes the layers in `forms` (one of FORMS) while tracing inside this context."""
    token = _FORMS.set(resolve(forms))
    try:
        yield
    finally:
        _FORMS.reset(token)


def current_layer_forms() -> str:
    """The forms in effect for tracing now: one of LAYER_FORMS."""
    forms = _FORMS.get()
    return resolve("auto") if forms is None else forms


def traced_in(forms: str, fn):
    """`fn` that traces its body in `forms` (one of FORMS), e.g. `jax.jit(traced_in(config.model.layer_forms,
    step))`: the choice holds for every call of the compiled function. Raises ValueError for unknown forms."""
    resolve(forms)  # fail at set-up, naming the value, not at the first trace

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with layer_forms(forms):
            return fn(*args, **kwargs)

    return wrapped


def _module():
    return cpu if current_layer_forms() == "fast" else plain


def add_channel_bias(y: jax.Array, bias: jax.Array | None) -> jax.Array:
    """y + bias broadcast over the last axis (no-op for None). y: (..., C); bias: (C,)."""
    return _module().add_channel_bias(y, bias)


def instance_statistics(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-sample, per-channel mean and biased variance over H, W: (N,H,W,C) -> two (N,1,1,C) float32."""
    return _module().instance_statistics(x)


def instance_norm(x: jax.Array, eps: float = INSTANCE_NORM_EPS) -> jax.Array:
    """InstanceNorm2d without affine parameters (PyTorch default), statistics in float32.
    (N,H,W,C) -> same shape and dtype."""
    return _module().instance_norm(x, eps)


def adain(x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float = INSTANCE_NORM_EPS) -> jax.Array:
    """Adaptive instance normalisation: instance-normalise, then `scale * x + bias` per sample.

    The scale is used as given (no "1 + scale"), as in the reference (MUNIT's AdaptiveInstanceNorm2d).

    Args:
      x: (N, H, W, C).
      scale, bias: (N, C), supplied by the style encoder.
    Returns:
      (N, H, W, C) in x's dtype.
    """
    return _module().adain(x, scale, bias, eps)


def conv2d(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None, stride: int = 1,
           padding: int = 0) -> jax.Array:
    """Conv with zero padding and optional bias.

    Args:
      x: (N, H, W, Cin).
      kernel: (kh, kw, Cin, Cout) HWIO.
      bias: (Cout,) or None.
      stride: s; padding: p, zero padding on each side of H and W.
    Returns:
      (N, (H + 2p - kh) // s + 1, (W + 2p - kw) // s + 1, Cout) in the dtype of x (x and kernel share
      one dtype, as lax requires).
    """
    return _module().conv2d(x, kernel, bias, stride, padding)


def upsample_conv_transpose(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None) -> jax.Array:
    """PyTorch ConvTranspose2d(k=3, stride=2, padding=1, output_padding=1), computed phase by phase.

    The transposed conv scatters each input pixel (iy, ix) into out[2*iy - 1 + ky, 2*ix - 1 + kx]
    through kernel[ky, kx]. Grouping outputs by row/column parity shows each of the four output
    phases is an ordinary stride-1 convolution of the input with a subset of the taps:
      even row  <- kernel row 1 at input row m
      odd row   <- kernel row 2 at input row m, kernel row 0 at input row m + 1 (zero past the edge)
    and likewise for columns. Computing these four small convs and interleaving them gives exactly
    PyTorch's result without multiplying inserted zeros ("stock": XLA's lhs-dilated conv instead).

    Args:
      x: (N, H, W, Cin).
      kernel: (3, 3, Cin, Cout) with kernel[ky, kx, i, o] = torch_weight[i, o, ky, kx] (no flip).
      bias: (Cout,) or None.
    Returns:
      (N, 2H, 2W, Cout) in the promoted dtype of x and kernel.
    """
    forms = current_layer_forms()
    if forms == "fast":
        return cpu.upsample_conv_transpose(x, kernel, bias)
    upsample = plain.upsample_dilated if forms == "stock" else plain.upsample_phases
    return plain.add_channel_bias(upsample(x, kernel), bias)
