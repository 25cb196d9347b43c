"""The MaskGAN objectives (pix2pixHD's, plus the MaskVAE's): pure functions, float32 scalars.

Discriminator outputs, as ``models.discriminator.MultiScaleDiscriminator`` returns them: a list over
scales (num_D), each a list of that scale's feature maps (N, h, w, C_j) in layer order, the last one
the patch logits (N, h, w, 1), no sigmoid. Reductions follow pix2pixHD (``nn.MSELoss``/``L1Loss``
means): a mean over all elements of one tensor, then sums over scales and layers.

The terms' weights (config.loss.weights) are applied by `maskgan_jax.objective`, as in pix2pixHD,
not here. Everything is computed in float32, whatever the input dtype.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import optax

from maskgan_jax.models.vgg import VGG19Features

ScaleOutputs = Sequence[jax.Array]  # one D scale: intermediate features ..., patch logits
MultiScaleOutputs = Sequence[ScaleOutputs]

def l1(a: jax.Array, b: jax.Array) -> jax.Array:
    """Mean absolute difference over all elements (``nn.L1Loss``); a, b of one shape."""
    return jnp.mean(jnp.abs(a.astype(jnp.float32) - b.astype(jnp.float32)))


def weighted_l1(a: jax.Array, b: jax.Array, weights: jax.Array) -> jax.Array:
    """Mean absolute difference, each pixel weighted: sum_p w_p mean_c |a - b| / sum_p w_p.

    a, b: (N, H, W, C) of one shape; weights: (N, H, W) >= 0, not all 0. Equal weights give `l1`.
    """
    if a.shape != b.shape or weights.shape != a.shape[:-1]:
        raise ValueError(f"weighted_l1: a {a.shape} and b {b.shape} must match, weights {weights.shape} must "
                         "be their shape without the channel axis")
    per_pixel = jnp.mean(jnp.abs(a.astype(jnp.float32) - b.astype(jnp.float32)), axis=-1)
    weights = weights.astype(jnp.float32)
    return jnp.sum(weights * per_pixel) / jnp.sum(weights)


def _check_scales(real_outputs: MultiScaleOutputs, fake_outputs: MultiScaleOutputs) -> None:
    real_layers = [len(scale) for scale in real_outputs]
    fake_layers = [len(scale) for scale in fake_outputs]
    if real_layers != fake_layers:
        raise ValueError(f"real and fake discriminator outputs differ in structure: layers per "
                         f"scale {real_layers} (real) vs {fake_layers} (fake)")


def lsgan_loss(outputs: MultiScaleOutputs, target_is_real: bool) -> jax.Array:
    """Least-squares GAN loss (pix2pixHD ``GANLoss(use_lsgan=True)``), summed over scales.

    outputs: per scale a list whose last element is the patch logits (N, h_s, w_s, 1).
    Returns sum_s mean((logits_s - t)^2), t = 1 if target_is_real else 0.
    """
    target = 1.0 if target_is_real else 0.0
    return sum(jnp.mean(jnp.square(scale[-1].astype(jnp.float32) - target)) for scale in outputs)


def lsgan_discriminator_loss(real_outputs: MultiScaleOutputs,
                             fake_outputs: MultiScaleOutputs) -> jax.Array:
    """D's loss: 0.5 * (lsgan_loss(real, 1) + lsgan_loss(fake, 0)).

    The 0.5 is pix2pixHD's ``loss_D = (loss_D_fake + loss_D_real) * 0.5`` (train.py); each term
    is summed over scales. fake_outputs must come from stop_gradient(fake images) (the caller
    does that).
    """
    return 0.5 * (lsgan_loss(real_outputs, True) + lsgan_loss(fake_outputs, False))


def lsgan_generator_loss(fake_outputs: MultiScaleOutputs) -> jax.Array:
    """G's adversarial loss: sum over scales of mean((fake logits - 1)^2) (no 0.5, as pix2pixHD)."""
    return lsgan_loss(fake_outputs, True)


def feature_matching_loss(real_outputs: MultiScaleOutputs, fake_outputs: MultiScaleOutputs) -> jax.Array:
    """pix2pixHD's discriminator feature matching loss (before its weight).

    Sum over scales s and all maps j but the last (the logits) of
    (1 / num_d) * (4 / (n_layers + 1)) * mean|fake_s,j - stop_gradient(real_s,j)|,
    where num_d = len(outputs) and n_layers + 1 = the number of feature maps of a scale (the
    reference D, n_layers_D = 3, returns n_layers + 2 maps per scale, the logits last).
    """
    _check_scales(real_outputs, fake_outputs)
    total = jnp.zeros((), jnp.float32)
    for real_scale, fake_scale in zip(real_outputs, fake_outputs):
        weight = (1.0 / len(real_outputs)) * (4.0 / (len(real_scale) - 1))
        for real_feature, fake_feature in zip(real_scale[:-1], fake_scale[:-1]):
            total += weight * l1(fake_feature, jax.lax.stop_gradient(real_feature))
    return total


def perceptual_loss(features_real: Sequence[jax.Array], features_fake: Sequence[jax.Array],
                    weights: Sequence[float]) -> jax.Array:
    """pix2pixHD ``VGGLoss`` on given features (before its weight).

    features_*: the VGG activations relu1_1 ... relu5_1, (N, H_i, W_i, C_i) each.
    Returns sum_i weights[i] * mean|fake_i - stop_gradient(real_i)| (pix2pixHD detaches y).
    """
    if not len(features_real) == len(features_fake) == len(weights):
        raise ValueError(f"perceptual_loss got {len(features_real)} real, {len(features_fake)} "
                         f"fake feature maps and {len(weights)} weights; expected equal counts")
    return sum(weight * l1(fake, jax.lax.stop_gradient(real))
               for weight, real, fake in zip(weights, features_real, features_fake))


def vgg_perceptual_loss(vgg_params, real_images: jax.Array, fake_images: jax.Array,
                        vgg: VGG19Features, weights: Sequence[float]) -> jax.Array:
    """Perceptual loss of fake vs real images (N, H, W, 3) in [-1, 1] through the frozen VGG19.

    vgg_params: the tree from ``models.vgg.load_vgg19_params``; wrapped in stop_gradient here, so
    VGG19 stays frozen even if differentiated. Real and fake go through VGG19 as one batch (2N).
    Gradients flow to fake_images only. weights: one per VGG layer (config.loss.perceptual_layer_weights).
    """
    frozen_params = jax.lax.stop_gradient(vgg_params)
    images = jnp.concatenate([jax.lax.stop_gradient(real_images), fake_images], axis=0)
    features = vgg.apply({"params": frozen_params}, images)
    batch = real_images.shape[0]
    return perceptual_loss([f[:batch] for f in features], [f[batch:] for f in features], weights)


def kl_to_standard_normal(mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """KL(N(mean, exp(logvar)) || N(0, I)) of a diagonal Gaussian; mean, logvar (N, Z).

    Returns the KL summed over the Z latent dims and averaged over the N samples:
    mean_n 0.5 * sum_z (exp(logvar) + mean^2 - 1 - logvar). >= 0, zero iff mean=0, logvar=0.
    """
    mean, logvar = mean.astype(jnp.float32), logvar.astype(jnp.float32)
    per_sample = 0.5 * jnp.sum(jnp.exp(logvar) + jnp.square(mean) - 1.0 - logvar, axis=-1)
    return jnp.mean(per_sample)


def mask_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Pixel-wise softmax cross-entropy of mask logits (N, H, W, C) vs int labels (N, H, W) in
    [0, C); the mean over all N*H*W pixels of -log softmax(logits)[label]."""
    if labels.shape != logits.shape[:-1]:
        raise ValueError(f"mask_cross_entropy: labels shape {labels.shape} must equal logits shape "
                         f"{logits.shape} without its class axis")
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), labels))


def class_balance_weights(labels: jax.Array, num_classes: int, power: float) -> jax.Array:
    """Per-pixel weights that lift rare classes: (fraction of the batch's pixels of the pixel's class)^-power.

    labels: int (N, H, W) in [0, num_classes). power 0 gives 1 everywhere; 0.5 weighs a class covering
    1% of the pixels 10x a class covering all of them. Returns float32 (N, H, W), no gradient.
    """
    counts = jnp.zeros((num_classes,), jnp.float32).at[labels.reshape(-1)].add(1.0)
    fraction = counts / labels.size
    per_class = jnp.where(counts > 0, jnp.maximum(fraction, 1e-12) ** -power, 0.0)
    return jax.lax.stop_gradient(per_class[labels])


def class_mean_colours(image: jax.Array, mask_onehot: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Each image's mean colour over each class's pixels.

    image: (N, H, W, 3); mask_onehot: (N, H, W, C). Returns float32 means (N, C, 3) (0 where a class has
    no pixel) and pixel counts (N, C).
    """
    mask_onehot = mask_onehot.astype(jnp.float32)
    counts = jnp.sum(mask_onehot, axis=(1, 2))
    sums = jnp.einsum("nhwc,nhwk->nkc", image.astype(jnp.float32), mask_onehot)
    return sums / jnp.maximum(counts, 1.0)[..., None], counts


def class_colour_l1(image: jax.Array, mask_onehot: jax.Array, reference: jax.Array,
                    reference_onehot: jax.Array, min_pixels: float) -> jax.Array:
    """Mean over (image, class) pairs of |class mean colour of `image` - that of `reference`|.

    Each image follows its own one-hot mask (N, H, W, C) and the two may differ (an edit keeps a
    class's colour while its region moves); a pair counts where the class covers at least
    `min_pixels` pixels in both. The reference gets no gradient. Images (N, H, W, 3) in [-1, 1];
    returns a float32 scalar in [0, 2] (0 where no pair counts).
    """
    means, counts = class_mean_colours(image, mask_onehot)
    reference_means, reference_counts = class_mean_colours(jax.lax.stop_gradient(reference), reference_onehot)
    paired = ((counts >= min_pixels) & (reference_counts >= min_pixels)).astype(jnp.float32)
    difference = jnp.mean(jnp.abs(means - reference_means), axis=-1)
    return jnp.sum(difference * paired) / jnp.maximum(jnp.sum(paired), 1.0)


def weighted_mask_cross_entropy(logits: jax.Array, labels: jax.Array, weights: jax.Array) -> jax.Array:
    """Pixel-wise softmax cross-entropy, the weighted mean over pixels: sum_p w_p CE_p / sum_p w_p.

    logits (N, H, W, C); labels int (N, H, W); weights float (N, H, W) >= 0, not all 0.
    """
    if labels.shape != logits.shape[:-1] or weights.shape != labels.shape:
        raise ValueError(f"weighted_mask_cross_entropy: labels {labels.shape} and weights {weights.shape} must "
                         f"equal logits {logits.shape} without its class axis")
    per_pixel = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
    weights = weights.astype(jnp.float32)
    return jnp.sum(weights * per_pixel) / jnp.sum(weights)


def soft_dice_loss(logits: jax.Array, labels: jax.Array, smooth: float = 1.0) -> jax.Array:
    """1 - the mean soft Dice coefficient over the classes present in the batch's labels.

    Per class c over the whole batch: (2 sum p_c y_c + smooth) / (sum p_c + sum y_c + smooth), with
    p = softmax(logits) and y the one-hot labels. Every present class counts equally whatever its size,
    so small parts weigh as much as the background (classes absent from the labels are left to the
    cross-entropy). logits (N, H, W, C); labels int (N, H, W). Returns a float32 scalar in [0, 1].
    """
    if labels.shape != logits.shape[:-1]:
        raise ValueError(f"soft_dice_loss: labels shape {labels.shape} must equal logits shape {logits.shape} "
                         "without its class axis")
    probabilities = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=jnp.float32)
    axes = tuple(range(labels.ndim))
    intersection = jnp.sum(probabilities * onehot, axis=axes)
    truth = jnp.sum(onehot, axis=axes)
    dice = (2.0 * intersection + smooth) / (jnp.sum(probabilities, axis=axes) + truth + smooth)
    present = (truth > 0).astype(jnp.float32)
    return 1.0 - jnp.sum(dice * present) / jnp.maximum(jnp.sum(present), 1.0)


def lovasz_softmax_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """The Lovasz-softmax loss (Berman, Rannen Triki, Blaschko, CVPR 2018): a convex surrogate of
    1 - IoU per class, averaged over the classes present in the batch's labels.

    Per class c over the whole batch's pixels: errors e_p = |y_pc - p_pc| (p = softmax(logits), y the
    one-hot labels), sorted in decreasing order; the loss is their dot product with the increments of
    the Jaccard loss along that order (the Lovasz extension of 1 - IoU). It optimises the mean IoU the
    parser is judged by, where cross-entropy optimises pixel accuracy. logits (N, H, W, C); labels int
    (N, H, W). Returns a float32 scalar in [0, 1].
    """
    if labels.shape != logits.shape[:-1]:
        raise ValueError(f"lovasz_softmax_loss: labels shape {labels.shape} must equal logits shape "
                         f"{logits.shape} without its class axis")
    num_classes = logits.shape[-1]
    probabilities = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).reshape(-1, num_classes)
    onehot = jax.nn.one_hot(labels.reshape(-1), num_classes, dtype=jnp.float32)

    def per_class(foreground: jax.Array, probability: jax.Array) -> jax.Array:
        errors = jnp.abs(foreground - probability)
        order = jnp.argsort(-errors)
        errors, foreground = errors[order], jax.lax.stop_gradient(foreground[order])
        total = jnp.sum(foreground)
        intersection = total - jnp.cumsum(foreground)
        union = total + jnp.cumsum(1.0 - foreground)
        jaccard = 1.0 - intersection / union
        increments = jnp.concatenate([jaccard[:1], jaccard[1:] - jaccard[:-1]])
        return jnp.dot(errors, increments)

    per_class_loss = jax.vmap(per_class, in_axes=1)(onehot, probabilities)
    present = (jnp.sum(onehot, axis=0) > 0).astype(jnp.float32)
    return jnp.sum(per_class_loss * present) / jnp.maximum(jnp.sum(present), 1.0)


def attribute_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Binary cross-entropy of attribute logits (N, A) against labels (N, A) in {0, 1}: the mean over
    N*A of -log sigmoid(logit) where present, -log(1 - sigmoid(logit)) where absent."""
    if labels.shape != logits.shape:
        raise ValueError(f"attribute_cross_entropy: labels shape {labels.shape} must equal logits shape "
                         f"{logits.shape}")
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32), labels.astype(jnp.float32)))
