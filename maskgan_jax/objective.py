"""The training objectives as data: named terms, weighted by `config.loss.weights`.

Each objective is a registry from term name to a pure function of that objective's inputs; the total
is the weighted sum of the terms in registry order, and a term weighted 0 is neither computed nor
logged. Adding a loss is one function here (or in `losses`), one registry line, and one entry in
`config.loss.weights`.

    GENERATOR_TERMS  G in DMN training / EBST stage 1, G_B = {G_A, B} in EBST stage 2
    EDIT_TERMS       G_A's simulated edits in EBST stage 2 (I_inter, I_outer against I_t)
    MASK_VAE_TERMS   MaskVAE pretraining
    PARSER_TERMS     the face parser
    CLASSIFIER_TERMS the attribute classifier (trained beside the parser)

The discriminator's LSGAN loss has no weight to choose (pix2pixHD's 0.5 * (real + fake)), so it is
not an objective here.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from maskgan_jax import losses
from maskgan_jax.models.vgg import VGG19Features


def discriminator_input(mask_onehot: jax.Array, image: jax.Array) -> jax.Array:
    """D's input: concat(one-hot mask, image), (N, H, W, num_classes + 3)."""
    return jnp.concatenate([mask_onehot, image.astype(mask_onehot.dtype)], axis=-1)


@dataclasses.dataclass
class GeneratorInputs:
    """What the generator's terms read; the discriminator and VGG19 run only if a term needs them.

    condition: one-hot mask (N, H, W, C) the images should follow. real, fake: (N, H, W, 3) float32
    in [-1, 1]; gradients flow to `fake`. discriminator / d_params: D and its (fixed) parameters.
    vgg / vgg_params: the frozen VGG19 (params None: no weights loaded). perceptual_layer_weights:
    per-layer weights of the perceptual term. l1_class_balance: the exponent of the `l1_balanced`
    term's class-balancing weights over `condition`'s classes (config.loss.l1_class_balance; 0: every
    pixel counts the same, the plain L1). class_colour_min_pixels: the smallest class region the
    `class_colour` term compares (config.loss.class_colour_min_pixels). given_discriminator_outputs:
    D's outputs on (condition, real) and (condition, fake) computed by the caller (the training steps
    share them with D's loss; gradients then flow to the fake outputs, not through D); None: D runs
    here when a term needs it.
    """

    condition: jax.Array
    real: jax.Array
    fake: jax.Array
    discriminator: nn.Module
    d_params: Any
    vgg: VGG19Features
    vgg_params: Any
    perceptual_layer_weights: tuple[float, ...]
    given_discriminator_outputs: tuple[Any, Any] | None = None
    l1_class_balance: float = 0.0
    class_colour_min_pixels: float = 16.0

    @functools.cached_property
    def discriminator_outputs(self) -> tuple[Any, Any]:
        """D's multi-scale outputs on (condition, real) and (condition, fake), computed once."""
        if self.given_discriminator_outputs is not None:
            return self.given_discriminator_outputs
        apply = functools.partial(self.discriminator.apply, {"params": self.d_params})
        real = apply(discriminator_input(self.condition, self.real))
        return real, apply(discriminator_input(self.condition, self.fake))

    def l1(self) -> jax.Array:
        return losses.l1(self.fake, self.real)

    def l1_balanced(self) -> jax.Array:
        """L1 with each pixel weighted by its wanted class's batch fraction^-l1_class_balance: a term beside
        the plain `l1`, so the small parts gain weight while the large classes keep the plain term's."""
        labels = jnp.argmax(self.condition, axis=-1)
        weights = losses.class_balance_weights(labels, self.condition.shape[-1], self.l1_class_balance)
        return losses.weighted_l1(self.fake, self.real, weights)

    def class_colour(self) -> jax.Array:
        """Each class's mean colour in `fake` against `real`'s, both on `condition`."""
        return losses.class_colour_l1(self.fake, self.condition, self.real, self.condition,
                                      self.class_colour_min_pixels)

    def perceptual(self) -> jax.Array:
        if self.vgg_params is None:
            raise ValueError("config.loss.weights.perceptual > 0 needs VGG19 weights "
                             "(config.loss.vgg19_weights)")
        return losses.vgg_perceptual_loss(self.vgg_params, self.real, self.fake, vgg=self.vgg,
                                          weights=self.perceptual_layer_weights)


def _adversarial(x: GeneratorInputs) -> jax.Array:
    return losses.lsgan_generator_loss(x.discriminator_outputs[1])


def _feature_matching(x: GeneratorInputs) -> jax.Array:
    return losses.feature_matching_loss(*x.discriminator_outputs)


GENERATOR_TERMS: dict[str, Callable[[GeneratorInputs], jax.Array]] = {
    "adversarial": _adversarial,
    "feature_matching": _feature_matching,
    "l1": GeneratorInputs.l1,
    "l1_balanced": GeneratorInputs.l1_balanced,
    "class_colour": GeneratorInputs.class_colour,
    "perceptual": GeneratorInputs.perceptual,
}


@dataclasses.dataclass(frozen=True)
class EditInputs:
    """EBST stage 2's simulated edits: G_A renders the source's style on the edited layouts.

    source: I_t (N, H, W, 3) in [-1, 1] on its one-hot mask `source_mask` (N, H, W, C); edits: I_inter
    and I_outer stacked (2N, H, W, 3), gradients flow to them; edit_masks: M_inter and M_outer one-hot
    (2N, H, W, C); class_colour_min_pixels: as GeneratorInputs'.
    """

    source: jax.Array
    source_mask: jax.Array
    edits: jax.Array
    edit_masks: jax.Array
    class_colour_min_pixels: float = 16.0

    def edit_class_colour(self) -> jax.Array:
        """Each class's mean colour in an edit against the source's: a class keeps its colour where
        the edit moves its region (the synthetic truth does; no term of the paper asks for it)."""
        return losses.class_colour_l1(self.edits, self.edit_masks, jnp.concatenate([self.source] * 2),
                                      jnp.concatenate([self.source_mask] * 2), self.class_colour_min_pixels)


EDIT_TERMS: dict[str, Callable[[EditInputs], jax.Array]] = {
    "edit_class_colour": EditInputs.edit_class_colour,
}


@dataclasses.dataclass(frozen=True)
class MaskVAEInputs:
    """logits: (N, H, W, C) decoded mask logits; labels: (N, H, W) int targets in [0, C);
    mean, logvar: (N, Z) the posterior; class_balance: the exponent of the cross-entropy's class-balancing
    weights (config.loss.mask_vae_class_balance; 0: every pixel counts the same, as the reference)."""

    logits: jax.Array
    labels: jax.Array
    mean: jax.Array
    logvar: jax.Array
    class_balance: float = 0.0

    def cross_entropy(self) -> jax.Array:
        return balanced_cross_entropy(self.logits, self.labels, self.class_balance)


def balanced_cross_entropy(logits: jax.Array, labels: jax.Array, class_balance: float) -> jax.Array:
    """Pixel-wise cross-entropy, each pixel weighted by its class's batch fraction^-class_balance (0: plain)."""
    if class_balance == 0:
        return losses.mask_cross_entropy(logits, labels)
    weights = losses.class_balance_weights(labels, logits.shape[-1], class_balance)
    return losses.weighted_mask_cross_entropy(logits, labels, weights)


MASK_VAE_TERMS: dict[str, Callable[[MaskVAEInputs], jax.Array]] = {
    "cross_entropy": MaskVAEInputs.cross_entropy,
    "kl": lambda x: losses.kl_to_standard_normal(x.mean, x.logvar),
}



@dataclasses.dataclass(frozen=True)
class ParserInputs:
    """logits: (N, H, W, C) the parser's class logits; labels: (N, H, W) int targets in [0, C);
    class_balance: the exponent of the cross-entropy's class-balancing weights (config.loss.parser_class_balance;
    0: every pixel counts the same)."""

    logits: jax.Array
    labels: jax.Array
    class_balance: float = 0.0

    def cross_entropy(self) -> jax.Array:
        return balanced_cross_entropy(self.logits, self.labels, self.class_balance)


PARSER_TERMS: dict[str, Callable[[ParserInputs], jax.Array]] = {
    "parser_cross_entropy": ParserInputs.cross_entropy,
    "parser_dice": lambda x: losses.soft_dice_loss(x.logits, x.labels),
    "parser_lovasz": lambda x: losses.lovasz_softmax_loss(x.logits, x.labels),
}


@dataclasses.dataclass(frozen=True)
class ClassifierInputs:
    """logits: (N, A) the classifier's attribute logits; labels: (N, A) the attributes, 1 present, 0 absent."""

    logits: jax.Array
    labels: jax.Array


CLASSIFIER_TERMS: dict[str, Callable[[ClassifierInputs], jax.Array]] = {
    "classifier_cross_entropy": lambda x: losses.attribute_cross_entropy(x.logits, x.labels),
}

ALL_TERMS = (*GENERATOR_TERMS, *EDIT_TERMS, *MASK_VAE_TERMS, *PARSER_TERMS, *CLASSIFIER_TERMS)


def check_weights(weights: Mapping[str, float]) -> None:
    """Every term has a weight and every weight names a term; raises ValueError naming the others."""
    unknown = sorted(set(weights) - set(ALL_TERMS))
    missing = sorted(set(ALL_TERMS) - set(weights))
    if unknown or missing:
        raise ValueError(f"config.loss.weights: unknown terms {unknown}, missing terms {missing}; "
                         f"expected exactly {sorted(ALL_TERMS)}")


def weighted_terms(terms: Mapping[str, Callable[[Any], jax.Array]], weights: Mapping[str, float],
                   inputs: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The weighted total and each computed term (unweighted, float32 scalars), in `terms` order.

    Terms whose weight is 0 are skipped: not computed, not in the returned dict.
    """
    check_weights(weights)
    values = {name: term(inputs) for name, term in terms.items() if weights[name] != 0}
    total = sum(weights[name] * value for name, value in values.items())
    return jnp.asarray(total, jnp.float32), values


def vgg_for(config: ml_collections.ConfigDict, dtype: jnp.dtype) -> VGG19Features:
    """The frozen VGG19 feature extractor the perceptual term runs, in `dtype`."""
    return VGG19Features(input_mode=config.loss.vgg_input_mode, dtype=dtype)
