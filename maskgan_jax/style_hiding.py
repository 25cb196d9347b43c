"""Hiding classes from the style encoder in training (config.data.style_hiding; not in the paper).

An edit that adds a class (a hat, glasses) asks the generator to draw something the face it reads its
style from does not show. The paper's objectives never pose that task: the DMN and EBST's stage 1
reconstruct a face from its own style, and stage 2 compares a blend of two simulated edits with the
unedited face. So a trained model draws an added hat in a colour the style vector happens to carry
(on the quickstart the hair's: `benchmarks.added_colour`, error 56 levels against the truth's clothes
colour, where copying the clothes would score 17).

This augmentation poses it: with probability `rate` per face, the pixels of `classes` vanish from the
style encoder's inputs of the reconstruction step (labelled background, coloured the face's mean colour
over its other pixels), while the generator must still render them on the full mask and is scored
against the full face. It then has to infer the hidden class's look from the rest of the face, which
is what an added class needs.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from tfds_celebamask import labels

BACKGROUND = labels.CLASS_ID["background"]
# The phases whose reconstruction step (steps.make_dmn_step) can hide classes.
RECONSTRUCTION_PHASES = ("dmn", "ebst")


def class_ids(names: Sequence[str], where: str = "config.data.style_hiding.classes") -> tuple[int, ...]:
    """Class names -> ids; ValueError naming `where` and the unknown name."""
    unknown = [name for name in names if name not in labels.CLASS_ID]
    if unknown:
        raise ValueError(f"{where}: unknown class {unknown[0]!r}, expected names from {labels.CLASS_NAMES}")
    return tuple(labels.CLASS_ID[name] for name in names)


def applies(hiding, phase: str) -> bool:
    """Whether config.data.style_hiding (`hiding`: classes, rate, phases) hides anything in `phase`.

    ValueError naming the field for a phase outside RECONSTRUCTION_PHASES or a rate outside [0, 1].
    """
    unknown = [name for name in hiding.phases if name not in RECONSTRUCTION_PHASES]
    if unknown:
        raise ValueError(f"config.data.style_hiding.phases: unknown phase {unknown[0]!r}, expected names from "
                         f"{RECONSTRUCTION_PHASES}")
    if not 0.0 <= hiding.rate <= 1.0:
        raise ValueError(f"config.data.style_hiding.rate: {hiding.rate} is not a probability in [0, 1]")
    return bool(class_ids(hiding.classes)) and hiding.rate > 0.0 and phase in hiding.phases


def hide_classes(image: jax.Array, label_map: jax.Array, hidden_ids: Sequence[int], rate: float,
                 key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The style encoder's inputs with `hidden_ids` hidden from a random `rate` of the faces. Pure.

    Args:
      image: (N, H, W, 3) float in [-1, 1]. label_map: int (N, H, W) class ids.
      hidden_ids: the classes to hide. rate: probability in [0, 1] per face. key: a PRNG key.
    Returns:
      (image, label_map) of the same shapes and dtypes: in the chosen faces the hidden classes' pixels
      are labelled background and coloured the face's mean over its other pixels.
    """
    if not hidden_ids or rate <= 0.0:
        return image, label_map
    chosen = jax.random.bernoulli(key, rate, (image.shape[0],))
    hidden = jnp.isin(label_map, jnp.asarray(hidden_ids, label_map.dtype)) & chosen[:, None, None]
    kept = (~hidden)[..., None].astype(image.dtype)
    mean = jnp.sum(image * kept, axis=(1, 2), keepdims=True) / jnp.maximum(jnp.sum(kept, axis=(1, 2), keepdims=True),
                                                                            1.0)
    return (jnp.where(hidden[..., None], mean, image).astype(image.dtype),
            jnp.where(hidden, jnp.asarray(BACKGROUND, label_map.dtype), label_map))
