"""Faces to start from or to take a reference mask from: the procedural synthetic faces
(tfds_celebamask.synthetic, drawn at the model's resolution), or a split of a built TFDS dataset
(celebamask_hq/official_64, synthetic_faces, ...: its `image` and `mask` features)."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Face:
    """A gallery face: name, image uint8 (S, S, 3), mask uint8 (S, S) CelebAMask-HQ ids."""

    name: str
    image: np.ndarray
    mask: np.ndarray


def synthetic_faces(count: int, size: int, seed: int = 0) -> list[Face]:
    """`count` synthetic faces of side `size` (the same faces for the same seed)."""
    from tfds_celebamask import synthetic

    faces = []
    for index in range(count):
        geometry, style = synthetic.sample_face(synthetic.face_rng(seed, index))
        image, mask = synthetic.render(geometry, style, size)
        faces.append(Face(f"synthetic {index}", image, mask))
    return faces


def tfds_faces(name: str, split: str, count: int, data_dir: str | None = None) -> list[Face]:
    """The first `count` examples of a built TFDS dataset's split (features `image` and `mask`)."""
    import tensorflow_datasets as tfds  # slow; only here

    from tfds_celebamask import register

    register()  # tfds.data_source finds celebamask_hq by name
    source = tfds.data_source(name, split=split, data_dir=data_dir)
    faces = []
    for index in range(min(count, len(source))):
        example = source[index]
        mask = np.asarray(example["mask"], np.uint8)
        faces.append(Face(f"{name} {split} {index}", np.asarray(example["image"], np.uint8),
                          mask[..., 0] if mask.ndim == 3 else mask))
    if not faces:
        raise ValueError(f"{name} split {split!r}: no examples to offer")
    return faces
