"""The objective as data: weights from config.loss.weights, zero-weighted terms never computed."""

import jax
import jax.numpy as jnp
import pytest

from configs import ebst
from maskgan_jax import objective


def _weights(**changes):
    weights = dict(ebst.get_config().loss.weights)
    weights.update(changes)
    return weights


def test_total_is_the_weighted_sum_in_registry_order_and_zero_terms_are_skipped():
    calls = []

    def term(name, value):
        def fn(inputs):
            calls.append(name)
            assert inputs == "inputs"
            return jnp.float32(value)
        return fn

    def never(inputs):
        raise AssertionError("a term weighted 0 was computed")

    terms = {"adversarial": term("adversarial", 2.0), "feature_matching": term("feature_matching", 3.0),
             "l1": never, "perceptual": term("perceptual", 5.0)}
    total, values = objective.weighted_terms(terms, _weights(feature_matching=10.0, l1=0.0, perceptual=0.5), "inputs")
    assert calls == ["adversarial", "feature_matching", "perceptual"]
    assert list(values) == ["adversarial", "feature_matching", "perceptual"]
    assert float(total) == pytest.approx(1.0 * 2.0 + 10.0 * 3.0 + 0.5 * 5.0)
    assert total.dtype == jnp.float32


def test_every_term_has_a_weight_and_every_weight_a_term():
    config = ebst.get_config()
    assert set(config.loss.weights) == (set(objective.GENERATOR_TERMS) | set(objective.EDIT_TERMS)
                                        | set(objective.MASK_VAE_TERMS) | set(objective.PARSER_TERMS)
                                        | set(objective.CLASSIFIER_TERMS))
    with pytest.raises(ValueError, match=r"unknown terms \['style'\], missing terms \[\]"):
        objective.check_weights(_weights(style=1.0))
    weights = _weights()
    del weights["kl"]
    with pytest.raises(ValueError, match=r"unknown terms \[\], missing terms \['kl'\]"):
        objective.check_weights(weights)


def test_mask_vae_objective_is_cross_entropy_plus_weighted_kl():
    logits = jnp.zeros((1, 2, 2, 3)).at[..., 1].set(2.0)
    labels = jnp.ones((1, 2, 2), jnp.int32)
    inputs = objective.MaskVAEInputs(logits=logits, labels=labels, mean=jnp.ones((1, 4)), logvar=jnp.zeros((1, 4)))
    total, values = objective.weighted_terms(objective.MASK_VAE_TERMS, _weights(kl=0.1), inputs)
    cross_entropy = -jnp.log(jnp.exp(2.0) / (jnp.exp(2.0) + 2.0))
    assert float(values["cross_entropy"]) == pytest.approx(float(cross_entropy), rel=1e-6)
    assert float(values["kl"]) == pytest.approx(0.5 * 4)  # 0.5 * sum(mean^2) at logvar 0
    assert float(total) == pytest.approx(float(cross_entropy) + 0.1 * 2.0, rel=1e-6)


def test_mask_vae_cross_entropy_class_balance_lifts_the_rare_class():
    """class_balance 0 is the plain mean; 0.5 weighs each pixel by its class's fraction^-0.5: a one-pixel class
    among four pixels counts sqrt(4 / 1) / sqrt(4 / 3) = sqrt(3) times a three-pixel class's pixel."""
    logits = jnp.zeros((1, 2, 2, 3)).at[..., 1].set(2.0)
    labels = jnp.array([[[1, 1], [1, 2]]], jnp.int32)  # class 2 (one pixel) is predicted badly
    inputs = lambda power: objective.MaskVAEInputs(logits=logits, labels=labels, mean=jnp.zeros((1, 4)),
                                                   logvar=jnp.zeros((1, 4)), class_balance=power)
    good, bad = -jnp.log(jnp.exp(2.0) / (jnp.exp(2.0) + 2.0)), -jnp.log(1.0 / (jnp.exp(2.0) + 2.0))
    plain = objective.MASK_VAE_TERMS["cross_entropy"](inputs(0.0))
    assert float(plain) == pytest.approx(float(3 * good + bad) / 4, rel=1e-6)
    balanced = objective.MASK_VAE_TERMS["cross_entropy"](inputs(0.5))
    w_common, w_rare = (3 / 4) ** -0.5, (1 / 4) ** -0.5
    expected = (3 * w_common * good + w_rare * bad) / (3 * w_common + w_rare)
    assert float(balanced) == pytest.approx(float(expected), rel=1e-6)
    assert float(balanced) > float(plain)


def test_perceptual_weight_without_vgg_weights_is_a_clear_error():
    inputs = objective.GeneratorInputs(
        condition=None, real=jnp.zeros((1, 4, 4, 3)), fake=jnp.zeros((1, 4, 4, 3)), discriminator=None,
        d_params=None, vgg=objective.vgg_for(ebst.get_config(), jnp.float32), vgg_params=None,
        perceptual_layer_weights=(1.0,) * 5)
    weights = _weights(adversarial=0.0, feature_matching=0.0, l1=0.0, perceptual=10.0)
    with pytest.raises(ValueError, match="config.loss.vgg19_weights"):
        objective.weighted_terms(objective.GENERATOR_TERMS, weights, inputs)


def test_generator_l1_balanced_lifts_the_rare_class():
    """`l1` is the plain mean whatever l1_class_balance; `l1_balanced` weighs each pixel by its mask class's
    fraction^-power: at 0.5 an error on the one-pixel class of four counts sqrt(3) times an error on a
    three-pixel class's pixel; at 0 it is the plain mean."""
    condition = jax.nn.one_hot(jnp.array([[[1, 1], [1, 2]]]), 3)
    real = jnp.zeros((1, 2, 2, 3))
    fake = real.at[0, 1, 1].set(0.6)  # wrong only on the rare class's pixel
    inputs = lambda power: objective.GeneratorInputs(
        condition=condition, real=real, fake=fake, discriminator=None, d_params=None, vgg=None, vgg_params=None,
        perceptual_layer_weights=(), l1_class_balance=power)
    plain = objective.GENERATOR_TERMS["l1"](inputs(0.5))
    assert float(plain) == pytest.approx(0.6 / 4, rel=1e-6)
    assert float(objective.GENERATOR_TERMS["l1_balanced"](inputs(0.0))) == pytest.approx(float(plain), rel=1e-6)
    balanced = objective.GENERATOR_TERMS["l1_balanced"](inputs(0.5))
    w_common, w_rare = (3 / 4) ** -0.5, (1 / 4) ** -0.5
    assert float(balanced) == pytest.approx(0.6 * w_rare / (3 * w_common + w_rare), rel=1e-6)
    assert float(balanced) > float(plain)


def _two_class_face(colours, split_rows):
    """A (1, 4, 4, 3) image and one-hot mask: class 1 in the first `split_rows` rows, class 2 below,
    each a flat colour from `colours` (one value per class)."""
    labels = jnp.where(jnp.arange(4)[:, None] < split_rows, 1, 2) * jnp.ones((4, 4), jnp.int32)
    image = jnp.where((labels == 1)[..., None], colours[0], colours[1]) * jnp.ones((4, 4, 3))
    return image[None], jax.nn.one_hot(labels[None], 3)


def test_class_colour_compares_each_class_mean_where_both_images_have_it():
    """The regions differ (class 1 covers 2 rows in the edit, 3 in the source); the means are compared:
    class 1 is off by 0.2, class 2 matches, so the term is 0.1. A class under min_pixels in either image
    is left out (class 2 has 4 pixels in the source: with min_pixels 5 only class 1 counts)."""
    edit, edit_mask = _two_class_face((0.5, -0.5), split_rows=2)
    source, source_mask = _two_class_face((0.3, -0.5), split_rows=3)
    inputs = lambda min_pixels: objective.EditInputs(source=source, source_mask=source_mask,
                                                     edits=jnp.concatenate([edit, edit]),
                                                     edit_masks=jnp.concatenate([edit_mask, edit_mask]),
                                                     class_colour_min_pixels=min_pixels)
    assert float(objective.EDIT_TERMS["edit_class_colour"](inputs(4.0))) == pytest.approx(0.1, rel=1e-6)
    assert float(objective.EDIT_TERMS["edit_class_colour"](inputs(5.0))) == pytest.approx(0.2, rel=1e-6)
    # The reconstruction form compares on one mask; a perfect reconstruction scores 0.
    same = objective.GeneratorInputs(condition=source_mask, real=source, fake=source, discriminator=None,
                                     d_params=None, vgg=None, vgg_params=None, perceptual_layer_weights=(),
                                     class_colour_min_pixels=4.0)
    assert float(objective.GENERATOR_TERMS["class_colour"](same)) == 0.0


def test_class_colour_pulls_only_the_edit():
    """The gradient moves the edit's class-1 pixels toward the source's colour (spread over its 8 pixels)
    and never reaches the source."""
    edit, edit_mask = _two_class_face((0.5, -0.5), split_rows=2)
    source, source_mask = _two_class_face((0.3, -0.5), split_rows=3)

    def term(edits, source):
        return objective.EDIT_TERMS["edit_class_colour"](objective.EditInputs(
            source=source, source_mask=source_mask, edits=edits,
            edit_masks=jnp.concatenate([edit_mask, edit_mask]), class_colour_min_pixels=4.0))

    d_edits, d_source = jax.grad(term, argnums=(0, 1))(jnp.concatenate([edit, edit]), source)
    assert float(jnp.abs(d_source).max()) == 0.0
    # d/d pixel of |mean - 0.3| / 3 channels, over 4 (image, class) pairs, a mean over 8 pixels.
    assert float(d_edits[0, 0, 0, 0]) == pytest.approx(1 / (4 * 3 * 8), rel=1e-6)
