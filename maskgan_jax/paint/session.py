"""One painting session: a photo, its encoded style, the mask being painted and its history.

Pure NumPy (and the FaceEditor it renders with); the web server (maskgan_jax.paint.server) only
decodes requests into these calls. Masks are uint8 (H, W) CelebAMask-HQ ids at the photo's size;
coordinates are photo pixels, x to the right and y down.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import numpy as np

from maskgan_jax import api, framing, inputs, mask_io
from tfds_celebamask import labels

MAX_HISTORY = 200  # undo steps kept per session (each a mask copy: 200 x 1 MB at 1024x1024)
MAX_BRUSH = 256
MAX_POINTS = 10_000


def check_class(value: object, field: str = "class") -> int:
    """A class id in 0..18 from a request field (an int or a class name)."""
    if isinstance(value, str) and value in labels.CLASS_ID:
        return labels.CLASS_ID[value]
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < labels.NUM_CLASSES:
        return value
    raise inputs.InputError(f"{field}: expected a class id in 0..{labels.NUM_CLASSES - 1} or a name from "
                            f"{', '.join(labels.CLASS_NAMES)}, got {value!r}")


def disc(radius: float) -> np.ndarray:
    """The brush footprint: bool (2k+1, 2k+1), the pixels whose centre lies within `radius` of the
    centre pixel's (k = floor(radius)). Size 1 (radius 0) is one pixel; no anti-aliasing."""
    k = int(np.floor(radius))
    y, x = np.mgrid[-k:k + 1, -k:k + 1]
    return x * x + y * y <= radius * radius + 1e-9


def line_points(points: np.ndarray) -> np.ndarray:
    """int (P, 2) (x, y) polyline -> int (Q, 2) every pixel centre along it: each segment is sampled
    at max(|dx|, |dy|) + 1 evenly spaced positions, rounded (a DDA line; page and server agree)."""
    out = [points[:1]]
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:]):
        count = int(max(abs(x1 - x0), abs(y1 - y0)))
        if count:
            t = np.arange(1, count + 1) / count
            out.append(np.stack([np.round(x0 + t * (x1 - x0)), np.round(y0 + t * (y1 - y0))], axis=1).astype(int))
    return np.concatenate(out)


def paint_stroke(mask: np.ndarray, points: Sequence[Sequence[float]], class_id: int, size: int) -> np.ndarray:
    """A brush stroke: every pixel within (size - 1) / 2 of the polyline through `points` becomes
    `class_id`. Returns a new uint8 (H, W) mask; points off the photo are clipped away, not refused."""
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_BRUSH:
        raise inputs.InputError(f"size: expected a brush size in 1..{MAX_BRUSH} pixels, got {size!r}")
    try:
        array = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise inputs.InputError("points: expected a list of [x, y] numbers") from None
    if array.ndim != 2 or array.shape[1] != 2 or not 1 <= len(array) <= MAX_POINTS or not np.isfinite(array).all():
        raise inputs.InputError(f"points: expected 1..{MAX_POINTS} [x, y] pairs of finite numbers, got "
                                f"{inputs.describe(array)}")
    out = mask.copy()
    footprint = disc((size - 1) / 2)
    k = footprint.shape[0] // 2
    height, width = mask.shape
    # Padded by 2k so that a stamp whose centre is up to k pixels off the photo needs no clipping.
    painted = np.zeros((height + 4 * k, width + 4 * k), bool)
    for x, y in np.unique(line_points(np.round(array).astype(int)), axis=0):
        if -k <= x < width + k and -k <= y < height + k:
            painted[y + k:y + 3 * k + 1, x + k:x + 3 * k + 1] |= footprint
    out[painted[2 * k:2 * k + height, 2 * k:2 * k + width]] = class_id
    return out


def flood_fill(mask: np.ndarray, x: int, y: int, class_id: int) -> np.ndarray:
    """The 4-connected region of (x, y)'s class around (x, y) becomes `class_id` (a new mask)."""
    from scipy import ndimage

    height, width = mask.shape
    if not (isinstance(x, int) and isinstance(y, int) and 0 <= x < width and 0 <= y < height):
        raise inputs.InputError(f"x, y: expected a pixel inside the {width}x{height} mask, got ({x!r}, {y!r})")
    regions, _ = ndimage.label(mask == mask[y, x])  # default structure: 4-connectivity
    out = mask.copy()
    out[regions == regions[y, x]] = class_id
    return out


@dataclasses.dataclass
class Session:
    """The state of one page: the encoded face, the mask as painted, undo/redo stacks, the reference
    mask (style copy, transfer, interpolation) and the last result.

    face: api.EncodedFace (photo uint8 (H, W, 3), its original mask, its style). mask: uint8 (H, W).
    reference: uint8 (H, W) or None. result: uint8 (H, W, 3). render_ms: the last render's time.
    """

    face: api.EncodedFace
    mask: np.ndarray
    keep_unedited: bool = False
    reference: np.ndarray | None = None
    undo_stack: list[np.ndarray] = dataclasses.field(default_factory=list)
    redo_stack: list[np.ndarray] = dataclasses.field(default_factory=list)
    slider_base: np.ndarray | None = None  # the mask an interpolation slider started from
    result: np.ndarray | None = None
    render_ms: float = 0.0
    version: int = 0
    last_used: float = dataclasses.field(default_factory=time.monotonic)

    @property
    def shape(self) -> tuple[int, int]:
        return self.face.mask.shape

    def set_mask(self, mask: np.ndarray, *, from_slider: bool = False) -> None:
        """Replaces the mask (one undo step; slider moves after the first replace their own step)."""
        if mask.shape != self.shape:
            raise inputs.InputError(f"mask is {inputs.size_text(mask.shape[1], mask.shape[0])} but the photo is "
                                    f"{inputs.size_text(self.shape[1], self.shape[0])} (width x height)")
        if not (from_slider and self.slider_base is not None):
            self.undo_stack = (self.undo_stack + [self.mask])[-MAX_HISTORY:]
        if not from_slider:
            self.slider_base = None
        self.redo_stack.clear()
        self.mask = mask

    def undo(self) -> bool:
        if not self.undo_stack:
            return False
        self.redo_stack.append(self.mask)
        self.mask, self.slider_base = self.undo_stack.pop(), None
        return True

    def redo(self) -> bool:
        if not self.redo_stack:
            return False
        self.undo_stack.append(self.mask)
        self.mask, self.slider_base = self.redo_stack.pop(), None
        return True

    def reset(self) -> None:
        """Back to the photo's own mask (itself one undo step)."""
        if not np.array_equal(self.mask, self.face.mask):
            self.set_mask(self.face.mask.copy())

    def set_reference(self, reference: np.ndarray) -> None:
        inputs.check_same_size(self.face.photo.shape, reference.shape, "the photo", "the reference mask")
        self.reference = mask_io.check_labels(reference, "reference mask")
        self.slider_base = None

    def need_reference(self) -> np.ndarray:
        if self.reference is None:
            raise inputs.InputError("reference: choose a reference face or upload its mask first")
        return self.reference

    def render(self, editor: api.FaceEditor) -> None:
        """Renders the current mask with the encoded style (the style encoder does not run again)."""
        started = time.perf_counter()
        self.result = editor.render(self.face, self.mask, keep_unedited=self.keep_unedited)
        self.render_ms = (time.perf_counter() - started) * 1000.0
        self.version += 1


def reference_from_square(square_mask: np.ndarray, shape: tuple[int, int], resolution: int) -> np.ndarray:
    """A reference face's square mask (S, S) placed over a photo of `shape` (H, W) the way the model
    frames that photo: resized to the model's square, then cropped to the photo (labels nearest)."""
    frame = framing.frame_of(shape[0], shape[1], resolution)
    return framing.labels_from_square(mask_io.resize_labels(square_mask, resolution), frame)
