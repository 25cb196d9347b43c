"""The layers' maths in forms that XLA:CPU runs near its matmul rate, with custom VJPs.

These compute the reference maths (same parameters, same results to float32
rounding) in forms that XLA:CPU runs near its matmul rate, with custom VJPs whose backward ops are
again fast forward convs or plain GEMMs; JAX's automatic transposes of convs run 1.5-60x slower
there, mostly because they flip and transpose large kernels or return them in another layout:
  - 3x3 stride-1 convs over few pixels and many channels (the residual blocks): input gradient as one
    GEMM with the kernel as stored, then a sum of 9 shifted slices (col2im). Elsewhere lax's
    gradients are used (an im2col GEMM for a kernel gradient only where the patch matrix is smaller
    than the kernel);
  - convs narrowing to few output channels (the final 7x7 64->3): one GEMM to k*k*Cout values per
    pixel and a sum of k*k shifted slices; backward from the im2col matrix of the small output gradient,
    built by W shifts then H shifts; both in bands of rows;
  - the 3x3 stride-2 down conv and the k3/s2 transposed conv are each other's adjoint: the down
    conv's input gradient is a GEMM and a stride-2 col2im, the transposed conv's the stride-2 conv
    (or 9 tap GEMMs over few pixels); both kernel gradients are 9 tap GEMMs;
  - the transposed conv itself runs as 4 stride-1 phase convs (no multiplications by inserted zeros);
  - 4x4 stride-2 convs run as 2x2 stride-1 convs over space-to-depth cells (odd sizes padded by one);
  - per-channel spatial sums of large maps (InstanceNorm statistics and gradients, bias gradients)
    are a GEMM with rows of ones, ~5x faster than XLA:CPU's reduce.
Every function here equals its namesake in `maskgan_jax.ops.plain` to float32 rounding (same
parameters; tests/test_layers_speed_forms.py checks values and gradients against float64).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from maskgan_jax.ops.plain import INSTANCE_NORM_EPS, interleave_phases, lax_conv, upsample_phases, zero_pad

Dtype = Any

# Rows of ones in the per-channel sums: with one row XLA:CPU runs a GEMV that is slower and sums less
# accurately; with a few rows it runs its GEMM kernel, several times faster than a reduce.
_ONES_ROWS = 4
# Below this many elements a plain reduce is as fast, and a GEMM call can wait for threads that a
# concurrent large op holds.
_SUM_BY_GEMM_MIN_ELEMENTS = 1 << 20


def spatial_sums(x: jax.Array) -> jax.Array:
    """Per-sample, per-channel sums over H and W. (N,H,W,C) -> (N,C) float32."""
    n, h, w, c = x.shape
    x = x.astype(jnp.float32)
    if x.size < _SUM_BY_GEMM_MIN_ELEMENTS:
        return jnp.sum(x, axis=(1, 2))
    ones = jnp.ones((n, _ONES_ROWS, h * w), jnp.float32)
    sums = jax.lax.dot_general(ones, x.reshape(n, h * w, c), (((2,), (1,)), ((0,), (0,))))
    return sums[:, 0]


def _channel_sums(x: jax.Array) -> jax.Array:
    """Per-channel sums over every leading axis. (..., C) -> (C,) float32."""
    return spatial_sums(x.reshape(1, -1, 1, x.shape[-1]))[0]


@jax.custom_vjp
def _add_channel_bias(y: jax.Array, bias: jax.Array) -> jax.Array:
    """y + bias over the last axis, with the bias gradient as a dot-with-ones sum."""
    return y + bias


def _add_channel_bias_fwd(y, bias):
    return y + bias, bias


def _add_channel_bias_bwd(bias, grad):
    return grad, _channel_sums(grad).astype(bias.dtype)


_add_channel_bias.defvjp(_add_channel_bias_fwd, _add_channel_bias_bwd)


def add_channel_bias(y: jax.Array, bias: jax.Array | None) -> jax.Array:
    """y + bias broadcast over the last axis (no-op for None). y: (..., C); bias: (C,)."""
    return y if bias is None else _add_channel_bias(y, bias)


def instance_statistics(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-sample, per-channel mean and biased variance over H, W, as dot-with-ones sums.
    (N,H,W,C) any float dtype -> mean, var: (N,1,1,C) float32."""
    x32 = x.astype(jnp.float32)
    n, h, w, c = x.shape
    mean = (spatial_sums(x32) / (h * w)).reshape(n, 1, 1, c)
    var = (spatial_sums(jnp.square(x32 - mean)) / (h * w)).reshape(n, 1, 1, c)
    return mean, var


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _instance_norm_f32(x32: jax.Array, eps: float) -> jax.Array:
    """(x - mean) / sqrt(var + eps) per sample and channel over H, W; float32 in and out."""
    return _instance_norm_f32_fwd(x32, eps)[0]


def _instance_norm_f32_fwd(x32, eps):
    mean, var = instance_statistics(x32)
    inv_std = jax.lax.rsqrt(var + eps)
    normalised = (x32 - mean) * inv_std
    return normalised, (normalised, inv_std)


def _instance_norm_f32_bwd(eps, residuals, grad):
    # d/dx of (x - mean) * inv_std, exactly (eps included): inv_std * (g - mean(g) - y * mean(g * y)).
    del eps
    normalised, inv_std = residuals
    n, h, w, c = grad.shape
    mean_grad = (spatial_sums(grad) / (h * w)).reshape(n, 1, 1, c)
    mean_grad_y = (spatial_sums(grad * normalised) / (h * w)).reshape(n, 1, 1, c)
    return (inv_std * (grad - mean_grad - normalised * mean_grad_y),)


_instance_norm_f32.defvjp(_instance_norm_f32_fwd, _instance_norm_f32_bwd)


def instance_norm(x: jax.Array, eps: float = INSTANCE_NORM_EPS) -> jax.Array:
    """InstanceNorm2d without affine parameters. (N,H,W,C) -> same shape and dtype."""
    return _instance_norm_f32(x.astype(jnp.float32), eps).astype(x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _adain_f32(x32: jax.Array, scale: jax.Array, bias: jax.Array, eps: float) -> jax.Array:
    """instance_norm(x) * scale + bias with scale, bias (N, 1, 1, C); float32 throughout."""
    return _adain_f32_fwd(x32, scale, bias, eps)[0]


def _adain_f32_fwd(x32, scale, bias, eps):
    normalised, (_, inv_std) = _instance_norm_f32_fwd(x32, eps)
    return normalised * scale + bias, (normalised, inv_std, scale)


def _adain_f32_bwd(eps, residuals, grad):
    # The scale and bias gradients are the spatial sums of g * y and g; computed as GEMMs they also
    # give the two means of the normalisation's gradient (scaled by `scale`).
    del eps
    normalised, inv_std, scale = residuals
    n, h, w, c = grad.shape
    d_bias = spatial_sums(grad).reshape(n, 1, 1, c)
    d_scale = spatial_sums(grad * normalised).reshape(n, 1, 1, c)
    d_x = inv_std * scale * (grad - d_bias / (h * w) - normalised * (d_scale / (h * w)))
    return d_x, d_scale, d_bias


_adain_f32.defvjp(_adain_f32_fwd, _adain_f32_bwd)


def adain(x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float = INSTANCE_NORM_EPS) -> jax.Array:
    """instance_norm(x) * scale + bias; x (N,H,W,C), scale and bias (N,C). Returns x's shape and dtype."""
    scale32 = scale[:, None, None, :].astype(jnp.float32)
    bias32 = bias[:, None, None, :].astype(jnp.float32)
    return _adain_f32(x.astype(jnp.float32), scale32, bias32, eps).astype(x.dtype)


# ----------------------------------------------------------------------------------------------
# Convolutions.


def _matmul(a: jax.Array, b: jax.Array, contract: tuple[int, int], dtype: Dtype) -> jax.Array:
    """2-D GEMM contracting a's axis contract[0] with b's axis contract[1], float32 accumulation."""
    out = jax.lax.dot_general(a, b, (((contract[0],), (contract[1],)), ((), ())),
                              preferred_element_type=jnp.float32)
    return out.astype(dtype)


def _im2col(xp: jax.Array, kh: int, kw: int) -> jax.Array:
    """Patches of a VALID stride-1 conv. (N,Hp,Wp,C) -> (N*Ho*Wo, kh*kw*C), columns ordered (a, b, c)
    like kernel.reshape(kh*kw*C, Cout)."""
    n, hp, wp, c = xp.shape
    ho, wo = hp - kh + 1, wp - kw + 1
    taps = [xp[:, a:a + ho, b:b + wo, :] for a in range(kh) for b in range(kw)]
    return jnp.concatenate(taps, axis=-1).reshape(n * ho * wo, kh * kw * c)


def _col2im(cols: jax.Array, kh: int, kw: int) -> jax.Array:
    """Adjoint of _im2col: (N,Ho,Wo,kh,kw,C) -> (N,Ho+kh-1,Wo+kw-1,C), the sum of kh*kw shifted slices."""
    out = None
    for a in range(kh):
        for b in range(kw):
            term = jnp.pad(cols[:, :, :, a, b, :], ((0, 0), (a, kh - 1 - a), (b, kw - 1 - b), (0, 0)))
            out = term if out is None else out + term
    return out


# A conv with at most this many output channels is computed as one GEMM to kh*kw*Cout channels
# and a shifted sum: XLA:CPU's direct conv kernel vectorises over output channels and runs the
# final 7x7 64->3 conv ~4x slower (256^2 forward: 38 vs 8 ms).
_FEW_OUTPUT_CHANNELS = 8

# Image rows per step of the few-output-channel forms: their per-pixel matrices have kh*kw*Cout
# columns (147 for the final conv, 0.6 GB at 512^2 in one piece), so they are built and consumed
# one row band at a time, which keeps them in cache and the time per call steady.
_FEW_CHANNEL_ROWS = 32
# Elements of the backward's gradient im2col matrix per band (32 MB in float32): the quickstart's
# final conv (8 x 70 x 70 pixels, 147 rows) takes one band, 256 px two, 512 px five.
_FEW_CHANNEL_COLS = 1 << 23


def _narrows_to_few_channels(kernel: jax.Array) -> bool:
    """Whether a conv takes the few-output-channel forms: at most _FEW_OUTPUT_CHANNELS outputs, fewer
    than its inputs. A conv that widens (the quickstart blender's 7x7 6 -> 8 stem) would write kh*kw*Cout
    products per pixel from Cin values: lax's conv ran its forward 7x and fwd+bwd 2x faster there."""
    cin, cout = kernel.shape[-2:]
    return cout <= _FEW_OUTPUT_CHANNELS and cout < cin


def _few_channel_conv_forward(xp: jax.Array, kernel: jax.Array) -> jax.Array:
    """VALID stride-1 conv with few output channels, by row bands: P = K^T x (kh*kw*Cout values per
    pixel), then y[o, i, j] = sum_{a,b} P[(a, b, o), i + a, j + b]. Channel-major P keeps every
    shifted slice contiguous along W."""
    kh, kw, cin, cout = kernel.shape
    n, hp, wp, _ = xp.shape
    ho, wo = hp - kh + 1, wp - kw + 1
    rows = min(_FEW_CHANNEL_ROWS, ho)
    n_bands = -(-ho // rows)
    xp = jnp.pad(xp, ((0, 0), (0, n_bands * rows - ho), (0, 0), (0, 0)))
    taps = kernel.transpose(0, 1, 3, 2).reshape(kh * kw * cout, cin)

    def band(i, out):
        x_band = jax.lax.dynamic_slice_in_dim(xp, i * rows, rows + kh - 1, axis=1)
        products = _matmul(taps, x_band.reshape(-1, cin), (1, 1), jnp.float32)
        products = products.reshape(kh, kw, cout, n, rows + kh - 1, wp)
        y = None
        for a in range(kh):
            for b in range(kw):
                term = products[a, b, :, :, a:a + rows, b:b + wo]
                y = term if y is None else y + term
        return jax.lax.dynamic_update_slice_in_dim(out, y, i * rows, axis=2)

    # Unrolled, so that XLA's cost analysis counts every band (it counts a loop body once).
    out = jax.lax.fori_loop(0, n_bands, band, jnp.zeros((cout, n, n_bands * rows, wo), jnp.float32), unroll=True)
    return out[:, :, :ho].transpose(1, 2, 3, 0).astype(xp.dtype)  # (Cout, N, Ho, Wo) -> NHWC


def _few_channel_conv_backward(xp: jax.Array, kernel: jax.Array, grad: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Gradients of a few-output-channel VALID conv from the (small-channel) im2col matrix of the
    gradient, G[(a, b, o), p] = grad[o, p - (a, b)] over the padded input grid p:
    d_xp = G^T K and d_kernel = G xp, in row bands of at most _FEW_CHANNEL_COLS elements of G.

    G is built in two passes, kw shifts along W and then kh shifts along H of that stack, each
    slice a few contiguous runs: the kh*kw slices of one pass each became a separate XLA:CPU kernel
    (plus the concatenation), which made the final conv's backward of the quickstart step 30 ms;
    in two passes it is 2x faster there and no slower at 256 and 512 px (README, "Running at scale").
    """
    kh, kw, cin, cout = kernel.shape
    n, hp, wp, _ = xp.shape
    rows_per_band = max(1, _FEW_CHANNEL_COLS // (kh * kw * cout * n * wp))
    grad_t = jnp.transpose(grad, (3, 0, 1, 2))  # (Cout, N, Ho, Wo): slices along W stay contiguous
    grad_t = jnp.pad(grad_t, ((0, 0), (0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1)))
    w_shifts = jnp.stack([grad_t[..., kw - 1 - b:kw - 1 - b + wp] for b in range(kw)])  # (kw, Cout, N, Hp+kh-1, Wp)
    taps = kernel.transpose(0, 1, 3, 2).reshape(kh * kw * cout, cin)
    d_xp_bands, d_taps = [], None
    # Static bands (a Python loop): fori_loop's dynamic slices of the stack ran 2-3x slower.
    for start in range(0, hp, rows_per_band):
        rows = min(rows_per_band, hp - start)
        cols = jnp.stack([w_shifts[:, :, :, start + kh - 1 - a:start + kh - 1 - a + rows] for a in range(kh)])
        cols = cols.reshape(kh * kw * cout, n * rows * wp)  # rows ordered (a, b, o) like `taps`
        d_xp_bands.append(_matmul(cols, taps, (0, 0), jnp.float32).reshape(n, rows, wp, cin))
        band_taps = _matmul(cols, xp[:, start:start + rows].reshape(-1, cin), (1, 0), jnp.float32)
        d_taps = band_taps if d_taps is None else d_taps + band_taps
    d_xp = jnp.concatenate(d_xp_bands, axis=1) if len(d_xp_bands) > 1 else d_xp_bands[0]
    d_kernel = d_taps.reshape(kh, kw, cout, cin).transpose(0, 1, 3, 2)
    return d_xp.astype(xp.dtype), d_kernel.astype(kernel.dtype)


@jax.custom_vjp
def _conv_valid(xp: jax.Array, kernel: jax.Array) -> jax.Array:
    """VALID stride-1 conv (N,Hp,Wp,Cin) x (kh,kw,Cin,Cout) -> (N,Hp-kh+1,Wp-kw+1,Cout), fast forms."""
    if _narrows_to_few_channels(kernel):
        return _few_channel_conv_forward(xp, kernel)
    return lax_conv(xp, kernel)


def _conv_valid_fwd(xp, kernel):
    return _conv_valid(xp, kernel), (xp, kernel)


def _kernel_gradient(xp: jax.Array, kernel: jax.Array, grad: jax.Array) -> jax.Array:
    """d_kernel of a VALID stride-1 conv: lax's kernel-gradient conv, or an im2col GEMM when the patch
    matrix is smaller than the kernel (lax's conv would write the kernel in another layout, then copy it).

    An im2col GEMM for every small patch matrix (up to 4M elements), as this once was, made each of
    the kh*kw slices its own XLA:CPU kernel before the concatenation: at the quickstart's sizes lax's
    conv is 1.3-5x faster for every layer timed, and the DMN step went 0.25-0.27 -> 0.17-0.20 s
    (README, "Running at scale").
    """
    kh, kw, cin, cout = kernel.shape
    n, ho, wo, _ = grad.shape
    if n * ho * wo < cout:
        grad_rows = grad.reshape(n * ho * wo, cout)
        return _matmul(_im2col(xp, kh, kw), grad_rows, (0, 0), kernel.dtype).reshape(kernel.shape)
    _, pullback = jax.vjp(lambda k: lax_conv(xp, k), kernel)
    return pullback(grad)[0]


def _conv_valid_bwd(residuals, grad):
    xp, kernel = residuals
    kh, kw, cin, cout = kernel.shape
    if _narrows_to_few_channels(kernel):
        return _few_channel_conv_backward(xp, kernel, grad)
    n, ho, wo, _ = grad.shape
    if n * ho * wo > 2 * cin:
        _, pullback = jax.vjp(lambda x: lax_conv(x, kernel), xp)
        return pullback(grad)[0], _kernel_gradient(xp, kernel, grad)
    # Few pixels, many channels (the residual blocks): XLA's input-gradient conv spends most of its
    # time flipping and transposing the kernel. As a GEMM instead: every output pixel's gradient
    # times K^T gives its patch's gradient, and the patches add up at their positions (col2im).
    d_cols = _matmul(grad.reshape(n * ho * wo, cout), kernel.reshape(kh * kw * cin, cout), (1, 1), jnp.float32)
    d_xp = _col2im(d_cols.reshape(n, ho, wo, kh, kw, cin), kh, kw).astype(xp.dtype)
    return d_xp, _kernel_gradient(xp, kernel, grad)


_conv_valid.defvjp(_conv_valid_fwd, _conv_valid_bwd)


def _space_to_depth_kernel(kernel: jax.Array) -> jax.Array:
    """(2a, 2b, C, O) kernel of a stride-2 conv -> (a, b, 4C, O) kernel of the equivalent stride-1
    conv over space_to_depth(input): K'[p, q, (r, s, c)] = K[2p + r, 2q + s, c]."""
    kh, kw, c, o = kernel.shape
    k = kernel.reshape(kh // 2, 2, kw // 2, 2, c, o).transpose(0, 2, 1, 3, 4, 5)
    return k.reshape(kh // 2, kw // 2, 4 * c, o)


def _space_to_depth(x: jax.Array) -> jax.Array:
    """(N, 2H, 2W, C) -> (N, H, W, 4C) with channel order (row parity, column parity, c)."""
    n, h, w, c = x.shape
    x = x.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h // 2, w // 2, 4 * c)


def _strided_tap_products(big: jax.Array, small: jax.Array, big_first: bool) -> jax.Array:
    """sum_m big[2m + t]^T small[m] for the 9 taps t of a 3x3 stride-2 window, as 9 GEMMs.

    Args:
      big: (N, 2h+1 or more, 2w+1 or more, Cb), already padded so tap (a, b) of output m is at 2m + (a, b).
      small: (N, h, w, Cs).
      big_first: return (3, 3, Cb, Cs) if True else (3, 3, Cs, Cb).
    """
    n, h, w, cs = small.shape
    cb = big.shape[-1]
    small_rows = small.reshape(n * h * w, cs)
    taps = []
    for a in range(3):
        for b in range(3):
            big_rows = big[:, a:a + 2 * h:2, b:b + 2 * w:2, :].reshape(n * h * w, cb)
            pair = (big_rows, small_rows) if big_first else (small_rows, big_rows)
            taps.append(_matmul(*pair, (0, 0), jnp.float32))
    return jnp.stack(taps).reshape(3, 3, *taps[0].shape)


def _down_conv_plain(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return lax_conv(x, kernel, 2, ((1, 1), (1, 1)))


@jax.custom_vjp
def _down_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """3x3 stride-2 conv with zero padding 1: (N,2h,2w,Cin) -> (N,h,w,Cout)."""
    return _down_conv_plain(x, kernel)


def _down_conv_fwd(x, kernel):
    return _down_conv_plain(x, kernel), (x, kernel)


def _stride2_col2im(cols: jax.Array) -> jax.Array:
    """Adjoint of the 3x3 stride-2 pad-1 patch extraction: adds cols[m, a, b] at input position
    2m - 1 + (a, b). (N,h,w,3,3,C) -> (N,2h,2w,C).

    Each output parity phase collects the taps of that parity (1, 2 or 4 of them, shifted by a//2,
    b//2), so the scatter becomes shifted adds and one interleave.
    """
    n, h, w, _, _, c = cols.shape

    def tap(a: int, b: int) -> jax.Array:
        return jnp.pad(cols[:, :, :, a, b, :], ((0, 0), (a // 2, 1 - a // 2), (b // 2, 1 - b // 2), (0, 0)))

    even_even = tap(0, 0) + tap(0, 2) + tap(2, 0) + tap(2, 2)  # phases of the zero-padded input
    even_odd = tap(0, 1) + tap(2, 1)
    odd_even = tap(1, 0) + tap(1, 2)
    padded = interleave_phases(even_even, even_odd, odd_even, tap(1, 1))  # (N, 2h+2, 2w+2, C)
    return padded[:, 1:2 * h + 1, 1:2 * w + 1]


def _down_conv_bwd(residuals, grad):
    x, kernel = residuals
    n, h, w, cout = grad.shape
    cin = kernel.shape[2]
    # Input gradient: each output pixel's gradient times K^T is its 3x3 patch's gradient (one GEMM
    # reading the kernel as stored; XLA's own gradient conv first flips and transposes the kernel),
    # then the patches add up at their stride-2 positions.
    d_cols = _matmul(grad.reshape(n * h * w, cout), kernel.reshape(9 * cin, cout), (1, 1), jnp.float32)
    d_x = _stride2_col2im(d_cols.reshape(n, h, w, 3, 3, cin)).astype(x.dtype)
    d_kernel = _strided_tap_products(zero_pad(x, 1, 1), grad, big_first=True).astype(kernel.dtype)
    return d_x, d_kernel


_down_conv.defvjp(_down_conv_fwd, _down_conv_bwd)


def conv2d(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None, stride: int = 1,
           padding: int = 0) -> jax.Array:
    """Conv with zero padding and optional bias, in the fastest form for its shape (see module doc).

    Args:
      x: (N, H, W, Cin).
      kernel: (kh, kw, Cin, Cout) HWIO.
      bias: (Cout,) or None.
      stride: 1 or 2 take the fast forms (stride 2 with 3x3/pad 1 or an even kernel); others are plain.
      padding: zero padding on each side of H and W.
    Returns:
      (N, (H + 2p - kh) // s + 1, (W + 2p - kw) // s + 1, Cout) in the dtype of x.
    """
    kh, kw = kernel.shape[:2]
    if stride == 1:
        out = _conv_valid(zero_pad(x, padding, padding), kernel)
    elif stride == 2 and kh == kw == 3 and padding == 1 and x.shape[1] % 2 == 0 and x.shape[2] % 2 == 0:
        out = _down_conv(x, kernel)
    elif stride == 2 and kh % 2 == 0 and kw % 2 == 0:
        # An even kernel at stride 2 reads whole 2x2 cells: a stride-1 conv over space-to-depth cells.
        # An odd padded size (the discriminator's 33 -> 17 -> 9) gets one more zero row or column,
        # whose one extra output row or column is dropped.
        height, width = x.shape[1] + 2 * padding, x.shape[2] + 2 * padding
        xp = jnp.pad(x, ((0, 0), (padding, padding + height % 2), (padding, padding + width % 2), (0, 0)))
        out = _conv_valid(_space_to_depth(xp), _space_to_depth_kernel(kernel))
        out = out[:, :(height - kh) // 2 + 1, :(width - kw) // 2 + 1]
    else:
        out = lax_conv(x, kernel, stride, ((padding, padding), (padding, padding)))
    return add_channel_bias(out, bias)


# ----------------------------------------------------------------------------------------------
# The k3/s2 transposed conv.


@jax.custom_vjp
def _upsample_fast(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return upsample_phases(x, kernel)


def _upsample_fast_fwd(x, kernel):
    return upsample_phases(x, kernel), (x, kernel)


def _upsample_fast_bwd(residuals, grad):
    x, kernel = residuals
    n, h, w, cin = x.shape
    # The adjoint of the transposed conv is the 3x3 stride-2 pad-1 conv with the io-swapped kernel:
    # dx[m] = sum_t grad[2m - 1 + t] kernel[t]^T.
    grad_padded = zero_pad(grad, 1, 1)  # tap t of input pixel m now sits at 2m + t
    if 2 * n * h * w <= cin:
        # Few pixels, wide kernel: 9 GEMMs reading each tap's (Cin, Cout) slab of the kernel as
        # stored, rather than a conv that first transposes the whole kernel.
        d_x = None
        for a in range(3):
            for b in range(3):
                rows = grad_padded[:, a:a + 2 * h:2, b:b + 2 * w:2, :].reshape(n * h * w, -1)
                term = _matmul(rows, kernel[a, b], (1, 1), jnp.float32)
                d_x = term if d_x is None else d_x + term
        d_x = d_x.reshape(n, h, w, cin).astype(x.dtype)
    else:
        d_x = _down_conv_plain(grad, jnp.swapaxes(kernel, 2, 3)).astype(x.dtype)
    # d_kernel[t] = sum_m x[m]^T grad[2m - 1 + t].
    d_kernel = _strided_tap_products(grad_padded, x, big_first=False).astype(kernel.dtype)
    return d_x, d_kernel


_upsample_fast.defvjp(_upsample_fast_fwd, _upsample_fast_bwd)


def upsample_conv_transpose(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None) -> jax.Array:
    """`plain.upsample_phases` plus bias, with a custom VJP: its input gradient is the 3x3 stride-2 conv of
    the output gradient (a fast forward conv), its kernel gradient 9 tap GEMMs; XLA:CPU runs the
    automatic weight gradient of a strided transposed conv ~60x slower. (N,H,W,Cin) -> (N,2H,2W,Cout)."""
    return add_channel_bias(_upsample_fast(x, kernel), bias)
