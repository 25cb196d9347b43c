"""The checks every user-supplied image or mask goes through, shared by `maskgan-edit`, `maskgan-parse`,
`maskgan_jax.convert` and the Python API (`maskgan_jax.load_editor`).

A file that is missing, empty, not an image, corrupt or truncated, or too large to decode safely is an
`InputError` (a ValueError) whose message starts with the file's path and says what is wrong; the
command lines print it as `<prog>: error: <message>` and exit with status 2. A mask whose size
differs from its image's is refused with both sizes (masks are never stretched to fit).

This module imports neither JAX nor TensorFlow.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import Any

from PIL import Image, UnidentifiedImageError

from maskgan_jax import paths

# 8192 x 8192: above any face photo; a 20000 x 20000 PNG would take 1.2 GB as RGB. Checked from the
# header, before any pixel is decoded.
MAX_PIXELS = 8192 * 8192


class InputError(ValueError):
    """A user input (file, array or flag value) that cannot be used; the message names it."""


def size_text(width: int, height: int) -> str:
    return f"{width}x{height}"


def open_image_file(path: str | os.PathLike, what: str = "image") -> Image.Image:
    """Opens and decodes an image file (local or any etils.epath path, e.g. gs://).

    Args:
      path: the file. what: what the file is meant to be ('image', 'mask', ...), for messages.
    Returns:
      The decoded PIL image (pixels loaded, file closed).
    Raises:
      FileNotFoundError: no such file.
      InputError: an empty file, a file that is not an image, a corrupt or truncated one, or one
        larger than MAX_PIXELS (from its header, before decoding).
    """
    path = paths.as_path(path)
    if not path.is_file():
        kind = "a folder, not a file" if path.is_dir() else "no such file"
        raise FileNotFoundError(f"{path}: {kind} (expected the {what} file)")
    return open_image_bytes(path.read_bytes(), str(path), what)


def open_image_bytes(data: bytes, name: str, what: str = "image", max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decodes an image file's bytes (an upload) with open_image_file's checks; `name` (the file or
    the request field) starts every message. At most `max_pixels`, from the header, before decoding."""
    path = name
    if not data:
        raise InputError(f"{path}: empty file (expected the {what} file: a PNG, JPEG, BMP or WebP)")
    try:
        with warnings.catch_warnings():
            # PIL warns, then raises, on pixel counts past its own limit; MAX_PIXELS is checked below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:
        # Past twice PIL's own limit it refuses in open(), before the size is exposed.
        raise InputError(f"{path}: the {what} is too large to decode; at most {MAX_PIXELS:,} pixels are read "
                         f"(crop or shrink it first; {error})") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise InputError(f"{path}: not a readable {what} file "
                         f"(expected a PNG, JPEG, BMP or WebP image; {type(error).__name__})") from None
    width, height = image.size
    if width * height > max_pixels:
        raise InputError(f"{path}: the {what} is {size_text(width, height)} pixels; at most {max_pixels:,} "
                         "pixels are read (crop or shrink it first)")
    if width == 0 or height == 0:
        raise InputError(f"{path}: the {what} is {size_text(width, height)}: it has no pixels")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
    except (OSError, SyntaxError, ValueError) as error:
        raise InputError(f"{path}: corrupt or truncated {what} file ({error})") from None
    return image


def check_same_size(image_shape: tuple[int, ...], mask_shape: tuple[int, ...], image_name: str,
                    mask_name: str) -> None:
    """Refuses a mask (H', W') whose size differs from its image's (H, W[, C]), naming both sizes as
    width x height. Masks are never stretched: a mask of another size belongs to another picture."""
    if tuple(image_shape[:2]) != tuple(mask_shape[:2]):
        raise InputError(f"{mask_name} is {size_text(mask_shape[1], mask_shape[0])} but {image_name} is "
                         f"{size_text(image_shape[1], image_shape[0])} (width x height); a mask must have its "
                         "image's size")


def describe(value: Any) -> str:
    """A short description of an array-like for error messages: 'uint8 (64, 64, 3)'."""
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is None:
        return type(value).__name__
    return f"{dtype} {tuple(shape)}"
