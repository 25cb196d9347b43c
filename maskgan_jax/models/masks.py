"""Mask helpers: integer label maps to the one-hot form the networks read."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tfds_celebamask.labels import NUM_CLASSES


def one_hot_mask(labels: jax.Array, num_classes: int = NUM_CLASSES, dtype=jnp.float32) -> jax.Array:
    """Integer label map (..., H, W) with values in [0, num_classes) -> one-hot (..., H, W, num_classes).

    Labels outside the range give an all-zero vector (jax.nn.one_hot); validate user input before
    (maskgan_jax.edit does).
    """
    return jax.nn.one_hot(labels, num_classes, dtype=dtype)
