"""Face images and masks on disk, and the mask operations of editing (resizing, class transfer).

Masks are label maps: uint8 (H, W) arrays of class ids 0..18 (tfds_celebamask.labels.CLASS_NAMES).
On disk a mask is either
- a label-id PNG: one channel (mode L, I or I;16), each pixel its class id; or an RGB PNG whose
  three channels are equal (a grey label-id image saved as colour);
- a palette-coloured PNG: RGB (or RGBA, alpha ignored, or an indexed P image) whose pixels are
  the CelebAMask-HQ colours (labels.PALETTE), as the annotation tools and `write_mask(...,
  palette=True)` draw them. A colour outside the palette is an error that names the pixel.
"""

from __future__ import annotations

from pathlib import Path
from collections.abc import Iterable

import numpy as np
from PIL import Image

from tfds_celebamask import labels

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _open(path: str | Path) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    image = Image.open(path)
    image.load()
    return image


def read_image(path: str | Path) -> np.ndarray:
    """An RGB image file -> uint8 (H, W, 3) in [0, 255] (greyscale and RGBA are converted)."""
    return np.asarray(_open(path).convert("RGB"), dtype=np.uint8)


def check_labels(label_map: np.ndarray, source: str = "mask") -> np.ndarray:
    """Validates a label map: 2-D integers in 0..NUM_CLASSES-1. Returns it as uint8 (H, W).

    The error names the first offending pixel as (x, y) and its value.
    """
    label_map = np.asarray(label_map)
    if label_map.ndim != 2:
        raise ValueError(f"{source}: expected a 2-D label map (H, W), got shape {label_map.shape}")
    if not np.issubdtype(label_map.dtype, np.integer):
        raise ValueError(f"{source}: expected integer class ids, got dtype {label_map.dtype}")
    bad = (label_map < 0) | (label_map >= labels.NUM_CLASSES)
    if bad.any():
        y, x = (int(v[0]) for v in np.nonzero(bad))
        hint = " (a binary 0/255 part mask? editing needs the merged label map)" if label_map[y, x] == 255 else ""
        raise ValueError(f"{source}: pixel (x={x}, y={y}) has label {int(label_map[y, x])}, outside "
                         f"0..{labels.NUM_CLASSES - 1}; {int(bad.sum())} such pixels{hint}")
    return label_map.astype(np.uint8)


def _palette_codes() -> np.ndarray:
    rgb = labels.PALETTE.astype(np.int64)
    return (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]


def labels_from_colours(colours: np.ndarray, source: str = "mask") -> np.ndarray:
    """Palette-coloured mask uint8 (H, W, 3) -> label map uint8 (H, W).

    Raises ValueError naming the first pixel (x, y) whose colour is not in labels.PALETTE.
    """
    colours = np.asarray(colours).astype(np.int64)
    codes = (colours[..., 0] << 16) | (colours[..., 1] << 8) | colours[..., 2]
    palette = _palette_codes()
    order = np.argsort(palette)
    positions = np.clip(np.searchsorted(palette[order], codes), 0, len(palette) - 1)
    found = palette[order][positions] == codes
    if not found.all():
        y, x = (int(v[0]) for v in np.nonzero(~found))
        raise ValueError(f"{source}: pixel (x={x}, y={y}) has colour {tuple(int(c) for c in colours[y, x])}, "
                         f"which is not a CelebAMask-HQ palette colour (tfds_celebamask.labels.PALETTE); "
                         f"{int((~found).sum())} such pixels. Save masks losslessly (PNG), as label ids or "
                         f"exact palette colours")
    return order[positions].astype(np.uint8)


def read_mask(path: str | Path) -> np.ndarray:
    """A label-id or palette-coloured PNG (see the module docstring) -> label map uint8 (H, W)."""
    image = _open(path)
    source = str(path)
    if image.mode in ("L", "I", "I;16", "I;16B", "LA"):
        values = np.asarray(image.getchannel(0) if image.mode == "LA" else image)
        return check_labels(values.astype(np.int64), source)
    if image.mode in ("RGB", "RGBA", "P", "PA"):
        colours = np.asarray(image.convert("RGB"))
        grey = (colours[..., 0] == colours[..., 1]) & (colours[..., 1] == colours[..., 2])
        if image.mode != "P" and grey.all():
            return check_labels(colours[..., 0].astype(np.int64), source)
        return labels_from_colours(colours, source)
    raise ValueError(f"{source}: unsupported image mode {image.mode!r} for a mask; expected a label-id PNG "
                     "(L, I or I;16) or a palette-coloured PNG (RGB, RGBA or P)")


def colour_labels(label_map: np.ndarray) -> np.ndarray:
    """Label map (..., H, W) -> palette colours uint8 (..., H, W, 3)."""
    return labels.PALETTE[np.asarray(label_map)]


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Writes uint8 (H, W, 3) as an image file (format from the suffix; PNG is lossless), making folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(path)


def write_mask(path: str | Path, label_map: np.ndarray, palette: bool = False) -> None:
    """Writes a label map as a PNG: label ids (mode L), or palette colours (RGB) when `palette`."""
    label_map = check_labels(label_map, str(path))
    if palette:
        write_image(path, colour_labels(label_map))
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(label_map).save(path)  # uint8 (H, W): mode L


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W, 3) -> (size, size, 3), as the dataset builder does: an area average (BOX) when
    shrinking, bicubic when enlarging; unchanged when already that size."""
    if image.shape[:2] == (size, size):
        return image
    pil = Image.fromarray(np.asarray(image, dtype=np.uint8))
    shrinking = pil.width >= size and pil.height >= size
    resample = Image.Resampling.BOX if shrinking else Image.Resampling.BICUBIC
    return np.asarray(pil.resize((size, size), resample), dtype=np.uint8)


def resize_labels(label_map: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of a label map uint8 (H, W) to (size, size) (labels never blend)."""
    if label_map.shape == (size, size):
        return label_map
    resized = Image.fromarray(np.asarray(label_map, dtype=np.uint8)).resize((size, size), Image.Resampling.NEAREST)
    return np.asarray(resized, dtype=np.uint8)


def parse_classes(names: str | Iterable[str]) -> tuple[int, ...]:
    """'mouth,u_lip,l_lip' (or a list of names) -> class ids (11, ...). Unknown names are an error."""
    if isinstance(names, str):
        names = [n for n in (part.strip() for part in names.split(",")) if n]
    ids = []
    for name in names:
        if name not in labels.CLASS_ID:
            raise ValueError(f"unknown class {name!r}; expected names from {', '.join(labels.CLASS_NAMES)}")
        ids.append(labels.CLASS_ID[name])
    if not ids:
        raise ValueError("no classes given to transfer")
    return tuple(dict.fromkeys(ids))


def transfer_classes(target: np.ndarray, other: np.ndarray, classes: Iterable[int]) -> np.ndarray:
    """Attribute transfer: the regions of `classes` are taken from `other`, the rest of `target` kept.

    Pixels the target gives to a transferred class that the other mask does not cover with one
    are vacated; each takes the class of the nearest target pixel outside the transferred classes
    (Euclidean distance), so the surrounding part (usually skin) closes over them. Then the other
    mask's transferred regions are pasted on top.

    Args:
      target, other: label maps uint8 (H, W) of the same shape (resize first).
      classes: class ids to transfer.
    Returns:
      The wanted label map, uint8 (H, W).
    """
    from scipy import ndimage  # scipy ships with jax

    target, other = check_labels(target, "target mask"), check_labels(other, "other mask")
    if target.shape != other.shape:
        raise ValueError(f"target mask {target.shape} and other mask {other.shape} differ in size; resize first")
    classes = np.asarray(sorted({int(c) for c in classes}), dtype=np.int64)
    vacated = np.isin(target, classes)
    wanted = target.copy()
    if vacated.any():
        if vacated.all():
            raise ValueError("the target mask holds only transferred classes; no other class can fill their place")
        # For each pixel, the index of the nearest pixel where `vacated` is False.
        nearest = ndimage.distance_transform_edt(vacated, return_distances=False, return_indices=True)
        wanted[vacated] = target[nearest[0][vacated], nearest[1][vacated]]
    pasted = np.isin(other, classes)
    wanted[pasted] = other[pasted]
    return wanted
