"""Editing faces from Python in three lines:

    editor = maskgan_jax.load_editor("RUN")                     # a workdir, step, convert or export dir
    result = editor.edit(photo, mask, wanted=wanted_mask)        # style copy / a hand-edited mask
    result = editor.transfer(photo, mask, ["mouth", "u_lip", "l_lip"], source_mask=smiling_mask)

Photos are uint8 (H, W, 3) NumPy arrays in [0, 255] or PIL images, of any size and aspect; masks are
(H, W) integer label maps (CelebAMask-HQ ids 0..18, or `label_order="face_parsing"`) or PIL mask
images (label ids or palette colours), of their photo's size. Each photo is padded to a square,
resized to the model's resolution and the result pasted back at the photo's size (never squashed;
maskgan_jax.framing); results are uint8 (H, W, 3) NumPy arrays. A list of photos (or an (N, H, W, 3)
array) is edited in batches on every local device and returns a list (or an (N, H, W, 3) array).

With a parser (`load_editor(RUN, parser=RUN)`), `editor.parse(photo)` makes a photo's mask, and a
mask given as None is parsed. With a MaskVAE in the checkpoint, `editor.interpolate(...)` walks its
latent space between two masks (paper, Fig. 13). Every input goes through maskgan_jax.inputs' checks:
a wrong dtype, shape or size is an InputError (a ValueError) that names the argument.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from maskgan_jax import edit, framing, inputs, mask_io
from tfds_celebamask import labels

Photo = Any  # uint8 (H, W, 3) np.ndarray or PIL.Image.Image
Mask = Any  # integer (H, W) np.ndarray or PIL.Image.Image


def as_photo(value: Photo, name: str = "image") -> np.ndarray:
    """A photo (uint8 (H, W, 3) / (H, W) / (H, W, 4) array, or a PIL image) -> uint8 (H, W, 3)."""
    if isinstance(value, Image.Image):
        return mask_io.image_to_array(value)
    array = np.asarray(value)
    if array.dtype != np.uint8:
        raise inputs.InputError(f"{name}: expected uint8 pixels in [0, 255] (H, W, 3), got {inputs.describe(array)}")
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise inputs.InputError(f"{name}: expected a uint8 (H, W, 3) photo, got {inputs.describe(array)}")
    if min(array.shape[:2]) == 0:
        raise inputs.InputError(f"{name}: the photo has no pixels, {inputs.describe(array)}")
    return np.ascontiguousarray(array[..., :3])


def as_mask(value: Mask, name: str = "mask", label_order: str = "celebamask") -> np.ndarray:
    """A mask (integer (H, W) ids in `label_order`, or a PIL label-id / palette image) -> uint8 (H, W)
    CelebAMask-HQ ids."""
    if isinstance(value, Image.Image):
        return mask_io.labels_from_image(value, name, label_order)
    return mask_io.to_celebamask(mask_io.check_labels(np.asarray(value), name), label_order)


def _is_batch(value: Any) -> bool:
    return isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.ndim == 4)


def _as_list(value: Any, count: int, name: str) -> list[Any]:
    """One value for every item of a batch of `count`, or the batch's own values."""
    if value is None or not _is_batch(value):
        return [value] * count
    if len(value) != count:
        raise inputs.InputError(f"{name}: {len(value)} given for {count} images")
    return list(value)


@dataclasses.dataclass(frozen=True)
class EncodedFace:
    """A photo read once by the style encoder (FaceEditor.encode_style).

    photo: uint8 (H, W, 3). mask: uint8 (H, W) its CelebAMask-HQ ids. frame: where it sits in the
    model's square. square, square_mask: uint8 (R, R, 3) and (R, R), the same there. style: float32
    (style_dim,), the style encoder's output for (square, square_mask).
    """

    photo: np.ndarray
    mask: np.ndarray
    frame: framing.Frame
    square: np.ndarray
    square_mask: np.ndarray
    style: np.ndarray


class FaceEditor:
    """A loaded generator (and optionally a parser and a MaskVAE) behind a photo-level API.

    Attributes: resolution (the model's side R), editor (edit.Editor, at R), parser (parse.Parser or
    None), mask_vae (edit.LoadedMaskVAE or None).
    """

    def __init__(self, editor: edit.Editor, parser: Any = None, mask_vae: edit.LoadedMaskVAE | None = None):
        self.editor = editor
        self.parser = parser
        self.mask_vae = mask_vae

    @property
    def resolution(self) -> int:
        return self.editor.resolution

    # ------------------------------------------------------------------------- masks

    def parse(self, image: Photo | Sequence[Photo]) -> np.ndarray | list[np.ndarray]:
        """The mask of a photo (or of each of a batch): uint8 (H, W) CelebAMask-HQ ids at its size."""
        if self.parser is None:
            raise inputs.InputError("parse: no parser loaded; load_editor(path, parser=CHECKPOINT) loads one")
        photos = [as_photo(p, f"image[{i}]") for i, p in enumerate(image)] if _is_batch(image) else [as_photo(image)]
        parsed = self.parser.parse_any_size(photos)
        return _shape_like(image, parsed)

    def _mask_or_parse(self, photo: np.ndarray, mask: Mask | None, name: str, label_order: str) -> np.ndarray:
        if mask is None:
            if self.parser is None:
                raise inputs.InputError(f"{name}: no mask given and no parser loaded to make one")
            return self.parser.parse_any_size([photo])[0]
        return as_mask(mask, name, label_order)

    # ------------------------------------------------------------------------- edits

    def edit(self, image: Photo | Sequence[Photo], mask: Mask | Sequence[Mask] | None, wanted: Mask | Sequence[Mask],
             *, keep_unedited: bool = False, label_order: str = "celebamask") -> np.ndarray | list[np.ndarray]:
        """Re-renders each photo on its wanted mask, in the photo's style.

        Args:
          image: a photo, or a batch (list, or uint8 (N, H, W, 3)).
          mask: the photo's mask (its size), or None to parse it; one per photo for a batch.
          wanted: the wanted mask (the photo's size); one for all, or one per photo.
          keep_unedited: keep the photo's own pixels outside the edited region (Editor margins).
          label_order: how integer masks number the classes ('celebamask' or 'face_parsing').
        Returns:
          uint8 (H, W, 3) per photo: an array, a list, or an (N, H, W, 3) array, as `image` was given.
        """
        return self._run(image, mask, keep_unedited, label_order, wanted=wanted)

    def transfer(self, image: Photo | Sequence[Photo], mask: Mask | Sequence[Mask] | None,
                 classes: str | Sequence[str | int], source_mask: Mask | Sequence[Mask], *,
                 keep_unedited: bool = False, label_order: str = "celebamask") -> np.ndarray | list[np.ndarray]:
        """Attribute transfer: the regions of `classes` ('mouth,u_lip,l_lip', names or ids) come from
        `source_mask` (the photo's size), the rest of the photo's mask is kept; see `edit`."""
        if isinstance(classes, str) or all(isinstance(c, str) for c in classes):
            class_ids = mask_io.parse_classes(classes)
        else:
            class_ids = tuple(int(c) for c in classes)
            bad = [c for c in class_ids if not 0 <= c < labels.NUM_CLASSES]
            if bad or not class_ids:
                raise inputs.InputError(f"classes: expected class ids in 0..{labels.NUM_CLASSES - 1}, got {classes}")
        return self._run(image, mask, keep_unedited, label_order, transfer=class_ids, other=source_mask)

    def _run(self, image, mask, keep_unedited, label_order, wanted=None, transfer=None, other=None):
        batch = _is_batch(image)
        photos = list(image) if batch else [image]
        masks = _as_list(mask, len(photos), "mask") if batch else [mask]
        wanteds = _as_list(wanted, len(photos), "wanted") if batch else [wanted]
        others = _as_list(other, len(photos), "source_mask") if batch else [other]
        requests = []
        for index, (photo, photo_mask, wanted_mask, other_mask) in enumerate(zip(photos, masks, wanteds, others)):
            at = f"[{index}]" if batch else ""
            photo = as_photo(photo, f"image{at}")
            label_map = self._mask_or_parse(photo, photo_mask, f"mask{at}", label_order)
            requests.append(edit.make_request(
                str(index), photo, label_map, self.resolution,
                wanted=None if wanted_mask is None else as_mask(wanted_mask, f"wanted{at}", label_order),
                transfer=transfer,
                other=None if other_mask is None else as_mask(other_mask, f"source_mask{at}", label_order)))
        results = []
        for chunk in edit._batches(requests, self.editor.batch_size):
            generated, _ = self.editor.edit(np.stack([r.image for r in chunk]), np.stack([r.labels_t for r in chunk]),
                                            np.stack([r.labels_src for r in chunk]))
            results += [edit.paste_back(r, g, keep_unedited, self.editor.dilation, self.editor.feather)
                        for r, g in zip(chunk, generated)]
        return _shape_like(image, results) if batch else results[0]

    # ------------------------------------------------------------------------- encode once, render many

    def encode_style(self, image: Photo, mask: Mask | None = None, *, label_order: str = "celebamask") -> EncodedFace:
        """Reads a photo's style once, for many `render` calls (an interactive editor's strokes).

        Args:
          image: the photo (any size). mask: its mask (its size), or None to parse it.
        Returns:
          An EncodedFace: the photo, its mask at its size, its frame and its style vector.
        """
        photo = as_photo(image)
        label_map = self._mask_or_parse(photo, mask, "mask", label_order)
        inputs.check_same_size(photo.shape, label_map.shape, "image", "mask")
        frame = framing.frame_of(photo.shape[0], photo.shape[1], self.resolution)
        square, square_mask = framing.image_to_square(photo, frame), framing.labels_to_square(label_map, frame)
        return EncodedFace(photo=photo, mask=label_map, frame=frame, square=square, square_mask=square_mask,
                           style=self.editor.encode_style(square, square_mask))

    def render(self, face: EncodedFace, wanted: Mask, *, keep_unedited: bool = False,
               label_order: str = "celebamask") -> np.ndarray:
        """The encoded face on the wanted mask (its photo's size): uint8 (H, W, 3) at the photo's size,
        equal to `edit(face.photo, face.mask, wanted)` but without encoding the style again."""
        wanted = as_mask(wanted, "wanted", label_order)
        inputs.check_same_size(face.photo.shape, wanted.shape, "image", "wanted")
        square_wanted = framing.labels_to_square(wanted, face.frame)
        generated, _ = self.editor.render(face.style, face.square, face.square_mask, square_wanted)
        request = edit.EditRequest(name="render", image=face.square, labels_t=face.square_mask,
                                   labels_src=square_wanted, photo=face.photo, photo_labels_t=face.mask,
                                   photo_labels_src=wanted, frame=face.frame)
        return edit.paste_back(request, generated, keep_unedited, self.editor.dilation, self.editor.feather)

    # ------------------------------------------------------------------------- the MaskVAE

    def interpolate(self, mask_a: Mask, mask_b: Mask, steps: int, image: Photo, mask: Mask | None = None, *,
                    label_order: str = "celebamask") -> tuple[np.ndarray, np.ndarray]:
        """The MaskVAE's `steps` masks from A to B (ends included) and `image`'s face rendered on each.

        Masks A and B may have any size (framed into the model's square); `image` with its `mask`
        (or parsed) gives the style. Returns (uint8 (steps, R, R) masks, uint8 (steps, R, R, 3) faces),
        at the model's resolution R.
        """
        if self.mask_vae is None:
            raise inputs.InputError("interpolate: the checkpoint holds no MaskVAE (train the maskvae phase, or "
                                    "export a run that has one)")
        photo = as_photo(image)
        label_map = self._mask_or_parse(photo, mask, "mask", label_order)
        inputs.check_same_size(photo.shape, label_map.shape, "image", "mask")
        frame = framing.frame_of(photo.shape[0], photo.shape[1], self.resolution)
        ends = []
        for name, end in (("mask_a", mask_a), ("mask_b", mask_b)):
            end = as_mask(end, name, label_order)
            ends.append(framing.labels_to_square(end, framing.frame_of(*end.shape, self.resolution)))
        masks = edit.interpolate_masks(self.mask_vae, ends[0], ends[1], steps)
        faces, _ = self.editor.edit(np.repeat(framing.image_to_square(photo, frame)[None], steps, axis=0),
                                    np.repeat(framing.labels_to_square(label_map, frame)[None], steps, axis=0), masks)
        return masks, faces


def _shape_like(given: Any, results: list[np.ndarray]) -> Any:
    """Results as the inputs came: an (N, ...) array for an array batch, a list for a list, else one."""
    if isinstance(given, np.ndarray) and given.ndim == 4:
        return np.stack(results)
    if isinstance(given, (list, tuple)):
        return results
    return results[0]


def load_editor(path: str | os.PathLike, *, parser: str | os.PathLike | None = None, phase: str | None = None,
                batch_size: int = 8, compute_dtype: str = "float32", dilation: int | None = None,
                feather: int | None = None, norm_statistics: str | None = None) -> FaceEditor:
    """Loads a checkpoint's generator (and its MaskVAE when it holds one) for editing photos.

    Args:
      path: a training workdir, phase or step directory, or what `maskgan_jax.convert` /
        `maskgan_jax.export` write; local or any etils.epath path (gs://...).
      parser: a checkpoint holding a face parser (often the same workdir), for `parse` and masks
        given as None.
      phase: with a workdir, 'ebst' or 'dmn' (None: the newest).
      batch_size: photos per compiled call. compute_dtype: 'float32' or 'bfloat16'.
      dilation, feather: keep_unedited margins in model pixels (None: resolution / 32).
      norm_statistics: the normalisation statistics edits are rendered with, one of
        maskgan_jax.norm_statistics.MODES (None: the checkpoint's config.edit.norm_statistics).
    """
    from maskgan_jax import runtime

    runtime.setup()  # before JAX's first computation; a no-op once the backend runs
    loaded = edit.load_generator(path, phase, compute_dtype=compute_dtype)
    editor = edit.Editor(loaded, batch_size, dilation, feather, norm_statistics)
    face_parser = None
    if parser is not None:
        from maskgan_jax import parse

        face_parser = parse.Parser(parse.load_parser(parser, loaded.mesh, compute_dtype), batch_size)
    try:
        mask_vae = edit.load_mask_vae(path, loaded.mesh)
    except FileNotFoundError:
        mask_vae = None  # a generator-only checkpoint (convert, or a run without the maskvae phase)
    return FaceEditor(editor, face_parser, mask_vae)
