"""DenseMappingNetwork and AlphaBlender: reference sizes, small forward passes, gradients."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maskgan_jax.models import AlphaBlender, DenseMappingNetwork, one_hot_mask
from maskgan_jax.models.generator import split_style
from maskgan_jax.models.layers import ReflectConv, UpConv, upsample_nearest_2x

SMALL_DMN = dict(ngf=4, n_downsample=2, n_blocks=2, encoder_widths=(4, 4, 8), n_encoder_deep=2)


def param_count(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


def abstract_inputs(size, batch=1):
    image = jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32)
    mask = jax.ShapeDtypeStruct((batch, size, size, 19), jnp.float32)
    return image, mask


def he_init(params, seed=0):
    """Re-draws every kernel from N(0, 2 / fan_in) and biases from N(0, 0.1): every path, biases included,
    then carries signal, as in the fixture, so wiring errors show."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    def draw(key, leaf):
        if leaf.ndim == 4:
            return jax.random.normal(key, leaf.shape) * np.sqrt(2.0 / np.prod(leaf.shape[:3]))
        return 0.1 * jax.random.normal(key, leaf.shape)
    return jax.tree_util.tree_unflatten(treedef, [draw(k, x) for k, x in zip(keys, leaves)])


def small_inputs(size=32, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    image = jnp.asarray(rng.uniform(-1, 1, (batch, size, size, 3)), jnp.float32)
    mask_t = one_hot_mask(jnp.asarray(rng.integers(0, 19, (batch, size, size))))
    mask_src = one_hot_mask(jnp.asarray(rng.integers(0, 19, (batch, size, size))))
    return image, mask_t, mask_src


@pytest.mark.parametrize("size", [256, 512])
def test_dmn_reference_parameter_count_and_shape(size):
    image, mask = abstract_inputs(size)
    module = DenseMappingNetwork()
    variables = jax.eval_shape(module.init, jax.random.key(0), image, mask, mask)
    assert set(variables) == {"params"}
    assert param_count(variables["params"]) == 89_702_595
    out = jax.eval_shape(module.apply, variables, image, mask, mask)
    assert out.shape == (1, size, size, 3)
    # The style vector feeding the 8 AdaIN layers: 4 blocks x 2 convs x (bias + scale) x 1024.
    assert variables["params"]["enc_style"]["model_last_1"]["kernel"].shape == (1, 1, 64, 16384)


def test_blender_reference_parameter_count_and_shape():
    image, _ = abstract_inputs(512)
    module = AlphaBlender()
    variables = jax.eval_shape(module.init, jax.random.key(0), image, image)
    assert param_count(variables["params"]) == 4_329_443
    blend, alpha = jax.eval_shape(module.apply, variables, image, image)
    assert blend.shape == alpha.shape == (1, 512, 512, 3)


def test_split_style_follows_reference_layout():
    c, n_blocks = 3, 2
    style = jnp.arange(4 * n_blocks * c, dtype=jnp.float32)[None]
    pairs = split_style(style, n_blocks, c)
    assert len(pairs) == 4
    scale1, bias1 = pairs[1]  # AdaIN layer k=1 -> bias [6, 9), scale [9, 12)
    np.testing.assert_array_equal(np.asarray(bias1[0]), [6, 7, 8])
    np.testing.assert_array_equal(np.asarray(scale1[0]), [9, 10, 11])
    with pytest.raises(ValueError, match="expected 24"):
        split_style(style[:, :-1], n_blocks, c)


def test_dmn_small_forward_in_range_and_depends_on_all_inputs():
    module = DenseMappingNetwork(**SMALL_DMN)
    image, mask_t, mask_src = small_inputs()
    variables = {"params": he_init(module.init(jax.random.key(0), image, mask_t, mask_src)["params"])}
    out = module.apply(variables, image, mask_t, mask_src)
    assert out.shape == image.shape and out.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(out))) <= 1.0
    # Style comes from (image_t, mask_t), layout from mask_src: changing any of them changes the output.
    for changed in ((-image, mask_t, mask_src), (image, mask_src, mask_src), (image, mask_t, mask_t)):
        assert float(jnp.max(jnp.abs(module.apply(variables, *changed) - out))) > 1e-4


def test_dmn_initial_output_depends_on_the_style_image():
    """With the module's own init the style reaches the output from step 0: the encoders and SFT layers
    (no normalisation) use He init. With N(0, 0.02) there the output moved by ~2e-8 when the style image
    changed and the AdaIN residual blocks got no gradient."""
    module = DenseMappingNetwork(**SMALL_DMN)
    image, mask_t, mask_src = small_inputs()
    params = module.init(jax.random.key(0), image, mask_t, mask_src)["params"]
    out = module.apply({"params": params}, image, mask_t, mask_src)
    other_style = module.apply({"params": params}, image[::-1], mask_t[::-1], mask_src)
    assert float(jnp.mean(jnp.abs(other_style - out))) > 1e-2
    grads = jax.grad(lambda p: jnp.mean(module.apply({"params": p}, image, mask_t, mask_src) ** 2))(params)
    first_block = 1 + 3 * (SMALL_DMN["n_downsample"] + 1)
    block_kernel = grads[f"model_{first_block}"]["conv_block_0"]["conv"]["kernel"]
    assert float(jnp.max(jnp.abs(block_kernel))) > 1e-4


def test_dmn_reference_encoder_init_is_selectable_and_names_are_checked():
    """"reference": N(0, 0.02) kernels and PyTorch's default biases U(+-1/sqrt(fan_in)) on the encoders, the
    SFT layers and the output conv; "he": zero biases there."""
    image, mask_t, mask_src = small_inputs()
    module = DenseMappingNetwork(**SMALL_DMN, encoder_init="reference")
    params = module.init(jax.random.key(0), image, mask_t, mask_src)["params"]
    assert float(jnp.std(params["enc_style"]["model_0"]["conv"]["kernel"])) == pytest.approx(0.02, rel=0.2)
    last = 1 + 3 * (SMALL_DMN["n_downsample"] + 1) + SMALL_DMN["n_blocks"] + 3 * SMALL_DMN["n_downsample"] + 1
    biases = {  # (bias, fan-in of its conv)
        "label stem 7x7": (params["enc_label"]["model_0"]["conv"]["bias"], 7 * 7 * 19),
        "style 4x4": (params["enc_style"]["model_1"]["conv"]["bias"], 4 * 4 * SMALL_DMN["encoder_widths"][0]),
        "SFT 1x1": (params["enc_style"]["sft1"]["scale_conv1"]["bias"], SMALL_DMN["encoder_widths"][2]),
        "style head 1x1": (params["enc_style"]["model_last_1"]["bias"], SMALL_DMN["encoder_widths"][2]),
        "output 7x7": (params["up"][f"model_{last}"]["bias"], 7 * 7 * SMALL_DMN["ngf"]),
    }
    for where, (bias, fan_in) in biases.items():
        bound = fan_in ** -0.5
        assert float(jnp.max(jnp.abs(bias))) <= bound, where
        assert float(jnp.max(jnp.abs(bias))) > 0.2 * bound, where  # drawn, not left at 0
    he = DenseMappingNetwork(**SMALL_DMN).init(jax.random.key(0), image, mask_t, mask_src)["params"]
    assert not jnp.any(he["enc_style"]["sft1"]["scale_conv1"]["bias"])
    assert not jnp.any(he["up"][f"model_{last}"]["bias"])
    with pytest.raises(ValueError, match="encoder_init='xavier'"):
        DenseMappingNetwork(**SMALL_DMN, encoder_init="xavier").init(jax.random.key(0), image, mask_t, mask_src)


def test_dmn_rejects_masks_with_wrong_class_count():
    module = DenseMappingNetwork(**SMALL_DMN)
    image, mask_t, _ = small_inputs()
    with pytest.raises(ValueError, match="mask_src has 18 channels"):
        module.init(jax.random.key(0), image, mask_t, mask_t[..., :18])


def test_dmn_bfloat16_compute_keeps_float32_params():
    module = DenseMappingNetwork(**SMALL_DMN, dtype=jnp.bfloat16)
    image, mask_t, mask_src = small_inputs()
    variables = module.init(jax.random.key(0), image, mask_t, mask_src)
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(variables))
    out = module.apply(variables, image, mask_t, mask_src)
    reference = DenseMappingNetwork(**SMALL_DMN).apply(variables, image, mask_t, mask_src)
    assert out.dtype == jnp.bfloat16
    assert float(jnp.mean(jnp.abs(out.astype(jnp.float32) - reference))) < 0.05


def _zero_grad_paths(grads, tol):
    flat = flax.traverse_util.flatten_dict(grads)
    return {"/".join(path) for path, g in flat.items() if float(jnp.max(jnp.abs(g))) <= tol}


def test_dmn_gradients_finite_and_nonzero_except_cancelled_biases():
    module = DenseMappingNetwork(**SMALL_DMN)
    image, mask_t, mask_src = small_inputs(batch=1)
    params = he_init(module.init(jax.random.key(0), image, mask_t, mask_src)["params"])
    target = jnp.asarray(np.random.default_rng(9).uniform(-1, 1, image.shape), jnp.float32)
    grads = jax.grad(lambda p: jnp.mean(jnp.abs(module.apply({"params": p}, image, mask_t, mask_src) - target)))(params)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(grads))
    # Biases of convs followed by InstanceNorm/AdaIN are cancelled by the normalisation.
    cancelled = {f"down/model_{i}/bias" for i in (1, 4, 7)} | {"up/model_12/bias", "up/model_15/bias"}
    cancelled |= {f"model_{b}/conv_block_{c}/conv/bias" for b in (10, 11) for c in (0, 1)}
    assert _zero_grad_paths(grads, tol=1e-6) == cancelled
    flat = flax.traverse_util.flatten_dict(grads)
    assert all(float(jnp.max(jnp.abs(flat[tuple(p.split("/"))]))) < 1e-6 for p in cancelled)


def test_blender_blends_with_alpha_and_has_gradients():
    module = AlphaBlender(ngf=4, n_downsample=2, n_blocks=1)
    image_a, _, _ = small_inputs(size=16, batch=1, seed=1)
    image_b, _, _ = small_inputs(size=16, batch=1, seed=2)
    variables = {"params": he_init(module.init(jax.random.key(0), image_a, image_b)["params"])}
    blend, alpha = module.apply(variables, image_a, image_b)
    assert float(alpha.min()) > 0 and float(alpha.max()) < 1
    np.testing.assert_allclose(np.asarray(blend), np.asarray(alpha * image_a + (1 - alpha) * image_b), atol=1e-6)
    grads = jax.grad(lambda p: jnp.mean(module.apply({"params": p}, image_a, image_b)[0] ** 2))(variables["params"])
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(grads))
    cancelled = {f"down/model_{i}/bias" for i in (1, 4, 7)} | {"up/model_11/bias", "up/model_14/bias"}
    cancelled |= {"model_10/conv_block_1/conv/bias", "model_10/conv_block_5/conv/bias"}
    assert _zero_grad_paths(grads, tol=1e-6) == cancelled


def test_dmn_resize_upsampling_has_the_reference_count_and_no_checkerboard():
    """upsample="resize" (nearest 2x + reflect-padded 3x3 conv) has the transposed conv's parameter count at
    reference size; a constant map stays constant through it, where the stride-2 transposed conv stamps its
    kernel in a 2x2-periodic pattern (the checkerboard)."""
    image, mask = abstract_inputs(512)
    module = DenseMappingNetwork(upsample="resize")
    variables = jax.eval_shape(module.init, jax.random.key(0), image, mask, mask)
    assert param_count(variables["params"]) == 89_702_595
    constant = jnp.ones((1, 8, 8, 4), jnp.float32)
    # The two up-sampling layers Pix2PixHDDecoder chooses between.
    for layer, x, periodic in ((ReflectConv(4, 3, 1, 1), upsample_nearest_2x(constant), False),
                               (UpConv(4), constant, True)):
        out = layer.apply(layer.init(jax.random.key(1), x), x)
        spread = float(jnp.max(jnp.std(out[:, 2:-2, 2:-2], axis=(1, 2))))  # interior: no border effects
        assert (spread > 1e-3) == periodic, (type(layer).__name__, spread)
    with pytest.raises(ValueError, match="upsample='bilinear'"):
        DenseMappingNetwork(**SMALL_DMN, upsample="bilinear").init(jax.random.key(0), *small_inputs())
