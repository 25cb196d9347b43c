"""One pure training step per phase/stage: MaskVAE, DMN (EBST stage 1), EBST stage 2 and the parser
(with the attribute classifier).

Every step has the signature
    step(states, guard, batch, step, vgg_params) -> (states, guard, metrics)
with `states` a dict of `NetState` per network, `batch` the global batch of `input_pipeline`
({'image': (B,H,W,3) float32 in [-1,1], 'mask': (B,H,W) int32, 'mask_ref': (B,H,W) int32,
'attributes': (B,40) int32 in {0, 1}}),
`step` the int32 step being taken (it also seeds the step's randomness, so a resumed run draws the
same numbers), and `vgg_params` the frozen VGG19 (None: no perceptual term). `metrics` is a dict of
float32 scalars, left on device; all of them are watched by the non-finite guard.

The non-finite guard: a step whose losses or gradient norms are not all finite changes no state and
records its step number and which terms failed in `guard`; the loop reads the guard at logging and
checkpoint intervals and stops the run (see `train.py`), so no checkpoint ever holds such an update.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from maskgan_jax import losses, objective, parser_blur, style_hiding
from maskgan_jax.models import one_hot_mask, registry
from maskgan_jax.state import NetState, Networks, learning_rate_schedule
from tfds_celebamask.labels import ATTRIBUTE_NAMES

Metrics = dict[str, jax.Array]
Step = Callable[..., tuple[dict[str, NetState], "Guard", Metrics]]


@flax.struct.dataclass
class Guard:
    """first_bad_step: int32, -1 while every step so far was finite. bad_stage: int32, the stage (0, or
    1 for EBST stage 2) whose metrics failed. bad_terms: int32 bitmask over the sorted metric names of
    that stage (decoded by `describe_bad_terms`)."""

    first_bad_step: jax.Array
    bad_stage: jax.Array
    bad_terms: jax.Array

    @classmethod
    def create(cls) -> Guard:
        return cls(first_bad_step=jnp.array(-1, jnp.int32), bad_stage=jnp.array(-1, jnp.int32),
                   bad_terms=jnp.array(0, jnp.int32))


def describe_bad_terms(bad_terms: int, metric_names: list[str]) -> list[str]:
    """The metric names whose bits are set in `bad_terms`; `metric_names`: the failed stage's metrics."""
    return [name for i, name in enumerate(sorted(metric_names)) if bad_terms >> i & 1]


def _guarded(old: dict[str, NetState], new: dict[str, NetState], guard: Guard, metrics: Metrics,
             step: jax.Array, stage: int) -> tuple[dict[str, NetState], Guard]:
    """Keeps the old states if any metric is non-finite, and records the first such step (and the stage,
    `stage`, whose metrics failed) in the guard."""
    names = sorted(metrics)
    finite = jnp.stack([jnp.isfinite(metrics[name]) for name in names])
    all_finite = jnp.all(finite)
    bits = jnp.sum(jnp.where(finite, 0, 2 ** jnp.arange(len(names), dtype=jnp.int32)))
    states = jax.tree_util.tree_map(lambda n, o: jnp.where(all_finite, n, o), new, old)
    first_failure = jnp.logical_and(guard.first_bad_step < 0, jnp.logical_not(all_finite))
    guard = Guard(first_bad_step=jnp.where(first_failure, step, guard.first_bad_step),
                  bad_stage=jnp.where(first_failure, stage, guard.bad_stage),
                  bad_terms=jnp.where(first_failure, bits, guard.bad_terms))
    return states, guard


def with_learning_rate(opt_state: Any, learning_rate: jax.Array) -> Any:
    """`opt_state` (of `state.optimizer`) with its learning-rate hyperparameter set."""
    return opt_state._replace(hyperparams={**opt_state.hyperparams,
                                           "learning_rate": jnp.asarray(learning_rate, jnp.float32)})


def applied_learning_rate(opt_state: Any) -> jax.Array:
    """The learning rate the last update of `opt_state` applied."""
    return opt_state.hyperparams["learning_rate"]


def apply_updates(params: Any, opt_state: Any, grads: Any, tx: optax.GradientTransformation,
                  learning_rate: jax.Array) -> tuple[Any, Any]:
    """One Adam update of `params` at `learning_rate`. Returns (params, opt_state)."""
    updates, opt_state = tx.update(grads, with_learning_rate(opt_state, learning_rate), params)
    return optax.apply_updates(params, updates), opt_state


def _apply_gradients(state: NetState, grads: Any, tx: optax.GradientTransformation, learning_rate: jax.Array,
                     batch_stats: Any = None) -> NetState:
    params, opt_state = apply_updates(state.params, state.opt_state, grads, tx, learning_rate)
    return state.replace(params=params, opt_state=opt_state,
                         batch_stats=state.batch_stats if batch_stats is None else batch_stats)


def _schedule(config: ml_collections.ConfigDict, phase: str) -> optax.Schedule:
    return learning_rate_schedule(config.phases[phase])


# The streams of _step_rng: one per use of randomness, so that no two draw the same numbers.
MASK_VAE_STREAM, STYLE_HIDING_STREAM, PARSER_BLUR_STREAM = 0, 1, 2


def _step_rng(seed: int, step: jax.Array, stream: int) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), step), stream)


# --------------------------------------------------------------------------------------- MaskVAE


def make_maskvae_step(networks: Networks, config: ml_collections.ConfigDict,
                      tx: optax.GradientTransformation, phase: str = "maskvae") -> Step:
    """MaskVAE pretraining: objective.MASK_VAE_TERMS (pixel-wise cross-entropy, class-balanced by
    config.loss.mask_vae_class_balance; KL(q(z|M) || N(0, I))) weighted by config.loss.weights."""
    vae = networks.mask_vae
    schedule = _schedule(config, phase)

    def step_fn(states, guard, batch, step, vgg_params):
        del vgg_params
        state = states["mask_vae"]
        masks = one_hot_mask(batch["mask"], config.num_classes)

        def loss_fn(params):
            (logits, mean, logvar), updated = vae.apply(
                {"params": params, "batch_stats": state.batch_stats}, masks, True,
                rngs={"reparam": _step_rng(config.seed, step, MASK_VAE_STREAM)}, mutable=["batch_stats"])
            total, terms = objective.weighted_terms(
                objective.MASK_VAE_TERMS, config.loss.weights,
                objective.MaskVAEInputs(logits=logits, labels=batch["mask"], mean=mean, logvar=logvar,
                                        class_balance=config.loss.mask_vae_class_balance))
            accuracy = jnp.mean((jnp.argmax(logits, -1) == batch["mask"]).astype(jnp.float32))
            return total, (terms, accuracy, updated["batch_stats"])

        (total, (terms, accuracy, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        new = {**states, "mask_vae": _apply_gradients(state, grads, tx, schedule(step), batch_stats)}
        metrics = {"mask_vae/total": total, "mask_vae/grad_norm": optax.tree.norm(grads),
                   "mask_vae/pixel_accuracy": accuracy,
                   "mask_vae/learning_rate": applied_learning_rate(new["mask_vae"].opt_state),
                   **{f"mask_vae/{k}": v for k, v in terms.items()}}
        states, guard = _guarded(states, new, guard, metrics, step, stage=0)
        return states, guard, metrics

    return step_fn


# ----------------------------------------------------------------------------------------- GAN


def _generator_objective(networks: Networks, config: ml_collections.ConfigDict, condition: jax.Array,
                         real: jax.Array, fake: jax.Array, discriminator_outputs: tuple[Any, Any],
                         vgg_params: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Section 3's objective for G: objective.GENERATOR_TERMS weighted by config.loss.weights.

    condition: one-hot mask (N,H,W,C) the images should follow; real/fake: (N,H,W,3) in [-1, 1];
    discriminator_outputs: D's outputs on (condition, real) and (condition, fake).
    Returns (total, {term: unweighted value}).
    """
    dtype = registry.compute_dtype(config.model.compute_dtype)
    inputs = objective.GeneratorInputs(
        condition=condition, real=real, fake=fake, discriminator=networks.discriminator, d_params=None,
        vgg=objective.vgg_for(config, dtype), vgg_params=vgg_params,
        perceptual_layer_weights=tuple(config.loss.perceptual_layer_weights),
        given_discriminator_outputs=discriminator_outputs, l1_class_balance=float(config.loss.l1_class_balance),
        class_colour_min_pixels=float(config.loss.class_colour_min_pixels))
    return objective.weighted_terms(objective.GENERATOR_TERMS, config.loss.weights, inputs)


def _gan_gradients(networks: Networks, config: ml_collections.ConfigDict, render: Callable[[Any], Any],
                   gen_params: Any, d_params: Any, condition: jax.Array, real: jax.Array, vgg_params: Any,
                   extra_objective: Callable[[Any], tuple[jax.Array, dict[str, jax.Array]]] | None = None
                   ) -> tuple[jax.Array, tuple[jax.Array, dict[str, jax.Array], Any], tuple[jax.Array, Any]]:
    """Both GAN losses and their gradients from one forward of the generator and one of D per input.

    pix2pixHD computes G's loss (D fixed) and D's loss (on stop_gradient(fake)) with the same D, so
    D's outputs on (condition, real) and (condition, fake) have the same values in both: each is
    computed once here, and each loss pulls its own cotangents back through them (G's through D's
    input, D's to its parameters). The gradients are those of the two separate losses.

    render: gen_params -> fake (N,H,W,3) float32 in [-1, 1], or -> (fake, extra) when extra_objective
    is given: extra_objective(extra) -> (total, terms) is added to G's objective (EBST stage 2's terms on
    its simulated edits), its gradient pulled back through the same forward. condition: one-hot
    (N,H,W,C); real: (N,H,W,3) float32 in [-1, 1].
    Returns (fake, (g_total, g_terms, gen_grads), (d_total, d_grads)).
    """
    outputs, render_pullback = jax.vjp(render, gen_params)
    fake = outputs if extra_objective is None else outputs[0]
    apply = lambda p, x: networks.discriminator.apply({"params": p}, objective.discriminator_input(condition, x))
    real_outputs, real_pullback = jax.vjp(lambda p: apply(p, real), d_params)
    fake_outputs, fake_pullback = jax.vjp(apply, d_params, fake)

    def g_loss_fn(fake, fake_outputs):
        return _generator_objective(networks, config, condition, real, fake, (real_outputs, fake_outputs),
                                    vgg_params)

    (g_total, g_terms), (d_fake, d_fake_outputs) = jax.value_and_grad(g_loss_fn, argnums=(0, 1), has_aux=True)(
        fake, fake_outputs)
    if config.loss.weights.adversarial or config.loss.weights.feature_matching:
        d_fake = d_fake + fake_pullback(d_fake_outputs)[1]  # the adversarial terms' path through D
    if extra_objective is None:
        (gen_grads,) = render_pullback(d_fake)
    else:
        (extra_total, extra_terms), d_extra = jax.value_and_grad(extra_objective, has_aux=True)(outputs[1])
        g_total, g_terms = g_total + extra_total, {**g_terms, **extra_terms}
        (gen_grads,) = render_pullback((d_fake, d_extra))
    d_total, (d_real_outputs, d_fake_outputs) = jax.value_and_grad(losses.lsgan_discriminator_loss, argnums=(0, 1))(
        real_outputs, fake_outputs)
    d_grads = jax.tree_util.tree_map(jnp.add, real_pullback(d_real_outputs)[0], fake_pullback(d_fake_outputs)[0])
    return fake, (g_total, g_terms, gen_grads), (d_total, d_grads)


def make_dmn_step(networks: Networks, config: ml_collections.ConfigDict, g_tx: optax.GradientTransformation,
                  d_tx: optax.GradientTransformation, phase: str = "dmn") -> Step:
    """Stage 1 (DMN training, and EBST's stage 1 with phase='ebst'): reconstruct I_t from (I_t, M_t, M_t).

    As pix2pixHD, G and D losses are computed on one forward pass with the current D, then G and D
    are both updated: D on (M_t, I_t) vs (M_t, stop_gradient(I_out)), each at `phase`'s scheduled rate.
    With config.data.style_hiding (in the phases it names), some classes of some faces are hidden from
    the style encoder's inputs (maskgan_jax.style_hiding); the wanted mask and the target stay whole.
    """
    g = networks.generator
    schedule = _schedule(config, phase)
    hiding = config.data.style_hiding
    hidden_ids = style_hiding.class_ids(hiding.classes)
    hides = style_hiding.applies(hiding, phase)

    def step_fn(states, guard, batch, step, vgg_params):
        image = batch["image"]
        mask = one_hot_mask(batch["mask"], config.num_classes)
        style_image, style_mask = image, mask
        if hides:  # decided at trace time: the paper's step is traced unchanged
            style_image, style_labels = style_hiding.hide_classes(
                image, batch["mask"], hidden_ids, hiding.rate, _step_rng(config.seed, step, STYLE_HIDING_STREAM))
            style_mask = one_hot_mask(style_labels, config.num_classes)

        def render(g_params):
            return g.apply({"params": g_params}, style_image, style_mask, mask).astype(jnp.float32)

        fake, (g_total, g_terms, g_grads), (d_total, d_grads) = _gan_gradients(
            networks, config, render, states["generator"].params, states["discriminator"].params, mask, image,
            vgg_params)
        learning_rate = schedule(step)
        new = {**states,
               "generator": _apply_gradients(states["generator"], g_grads, g_tx, learning_rate),
               "discriminator": _apply_gradients(states["discriminator"], d_grads, d_tx, learning_rate)}
        metrics = {"stage1/g_total": g_total, "stage1/d_total": d_total,
                   "stage1/g_grad_norm": optax.tree.norm(g_grads),
                   "stage1/d_grad_norm": optax.tree.norm(d_grads),
                   "stage1/learning_rate_generator": applied_learning_rate(new["generator"].opt_state),
                   "stage1/learning_rate_discriminator": applied_learning_rate(new["discriminator"].opt_state),
                   "stage1/l1_reconstruction": jnp.mean(jnp.abs(fake - image)),
                   **{f"stage1/{k}": v for k, v in g_terms.items()}}
        states, guard = _guarded(states, new, guard, metrics, step, stage=0)
        return states, guard, metrics

    return step_fn


# ------------------------------------------------------------------------------- EBST stage 2


def simulated_edits(networks: Networks, config: ml_collections.ConfigDict, vae_variables: dict[str, Any],
                    mask: jax.Array, mask_ref: jax.Array) -> tuple[jax.Array, jax.Array]:
    """M_inter and M_outer: two small, opposite edits of M_t towards and away from M_ref.

    z_t, z_ref are the MaskVAE posterior means; v = (z_ref - z_t) / lambda_inter;
    M_inter = argmax Dec(z_t + v), M_outer = argmax Dec(z_t - v).
    Args: mask, mask_ref: int (N, H, W). Returns: two int32 (N, H, W) label maps.
    """
    vae = networks.mask_vae
    both = one_hot_mask(jnp.concatenate([mask, mask_ref], axis=0), config.num_classes)
    means, _ = vae.apply(vae_variables, both, False, method=vae.encode)
    z_t, z_ref = jnp.split(means, 2, axis=0)
    v = (z_ref - z_t) / config.loss.lambda_inter
    logits = vae.apply(vae_variables, jnp.concatenate([z_t + v, z_t - v], axis=0), False, method=vae.decode)
    inter, outer = jnp.split(jnp.argmax(logits, axis=-1).astype(jnp.int32), 2, axis=0)
    return inter, outer


def blend_edits(networks: Networks, g_params: Any, b_params: Any, image: jax.Array, mask: jax.Array,
                mask_inter: jax.Array, mask_outer: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """I_inter, I_outer = G_A(I_t, M_t, M_inter / M_outer) in one batched call; I_blend = B(I_inter, I_outer).

    mask, mask_inter, mask_outer: one-hot (N,H,W,C). Returns (i_inter, i_outer, i_blend), (N,H,W,3) float32.
    """
    n = image.shape[0]
    both = networks.generator.apply({"params": g_params}, jnp.concatenate([image, image]),
                                    jnp.concatenate([mask, mask]), jnp.concatenate([mask_inter, mask_outer]))
    i_inter, i_outer = both[:n], both[n:]
    blend, _ = networks.blender.apply({"params": b_params}, i_inter, i_outer)
    return i_inter.astype(jnp.float32), i_outer.astype(jnp.float32), blend


def make_ebst_stage2_step(networks: Networks, config: ml_collections.ConfigDict,
                          gb_tx: optax.GradientTransformation, d_tx: optax.GradientTransformation,
                          phase: str = "ebst") -> Step:
    """Stage 2: update G_B = {G_A, B} jointly on dual-editing consistency, and D on the blend.

    G_B has its own optimiser, as the reference's `optimizer_GB`: one Adam state over
    {'generator': G_A's params, 'blender': B's params}, held as the blender's `opt_state` (stage 1
    keeps updating G_A with the generator's own state). D shares its optimiser with stage 1, as in the
    reference. The MaskVAE is frozen (eval-mode BatchNorm, no gradient, no update).
    """
    schedule = _schedule(config, phase)

    def step_fn(states, guard, batch, step, vgg_params):
        image = batch["image"]
        mask = one_hot_mask(batch["mask"], config.num_classes)
        inter, outer = simulated_edits(networks, config, states["mask_vae"].variables(), batch["mask"],
                                       batch["mask_ref"])
        inter_onehot = one_hot_mask(inter, config.num_classes)
        outer_onehot = one_hot_mask(outer, config.num_classes)

        edit_masks = jnp.concatenate([inter_onehot, outer_onehot])
        edit_terms = any(config.loss.weights[name] for name in objective.EDIT_TERMS)

        def render(gb_params):
            g_params, b_params = gb_params
            i_inter, i_outer, blend = blend_edits(networks, g_params, b_params, image, mask, inter_onehot,
                                                  outer_onehot)
            return (blend, jnp.concatenate([i_inter, i_outer])) if edit_terms else blend

        def edit_objective(edits):
            return objective.weighted_terms(objective.EDIT_TERMS, config.loss.weights, objective.EditInputs(
                source=image, source_mask=mask, edits=edits, edit_masks=edit_masks,
                class_colour_min_pixels=float(config.loss.class_colour_min_pixels)))

        gb_params = (states["generator"].params, states["blender"].params)
        blend, (gb_total, terms, (g_grads, b_grads)), (d_total, d_grads) = _gan_gradients(
            networks, config, render, gb_params, states["discriminator"].params, mask, image, vgg_params,
            edit_objective if edit_terms else None)
        learning_rate = schedule(step)
        gb, gb_opt_state = apply_updates(
            {"generator": gb_params[0], "blender": gb_params[1]}, states["blender"].opt_state,
            {"generator": g_grads, "blender": b_grads}, gb_tx, learning_rate)
        new = {**states,
               "generator": states["generator"].replace(params=gb["generator"]),
               "blender": states["blender"].replace(params=gb["blender"], opt_state=gb_opt_state),
               "discriminator": _apply_gradients(states["discriminator"], d_grads, d_tx, learning_rate)}
        metrics = {"stage2/gb_total": gb_total, "stage2/d_total": d_total,
                   "stage2/learning_rate_generator_blender": applied_learning_rate(gb_opt_state),
                   "stage2/learning_rate_discriminator": applied_learning_rate(new["discriminator"].opt_state),
                   "stage2/g_grad_norm": optax.tree.norm(g_grads),
                   "stage2/b_grad_norm": optax.tree.norm(b_grads),
                   "stage2/d_grad_norm": optax.tree.norm(d_grads),
                   "stage2/inter_changed_fraction": jnp.mean((inter != batch["mask"]).astype(jnp.float32)),
                   "stage2/l1_blend": jnp.mean(jnp.abs(blend - image)),
                   **{f"stage2/{k}": v for k, v in terms.items()}}
        states, guard = _guarded(states, new, guard, metrics, step, stage=1)
        return states, guard, metrics

    return step_fn


# ------------------------------------------------------------------------------------- parser


def parser_pixel_accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """The fraction of pixels whose argmax class is the label: float32 scalar (logits (N,H,W,C), labels (N,H,W))."""
    return jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))


def attribute_labels(config: ml_collections.ConfigDict, attributes: jax.Array) -> jax.Array:
    """The columns of the batch's (B, 40) attributes (labels.ATTRIBUTE_NAMES order, 1 present, 0 absent)
    that config.model.classifier.attributes names, in that order: (B, A)."""
    columns = [ATTRIBUTE_NAMES.index(name) for name in config.model.classifier.attributes]
    return attributes[:, jnp.asarray(columns)]


def classifier_accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """The fraction of (face, attribute) pairs whose logit's sign is the label: float32 scalar."""
    return jnp.mean(((logits > 0) == (labels > 0)).astype(jnp.float32))


def make_parser_step(networks: Networks, config: ml_collections.ConfigDict,
                     tx: optax.GradientTransformation, classifier_tx: optax.GradientTransformation,
                     phase: str = "parser") -> Step:
    """The face parser and, beside it, the attribute classifier (two networks, their own optimisers, one
    step over the same images).

    Parser: objective.PARSER_TERMS (pixel-wise cross-entropy, class-balanced by
    config.loss.parser_class_balance, and soft Dice) of its logits on `image` against `mask`.
    Classifier: objective.CLASSIFIER_TERMS (binary cross-entropy) of its logits on `image` against the
    batch's `attributes` columns of config.model.classifier.attributes. Both weighted by config.loss.weights.
    With config.data.parser_blur.rate > 0 the parser (not the classifier) reads some faces blurred,
    whole or in one class's region (maskgan_jax.parser_blur).
    """
    parser = networks.parser
    classifier = networks.classifier
    schedule = _schedule(config, phase)
    blur = config.data.parser_blur
    parser_blur.check(blur)

    def step_fn(states, guard, batch, step, vgg_params):
        del vgg_params
        state = states["parser"]
        classifier_state = states["classifier"]
        wanted = attribute_labels(config, batch["attributes"])
        parser_images = batch["image"]
        if blur.rate > 0:  # decided at trace time: without blurring the step is traced unchanged
            parser_images = parser_blur.blur_faces(parser_images, batch["mask"], blur,
                                                   _step_rng(config.seed, step, PARSER_BLUR_STREAM))

        def loss_fn(params):
            logits = parser.apply({"params": params}, parser_images)
            total, terms = objective.weighted_terms(
                objective.PARSER_TERMS, config.loss.weights,
                objective.ParserInputs(logits=logits, labels=batch["mask"],
                                       class_balance=config.loss.parser_class_balance))
            return total, (terms, parser_pixel_accuracy(logits, batch["mask"]))

        def classifier_loss_fn(params):
            logits = classifier.apply({"params": params}, batch["image"])
            total, terms = objective.weighted_terms(objective.CLASSIFIER_TERMS, config.loss.weights,
                                                    objective.ClassifierInputs(logits=logits, labels=wanted))
            return total, (terms, classifier_accuracy(logits, wanted))

        (total, (terms, accuracy)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        (c_total, (c_terms, c_accuracy)), c_grads = jax.value_and_grad(
            classifier_loss_fn, has_aux=True)(classifier_state.params)
        learning_rate = schedule(step)
        new = {**states, "parser": _apply_gradients(state, grads, tx, learning_rate),
               "classifier": _apply_gradients(classifier_state, c_grads, classifier_tx, learning_rate)}
        metrics = {"parser/total": total, "parser/grad_norm": optax.tree.norm(grads),
                   "parser/pixel_accuracy": accuracy,
                   "parser/learning_rate": applied_learning_rate(new["parser"].opt_state),
                   **{f"parser/{k}": v for k, v in terms.items()},
                   "classifier/total": c_total, "classifier/grad_norm": optax.tree.norm(c_grads),
                   "classifier/accuracy": c_accuracy,
                   "classifier/learning_rate": applied_learning_rate(new["classifier"].opt_state),
                   **{f"classifier/{k}": v for k, v in c_terms.items()}}
        states, guard = _guarded(states, new, guard, metrics, step, stage=0)
        return states, guard, metrics

    return step_fn
