"""Which normalisation statistics the generator renders an edit with (config.edit.norm_statistics).

The DMN's backbone normalises every feature map over the whole image (InstanceNorm in its down and up
paths, AdaIN in its residual blocks). So a wanted mask that changes the share of a class changes what
every pixel's features become, and the colours of the classes an edit keeps drift with it
(`benchmarks.colour_drift`; on the quickstart, a kept hair's colour moves 6 levels when the hair grows,
`benchmarks.norm_drift`). The modes:

  "edit" (the paper, the reference code): each layer normalises by the statistics of the edit itself.
  "face": each layer normalises by the statistics it had when the same network reconstructed the face
      on its own mask (what the style was encoded with). The kept classes keep their colours, but a
      class that the face lacks has no statistics there, so an added hat or glasses come out wrong
      (quickstart EBST: an added hat's parser accuracy 0.87 -> 0.61).
  "face_unless_added": "face" for a face whose wanted mask adds no class its own mask lacks, "edit"
      for one that does (chosen per face).

Any mode but "edit" is a departure from the paper, at inference only (training always uses "edit"),
and costs one more pass of the backbone per edit ("face_unless_added" two).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from maskgan_jax.models import one_hot_mask
from maskgan_jax.models.generator import DenseMappingNetwork
from maskgan_jax.models.layers import NORM_STATISTICS

MODES = ("edit", "face", "face_unless_added")


def check_mode(mode: str, where: str = "norm_statistics") -> str:
    """`mode` if it is one of MODES; else ValueError naming `where` (a config field or flag) and the choices."""
    if mode not in MODES:
        raise ValueError(f"{where}={mode!r}: expected one of {MODES}")
    return mode


def config_mode(config: Any) -> str:
    """A run config's config.edit.norm_statistics; "edit" (the paper) for configs written before it existed."""
    edit = config.get("edit") if hasattr(config, "get") else None
    mode = edit.get("norm_statistics", "edit") if edit is not None else "edit"
    return check_mode(mode, "config.edit.norm_statistics")


def adds_class(labels_t: jax.Array, labels_src: jax.Array, num_classes: int) -> jax.Array:
    """Whether each wanted mask holds a class (any pixel of it) that the face's mask has none of.

    labels_t, labels_src: int (N, H, W). Returns bool (N,).
    """
    def present(label_map):
        return jnp.any(label_map[..., None] == jnp.arange(num_classes), axis=(1, 2))

    return jnp.any(present(labels_src) & ~present(labels_t), axis=-1)


def render(module: DenseMappingNetwork, params: Any, style: jax.Array, labels_t: jax.Array, labels_src: jax.Array,
           mode: str) -> jax.Array:
    """The generator's rendering of `style` on the wanted mask, normalised as `mode` says. Pure.

    Args:
      module, params: the DenseMappingNetwork and its `params` collection.
      style: (N, style_dim), the faces' style vectors (module.apply(..., style_only=True)).
      labels_t, labels_src: int (N, H, W), the faces' masks and the wanted masks.
      mode: one of MODES.
    Returns:
      (N, H, W, 3) in [-1, 1], the module's compute dtype.
    """
    check_mode(mode)
    variables = {"params": params}
    mask_src = one_hot_mask(labels_src, module.num_classes)
    edited = None
    if mode != "face":
        edited = module.apply(variables, None, None, mask_src, style=style)
        if mode == "edit":
            return edited
    _, recorded = module.apply(variables, None, None, one_hot_mask(labels_t, module.num_classes), style=style,
                               mutable=[NORM_STATISTICS])
    held = module.apply({**variables, **recorded}, None, None, mask_src, style=style)
    if mode == "face":
        return held
    added = adds_class(labels_t, labels_src, module.num_classes)
    return jnp.where(added[:, None, None, None], edited, held)
