"""Image grids of what a phase is learning, for TensorBoard and for people.

Rows: the first examples of the batch. Columns by phase:
  maskvae: mask | MaskVAE reconstruction (argmax of the decoded posterior mean)
  dmn:     mask | target | reconstruction G(I_t, M_t, M_t)
  ebst:    mask | target | reconstruction | M_inter | I_inter | M_outer | I_outer | blend
  parser:  image | true mask | parsed mask (argmax of the parser's logits)
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image

from maskgan_jax import ops, paths
from maskgan_jax import sharding as sharding_lib
from maskgan_jax import steps as steps_lib
from maskgan_jax.models import one_hot_mask
from maskgan_jax.state import Networks
from tfds_celebamask.labels import PALETTE

MAX_ROWS = 4


def colour_mask(labels: jax.Array) -> jax.Array:
    """Label map (..., H, W) -> palette colours (..., H, W, 3) uint8."""
    return jnp.asarray(PALETTE)[labels]


def to_uint8(images: jax.Array) -> jax.Array:
    """Images in [-1, 1] -> uint8 [0, 255]."""
    return jnp.clip(jnp.round((images.astype(jnp.float32) + 1.0) * 127.5), 0, 255).astype(jnp.uint8)


def tile(columns: list[jax.Array]) -> jax.Array:
    """Columns of (R, H, W, 3) uint8 -> one (R*H, C*W, 3) grid."""
    stacked = jnp.stack(columns, axis=1)  # (R, C, H, W, 3)
    r, c, h, w, _ = stacked.shape
    return stacked.transpose(0, 2, 1, 3, 4).reshape(r * h, c * w, 3)


def make_preview_fn(phase: str, networks: Networks, config: ml_collections.ConfigDict, mesh
                    ) -> Callable[[dict, dict], jax.Array]:
    """A jitted fn(states, batch) -> (R*H, C*W, 3) uint8 grid, replicated (layers in config.model.layer_forms)."""

    def preview(states, batch):
        rows = min(MAX_ROWS, batch["mask"].shape[0])
        image, labels, labels_ref = batch["image"][:rows], batch["mask"][:rows], batch["mask_ref"][:rows]
        mask = one_hot_mask(labels, config.num_classes)
        columns = [colour_mask(labels)]
        if phase == "maskvae":
            vae = networks.mask_vae
            variables = states["mask_vae"].variables()
            mean, _ = vae.apply(variables, mask, False, method=vae.encode)
            decoded = jnp.argmax(vae.apply(variables, mean, False, method=vae.decode), axis=-1)
            return tile(columns + [colour_mask(decoded)])
        if phase == "parser":
            parsed = jnp.argmax(networks.parser.apply({"params": states["parser"].params}, image), axis=-1)
            return tile([to_uint8(image), colour_mask(labels), colour_mask(parsed)])
        g_params = states["generator"].params
        reconstruction = networks.generator.apply({"params": g_params}, image, mask, mask)
        columns += [to_uint8(image), to_uint8(reconstruction)]
        if phase == "ebst":
            inter, outer = steps_lib.simulated_edits(networks, config, states["mask_vae"].variables(), labels,
                                                     labels_ref)
            i_inter, i_outer, blend = steps_lib.blend_edits(
                networks, g_params, states["blender"].params, image, mask,
                one_hot_mask(inter, config.num_classes), one_hot_mask(outer, config.num_classes))
            columns += [colour_mask(inter), to_uint8(i_inter), colour_mask(outer), to_uint8(i_outer),
                        to_uint8(blend)]
        return tile(columns)

    return jax.jit(ops.traced_in(config.model.layer_forms, preview), out_shardings=sharding_lib.replicated(mesh))


def save_png(grid: np.ndarray, path: str | os.PathLike) -> None:
    """Writes a uint8 (H, W, 3) grid as PNG at `path` (local or any etils.epath URI), creating the folder."""
    path = paths.as_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(grid, np.uint8)).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
