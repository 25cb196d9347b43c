"""The XLA:CPU-fast forms of the layers (custom VJPs, GEMM forms, dot-with-ones sums) against the plain
forms with JAX autodiff and against float64 references written here with plain lax ops: values and
gradients, float32 and bfloat16. Each case's shapes are chosen to take one specific code path."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maskgan_jax import ops
from maskgan_jax.ops import cpu
from maskgan_jax.models import DenseMappingNetwork, layers, one_hot_mask

DN = ("NHWC", "HWIO", "NHWC")


def _ref_conv(x, kernel, stride=1, zero_pad=0, reflect=0):
    if reflect:
        x = jnp.pad(x, ((0, 0), (reflect, reflect), (reflect, reflect), (0, 0)), mode="reflect")
    pad = ((zero_pad, zero_pad), (zero_pad, zero_pad))
    return jax.lax.conv_general_dilated(x, kernel, (stride, stride), pad, dimension_numbers=DN,
                                        precision=jax.lax.Precision.HIGHEST)


def _ref_conv_transpose(x, kernel):
    # PyTorch ConvTranspose2d(k3, s2, p1, op1) as a dilated conv with the flipped kernel (design doc, section 6).
    return jax.lax.conv_general_dilated(x, kernel[::-1, ::-1], (1, 1), ((1, 2), (1, 2)), lhs_dilation=(2, 2),
                                        dimension_numbers=DN, precision=jax.lax.Precision.HIGHEST)


def _ref_instance_norm(x):
    mean = jnp.mean(x, axis=(1, 2), keepdims=True)
    var = jnp.mean((x - mean) ** 2, axis=(1, 2), keepdims=True)
    return (x - mean) / jnp.sqrt(var + 1e-5)


# name -> (layer function under test, float64 reference, x shape, second-argument shape).
# The comments name the code path the shapes select (see maskgan_jax.ops.cpu).
CASES = {
    # 3x3 stride 1, 12 pixels <= 2 * 16 input channels: GEMM + col2im input gradient; 12 pixels < 20
    # output channels: im2col GEMM kernel gradient.
    "conv3x3_few_pixels": (lambda x, k: layers.conv2d(layers.reflect_pad(x, 1), k),
                           lambda x, k: _ref_conv(x, k, reflect=1), (1, 3, 4, 16), (3, 3, 16, 20)),
    # As above with 16 pixels >= 12 output channels: lax's kernel gradient.
    "conv3x3_few_pixels_more_outputs": (lambda x, k: layers.conv2d(layers.reflect_pad(x, 1), k),
                                        lambda x, k: _ref_conv(x, k, reflect=1), (1, 4, 4, 16), (3, 3, 16, 12)),
    # Many pixels and 130 input channels: lax's input and kernel gradients.
    "conv3x3_large_patches_lax_dk": (lambda x, k: layers.conv2d(x, k), lambda x, k: _ref_conv(x, k),
                                     (1, 64, 64, 130), (3, 3, 130, 9)),
    # 3x3 stride 1 with zero padding, many pixels, 3 input channels: lax's input and kernel gradients.
    "conv3x3_many_pixels": (lambda x, k: layers.conv2d(x, k, padding=1),
                            lambda x, k: _ref_conv(x, k, zero_pad=1), (2, 8, 7, 3), (3, 3, 3, 16)),
    # 7x7 to 3 output channels: one GEMM to 7*7*3 channels and shifted sums; backward from the gradient's
    # im2col; 37 rows make two forward row bands of 32 with a ragged last one (backward bands: below).
    "conv7x7_few_outputs": (lambda x, k: layers.conv2d(layers.reflect_pad(x, 3), k),
                            lambda x, k: _ref_conv(x, k, reflect=3), (2, 37, 6, 5), (7, 7, 5, 3)),
    # 7x7 widening 3 -> 5 channels: lax's conv and gradients (few outputs, but more than inputs).
    "conv7x7_few_outputs_widening": (lambda x, k: layers.conv2d(layers.reflect_pad(x, 3), k),
                                     lambda x, k: _ref_conv(x, k, reflect=3), (2, 9, 6, 3), (7, 7, 3, 5)),
    # 3x3 stride 2 zero pad 1 (down path): GEMM + stride-2 col2im input gradient, tap-GEMM kernel gradient.
    "down3x3_stride2": (lambda x, k: layers.conv2d(x, k, stride=2, padding=1),
                        lambda x, k: _ref_conv(x, k, stride=2, zero_pad=1), (2, 8, 6, 5), (3, 3, 5, 7)),
    # 4x4 stride 2 after reflect pad 1 (encoders): 2x2 stride-1 conv over space-to-depth cells.
    "conv4x4_stride2": (lambda x, k: layers.conv2d(layers.reflect_pad(x, 1), k, stride=2),
                        lambda x, k: _ref_conv(x, k, stride=2, reflect=1), (2, 12, 10, 3), (4, 4, 3, 10)),
    # 4x4 stride 2 zero pad 2 on odd sizes (the discriminator's 33 -> 17): one more zero row and
    # column make whole space-to-depth cells; the extra output row and column are dropped.
    "conv4x4_stride2_odd": (lambda x, k: layers.conv2d(x, k, stride=2, padding=2),
                            lambda x, k: _ref_conv(x, k, stride=2, zero_pad=2), (2, 9, 7, 5), (4, 4, 5, 6)),
    # Transposed conv, many pixels: input gradient by the stride-2 lax conv.
    "upsample_many_pixels": (layers.upsample_conv_transpose, _ref_conv_transpose, (2, 3, 4, 5), (3, 3, 5, 6)),
    # Transposed conv, 2 * 6 pixels <= 12 channels: input gradient as 9 tap GEMMs.
    "upsample_few_pixels": (layers.upsample_conv_transpose, _ref_conv_transpose, (1, 2, 3, 12), (3, 3, 12, 5)),
    # A per-channel multiplier makes the gradient depend on every channel; it is applied in float32 so
    # that its own bfloat16 rounding does not hide the layer's (likewise for the large map below).
    "instance_norm": (lambda x, s: layers.instance_norm(x).astype(jnp.float32) * s.astype(jnp.float32),
                      lambda x, s: _ref_instance_norm(x) * s, (2, 5, 6, 4), (4,)),
    "adain": (lambda x, p: layers.adain(x, p[:2], p[2:]),
              lambda x, p: _ref_instance_norm(x) * p[:2, None, None] + p[2:, None, None], (2, 5, 6, 3), (4, 3)),
    "channel_bias": (ops.add_channel_bias, lambda x, b: x + b, (2, 5, 6, 4), (4,)),
    # From 2^20 elements the per-channel sums run as a GEMM with rows of ones.
    "instance_norm_large_map": (lambda x, s: layers.instance_norm(x).astype(jnp.float32) * s.astype(jnp.float32),
                                lambda x, s: _ref_instance_norm(x) * s, (2, 128, 64, 64), (64,)),
    "channel_bias_large_map": (ops.add_channel_bias, lambda x, b: x + b, (2, 128, 64, 64), (64,)),
}


def _case_arrays(name):
    _, _, x_shape, k_shape = CASES[name]
    rng = np.random.default_rng(sorted(CASES).index(name))
    x = rng.normal(1.0, 2.0, x_shape)  # a non-zero mean exercises the normalisation gradients
    k = rng.normal(size=k_shape)
    return x, k


def _value_and_vjp(fn, x, k, cotangent_seed=1234):
    y, pullback = jax.vjp(fn, x, k)
    cotangent = np.random.default_rng(cotangent_seed).normal(size=y.shape)
    return (y, *pullback(jnp.asarray(cotangent, y.dtype)))


def _fast_and_plain(name, dtype=jnp.float32):
    fn, _, _, _ = CASES[name]
    x, k = _case_arrays(name)
    results = {}
    for forms in ("fast", "plain"):
        with ops.layer_forms(forms):
            # A fresh function per form: the forms are read when JAX traces.
            step = jax.jit(lambda a, b: _value_and_vjp(fn, a, b))
            results[forms] = step(jnp.asarray(x, dtype), jnp.asarray(k, dtype))
    return results["fast"], results["plain"]


def _float64_reference(name, input_dtype=jnp.float32):
    """Value and VJP of the case's float64 reference, at the inputs rounded to input_dtype."""
    _, reference, _, _ = CASES[name]
    x, k = (np.asarray(jnp.asarray(a, input_dtype), np.float64) for a in _case_arrays(name))
    with jax.enable_x64(True):
        return [np.asarray(a) for a in _value_and_vjp(reference, jnp.asarray(x), jnp.asarray(k))]


def _assert_close(got, want, rel, what):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    scale = float(np.max(np.abs(want)))
    assert scale > 0, f"{what}: reference is all zero, the check would be empty"
    error = float(np.max(np.abs(got - want)))
    assert error <= rel * scale, f"{what}: max error {error:.3g} > {rel} x max |reference| {scale:.3g}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_fast_form_matches_plain_form_and_float64(name):
    fast, plain = _fast_and_plain(name)
    want = _float64_reference(name)
    for part, got_fast, got_plain, reference in zip(("value", "d_input", "d_param"), fast, plain, want):
        assert got_fast.dtype == jnp.float32
        _assert_close(got_fast, got_plain, 1e-5, f"{name} {part}: fast vs plain")
        _assert_close(got_fast, reference, 1e-5, f"{name} {part}: fast vs float64")



def test_few_output_channel_backward_in_row_bands(monkeypatch):
    """The few-output-channel backward in row bands of its gradient im2col matrix, the last one ragged:
    a budget of 16 rows of (7 * 7 * 3 taps) x (2 images x 12 padded columns) splits 43 padded rows 16/16/11."""
    monkeypatch.setattr(cpu, "_FEW_CHANNEL_COLS", 16 * 7 * 7 * 3 * 2 * 12)
    name = "conv7x7_few_outputs"
    fast, plain = _fast_and_plain(name)
    want = _float64_reference(name)
    for part, got_fast, got_plain, reference in zip(("value", "d_input", "d_param"), fast, plain, want):
        _assert_close(got_fast, got_plain, 1e-5, f"{name} {part} in bands: fast vs plain")
        _assert_close(got_fast, reference, 1e-5, f"{name} {part} in bands: fast vs float64")

@pytest.mark.parametrize("name", sorted(CASES))
def test_fast_form_bfloat16_gradients(name):
    fast, _ = _fast_and_plain(name, jnp.bfloat16)
    # The exact result for the bfloat16-rounded inputs: what remains is the computation's own error.
    want = _float64_reference(name, jnp.bfloat16)
    for part, got, reference in zip(("value", "d_input", "d_param"), fast, want):
        if not (part == "value" and name.startswith("instance_norm")):  # float32 by construction
            assert got.dtype == jnp.bfloat16, f"{name} {part}: {got.dtype}"
        # Rounding the result to bfloat16 alone costs up to 2^-9 of its largest entry.
        _assert_close(got.astype(jnp.float32), reference, 1e-2, f"{name} {part}: bfloat16 vs float64")


def test_spatial_sums_are_per_sample_and_channel():
    x = np.random.default_rng(0).normal(size=(3, 4, 5, 6))
    got = ops.spatial_sums(jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(np.asarray(got), x.sum(axis=(1, 2)), atol=1e-5)


def test_conv2d_module_is_a_drop_in_for_nn_conv():
    x = jnp.asarray(np.random.default_rng(1).normal(size=(1, 6, 6, 3)), jnp.float32)
    ours = layers.Conv2D(5, 3, strides=2, padding=1)
    theirs = nn.Conv(5, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), kernel_init=layers.conv_kernel_init)
    ours_vars, theirs_vars = ours.init(jax.random.key(3), x), theirs.init(jax.random.key(3), x)
    # Same parameter names, shapes and initial values from the same key.
    jax.tree_util.tree_map(np.testing.assert_array_equal, ours_vars, theirs_vars)
    theirs_vars = jax.tree_util.tree_map(lambda a: a + 0.1, theirs_vars)  # non-zero bias
    np.testing.assert_allclose(np.asarray(ours.apply(theirs_vars, x)), np.asarray(theirs.apply(theirs_vars, x)),
                               atol=1e-6)


def test_layer_forms_selects_and_restores():
    assert ops.current_layer_forms() == "fast"
    with ops.layer_forms("stock"):
        assert ops.current_layer_forms() == "stock"
        with ops.layer_forms("plain"):
            assert ops.current_layer_forms() == "plain"
        assert ops.current_layer_forms() == "stock"
    assert ops.current_layer_forms() == "fast"
    with pytest.raises(ValueError, match="unknown forms 'quick'"), ops.layer_forms("quick"):
        pass


def test_stock_transposed_conv_equals_phase_form():
    x, k = _case_arrays("upsample_many_pixels")
    outputs = []
    for forms in ("stock", "plain", "fast"):
        with ops.layer_forms(forms):
            outputs.append(_value_and_vjp(lambda a, b: layers.upsample_conv_transpose(a, b),
                                          jnp.asarray(x, jnp.float32), jnp.asarray(k, jnp.float32)))
    for other in outputs[1:]:
        for got, want in zip(other, outputs[0]):
            _assert_close(got, want, 1e-5, "transposed conv forms")


# Every fast path of the network at a small size: GEMM-backward residual convs (16 pixels, 16
# channels), stride-2 down and transposed convs, space-to-depth encoder convs, the 3-channel output conv.
SMALL_DMN = dict(ngf=4, n_downsample=2, n_blocks=1, encoder_widths=(4, 4, 8), n_encoder_deep=1)


def _small_dmn_problem(dtype=jnp.float32):
    rng = np.random.default_rng(0)
    size = 32
    image = jnp.asarray(rng.uniform(-1, 1, (1, size, size, 3)), jnp.float32)
    mask_t = one_hot_mask(jnp.asarray(rng.integers(0, 19, (1, size, size))))
    mask_src = one_hot_mask(jnp.asarray(rng.integers(0, 19, (1, size, size))))
    target = jnp.asarray(rng.uniform(-1, 1, (1, size, size, 3)), jnp.float32)
    module = DenseMappingNetwork(**SMALL_DMN, dtype=dtype)
    params = module.init(jax.random.key(0), image, mask_t, mask_src)["params"]
    # He-scaled weights so that the style path matters (the reference N(0, 0.02) init makes it ~0).
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    params = jax.tree_util.tree_unflatten(treedef, [
        jax.random.normal(key, p.shape) * (np.sqrt(2.0 / np.prod(p.shape[:3])) if p.ndim == 4 else 0.1)
        for key, p in zip(keys, leaves)])

    def loss(p):
        out = module.apply({"params": p}, image, mask_t, mask_src).astype(jnp.float32)
        return jnp.mean(jnp.abs(out - target))

    return loss, params


@pytest.fixture(scope="module")
def dmn_loss_and_grads():
    """(forms, dtype name) -> (loss, gradients) of a small DMN, each from one jitted function."""
    results = {}
    for forms, dtype in (("fast", jnp.float32), ("plain", jnp.float32), ("fast", jnp.bfloat16)):
        loss, params = _small_dmn_problem(dtype)
        with ops.layer_forms(forms):
            results[forms, jnp.dtype(dtype).name] = jax.jit(jax.value_and_grad(loss))(params)
    return results


def test_dmn_loss_and_gradients_equal_in_fast_and_plain_forms(dmn_loss_and_grads):
    fast_loss, fast_grads = dmn_loss_and_grads["fast", "float32"]
    plain_loss, plain_grads = dmn_loss_and_grads["plain", "float32"]
    assert abs(float(fast_loss) - float(plain_loss)) < 1e-6
    fast_flat, plain_flat = jax.tree_util.tree_leaves_with_path(fast_grads), jax.tree_util.tree_leaves(plain_grads)
    # Relative to the largest gradient of the network (the biases cancelled by a following
    # normalisation have gradients that are rounding noise in both forms). A float64 run of this
    # problem put both forms ~1e-5 of that scale from the exact gradients, through ~20 layers.
    scale = max(float(jnp.max(jnp.abs(g))) for g in plain_flat)
    for (path, got), want in zip(fast_flat, plain_flat):
        error = float(jnp.max(jnp.abs(got - want)))
        assert error <= 5e-5 * scale, f"{jax.tree_util.keystr(path)}: {error:.3g} vs scale {scale:.3g}"


def test_dmn_bfloat16_gradients_follow_float32(dmn_loss_and_grads):
    def flat(grads):
        assert all(g.dtype == jnp.float32 for g in jax.tree_util.tree_leaves(grads))  # params stay float32
        return np.concatenate([np.ravel(g) for g in jax.tree_util.tree_leaves(grads)])

    want = flat(dmn_loss_and_grads["fast", "float32"][1])
    loss16, grads16 = dmn_loss_and_grads["fast", "bfloat16"]
    assert np.isfinite(float(loss16))
    got = flat(grads16)
    cosine = float(got @ want / (np.linalg.norm(got) * np.linalg.norm(want)))
    # bfloat16 rounding alone turns this small network's gradient by ~1.2e-2 (cosine 0.981-0.993 over
    # four seeds, in the plain and the fast forms alike, within 2e-3 of each other).
    assert cosine > 0.975, f"bfloat16 gradient direction differs from float32: cosine {cosine:.4f}"


def test_traced_in_fixes_the_forms_at_trace_time():
    """config.model.layer_forms reaches the steps through ops.traced_in: the fast forms trace custom VJPs,
    the plain ones none; "auto" is the fast forms on this CPU backend."""
    x, k = jnp.ones((1, 4, 4, 3)), jnp.ones((3, 3, 3, 4))
    conv = lambda x, k: ops.conv2d(x, k, padding=1)
    traced = {forms: str(jax.make_jaxpr(ops.traced_in(forms, conv))(x, k)) for forms in ops.FORMS}
    assert "custom_vjp" in traced["fast"] and "custom_vjp" not in traced["plain"]
    assert traced["auto"] == traced["fast"] and ops.resolve("auto") == "fast"
    with pytest.raises(ValueError, match=r"unknown forms 'quick', expected one of \('auto', 'fast'"):
        ops.traced_in("quick", conv)
