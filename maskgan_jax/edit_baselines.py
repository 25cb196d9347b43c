"""The editing benchmark's reference rows: degraded truths (what a near-perfect editor scores),
painters that must fail, and the --keep_unedited compositing applied to any row.

All functions are pure NumPy on batches: images uint8 (N, H, W, 3), label maps int (N, H, W) with
ids in 0..C-1 (C = labels.NUM_CLASSES). `labels_t` is the target face's mask, `labels_src` the
wanted one.
"""

from __future__ import annotations

import io

import jax.numpy as jnp
import numpy as np
from PIL import Image
from scipy import ndimage

from maskgan_jax import edit as edit_lib
from tfds_celebamask import labels

TRUTH_JPEG_QUALITY = 90
TRUTH_BLUR_SIGMA = 1.0  # pixels
TRUTH_SHIFT = 1  # pixels, to the right
# Ridge on the colour-fit painter's slopes (coordinates in [0, 1]): keeps a class of a few pixels
# from extrapolating wildly; negligible against a class of hundreds of pixels.
COLOUR_FIT_RIDGE = 1e-3


def jpeg_round_trip(image: np.ndarray, quality: int = TRUTH_JPEG_QUALITY) -> np.ndarray:
    """uint8 (H, W, 3) -> the same image JPEG-encoded at `quality` and decoded."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"), dtype=np.uint8)


def jpeg_images(images: np.ndarray, quality: int = TRUTH_JPEG_QUALITY) -> np.ndarray:
    """Each image of uint8 (N, H, W, 3) JPEG round-tripped at `quality`."""
    return np.stack([jpeg_round_trip(image, quality) for image in images])


def blur_images(images: np.ndarray, sigma: float = TRUTH_BLUR_SIGMA) -> np.ndarray:
    """Gaussian blur of sigma pixels (borders reflected), rounded back to uint8 (N, H, W, 3)."""
    blurred = ndimage.gaussian_filter(images.astype(np.float64), sigma=(0, sigma, sigma, 0), mode="reflect")
    return np.clip(np.round(blurred), 0, 255).astype(np.uint8)


def shift_images(images: np.ndarray, pixels: int = TRUTH_SHIFT) -> np.ndarray:
    """Content moved `pixels` to the right, the left column repeated into the gap: uint8 (N, H, W, 3)."""
    padded = np.pad(images, ((0, 0), (0, 0), (pixels, 0), (0, 0)), mode="edge")
    return padded[:, :, :images.shape[2]]


def _class_keys(labels_map: np.ndarray, num_classes: int) -> np.ndarray:
    n = labels_map.shape[0]
    return (labels_map.astype(np.int64) + num_classes * np.arange(n)[:, None, None]).reshape(-1)


def mean_colour_painter(images: np.ndarray, labels_t: np.ndarray, labels_src: np.ndarray,
                        num_classes: int = labels.NUM_CLASSES) -> np.ndarray:
    """Paints each class of the wanted mask with the mean colour of the target's pixels of that class.

    Returns:
      uint8 (N, H, W, 3); a class absent from a target takes that target's mean colour.
    """
    n = images.shape[0]
    keys = _class_keys(labels_t, num_classes)
    pixels = images.reshape(-1, 3).astype(np.float64)
    counts = np.bincount(keys, minlength=n * num_classes).reshape(n, num_classes)
    sums = np.stack([np.bincount(keys, pixels[:, c], minlength=n * num_classes) for c in range(3)], -1)
    sums = sums.reshape(n, num_classes, 3)
    overall = images.reshape(n, -1, 3).mean(axis=1)  # (N, 3)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts[..., None] > 0, sums / counts[..., None], overall[:, None, :])
    painted = np.take_along_axis(means, labels_src.reshape(n, -1, 1).astype(np.int64), axis=1)
    return np.clip(np.round(painted), 0, 255).astype(np.uint8).reshape(images.shape)


def _coordinates(height: int, width: int) -> np.ndarray:
    """float64 (H, W, 3): [1, x, y] per pixel, x and y in [0, 1]."""
    y, x = np.meshgrid(np.linspace(0.0, 1.0, height), np.linspace(0.0, 1.0, width), indexing="ij")
    return np.stack([np.ones_like(x), x, y], axis=-1)


def colour_fit_painter(images: np.ndarray, labels_t: np.ndarray, labels_src: np.ndarray,
                       num_classes: int = labels.NUM_CLASSES) -> np.ndarray:
    """Paints each class of the wanted mask with colour = a + b x + c y (per channel), fitted by least
    squares to the target's pixels of that class (x, y in [0, 1]; slopes ridge-regularised by
    COLOUR_FIT_RIDGE); a class absent from the target takes the target's mean colour.

    Returns:
      uint8 (N, H, W, 3).
    """
    n, height, width, _ = images.shape
    basis = np.broadcast_to(_coordinates(height, width), (n, height, width, 3)).reshape(-1, 3)
    keys = _class_keys(labels_t, num_classes)
    pixels = images.reshape(-1, 3).astype(np.float64)
    bins = n * num_classes
    gram = np.stack([np.bincount(keys, basis[:, i] * basis[:, j], minlength=bins)
                     for i in range(3) for j in range(3)], -1).reshape(bins, 3, 3)
    moments = np.stack([np.bincount(keys, basis[:, i] * pixels[:, c], minlength=bins)
                        for i in range(3) for c in range(3)], -1).reshape(bins, 3, 3)
    present = gram[:, 0, 0] > 0
    gram = gram + COLOUR_FIT_RIDGE * np.diag([0.0, 1.0, 1.0])
    gram[~present] = np.eye(3)  # placeholder, replaced below
    coefficients = np.linalg.solve(gram, moments)  # (bins, 3 basis, 3 channels)
    overall = images.reshape(n, -1, 3).mean(axis=1)
    flat_fill = np.zeros((n, num_classes, 3, 3))
    flat_fill[:, :, 0, :] = overall[:, None, :]
    coefficients = np.where(present[:, None, None], coefficients, flat_fill.reshape(bins, 3, 3))
    wanted = _class_keys(labels_src, num_classes)
    painted = np.einsum("pi,pic->pc", basis, coefficients[wanted])
    return np.clip(np.round(painted), 0, 255).astype(np.uint8).reshape(images.shape)


def composite_unedited(results: np.ndarray, images: np.ndarray, labels_t: np.ndarray, labels_src: np.ndarray,
                       dilation: int, feather: int) -> np.ndarray:
    """--keep_unedited for any row: alpha x result + (1 - alpha) x target, alpha from
    edit.keep_unedited_alpha (the function the models' Editor composites with), rounded to uint8
    (N, H, W, 3). The models blend their unrounded output; a row here is already uint8, so the two
    differ by at most half a level before rounding."""
    alpha = edit_lib.keep_unedited_alpha(jnp.asarray(labels_t, jnp.int32), jnp.asarray(labels_src, jnp.int32),
                                         dilation, feather)
    alpha = np.asarray(alpha, np.float64)
    kept = alpha * results.astype(np.float64) + (1.0 - alpha) * images.astype(np.float64)
    return np.clip(np.round(kept), 0, 255).astype(np.uint8)
