"""Golden checks of the shared layers against float64 NumPy references written from the design doc."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maskgan_jax.models import layers


def _rng(seed=0):
    return np.random.default_rng(seed)


def np_instance_norm(x, eps=1e-5):
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = ((x - mean) ** 2).mean(axis=(1, 2), keepdims=True)
    return (x - mean) / np.sqrt(var + eps)


def np_conv_valid(x, k, stride=1):
    """Direct NHWC/HWIO cross-correlation, float64."""
    kh, kw, _, co = k.shape
    n, h, w, _ = x.shape
    ho, wo = (h - kh) // stride + 1, (w - kw) // stride + 1
    out = np.zeros((n, ho, wo, co))
    for i in range(ho):
        for j in range(wo):
            patch = x[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
            out[:, i, j, :] = np.einsum("nhwc,hwco->no", patch, k)
    return out


def np_conv_transpose_scatter(x, w_torch, bias, stride=2, pad=1, output_padding=1):
    """PyTorch ConvTranspose2d by its definition: scatter-add every input pixel through the kernel.

    w_torch: (Cin, Cout, k, k) as PyTorch stores it.
    """
    n, h, w, _ = x.shape
    k = w_torch.shape[2]
    full_h = (h - 1) * stride + k + output_padding
    full_w = (w - 1) * stride + k + output_padding
    out = np.zeros((n, full_h, full_w, w_torch.shape[1]))
    for iy in range(h):
        for ix in range(w):
            for ky in range(k):
                for kx in range(k):
                    out[:, iy * stride + ky, ix * stride + kx] += x[:, iy, ix] @ w_torch[:, :, ky, kx]
    out_h = (h - 1) * stride - 2 * pad + k + output_padding
    out_w = (w - 1) * stride - 2 * pad + k + output_padding
    return out[:, pad:pad + out_h, pad:pad + out_w] + bias


def test_instance_norm_matches_float64_reference():
    x = _rng().normal(2.0, 3.0, (2, 5, 6, 4))
    got = layers.instance_norm(jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(np.asarray(got), np_instance_norm(x), atol=2e-5)


def test_adain_uses_scale_as_given_and_reference_statistics():
    rng = _rng(1)
    x = rng.normal(size=(2, 4, 4, 3))
    scale, bias = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    got = layers.adain(jnp.asarray(x, jnp.float32), jnp.asarray(scale, jnp.float32), jnp.asarray(bias, jnp.float32))
    want = np_instance_norm(x) * scale[:, None, None] + bias[:, None, None]
    np.testing.assert_allclose(np.asarray(got), want, atol=3e-5)


def test_sft_is_features_times_scale_plus_shift():
    rng = _rng(2)
    c = 4
    feat, cond = rng.normal(size=(1, 3, 3, c)), rng.normal(size=(1, 3, 3, c))
    module = layers.SFT(c)
    params = module.init(jax.random.key(0), jnp.asarray(feat, jnp.float32), jnp.asarray(cond, jnp.float32))
    got = module.apply(params, jnp.asarray(feat, jnp.float32), jnp.asarray(cond, jnp.float32))
    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params["params"])

    def branch(name):
        h = cond @ p[f"{name}_conv1"]["kernel"][0, 0] + p[f"{name}_conv1"]["bias"]
        h = np.where(h > 0, h, 0.1 * h)
        return h @ p[f"{name}_conv2"]["kernel"][0, 0] + p[f"{name}_conv2"]["bias"]

    np.testing.assert_allclose(np.asarray(got), feat * branch("scale") + branch("shift"), atol=1e-5)


def test_sft_rejects_mismatched_shapes():
    module = layers.SFT(2)
    with pytest.raises(ValueError, match="one shape"):
        module.init(jax.random.key(0), jnp.zeros((1, 4, 4, 2)), jnp.zeros((1, 2, 2, 2)))


def test_reflect_pad_matches_pytorch_reflection():
    x = np.arange(2 * 4 * 5 * 1, dtype=np.float32).reshape(2, 4, 5, 1)
    got = np.asarray(layers.reflect_pad(jnp.asarray(x), 2))
    # ReflectionPad2d mirrors without repeating the edge: row -1 is row 1, row -2 is row 2.
    rows = [2, 1, 0, 1, 2, 3, 2, 1]
    cols = [2, 1, 0, 1, 2, 3, 4, 3, 2]
    np.testing.assert_array_equal(got, x[:, rows][:, :, cols])


def test_reflect_conv_shape_and_values():
    rng = _rng(3)
    x = rng.normal(size=(1, 8, 8, 2))
    module = layers.ReflectConv(3, 4, strides=2, padding=1)
    params = module.init(jax.random.key(1), jnp.asarray(x, jnp.float32))
    got = module.apply(params, jnp.asarray(x, jnp.float32))
    k = np.asarray(params["params"]["conv"]["kernel"], np.float64)
    b = np.asarray(params["params"]["conv"]["bias"], np.float64)
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    np.testing.assert_allclose(np.asarray(got), np_conv_valid(padded, k, 2) + b, atol=1e-5)
    assert got.shape == (1, 4, 4, 3)


@pytest.mark.parametrize("h,w", [(3, 4), (5, 5)])
def test_upsample_conv_transpose_equals_scatter_definition(h, w):
    rng = _rng(4)
    cin, cout = 3, 2
    x = rng.normal(size=(2, h, w, cin))
    w_torch = rng.normal(size=(cin, cout, 3, 3))
    bias = rng.normal(size=(cout,))
    kernel = w_torch.transpose(2, 3, 0, 1)  # the UpConv layout (no flip)
    got = layers.upsample_conv_transpose(jnp.asarray(x, jnp.float32), jnp.asarray(kernel, jnp.float32),
                                         jnp.asarray(bias, jnp.float32))
    want = np_conv_transpose_scatter(x, w_torch, bias)
    assert got.shape == (2, 2 * h, 2 * w, cout) == want.shape
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)


def test_upsample_conv_transpose_gradient_matches_lax_transpose():
    """The phase form's gradients equal those of XLA's own transposed conv (the slow form)."""
    rng = _rng(5)
    x = jnp.asarray(rng.normal(size=(1, 4, 4, 3)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(3, 3, 3, 2)), jnp.float32)

    def slow(x, kernel):
        # Transposed conv = dilated conv with the flipped kernel, padding ((1, 2), (1, 2)).
        return jax.lax.conv_general_dilated(x, kernel[::-1, ::-1], (1, 1), ((1, 2), (1, 2)), lhs_dilation=(2, 2),
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def loss(f):
        return lambda x, k: jnp.sum(jnp.sin(f(x, k)))

    fast_grads = jax.grad(loss(layers.upsample_conv_transpose), argnums=(0, 1))(x, kernel)
    slow_grads = jax.grad(loss(slow), argnums=(0, 1))(x, kernel)
    for got, want in zip(fast_grads, slow_grads):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-4)


def test_upconv_parameter_count_equals_pytorch_layer():
    module = layers.UpConv(5)
    variables = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 2, 2, 7)))
    assert variables["params"]["kernel"].shape == (3, 3, 7, 5)
    assert variables["params"]["bias"].shape == (5,)
