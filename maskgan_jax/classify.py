"""The attribute classifier of a training checkpoint (trained beside the parser, phase `parser`): face
images -> the probability of each attribute it was trained on (config.model.classifier.attributes).

    loaded = load_classifier(WORKDIR)           # a workdir, the parser phase's directory or a step
    probabilities = Classifier(loaded).probabilities(images)   # uint8 (N, R, R, 3) -> float32 (N, A)

Only the classifier's parameters are read (no optimiser state, no other network).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath

from maskgan_jax import edit as edit_lib
from maskgan_jax.models import registry

CLASSIFIER_ITEM = "classifier"
CLASSIFIER_PHASE = "parser"  # trained beside the parser


@dataclasses.dataclass(frozen=True)
class LoadedClassifier:
    """module: the registry's network for config.model.classifier. params: its `params`.
    attributes: the attribute names of its logits, in order. resolution: the side it was trained at.
    config: the run's config. step_dir: the checkpoint read."""

    module: Any
    params: Any
    attributes: tuple[str, ...]
    resolution: int
    config: ml_collections.ConfigDict
    step_dir: epath.Path


def load_classifier(path: str | os.PathLike) -> LoadedClassifier:
    """Reads the classifier's params from a workdir (its checkpoints/parser), a phase directory or a step.

    Raises:
      FileNotFoundError: no finished checkpoint, or one without a classifier (a run from before the
        classifier was trained beside the parser).
    """
    step_dir = edit_lib.find_item(path, CLASSIFIER_ITEM, (CLASSIFIER_PHASE,))
    config = edit_lib.read_run_config(step_dir)
    module = registry.build_network(config, CLASSIFIER_ITEM)
    shapes = jax.eval_shape(lambda: registry.init_variables(config, CLASSIFIER_ITEM, module, jax.random.key(0)))
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device),
                                    shapes["params"])
    restored = edit_lib.restore_item(step_dir / CLASSIFIER_ITEM, {"params": target}, CLASSIFIER_ITEM)
    return LoadedClassifier(module=module, params=restored["params"], attributes=tuple(module.attributes),
                            resolution=int(config.resolution), config=config, step_dir=step_dir)


def attribute_probabilities(module: Any, params: Any, images: jax.Array) -> jax.Array:
    """uint8 (N, R, R, 3) faces -> float32 (N, A) probabilities in [0, 1] (sigmoid of the logits), pure."""
    return jax.nn.sigmoid(module.apply({"params": params}, images.astype(jnp.float32) / 127.5 - 1.0))


class Classifier:
    """Classifies batches of faces at the model's resolution, compiled once (batches padded to `batch_size`)."""

    def __init__(self, loaded: LoadedClassifier, batch_size: int = 16):
        self.loaded = loaded
        self.batch_size = batch_size
        self._classify = jax.jit(lambda params, images: attribute_probabilities(loaded.module, params, images))

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, R, R, 3) -> float32 (N, A), A = len(loaded.attributes)."""
        size = self.loaded.resolution
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[1:] != (size, size, 3) or images.dtype != np.uint8:
            raise ValueError(f"images: expected uint8 (N, {size}, {size}, 3), got {images.dtype} {images.shape}")
        out = [np.zeros((0, len(self.loaded.attributes)), np.float32)]
        for start in range(0, len(images), self.batch_size):
            chunk = images[start:start + self.batch_size]
            padded = np.concatenate([chunk, np.repeat(chunk[-1:], self.batch_size - len(chunk), axis=0)])
            out.append(np.asarray(self._classify(self.loaded.params, padded))[:len(chunk)])
        return np.concatenate(out)

    def present(self, images: np.ndarray, attribute: str) -> np.ndarray:
        """bool (N,): whether the classifier finds `attribute` on each face (probability > 0.5)."""
        if attribute not in self.loaded.attributes:
            raise ValueError(f"the classifier of {self.loaded.step_dir} predicts {list(self.loaded.attributes)}, "
                             f"not {attribute!r} (config.model.classifier.attributes)")
        return self.probabilities(images)[:, self.loaded.attributes.index(attribute)] > 0.5
