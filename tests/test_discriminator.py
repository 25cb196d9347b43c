"""Tests of maskgan_jax/models/discriminator.py: PyTorch's size formulas, float64 NumPy goldens."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maskgan_jax.models.discriminator import (
    MultiScaleDiscriminator,
    PatchDiscriminator,
    avg_pool_3x3_s2_exclude_pad,
)

REFERENCE_PARAM_COUNT = 5_568_386  # 22 input channels, num_d 2, n_layers 3, ndf 64


def _count(tree) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def _torch_conv_size(size: int, kernel: int, stride: int, pad: int) -> int:
    """PyTorch Conv2d / AvgPool2d (ceil_mode=False) output size."""
    return (size + 2 * pad - kernel) // stride + 1


def _expected_scale_shapes(n: int, h: int, w: int, n_layers: int, ndf: int):
    """(N, h, w, c) of each feature map of one scale: PyTorch's size formula, pix2pixHD widths."""
    strides = [2] * n_layers + [1, 1]
    widths = [min(ndf * 2**i, 512) for i in range(n_layers + 1)] + [1]
    shapes = []
    for stride, width in zip(strides, widths):
        h, w = _torch_conv_size(h, 4, stride, 2), _torch_conv_size(w, 4, stride, 2)
        shapes.append((n, h, w, width))
    return shapes


# ---------------------------------------------------------------- float64 NumPy reference

def _np_conv(x, kernel, bias, stride, pad):
    """Zero-padded conv, x (N,H,W,Ci), kernel (kh,kw,Ci,Co) -> (N,Ho,Wo,Co), float64."""
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    kh, kw = kernel.shape[:2]
    ho = (x.shape[1] - kh) // stride + 1
    wo = (x.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], ho, wo, kernel.shape[3]))
    for a in range(kh):
        for b in range(kw):
            patch = x[:, a:a + stride * (ho - 1) + 1:stride, b:b + stride * (wo - 1) + 1:stride]
            out += np.einsum("nhwc,co->nhwo", patch, kernel[a, b])
    return out + bias


def _np_instance_norm(x, eps=1e-5):
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = ((x - mean) ** 2).mean(axis=(1, 2), keepdims=True)
    return (x - mean) / np.sqrt(var + eps)


def _np_leaky(x):
    return np.where(x > 0, x, 0.2 * x)


def _np_avg_pool(x):
    """3x3 stride 2 pad 1 average over the in-image pixels of each window, by explicit loops."""
    n, h, w, c = x.shape
    ho, wo = _torch_conv_size(h, 3, 2, 1), _torch_conv_size(w, 3, 2, 1)
    out = np.zeros((n, ho, wo, c))
    for i in range(ho):
        for j in range(wo):
            rows = [r for r in range(2 * i - 1, 2 * i + 2) if 0 <= r < h]
            cols = [q for q in range(2 * j - 1, 2 * j + 2) if 0 <= q < w]
            out[:, i, j] = x[:, rows][:, :, cols].mean(axis=(1, 2))
    return out


def _np_patch_discriminator(x, params, n_layers):
    feats = []
    p = params["conv_0"]
    x = _np_leaky(_np_conv(x, p["kernel"], p["bias"], 2, 2))
    feats.append(x)
    for n in range(1, n_layers + 1):
        p = params[f"conv_{n}"]
        stride = 2 if n < n_layers else 1
        x = _np_leaky(_np_instance_norm(_np_conv(x, p["kernel"], p["bias"], stride, 2)))
        feats.append(x)
    p = params[f"conv_{n_layers + 1}"]
    feats.append(_np_conv(x, p["kernel"], p["bias"], 1, 2))
    return feats


def _randomise(params, seed):
    """Replaces every leaf by random values: kernels ~ N(0, 1/fan_in), biases ~ N(0, 0.5)."""
    leaves, treedef = jax.tree.flatten(params)
    rng = np.random.default_rng(seed)
    new = []
    for leaf in leaves:
        if leaf.ndim == 4:
            fan_in = np.prod(leaf.shape[:3])
            new.append(rng.normal(0, 1 / np.sqrt(fan_in), leaf.shape).astype(np.float32))
        else:
            new.append(rng.normal(0, 0.5, leaf.shape).astype(np.float32))
    return jax.tree.unflatten(treedef, new)


# ---------------------------------------------------------------- tests

def test_reference_param_count_and_layout():
    model = MultiScaleDiscriminator(num_d=2, n_layers=3, ndf=64)
    variables = jax.eval_shape(model.init, jax.random.key(0),
                               jax.ShapeDtypeStruct((1, 512, 512, 22), jnp.float32))
    assert set(variables) == {"params"}
    assert _count(variables["params"]) == REFERENCE_PARAM_COUNT
    kernels = {name: variables["params"]["scale_1"][name]["kernel"].shape
               for name in variables["params"]["scale_1"]}
    assert kernels == {"conv_0": (4, 4, 22, 64), "conv_1": (4, 4, 64, 128),
                       "conv_2": (4, 4, 128, 256), "conv_3": (4, 4, 256, 512),
                       "conv_4": (4, 4, 512, 1)}


@pytest.mark.parametrize("shape", [(2, 512, 512, 22), (1, 101, 74, 22)])
def test_output_shapes_follow_pytorch_formula(shape):
    model = MultiScaleDiscriminator(num_d=3, n_layers=3, ndf=64)
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    outputs = jax.eval_shape(model.apply, variables, x)
    n, h, w, _ = shape
    assert len(outputs) == 3
    for scale_outputs in outputs:
        got = [tuple(f.shape) for f in scale_outputs]
        assert got == _expected_scale_shapes(n, h, w, 3, 64)
        h, w = _torch_conv_size(h, 3, 2, 1), _torch_conv_size(w, 3, 2, 1)
    if shape[1] == 512:  # the sizes pix2pixHD prints at 512x512
        assert [f.shape[1] for f in outputs[0]] == [257, 129, 65, 66, 67]
        assert [f.shape[1] for f in outputs[1]] == [129, 65, 33, 34, 35]


def test_widths_capped_at_512():
    model = PatchDiscriminator(n_layers=2, ndf=300)
    variables = jax.eval_shape(model.init, jax.random.key(0),
                               jax.ShapeDtypeStruct((1, 32, 32, 5), jnp.float32))
    widths = [variables["params"][f"conv_{i}"]["kernel"].shape[-1] for i in range(4)]
    assert widths == [300, 512, 512, 1]


@pytest.mark.parametrize("shape", [(2, 7, 6, 3), (1, 8, 9, 2), (1, 1, 2, 1)])
def test_avg_pool_excludes_padding(shape):
    x = np.random.default_rng(1).normal(size=shape)
    got = np.asarray(avg_pool_3x3_s2_exclude_pad(jnp.asarray(x, jnp.float32)))
    want = _np_avg_pool(x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    if shape[1] > 1 and shape[2] > 1:  # the top-left window covers 4 pixels, not 9
        np.testing.assert_allclose(got[:, 0, 0], x[:, :2, :2].mean(axis=(1, 2)), rtol=1e-5)


def test_forward_matches_numpy_float64():
    model = MultiScaleDiscriminator(num_d=2, n_layers=3, ndf=4)
    x = np.random.default_rng(2).normal(size=(2, 21, 18, 5))
    params = _randomise(model.init(jax.random.key(0), jnp.zeros(x.shape))["params"], seed=3)
    outputs = model.apply({"params": params}, jnp.asarray(x, jnp.float32))
    params64 = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    want = [_np_patch_discriminator(x, params64["scale_0"], 3),
            _np_patch_discriminator(_np_avg_pool(x), params64["scale_1"], 3)]
    assert len(outputs) == 2
    for got_scale, want_scale in zip(outputs, want):
        assert len(got_scale) == len(want_scale) == 5
        for got, ref in zip(got_scale, want_scale):
            assert got.shape == ref.shape
            np.testing.assert_allclose(np.asarray(got), ref, rtol=2e-4, atol=2e-4)


def test_gradients_finite_nonzero_except_biases_before_instance_norm():
    n_layers = 3
    model = MultiScaleDiscriminator(num_d=2, n_layers=n_layers, ndf=4)
    x = jnp.asarray(np.random.default_rng(4).normal(size=(2, 24, 24, 5)), jnp.float32)
    params = _randomise(model.init(jax.random.key(0), x)["params"], seed=5)
    outputs = model.apply({"params": params}, x)
    # A fixed random projection of every feature map, so every layer's output drives the loss.
    rng = np.random.default_rng(6)
    weights = [[jnp.asarray(rng.normal(size=f.shape), jnp.float32) for f in s] for s in outputs]

    def loss(p):
        outs = model.apply({"params": p}, x)
        return sum(jnp.sum(f * w) for s, ws in zip(outs, weights) for f, w in zip(s, ws))

    grads = jax.grad(loss)(params)
    cancelled = {f"conv_{n}" for n in range(1, n_layers + 1)}  # conv then InstanceNorm
    kept_bias_scale = max(float(jnp.max(jnp.abs(grads[s][c]["bias"])))
                          for s in grads for c in grads[s] if c not in cancelled)
    for scale in grads:
        for conv, leaves in grads[scale].items():
            for name, g in leaves.items():
                g = np.asarray(g)
                assert np.all(np.isfinite(g)), (scale, conv, name)
                if name == "bias" and conv in cancelled:
                    # InstanceNorm subtracts the per-channel mean, so a per-channel bias has no
                    # effect: its gradient is float32 rounding noise (~1e-7 of the others here).
                    assert np.max(np.abs(g)) < 1e-4 * kept_bias_scale, (scale, conv)
                else:
                    assert np.all(g != 0), (scale, conv, name)
                    assert np.linalg.norm(g) > 1e-3 * kept_bias_scale, (scale, conv, name)


def test_rejects_bad_fields():
    x = jnp.zeros((1, 16, 16, 3))
    with pytest.raises(ValueError, match="num_d"):
        MultiScaleDiscriminator(num_d=0).init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="n_layers"):
        MultiScaleDiscriminator(n_layers=0).init(jax.random.key(0), x)
