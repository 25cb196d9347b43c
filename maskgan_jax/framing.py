"""Putting a photo of any size and aspect into the model's square and the result back, never squashed.

A (H, W) photo is padded to the square of side S = max(H, W) by repeating its edge rows or columns
(its mask likewise, so padded pixels keep the class at the photo's border), that square is resized
to the model's R x R (an area average when shrinking, bicubic when enlarging; labels nearest), and
the R x R result is resized back to S x S and cropped to the photo's own (H, W). A square photo of
side R passes through unchanged, bit for bit.

Pure NumPy (and PIL for resizing): the same functions serve the CLI, the API and the parser.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from maskgan_jax import mask_io


@dataclasses.dataclass(frozen=True)
class Frame:
    """Where a (height, width) photo sits in the model's square.

    height, width: the photo's size. side: the padded square's side, max(height, width).
    top, left: the photo's offset in that square. resolution: the model's side R.
    """

    height: int
    width: int
    side: int
    top: int
    left: int
    resolution: int

    @property
    def pads(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """((top, bottom), (left, right)) padding that makes the photo square."""
        return ((self.top, self.side - self.height - self.top), (self.left, self.side - self.width - self.left))

    @property
    def scale(self) -> float:
        """Photo pixels per model pixel (S / R)."""
        return self.side / self.resolution


def frame_of(height: int, width: int, resolution: int) -> Frame:
    """The frame of a (height, width) photo for a model of side `resolution`: centred in its square."""
    side = max(height, width)
    return Frame(height=height, width=width, side=side, top=(side - height) // 2, left=(side - width) // 2,
                 resolution=resolution)


def image_to_square(image: np.ndarray, frame: Frame) -> np.ndarray:
    """uint8 (H, W, 3) photo -> uint8 (R, R, 3): edge-padded to its square, then resized."""
    padded = np.pad(image, (*frame.pads, (0, 0)), mode="edge")
    return mask_io.resize_image(padded, frame.resolution)


def labels_to_square(label_map: np.ndarray, frame: Frame) -> np.ndarray:
    """uint8 (H, W) label map -> uint8 (R, R): edge-padded to its square, then nearest-resized."""
    return mask_io.resize_labels(np.pad(label_map, frame.pads, mode="edge"), frame.resolution)


def image_from_square(square: np.ndarray, frame: Frame) -> np.ndarray:
    """uint8 (R, R, 3) model output -> uint8 (H, W, 3) at the photo's size (resized to S, cropped)."""
    full = mask_io.resize_image(square, frame.side)
    return full[frame.top:frame.top + frame.height, frame.left:frame.left + frame.width]


def labels_from_square(square: np.ndarray, frame: Frame) -> np.ndarray:
    """uint8 (R, R) label map -> uint8 (H, W) at the photo's size (nearest-resized to S, cropped)."""
    full = mask_io.resize_labels(square, frame.side)
    return full[frame.top:frame.top + frame.height, frame.left:frame.left + frame.width]


def keep_unedited_alpha(labels_t: np.ndarray, labels_src: np.ndarray, dilation: int, feather: int) -> np.ndarray:
    """The NumPy twin of maskgan_jax.edit.keep_unedited_alpha for one (H, W) pair at any size.

    Returns float32 (H, W, 1) in [0, 1]: 1 within `dilation` pixels (Chebyshev) of a changed pixel,
    ramping to 0 over the next 2 * feather pixels (edges replicated), exactly 0 beyond.
    """
    from scipy import ndimage  # 0.7 s to import: only for --keep_unedited

    changed = (np.asarray(labels_t) != np.asarray(labels_src)).astype(np.float32)
    grow = dilation + feather
    if grow:
        changed = ndimage.maximum_filter(changed, size=2 * grow + 1, mode="constant", cval=0.0)
    if feather:
        changed = ndimage.uniform_filter(changed, size=2 * feather + 1, mode="nearest")
        changed = np.clip(changed, 0.0, 1.0)
        changed[changed < 1e-6] = 0.0  # uniform_filter's running sums leave rounding dust
    return changed[..., None]


def blend_kept(photo: np.ndarray, generated: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) photo, uint8 (H, W, 3) result, alpha (H, W, 1) -> uint8 (H, W, 3): the result
    where alpha is 1, the photo's own pixels where it is 0."""
    mixed = alpha * generated.astype(np.float32) + (1.0 - alpha) * photo.astype(np.float32)
    return np.round(mixed).astype(np.uint8)


def scaled_margin(pixels: int, frame: Frame) -> int:
    """A margin given in model pixels, in photo pixels (at least 1 when nonzero)."""
    return 0 if pixels == 0 else max(1, round(pixels * frame.scale))
