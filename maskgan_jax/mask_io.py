"""Face images and masks on disk, and the mask operations of editing (resizing, class transfer).

Masks are label maps: uint8 (H, W) arrays of class ids 0..18 (tfds_celebamask.labels.CLASS_NAMES).
On disk a mask is either
- a label-id PNG: one channel (mode L, I or I;16), each pixel its class id; or an RGB PNG whose
  three channels are equal (a grey label-id image saved as colour);
- a palette-coloured PNG: RGB (or RGBA, alpha ignored, or an indexed P image) whose pixels are
  the CelebAMask-HQ colours (labels.PALETTE), as the annotation tools and `write_mask(...,
  palette=True)` draw them. A colour outside the palette is an error that names the pixel.

Label-id masks made by other tools may number the classes differently: `label_order='face_parsing'`
reads the order of the widely used face-parsing (BiSeNet) models, see FACE_PARSING_CLASSES.
Every file is opened through maskgan_jax.inputs (clear errors for missing, empty, corrupt or huge files).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable

import numpy as np
from PIL import Image

from maskgan_jax import inputs, paths
from tfds_celebamask import labels

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

# Class names by id in the label order of the face-parsing (BiSeNet) models most photo tools use
# (zllrunning/face-parsing.PyTorch and its ports): the same 19 classes as CelebAMask-HQ, numbered
# differently (1 skin, 2 l_brow, ..., 17 hair, 18 hat).
FACE_PARSING_CLASSES: tuple[str, ...] = (
    "background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
    "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat",
)
LABEL_ORDERS: dict[str, tuple[str, ...]] = {"celebamask": labels.CLASS_NAMES, "face_parsing": FACE_PARSING_CLASSES}


def _order_table(order: str) -> np.ndarray:
    """uint8 (19,): CelebAMask-HQ id of each id in `order`."""
    if order not in LABEL_ORDERS:
        raise inputs.InputError(f"label order {order!r}: expected one of {', '.join(LABEL_ORDERS)}")
    return np.array([labels.CLASS_ID[name] for name in LABEL_ORDERS[order]], np.uint8)


def to_celebamask(label_map: np.ndarray, order: str) -> np.ndarray:
    """Label map (..., H, W) with ids in `order` ('celebamask' or 'face_parsing') -> CelebAMask-HQ ids.

    Ids must already be in 0..18 (check_labels)."""
    return _order_table(order)[np.asarray(label_map)]


def from_celebamask(label_map: np.ndarray, order: str) -> np.ndarray:
    """The inverse of to_celebamask: CelebAMask-HQ ids (..., H, W) -> ids in `order`."""
    inverse = np.argsort(_order_table(order)).astype(np.uint8)
    return inverse[np.asarray(label_map)]


def _open(path: str | os.PathLike, what: str) -> Image.Image:
    return inputs.open_image_file(path, what)


def image_to_array(image: Image.Image) -> np.ndarray:
    """A PIL image -> uint8 (H, W, 3) RGB in [0, 255] (greyscale, palette and RGBA converted)."""
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An RGB image file -> uint8 (H, W, 3) in [0, 255] (greyscale and RGBA are converted).

    Raises FileNotFoundError or inputs.InputError naming the file (see inputs.open_image_file)."""
    return image_to_array(_open(path, "image"))


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


def labels_from_image(image: Image.Image, source: str = "mask", label_order: str = "celebamask") -> np.ndarray:
    """A mask as a PIL image (label ids or palette colours, see the module docstring) -> uint8 (H, W)
    CelebAMask-HQ ids. `label_order` says how label-id masks number the classes (palette colours
    always mean the CelebAMask-HQ classes)."""
    if image.mode in ("L", "I", "I;16", "I;16B", "LA"):
        values = np.asarray(image.getchannel(0) if image.mode == "LA" else image)
        return to_celebamask(check_labels(values.astype(np.int64), source), label_order)
    if image.mode in ("RGB", "RGBA", "P", "PA"):
        colours = np.asarray(image.convert("RGB"))
        grey = (colours[..., 0] == colours[..., 1]) & (colours[..., 1] == colours[..., 2])
        if image.mode != "P" and grey.all():
            return to_celebamask(check_labels(colours[..., 0].astype(np.int64), source), label_order)
        return labels_from_colours(colours, source)
    raise inputs.InputError(f"{source}: unsupported image mode {image.mode!r} for a mask; expected a label-id "
                            "PNG (L, I or I;16) or a palette-coloured PNG (RGB, RGBA or P)")


def read_mask(path: str | os.PathLike, label_order: str = "celebamask") -> np.ndarray:
    """A label-id or palette-coloured PNG (see the module docstring) -> label map uint8 (H, W) of
    CelebAMask-HQ ids; label-id files numbered in `label_order` ('celebamask' or 'face_parsing')."""
    return labels_from_image(_open(path, "mask"), str(paths.as_path(path)), label_order)


def colour_labels(label_map: np.ndarray) -> np.ndarray:
    """Label map (..., H, W) -> palette colours uint8 (..., H, W, 3)."""
    return labels.PALETTE[np.asarray(label_map)]


def _save(path: str | os.PathLike, image: Image.Image) -> None:
    """Writes `image` (format from the suffix) to any epath path, making folders; the file appears
    whole or not at all (written to a temporary sibling, then renamed)."""
    path = paths.as_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    image.save(buffer, format=Image.registered_extensions().get(path.suffix.lower(), "PNG"))
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(buffer.getvalue())
    partial.replace(path)  # a rerun overwrites its earlier output


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Writes uint8 (H, W, 3) as an image file (format from the suffix; PNG is lossless), making folders."""
    _save(path, Image.fromarray(np.asarray(image, dtype=np.uint8)))


def write_mask(path: str | os.PathLike, label_map: np.ndarray, palette: bool = False) -> None:
    """Writes a label map as a PNG: label ids (mode L), or palette colours (RGB) when `palette`."""
    label_map = check_labels(label_map, str(path))
    if palette:
        write_image(path, colour_labels(label_map))
        return
    _save(path, Image.fromarray(label_map))  # uint8 (H, W): mode L


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
