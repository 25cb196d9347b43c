"""Every loss against a float64 NumPy reference written from the formulas, plus gradient sanity."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maskgan_jax import losses
from maskgan_jax.models.vgg import VGG19Features, vgg19_param_shapes

NUM_D, N_LAYERS = 2, 3
# Per scale: n_layers + 2 maps (4 intermediate features, then the (N, h, w, 1) patch logits).
_SCALE_SHAPES = [[(2, 9, 9, 4), (2, 5, 5, 8), (2, 3, 3, 16), (2, 4, 4, 16), (2, 5, 5, 1)],
                 [(2, 5, 5, 4), (2, 3, 3, 8), (2, 2, 2, 16), (2, 3, 3, 16), (2, 4, 4, 1)]]


def _d_outputs(seed):
    rng = np.random.default_rng(seed)
    return [[rng.normal(size=shape) for shape in scale] for scale in _SCALE_SHAPES]


def _as_jax(outputs):
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), outputs)


def _rtol_close(actual, expected):
    np.testing.assert_allclose(float(actual), expected, rtol=1e-5)


def test_lsgan_losses_match_numpy():
    real, fake = _d_outputs(0), _d_outputs(1)
    expected_real = sum(np.mean((scale[-1] - 1.0) ** 2) for scale in real)
    expected_fake = sum(np.mean(scale[-1] ** 2) for scale in fake)
    _rtol_close(losses.lsgan_discriminator_loss(_as_jax(real), _as_jax(fake)),
                0.5 * (expected_real + expected_fake))
    _rtol_close(losses.lsgan_generator_loss(_as_jax(fake)),
                sum(np.mean((scale[-1] - 1.0) ** 2) for scale in fake))


def test_lsgan_discriminator_loss_is_zero_and_flat_at_perfect_outputs():
    real, fake = _as_jax(_d_outputs(0)), _as_jax(_d_outputs(1))
    real = [[*scale[:-1], jnp.ones_like(scale[-1])] for scale in real]
    fake = [[*scale[:-1], jnp.zeros_like(scale[-1])] for scale in fake]
    value, (grad_real, grad_fake) = jax.value_and_grad(
        losses.lsgan_discriminator_loss, argnums=(0, 1))(real, fake)
    assert float(value) == 0.0
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree.leaves((grad_real, grad_fake)))
    # Away from the optimum the logits are pushed toward their targets.
    shifted = [[*scale[:-1], scale[-1] + 0.5] for scale in fake]
    expected = 0.5 * NUM_D * 0.5 ** 2  # 0.5 * (real: 0 + fake: sum over scales of 0.5^2)
    assert float(losses.lsgan_discriminator_loss(real, shifted)) == pytest.approx(expected)


def test_feature_matching_matches_numpy_and_stops_real_gradients():
    real, fake = _d_outputs(2), _d_outputs(3)
    weight = (1.0 / NUM_D) * (4.0 / (N_LAYERS + 1))
    expected = sum(weight * np.mean(np.abs(f - r))
                   for real_scale, fake_scale in zip(real, fake)
                   for r, f in zip(real_scale[:-1], fake_scale[:-1]))
    value, (grad_real, grad_fake) = jax.value_and_grad(
        losses.feature_matching_loss, argnums=(0, 1))(_as_jax(real), _as_jax(fake))
    _rtol_close(value, expected)
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree.leaves(grad_real))
    # d/d fake of weight * mean|f - r| is weight * sign(f - r) / size; logits get none.
    for real_scale, fake_scale, grad_scale in zip(real, fake, grad_fake):
        for r, f, g in zip(real_scale[:-1], fake_scale[:-1], grad_scale[:-1]):
            np.testing.assert_allclose(g, weight * np.sign(f - r) / f.size, rtol=1e-6)
        assert float(jnp.max(jnp.abs(grad_scale[-1]))) == 0.0

    with pytest.raises(ValueError, match="layers per scale"):
        losses.feature_matching_loss(_as_jax(real), _as_jax([s[1:] for s in fake]))


def test_perceptual_loss_matches_numpy_and_stops_real_gradients():
    rng = np.random.default_rng(4)
    shapes = [(2, 8, 8, 4), (2, 4, 4, 8), (2, 2, 2, 16), (2, 1, 1, 32), (2, 1, 1, 32)]
    real = [rng.normal(size=s) for s in shapes]
    fake = [rng.normal(size=s) for s in shapes]
    weights = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
    expected = sum(w * np.mean(np.abs(f - r)) for w, r, f in zip(weights, real, fake))
    value, grad_real = jax.value_and_grad(losses.perceptual_loss)(_as_jax(real), _as_jax(fake), weights)
    _rtol_close(value, expected)
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in grad_real)
    with pytest.raises(ValueError, match="equal counts"):
        losses.perceptual_loss(_as_jax(real), _as_jax(fake), weights[:4])


def test_vgg_perceptual_loss_keeps_vgg_frozen():
    vgg = VGG19Features()
    rng = np.random.default_rng(5)
    real = jnp.asarray(rng.uniform(-1, 1, (2, 16, 16, 3)), jnp.float32)
    fake = jnp.asarray(rng.uniform(-1, 1, (2, 16, 16, 3)), jnp.float32)
    # He-scaled random weights from NumPy (flax init of 13M weights takes seconds on CPU).
    params = {layer: {"kernel": jnp.asarray(rng.normal(0.0, np.sqrt(2.0 / (9 * s["kernel"][2])),
                                                       s["kernel"]), jnp.float32),
                      "bias": jnp.asarray(rng.normal(0.0, 0.1, s["bias"]), jnp.float32)}
              for layer, s in vgg19_param_shapes().items()}
    weights = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
    loss = functools.partial(losses.vgg_perceptual_loss, vgg=vgg, weights=weights)
    value, (grad_params, grad_real, grad_fake) = jax.jit(jax.value_and_grad(
        loss, argnums=(0, 1, 2)))(params, real, fake)
    apply = jax.jit(vgg.apply)
    separately = losses.perceptual_loss(apply({"params": params}, real),
                                        apply({"params": params}, fake), weights)
    np.testing.assert_allclose(value, separately, rtol=1e-5)
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree.leaves((grad_params, grad_real)))
    assert float(jnp.max(jnp.abs(grad_fake))) > 0.0


def test_kl_matches_numpy_and_vanishes_at_the_prior():
    rng = np.random.default_rng(6)
    mean, logvar = rng.normal(size=(3, 7)), rng.normal(size=(3, 7))
    # Closed form of KL(N(m, s^2) || N(0, 1)) per dim: log(1/s) + (s^2 + m^2) / 2 - 1/2.
    sigma = np.exp(0.5 * logvar)
    expected = np.mean(np.sum(-np.log(sigma) + (sigma ** 2 + mean ** 2) / 2 - 0.5, axis=-1))
    _rtol_close(losses.kl_to_standard_normal(jnp.asarray(mean, jnp.float32),
                                             jnp.asarray(logvar, jnp.float32)), expected)
    zeros = jnp.zeros((3, 7))
    value, grads = jax.value_and_grad(losses.kl_to_standard_normal, argnums=(0, 1))(zeros, zeros)
    assert float(value) == 0.0
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in grads)


def test_mask_cross_entropy_matches_numpy_and_is_minus_log_p():
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(2, 3, 4, 19))
    labels = rng.integers(0, 19, size=(2, 3, 4))
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    expected = -np.mean(np.take_along_axis(log_probs, labels[..., None], axis=-1))
    _rtol_close(losses.mask_cross_entropy(jnp.asarray(logits, jnp.float32), jnp.asarray(labels)),
                expected)

    # Logits that are log-probabilities: the loss is the mean of -log p[label].
    probs = rng.dirichlet(np.ones(19), size=(2, 3, 4))
    expected_nll = -np.mean(np.log(np.take_along_axis(probs, labels[..., None], axis=-1)))
    _rtol_close(losses.mask_cross_entropy(jnp.asarray(np.log(probs), jnp.float32),
                                          jnp.asarray(labels)), expected_nll)
    with pytest.raises(ValueError, match=r"labels shape \(2, 3\)"):
        losses.mask_cross_entropy(jnp.zeros((2, 3, 4, 19)), jnp.zeros((2, 3), jnp.int32))


def test_losses_return_float32_scalars_for_bfloat16_inputs():
    fake = jax.tree.map(lambda a: jnp.asarray(a, jnp.bfloat16), _d_outputs(8))
    for value in (losses.lsgan_generator_loss(fake),
                  losses.feature_matching_loss(fake, fake),
                  losses.mask_cross_entropy(jnp.zeros((1, 2, 2, 3), jnp.bfloat16),
                                            jnp.zeros((1, 2, 2), jnp.int32))):
        assert value.shape == () and value.dtype == jnp.float32


def test_lovasz_softmax_equals_one_minus_iou_on_hard_predictions():
    """On one-hot predictions the Lovasz extension is the set function itself: the mean over the
    labels' classes of 1 - IoU."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, (2, 8, 8))
    predicted = np.where(rng.random(labels.shape) < 0.3, rng.integers(0, 5, labels.shape), labels)
    logits = 100.0 * jax.nn.one_hot(predicted, 5)
    expected = np.mean([1 - np.sum((labels == c) & (predicted == c)) / np.sum((labels == c) | (predicted == c))
                        for c in np.unique(labels)])
    assert float(losses.lovasz_softmax_loss(logits, jnp.asarray(labels))) == pytest.approx(expected, abs=1e-5)
    # A perfect prediction costs nothing; the gradient reaches the logits.
    assert float(losses.lovasz_softmax_loss(100.0 * jax.nn.one_hot(labels, 5), jnp.asarray(labels))) < 1e-5
    grad = jax.grad(lambda x: losses.lovasz_softmax_loss(x, jnp.asarray(labels)))(jnp.zeros((2, 8, 8, 5)))
    assert float(jnp.abs(grad).sum()) > 0


def test_weighted_l1_equals_l1_with_equal_weights_and_checks_shapes():
    a = jnp.arange(24, dtype=jnp.float32).reshape(1, 2, 4, 3) / 24
    b = jnp.zeros_like(a)
    assert float(losses.weighted_l1(a, b, jnp.full((1, 2, 4), 2.0))) == pytest.approx(float(losses.l1(a, b)), rel=1e-6)
    only_first = jnp.zeros((1, 2, 4)).at[0, 0, 0].set(1.0)
    assert float(losses.weighted_l1(a, b, only_first)) == pytest.approx(float(jnp.mean(a[0, 0, 0])), rel=1e-6)
    with pytest.raises(ValueError, match="weights"):
        losses.weighted_l1(a, b, jnp.ones((1, 2, 3)))
