"""Tests of maskgan_jax/models/mask_vae.py: reference sizes, a float64 NumPy forward, BatchNorm
modes and running statistics, the 'reparam' rng stream, gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maskgan_jax.models.mask_vae import MaskVAE

# The lead's count of the reference MaskVAE at 512 (19 classes, latent 1024, widths 32..2048).
REFERENCE_PARTS = {
    "enc_convs": 44_742_112,
    "enc_bns": 8_128,
    "enc_mean+enc_logvar": 67_110_912,
    "dec_fc": 33_587_200,
    "dec_convs": 25_161_696,
    "dec_bns": 4_032,
    "dec_out": 5_491,
}
REFERENCE_TOTAL = 170_619_571

# Tiny model: widths [4, 8, 8] (capped), encoder 32 -> 4 in 3 blocks, decoder 2 blocks + head.
TINY = dict(num_classes=5, resolution=32, latent_dim=6, base_width=4, max_width=8)
TINY_WIDTHS = [4, 8, 8]


def _count(tree) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def _init_shapes(model: MaskVAE, batch: int = 2):
    mask = jax.ShapeDtypeStruct((batch, model.resolution, model.resolution, model.num_classes),
                                jnp.float32)
    return jax.eval_shape(
        lambda m: model.init({"params": jax.random.key(0), "reparam": jax.random.key(1)}, m,
                             False), mask), mask


def _random_onehot(shape, num_classes, seed):
    labels = np.random.default_rng(seed).integers(0, num_classes, size=shape)
    return np.eye(num_classes)[labels]


def _random_variables(model: MaskVAE, seed: int):
    """Initialised variables, every leaf replaced by random values (non-trivial running stats)."""
    x = jnp.zeros((1, model.resolution, model.resolution, model.num_classes))
    variables = model.init({"params": jax.random.key(0), "reparam": jax.random.key(1)}, x, False)
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = path[-1].key
        if name == "kernel":
            fan_in = np.prod(leaf.shape[:-1])
            value = rng.normal(0, 1 / np.sqrt(fan_in), leaf.shape)
        elif name == "scale":
            value = rng.uniform(0.5, 1.5, leaf.shape)
        elif name == "var":
            value = rng.uniform(0.5, 2.0, leaf.shape)
        else:  # bias, running mean
            value = rng.normal(0, 0.5, leaf.shape)
        return jnp.asarray(value, jnp.float32)

    return jax.tree_util.tree_map_with_path(fill, variables)


# ---------------------------------------------------------------- float64 NumPy reference

def _np_conv(x, kernel, bias, stride):
    """VALID conv after explicit padding, x (N,H,W,Ci), kernel (kh,kw,Ci,Co), float64."""
    kh, kw = kernel.shape[:2]
    ho = (x.shape[1] - kh) // stride + 1
    wo = (x.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], ho, wo, kernel.shape[3]))
    for a in range(kh):
        for b in range(kw):
            patch = x[:, a:a + stride * (ho - 1) + 1:stride, b:b + stride * (wo - 1) + 1:stride]
            out += np.einsum("nhwc,co->nhwo", patch, kernel[a, b])
    return out + bias


def _np_upsample_edge_pad(x):
    """Nearest x2 then replication pad 1, by index arithmetic: padded index i reads
    upsampled index clip(i - 1, 0, 2H - 1), which reads input index that // 2."""
    h, w = x.shape[1:3]
    rows = np.clip(np.arange(2 * h + 2) - 1, 0, 2 * h - 1) // 2
    cols = np.clip(np.arange(2 * w + 2) - 1, 0, 2 * w - 1) // 2
    return x[:, rows][:, :, cols]


class _NpBatchNorm:
    """BatchNorm2d in float64; in train mode records the running-statistics update."""

    def __init__(self, train, momentum=0.9, eps=1e-5):
        self.train, self.momentum, self.eps = train, momentum, eps
        self.updated = {}

    def __call__(self, x, params, stats, name):
        if self.train:
            mean = x.mean(axis=(0, 1, 2))
            var = x.var(axis=(0, 1, 2))  # biased, as used for normalising
            self.updated[name] = {
                "mean": self.momentum * stats["mean"] + (1 - self.momentum) * mean,
                "var": self.momentum * stats["var"] + (1 - self.momentum) * var}
        else:
            mean, var = stats["mean"], stats["var"]
        return (x - mean) / np.sqrt(var + self.eps) * params["scale"] + params["bias"]


def _np_leaky(x):
    return np.where(x > 0, x, 0.2 * x)


def _np_encode(x, params, stats, bn, n_blocks):
    for i in range(n_blocks):
        p = params[f"enc_convs_{i}"]
        x = _np_conv(np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))), p["kernel"], p["bias"], 2)
        x = _np_leaky(bn(x, params[f"enc_bns_{i}"], stats[f"enc_bns_{i}"], f"enc_bns_{i}"))
    flat = x.reshape(x.shape[0], -1)
    heads = [params["enc_mean"], params["enc_logvar"]]
    return tuple(flat @ p["kernel"] + p["bias"] for p in heads)


def _np_decode(z, params, stats, bn, n_blocks):
    x = z @ params["dec_fc"]["kernel"] + params["dec_fc"]["bias"]
    x = x.reshape(z.shape[0], 4, 4, -1)
    for j in range(n_blocks - 1):
        p = params[f"dec_convs_{j}"]
        x = _np_conv(_np_upsample_edge_pad(x), p["kernel"], p["bias"], 1)
        x = _np_leaky(bn(x, params[f"dec_bns_{j}"], stats[f"dec_bns_{j}"], f"dec_bns_{j}"))
    p = params["dec_out"]
    return _np_conv(_np_upsample_edge_pad(x), p["kernel"], p["bias"], 1)


def _f64(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


# ---------------------------------------------------------------- tests

def test_reference_param_count():
    variables, _ = _init_shapes(MaskVAE())
    params = variables["params"]
    parts = {
        "enc_convs": _count({k: v for k, v in params.items() if k.startswith("enc_convs_")}),
        "enc_bns": _count({k: v for k, v in params.items() if k.startswith("enc_bns_")}),
        "enc_mean+enc_logvar": _count([params["enc_mean"], params["enc_logvar"]]),
        "dec_fc": _count(params["dec_fc"]),
        "dec_convs": _count({k: v for k, v in params.items() if k.startswith("dec_convs_")}),
        "dec_bns": _count({k: v for k, v in params.items() if k.startswith("dec_bns_")}),
        "dec_out": _count(params["dec_out"]),
    }
    assert parts == REFERENCE_PARTS
    assert _count(params) == REFERENCE_TOTAL
    # Running mean and variance of 7 encoder and 6 decoder BatchNorms.
    assert _count(variables["batch_stats"]) == 2 * (4064 + 2016)
    assert params["enc_convs_6"]["kernel"].shape == (4, 4, 1024, 2048)
    assert params["dec_fc"]["kernel"].shape == (1024, 4 * 4 * 2048)
    assert params["dec_convs_0"]["kernel"].shape == (3, 3, 2048, 1024)
    assert params["dec_out"]["kernel"].shape == (3, 3, 32, 19)


def test_reference_output_shapes():
    model = MaskVAE()
    variables, mask = _init_shapes(model, batch=2)
    logits, mean, logvar = jax.eval_shape(
        lambda v, m: model.apply(v, m, False, rngs={"reparam": jax.random.key(0)}),
        variables, mask)
    assert logits.shape == (2, 512, 512, 19) and logits.dtype == jnp.float32
    assert mean.shape == logvar.shape == (2, 1024)
    enc = jax.eval_shape(lambda v, m: model.apply(v, m, False, method=MaskVAE.encode),
                         variables, mask)
    assert [a.shape for a in enc] == [(2, 1024), (2, 1024)]
    z = jax.ShapeDtypeStruct((3, 1024), jnp.float32)
    dec = jax.eval_shape(lambda v, z: model.apply(v, z, False, method=MaskVAE.decode),
                         variables, z)
    assert dec.shape == (3, 512, 512, 19)


def test_tiny_layout_follows_resolution_and_width_cap():
    variables, _ = _init_shapes(MaskVAE(**TINY))
    params = variables["params"]
    enc = [params[f"enc_convs_{i}"]["kernel"].shape for i in range(3)]
    assert enc == [(4, 4, 5, 4), (4, 4, 4, 8), (4, 4, 8, 8)]
    assert "enc_convs_3" not in params
    assert params["enc_mean"]["kernel"].shape == (4 * 4 * 8, 6)
    assert params["dec_fc"]["kernel"].shape == (6, 4 * 4 * 8)
    dec = [params[f"dec_convs_{j}"]["kernel"].shape for j in range(2)]
    assert dec == [(3, 3, 8, 8), (3, 3, 8, 4)]
    assert "dec_convs_2" not in params
    assert params["dec_out"]["kernel"].shape == (3, 3, 4, 5)


@pytest.mark.parametrize("train", [True, False])
def test_encode_decode_match_numpy_float64(train):
    model = MaskVAE(**TINY)
    variables = _random_variables(model, seed=1)
    mask = _random_onehot((3, 32, 32), 5, seed=2)
    z = np.random.default_rng(3).normal(size=(3, 6))

    (mean, logvar), enc_updates = model.apply(
        variables, jnp.asarray(mask, jnp.float32), train, method=MaskVAE.encode,
        mutable=["batch_stats"])
    logits, dec_updates = model.apply(
        variables, jnp.asarray(z, jnp.float32), train, method=MaskVAE.decode,
        mutable=["batch_stats"])

    params, stats = _f64(variables["params"]), _f64(variables["batch_stats"])
    bn = _NpBatchNorm(train)
    want_mean, want_logvar = _np_encode(mask, params, stats, bn, 3)
    want_logits = _np_decode(z, params, stats, bn, 3)
    np.testing.assert_allclose(np.asarray(mean), want_mean, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(logvar), want_logvar, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(logits), want_logits, rtol=1e-4, atol=1e-4)

    # Each apply returns the whole collection; take each half from the call that ran it.
    new_stats = {
        name: (enc_updates if name.startswith("enc_") else dec_updates)["batch_stats"][name]
        for name in variables["batch_stats"]}
    if train:  # running stats move by momentum 0.9 towards the batch's (biased) statistics
        assert set(new_stats) == set(bn.updated)
        for name, want in bn.updated.items():
            for key in ("mean", "var"):
                np.testing.assert_allclose(np.asarray(new_stats[name][key]), want[key],
                                           rtol=1e-4, atol=1e-5, err_msg=f"{name}/{key}")
    else:  # eval mode leaves them unchanged
        for name in new_stats:
            for key in ("mean", "var"):
                np.testing.assert_array_equal(new_stats[name][key],
                                              variables["batch_stats"][name][key])


def test_eval_mode_is_per_sample_train_mode_is_not():
    model = MaskVAE(**TINY)
    variables = _random_variables(model, seed=4)
    masks = jnp.asarray(_random_onehot((2, 32, 32), 5, seed=5), jnp.float32)
    other = jnp.asarray(_random_onehot((1, 32, 32), 5, seed=6), jnp.float32)
    swapped = masks.at[1].set(other[0])
    encode = lambda m, train: model.apply(
        variables, m, train, method=MaskVAE.encode, mutable=["batch_stats"])[0][0]
    # Running statistics: sample 0's posterior ignores the rest of the batch.
    np.testing.assert_array_equal(encode(masks, False)[0], encode(swapped, False)[0])
    # Batch statistics: it does not.
    assert not np.allclose(encode(masks, True)[0], encode(swapped, True)[0], atol=1e-3)


def test_reparameterisation_uses_reparam_stream():
    model = MaskVAE(**TINY)
    variables = _random_variables(model, seed=7)
    mask = jnp.asarray(_random_onehot((2, 32, 32), 5, seed=8), jnp.float32)

    def run(key):
        return model.apply(variables, mask, False, rngs={"reparam": key})

    logits_a, mean, logvar = run(jax.random.key(10))
    logits_a2, _, _ = run(jax.random.key(10))
    logits_b, mean_b, _ = run(jax.random.key(11))
    np.testing.assert_array_equal(logits_a, logits_a2)
    np.testing.assert_array_equal(mean, mean_b)  # the posterior does not depend on the key
    assert not np.allclose(logits_a, logits_b, atol=1e-3)

    # __call__ == decode(mean + eps * exp(logvar / 2)) with eps drawn by sample_latent.
    z = model.apply(variables, mean, logvar, method=MaskVAE.sample_latent,
                    rngs={"reparam": jax.random.key(10)})
    np.testing.assert_allclose(
        logits_a, model.apply(variables, z, False, method=MaskVAE.decode), rtol=1e-6, atol=1e-6)

    with pytest.raises(Exception, match="reparam"):
        model.apply(variables, mask, False)


def test_sample_latent_distribution():
    model = MaskVAE(**TINY)
    mean = jnp.full((4000, 6), 3.0)
    logvar = jnp.full((4000, 6), np.log(4.0))
    z = np.asarray(model.apply({}, mean, logvar, method=MaskVAE.sample_latent,
                               rngs={"reparam": jax.random.key(0)}))
    # 24,000 draws of N(3, 2^2): standard errors 0.013 (mean) and 0.009 (std).
    assert abs(z.mean() - 3.0) < 0.06
    assert abs(z.std() - 2.0) < 0.05


def test_gradients_finite_nonzero_except_biases_before_batchnorm():
    model = MaskVAE(**TINY)
    variables = _random_variables(model, seed=9)
    mask = jnp.asarray(_random_onehot((3, 32, 32), 5, seed=10), jnp.float32)
    rng = np.random.default_rng(11)
    w_logits = jnp.asarray(rng.normal(size=(3, 32, 32, 5)), jnp.float32)
    w_mean, w_logvar = (jnp.asarray(rng.normal(size=(3, 6)), jnp.float32) for _ in range(2))

    def loss(params):
        (logits, mean, logvar), _ = model.apply(
            {"params": params, "batch_stats": variables["batch_stats"]}, mask, True,
            rngs={"reparam": jax.random.key(0)}, mutable=["batch_stats"])
        return jnp.sum(logits * w_logits) + jnp.sum(mean * w_mean) + jnp.sum(logvar * w_logvar)

    grads = jax.grad(loss)(variables["params"])
    # Conv then BatchNorm (train mode): the per-channel bias is removed with the batch mean.
    cancelled = {f"enc_convs_{i}" for i in range(3)} | {f"dec_convs_{j}" for j in range(2)}
    kept_bias_scale = max(float(jnp.max(jnp.abs(g["bias"])))
                          for name, g in grads.items() if name not in cancelled)
    for name, leaves in grads.items():
        for leaf_name, g in leaves.items():
            g = np.asarray(g)
            assert np.all(np.isfinite(g)), (name, leaf_name)
            if leaf_name == "bias" and name in cancelled:
                assert np.max(np.abs(g)) < 1e-4 * kept_bias_scale, name
            else:
                assert np.all(g != 0), (name, leaf_name)
                assert np.linalg.norm(g) > 1e-3 * kept_bias_scale, (name, leaf_name)


def test_rejects_bad_shapes_and_fields():
    model = MaskVAE(**TINY)
    variables = _random_variables(model, seed=12)
    with pytest.raises(ValueError, match="resolution"):
        model.apply(variables, jnp.zeros((1, 16, 16, 5)), False, method=MaskVAE.encode)
    with pytest.raises(ValueError, match="latent_dim"):
        model.apply(variables, jnp.zeros((1, 7)), False, method=MaskVAE.decode)
    with pytest.raises(ValueError, match="power of two"):
        MaskVAE(**{**TINY, "resolution": 48}).init(
            {"params": jax.random.key(0), "reparam": jax.random.key(1)},
            jnp.zeros((1, 48, 48, 5)), False)
