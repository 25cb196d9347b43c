"""Procedural synthetic faces written in the exact CelebAMask-HQ on-disk layout.

    python -m tfds_celebamask.synthetic --out=DIR --num=N --size=S --seed=K [--workers=W] \
        [--accessory_rate=hat=0.3 ...]

writes, for i in 0..N-1 (DIR plays the role of the unpacked `CelebAMask-HQ/` folder, so
point the builder's manual directory at DIR's parent, or name DIR `.../CelebAMask-HQ`):

    CelebA-HQ-img/<i>.jpg                                   S x S RGB, JPEG quality 90
    CelebAMask-HQ-mask-anno/<i // 2000>/<i:05d>_<part>.png  S x S, mode L, values {0, 255}
    CelebA-HQ-to-CelebA-mapping.txt                         'idx orig_idx orig_file' + rows
    CelebAMask-HQ-attribute-anno.txt                        N, 40 names, '<i>.jpg' + 40 x {-1, 1}
    CelebAMask-HQ-pose-anno.txt                             N, 'Yaw Pitch Raw', '<i>.jpg y p r'
    README.txt                                              what this is and how it was made

The real release stores 1024 x 1024 images and 512 x 512 masks; here both are S x S (the
builder resizes to its configured resolution either way). A part PNG is written only for a
part that shows in the label map (as in the release, where missing or fully hidden parts
have no file); it holds the part's full region, also where a later part covers it, so that
merging the PNGs in id order 1..18 reproduces the renderer's label map exactly.

Face i is drawn from `face_rng(seed, i)`, so the files do not depend on N or on --workers,
and the same seed gives the same bytes. --accessory_rate changes how often faces wear an
accessory (default `synthetic_params.ACCESSORY_RATES`); each face is otherwise the same.
The mapping's orig_idx puts faces i % 10 in 0..7 in CelebA's train range (< 162770), 8 in
validation (< 182637), 9 in test: 80/10/10 official splits for the builder.

The rest of the public API (render, sample_geometry, sample_style, the edits) is re-exported
here from synthetic_params, synthetic_render and synthetic_edits.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import multiprocessing
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from PIL import Image

from tfds_celebamask import labels
from tfds_celebamask.synthetic_edits import (  # noqa: F401  (re-exported)
    EDIT_CLASSES,
    EDITS,
    edit_add_glasses,
    edit_add_hat,
    edit_applies,
    edit_hair_longer,
    edit_hair_shorter,
    edit_larger_eyes,
    edit_smile,
    edit_style_copy,
)
from tfds_celebamask.synthetic_params import (  # noqa: F401  (re-exported)
    ACCESSORY_RATES,
    DEFINED_ATTRIBUTES,
    Geometry,
    Style,
    accessory_rates,
    attributes,
    face_rng,
    pose_degrees,
    sample_face,
    sample_geometry,
    sample_style,
)
from tfds_celebamask.synthetic_render import Rendered, render, render_labels, render_parts  # noqa: F401  (re-exported)

from tfds_celebamask.layout import (  # noqa: F401  (part of this module's API)
    ATTRIBUTE_FILE, CELEBA_SIZE, CELEBA_TRAIN_END, CELEBA_VALIDATION_END, IMAGE_DIR, IMAGES_PER_MASK_FOLDER,
    MAPPING_FILE, MASK_DIR, POSE_FILE, ROOT_NAME)

README_FILE = "README.txt"
LAYOUT_ENTRIES = (IMAGE_DIR, MASK_DIR, MAPPING_FILE, ATTRIBUTE_FILE, POSE_FILE, README_FILE)
JPEG_QUALITY = 90

# Faces with i % 10 < 8 are train, == 8 validation, == 9 test; this bounds N.
MAX_FACES = 10 * min(
    CELEBA_TRAIN_END // 8, CELEBA_VALIDATION_END - CELEBA_TRAIN_END, CELEBA_SIZE - CELEBA_VALIDATION_END
)


def image_path(index: int) -> str:
    """Path of face `index`'s image relative to the dataset root, e.g. 'CelebA-HQ-img/7.jpg'."""
    return f"{IMAGE_DIR}/{index}.jpg"


def part_path(index: int, part: str) -> str:
    """Path of a part PNG relative to the root, e.g. 'CelebAMask-HQ-mask-anno/1/02001_hair.png'."""
    if part not in labels.PART_NAMES:
        raise ValueError(f"unknown part {part!r}; expected one of {labels.PART_NAMES}.")
    return f"{MASK_DIR}/{index // IMAGES_PER_MASK_FOLDER}/{index:05d}_{part}.png"


def orig_index(index: int) -> int:
    """0-based CelebA index for face `index`: i % 10 < 8 train, == 8 validation, == 9 test."""
    if not 0 <= index < MAX_FACES:
        raise ValueError(f"face index must be in [0, {MAX_FACES}), got {index}.")
    block, slot = divmod(index, 10)
    if slot < 8:
        return 8 * block + slot
    if slot == 8:
        return CELEBA_TRAIN_END + block
    return CELEBA_VALIDATION_END + block


def _png_bytes(mask: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * np.uint8(255), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg_bytes(image: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image, mode="RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


@dataclasses.dataclass(frozen=True)
class FaceRecord:
    """What the text files say about one written face."""

    index: int
    attributes: np.ndarray  # int8 (40,) in {-1, 1}
    pose: tuple[float, float, float]  # yaw, pitch, roll in degrees
    parts: tuple[str, ...]  # part names written (those visible in the label map)


def write_face(root: str, index: int, seed: int, size: int, quality: int = JPEG_QUALITY,
               rates: Mapping[str, float] | None = None) -> FaceRecord:
    """Draws face `index` of dataset `seed` (accessories at `rates`, default ACCESSORY_RATES), renders it
    at size x size and writes its files."""
    geometry, style = sample_face(face_rng(seed, index), rates)
    rendered = render_parts(geometry, style, size)
    with open(os.path.join(root, image_path(index)), "wb") as f:
        f.write(_jpeg_bytes(rendered.image, quality))
    visible = np.zeros(labels.NUM_CLASSES, dtype=bool)
    visible[np.unique(rendered.labels)] = True
    parts = []
    for part_id, part in enumerate(labels.PART_NAMES, start=1):
        if visible[part_id]:
            with open(os.path.join(root, part_path(index, part)), "wb") as f:
                f.write(_png_bytes(rendered.masks[part_id - 1]))
            parts.append(part)
    return FaceRecord(index, attributes(geometry, style), pose_degrees(geometry), tuple(parts))


def mapping_text(num: int) -> str:
    """The CelebA-HQ-to-CelebA-mapping.txt of `num` faces (orig_idx from `orig_index`: 80/10/10 splits)."""
    rows = ["idx orig_idx orig_file"]
    for i in range(num):
        orig = orig_index(i)
        rows.append(f"{i} {orig} {orig + 1:06d}.jpg")  # CelebA file names are 1-based
    return "\n".join(rows) + "\n"


def _attribute_text(records: Sequence[FaceRecord]) -> str:
    rows = [str(len(records)), " ".join(labels.ATTRIBUTE_NAMES)]
    rows += [f"{r.index}.jpg " + " ".join(str(int(v)) for v in r.attributes) for r in records]
    return "\n".join(rows) + "\n"


def _pose_text(records: Sequence[FaceRecord]) -> str:
    rows = [str(len(records)), "Yaw Pitch Raw"]
    rows += [f"{r.index}.jpg {r.pose[0]:.4f} {r.pose[1]:.4f} {r.pose[2]:.4f}" for r in records]
    return "\n".join(rows) + "\n"


def _readme_text(num: int, size: int, seed: int, rates: Mapping[str, float]) -> str:
    changed = "".join(f" --accessory_rate={name}={rate:g}" for name, rate in sorted(rates.items())
                      if rate != ACCESSORY_RATES[name])
    return (
        "Synthetic faces in the CelebAMask-HQ layout (procedural, not photographs).\n"
        f"Written by: python -m tfds_celebamask.synthetic --num={num} --size={size} --seed={seed}{changed}\n"
        f"Images and part masks are both {size}x{size} (the release has 1024 and 512); the\n"
        "builder resizes to its configured resolution. Part PNGs exist only for parts that\n"
        "show in the merged label map; merging them in id order gives the label map.\n"
        "Attributes not defined by the face model are -1. Pose is in degrees.\n"
    )


class _FaceWriter:
    """Picklable per-face job for worker processes."""

    def __init__(self, root: str, seed: int, size: int, quality: int, rates: dict[str, float]):
        self.root, self.seed, self.size, self.quality, self.rates = root, seed, size, quality, rates

    def __call__(self, index: int) -> FaceRecord:
        return write_face(self.root, index, self.seed, self.size, self.quality, self.rates)


@dataclasses.dataclass(frozen=True)
class WriteStats:
    num: int
    seconds: float

    @property
    def faces_per_minute(self) -> float:
        return 60.0 * self.num / max(self.seconds, 1e-9)


def write_dataset(
    root: str, num: int, size: int = 128, seed: int = 0, workers: int = 1, quality: int = JPEG_QUALITY,
    rates: Mapping[str, float] | None = None,
) -> WriteStats:
    """Writes faces 0..num-1 of dataset `seed` under `root` in the CelebAMask-HQ layout.

    `root` may exist but must not already hold any layout entry (stale part PNGs would corrupt
    the merge). `rates`: accessory name -> probability, overriding ACCESSORY_RATES (ValueError
    naming an unknown name or a rate outside [0, 1]). The bytes written depend only on (num, size,
    seed, quality, rates), not on `workers`.
    """
    rates = accessory_rates(rates)
    if not 1 <= num <= MAX_FACES:
        raise ValueError(f"num must be in [1, {MAX_FACES}] (CelebA split ranges), got {num}.")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}.")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in [1, 100], got {quality}.")
    if size < 8:
        raise ValueError(f"size must be >= 8 pixels, got {size}.")
    existing = [e for e in LAYOUT_ENTRIES if os.path.lexists(os.path.join(root, e))]
    if existing:
        raise FileExistsError(f"{root}: already holds {existing}; write into an empty or new directory.")
    start = time.perf_counter()
    os.makedirs(os.path.join(root, IMAGE_DIR), exist_ok=True)
    for folder in range((num - 1) // IMAGES_PER_MASK_FOLDER + 1):
        os.makedirs(os.path.join(root, MASK_DIR, str(folder)), exist_ok=True)
    job = _FaceWriter(root, seed, size, quality, rates)
    indices: Iterable[int] = range(num)
    if workers == 1:
        records = [job(i) for i in indices]
    else:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            records = pool.map(job, indices, chunksize=max(1, min(64, num // (4 * workers))))
    for name, text in (
        (MAPPING_FILE, mapping_text(num)),
        (ATTRIBUTE_FILE, _attribute_text(records)),
        (POSE_FILE, _pose_text(records)),
        (README_FILE, _readme_text(num, size, seed, rates)),
    ):
        with open(os.path.join(root, name), "w", encoding="ascii", newline="\n") as f:
            f.write(text)
    return WriteStats(num=num, seconds=time.perf_counter() - start)


def _parse_rates(items: Sequence[str]) -> dict[str, float]:
    """['hat=0.3', ...] -> {'hat': 0.3}; ValueError naming the item that is not NAME=P."""
    rates = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            rates[name] = float(value)
        except ValueError:
            raise ValueError(f"--accessory_rate: {item!r} is not NAME=P with P a number in [0, 1]") from None
    return accessory_rates(rates, where="--accessory_rate")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tfds_celebamask.synthetic",
        description="Write procedural synthetic faces in the CelebAMask-HQ on-disk layout.",
    )
    parser.add_argument("--out", required=True, help="dataset root (the CelebAMask-HQ/ folder)")
    parser.add_argument("--num", type=int, default=1000, help="number of faces")
    parser.add_argument("--size", type=int, default=128, help="image and mask side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (>= 0)")
    parser.add_argument("--workers", type=int, default=1, help="processes (output is the same)")
    parser.add_argument("--quality", type=int, default=JPEG_QUALITY, help="JPEG quality")
    parser.add_argument("--accessory_rate", action="append", default=[], metavar="NAME=P",
                        help=f"probability that a face wears accessory NAME (repeatable; defaults {ACCESSORY_RATES})")
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    try:
        rates = _parse_rates(args.accessory_rate)
        stats = write_dataset(args.out, args.num, args.size, args.seed, args.workers, args.quality, rates)
    except (ValueError, FileExistsError) as error:
        parser.error(str(error))
    print(
        f"wrote {stats.num} faces ({args.size}x{args.size}) to {args.out} in {stats.seconds:.2f} s: "
        f"{stats.faces_per_minute:.0f} faces/min with {args.workers} worker(s)"
    )
    return 0


if __name__ == "__main__":
    # Run the imported module's main so that worker jobs pickle as tfds_celebamask.synthetic.*.
    from tfds_celebamask import synthetic as _synthetic

    sys.exit(_synthetic.main())
