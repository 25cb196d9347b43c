"""Image quality metrics of edits against their true images (PSNR and SSIM, whole image or a region),
and segmentation metrics of a face parser against true label maps (pixel accuracy, IoU per class).

Pure NumPy in float64 (the benchmark scores a few hundred small images; exactness beats speed).

Conventions:
- Images are (N, H, W, C) arrays with values in [0, data_range] (uint8 images: data_range=255,
  the benchmark's setting); regions are boolean (N, H, W) masks.
- PSNR in a region: 10 log10(data_range^2 / MSE), the MSE over the region's pixels and all
  channels. Identical images give +inf; an empty region gives NaN.
- SSIM (Wang, Bovik, Sheikh and Simoncelli, IEEE TIP 2004): an 11x11 Gaussian window with
  sigma 1.5 (radius 5 = int(3.5 sigma + 0.5), as in scikit-image's gaussian_weights=True),
  K1 = 0.01, K2 = 0.03, population (not sample) variances. The SSIM map is computed at every
  pixel of the whole image, the window reflected at the borders (the image mirrored including
  the edge pixel, scipy.ndimage's 'reflect'), per channel, then averaged over the channels. The
  SSIM of a region is the mean of that map over the region's pixels, so a region's score also
  sees the pixels around it, as the eye does.
- Masked SSIM (`masked_ssim`, the editing benchmark's SSIM inside a region): the same window, but
  the local means, variances and covariance are weighted by the window restricted to the region's
  pixels (normalised convolution), and the map is averaged over the region's pixels. Nothing
  outside the region enters the score, so a thin region is not scored by its surroundings. With
  the whole image as the region it equals `ssim`.
- Segmentation: everything comes from one confusion matrix counted over a whole set of label maps
  (rows: true class, columns: predicted class). Pixel accuracy is its trace over its sum. The IoU of
  class c is TP / (TP + FP + FN) over the set's pixels, not averaged per image, so a class missing from
  some images needs no convention there; a class absent from both the truth and the prediction of the
  whole set has no IoU (NaN) and mean IoU averages the classes that have one. A class present only in
  the prediction has IoU 0.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _as_batch(images: np.ndarray, name: str) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"{name}: expected (N, H, W, C) images, got shape {images.shape}")
    return images.astype(np.float64)


def _check_pair(x: np.ndarray, y: np.ndarray, region: np.ndarray | None) -> np.ndarray:
    """Validates shapes; returns the region as bool (N, H, W) (all True when None)."""
    if x.shape != y.shape:
        raise ValueError(f"images differ in shape: {x.shape} vs {y.shape}")
    if region is None:
        return np.ones(x.shape[:3], dtype=bool)
    region = np.asarray(region, dtype=bool)
    if region.shape != x.shape[:3]:
        raise ValueError(f"region has shape {region.shape}, expected (N, H, W) = {x.shape[:3]}")
    return region


def mse(x: np.ndarray, y: np.ndarray, region: np.ndarray | None = None) -> np.ndarray:
    """Mean squared error per image over the region's pixels and all channels.

    Args:
      x, y: (N, H, W, C) images.
      region: bool (N, H, W) or None (the whole image).
    Returns:
      float64 (N,); NaN where the region is empty.
    """
    x, y = _as_batch(x, "x"), _as_batch(y, "y")
    region = _check_pair(x, y, region)
    squared = ((x - y) ** 2).sum(axis=-1)  # (N, H, W)
    count = region.sum(axis=(1, 2)) * x.shape[-1]
    total = np.where(region, squared, 0.0).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count


def psnr(x: np.ndarray, y: np.ndarray, region: np.ndarray | None = None,
         data_range: float = 255.0) -> np.ndarray:
    """Peak signal-to-noise ratio in dB per image: 10 log10(data_range^2 / MSE over the region).

    Returns:
      float64 (N,); +inf for identical images, NaN where the region is empty.
    """
    error = mse(x, y, region)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 10.0 * np.log10(data_range ** 2 / error)


def gaussian_window(sigma: float = SSIM_SIGMA) -> np.ndarray:
    """The normalised 1-D Gaussian of SSIM: float64 (2r + 1,), r = int(3.5 sigma + 0.5)."""
    radius = int(3.5 * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    return weights / weights.sum()


def _filter(images: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable weighted local mean of (N, H, W, C) maps, borders reflected (edge pixel repeated:
    scipy.ndimage's 'reflect' is NumPy's 'symmetric' padding)."""
    radius = len(window) // 2
    if min(images.shape[1:3]) <= radius:
        raise ValueError(f"images of {images.shape[1]}x{images.shape[2]} pixels are too small for an SSIM "
                         f"window of radius {radius}")
    rows = ndimage.correlate1d(images, window, axis=1, mode="reflect")
    return ndimage.correlate1d(rows, window, axis=2, mode="reflect")


def ssim_map(x: np.ndarray, y: np.ndarray, data_range: float = 255.0, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Per-pixel SSIM of two image batches, averaged over channels (see the module docstring).

    Args:
      x, y: (N, H, W, C) images in [0, data_range]; H and W larger than the window radius (5).
    Returns:
      float64 (N, H, W), 1 where the images agree.
    """
    x, y = _as_batch(x, "x"), _as_batch(y, "y")
    _check_pair(x, y, None)
    window = gaussian_window(sigma)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    mu_x, mu_y = _filter(x, window), _filter(y, window)
    var_x = _filter(x * x, window) - mu_x ** 2
    var_y = _filter(y * y, window) - mu_y ** 2
    cov_xy = _filter(x * y, window) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)
    denominator = (mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2)
    return (numerator / denominator).mean(axis=-1)


def ssim(x: np.ndarray, y: np.ndarray, region: np.ndarray | None = None, data_range: float = 255.0,
         sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Mean SSIM per image over the region's pixels (the whole-image map, averaged inside the region).

    Returns:
      float64 (N,); NaN where the region is empty.
    """
    x, y = _as_batch(x, "x"), _as_batch(y, "y")
    region = _check_pair(x, y, region)
    values = ssim_map(x, y, data_range, sigma)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(region, values, 0.0).sum(axis=(1, 2)) / region.sum(axis=(1, 2))


def masked_ssim(x: np.ndarray, y: np.ndarray, region: np.ndarray, data_range: float = 255.0,
                sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Mean SSIM per image over the region's pixels, every window restricted to the region's pixels.

    Args:
      x, y: (N, H, W, C) images in [0, data_range]. region: bool (N, H, W).
    Returns:
      float64 (N,) in [-1, 1]; NaN where the region is empty.
    """
    x, y = _as_batch(x, "x"), _as_batch(y, "y")
    region = _check_pair(x, y, region)
    window = gaussian_window(sigma)
    weight = region[..., None].astype(np.float64)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        # A pixel of the region always weighs its own window's centre, so the norm is > 0 there.
        norm = _filter(weight, window)

        def local_mean(values: np.ndarray) -> np.ndarray:
            return _filter(weight * values, window) / norm

        mu_x, mu_y = local_mean(x), local_mean(y)
        var_x = local_mean(x * x) - mu_x ** 2
        var_y = local_mean(y * y) - mu_y ** 2
        cov_xy = local_mean(x * y) - mu_x * mu_y
        values = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)
                  / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))).mean(axis=-1)
        return np.where(region, values, 0.0).sum(axis=(1, 2)) / region.sum(axis=(1, 2))


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Pixel counts by (true class, predicted class) over label maps of any equal shape.

    Args:
      truth, predicted: integer label maps (e.g. (N, H, W)) with values in [0, num_classes).
    Returns:
      int64 (num_classes, num_classes); entry [t, p] counts pixels of true class t predicted as p.
    """
    truth, predicted = np.asarray(truth), np.asarray(predicted)
    if truth.shape != predicted.shape:
        raise ValueError(f"label maps differ in shape: truth {truth.shape} vs predicted {predicted.shape}")
    for name, values in (("truth", truth), ("predicted", predicted)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name}: labels must be in [0, {num_classes}), got {values.min()}..{values.max()}")
    flat = truth.astype(np.int64).ravel() * num_classes + predicted.astype(np.int64).ravel()
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def pixel_accuracy(confusion: np.ndarray) -> float:
    """The fraction of pixels predicted as their true class (NaN for an empty matrix)."""
    confusion = np.asarray(confusion, dtype=np.float64)
    total = confusion.sum()
    return float(np.trace(confusion) / total) if total else float("nan")


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """IoU = TP / (TP + FP + FN) per class: float64 (C,), NaN where the class is in neither truth nor
    prediction."""
    confusion = np.asarray(confusion, dtype=np.float64)
    true_positive = np.diag(confusion)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - true_positive
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, true_positive / union, np.nan)


def mean_iou(confusion: np.ndarray) -> float:
    """The mean of `iou_per_class` over the classes that have one (see the module docstring)."""
    values = iou_per_class(confusion)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
