"""FID and KID between two image sets, with the standard FID Inception network (pool3 features).

    python -m maskgan_jax.fid --inception=inception.npz REAL_DIR FAKE_DIR
    python -m maskgan_jax.fid --inception=inception.npz REAL_DIR FAKE_DIR --save_stats=real.npz
    python -m maskgan_jax.fid --inception=inception.npz real.npz FAKE_DIR   # reuse the statistics

The last line printed is ``fid=<value> kid=<value>``. ``inception.npz`` comes from
``python -m maskgan_jax.convert_inception`` (see ``models.inception`` for how to get the weights).

Each set is a folder of .png/.jpg/.jpeg images (RGB; images not at 299x299 are resized with PIL
bicubic, as uint8) or an ``.npz`` written by ``--save_stats``: 'features' (N, 2048) float64, 'mu'
(2048,), 'sigma' (2048, 2048). Features are extracted in jitted batches of ``--batch_size`` (the
last batch is padded, so the network compiles once).

Formulas (float64, on the host; pure functions usable by other code):
- FID = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2)), S = np.cov(features, rowvar=False)
  (ddof 1), sqrtm by scipy.linalg.sqrtm with tiny imaginary parts discarded, as pytorch-fid does.
- KID = the unbiased MMD^2 over the whole sets (no subsets) with the kernel
  k(x, y) = (x.y / d + 1)^3, d the feature dimension (2048). Its expectation is 0 for two samples
  of one distribution, so a value can be slightly negative.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
from collections.abc import Sequence

import jax
import numpy as np
import scipy.linalg
from PIL import Image

from maskgan_jax import runtime
from maskgan_jax.models import inception

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_IMAGINARY_TOLERANCE = 1e-3  # pytorch-fid's: larger imaginary parts mean sqrtm failed


def _as_features(features: np.ndarray, name: str) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"{name} has shape {features.shape}; expected (N, D) features with N >= 2")
    return features


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) features -> mean (D,) and covariance (D, D) float64 (np.cov, rowvar=False, ddof 1)."""
    features = _as_features(features, "features")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def fid_from_statistics(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                        sigma2: np.ndarray) -> float:
    """Fréchet distance of two Gaussians: ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2)), >= 0 up
    to rounding. mu (D,), sigma (D, D); computed in float64. Raises ValueError on mismatched
    shapes or when sqrtm's result has an imaginary part above 1e-3 on its diagonal."""
    mu1, mu2 = (np.atleast_1d(np.asarray(mu, np.float64)) for mu in (mu1, mu2))
    sigma1, sigma2 = (np.atleast_2d(np.asarray(s, np.float64)) for s in (sigma1, sigma2))
    dim = mu1.shape[0]
    if mu2.shape != (dim,) or sigma1.shape != (dim, dim) or sigma2.shape != (dim, dim):
        raise ValueError(f"FID statistics disagree: mu1 {mu1.shape}, sigma1 {sigma1.shape}, mu2 "
                         f"{mu2.shape}, sigma2 {sigma2.shape}; expected (D,) and (D, D), one D")
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        # Singular product (fewer samples than dimensions): pytorch-fid's regularised retry.
        offset = np.eye(dim) * 1e-6
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        worst = np.abs(np.diagonal(covmean).imag).max()
        if worst > _IMAGINARY_TOLERANCE:
            raise ValueError(f"sqrtm(S1 S2) has an imaginary component of {worst:.3g} on its "
                             "diagonal; the covariances are too ill-conditioned for FID")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def fid_from_features(features1: np.ndarray, features2: np.ndarray) -> float:
    """FID between two feature sets (N1, D) and (N2, D), N >= 2 (float64 on the host).

    With fewer samples than dimensions (N1 + N2 < D, e.g. a few hundred 2048-d vectors) both
    covariances live in the k = N1 + N2 dimensional span of the centred features, so the same
    value is computed there: with Q (D, k) an orthonormal basis of that span, S = Q (Q^T S Q) Q^T,
    hence Tr S and Tr sqrtm(S1 S2) (the square roots of the same non-zero eigenvalues) are those
    of the k x k matrices. scipy's sqrtm is O(D^3) with a large constant (about a minute at
    D = 2048 on 2 CPU cores), and the small matrices are also less singular.
    """
    features1 = _as_features(features1, "features1")
    features2 = _as_features(features2, "features2")
    (mu1, sigma1), (mu2, sigma2) = feature_statistics(features1), feature_statistics(features2)
    dim, count = features1.shape[1], features1.shape[0] + features2.shape[0]
    if features2.shape[1] != dim or count >= dim:
        return fid_from_statistics(mu1, sigma1, mu2, sigma2)
    basis, _ = np.linalg.qr(np.concatenate([features1 - mu1, features2 - mu2]).T)  # (D, k)
    small1, small2 = basis.T @ sigma1 @ basis, basis.T @ sigma2 @ basis
    mean_term = float((mu1 - mu2) @ (mu1 - mu2))
    return mean_term + fid_from_statistics(np.zeros(count), small1, np.zeros(count), small2)


def kid_from_features(features1: np.ndarray, features2: np.ndarray) -> float:
    """KID: unbiased MMD^2 between (N1, D) and (N2, D) features (N >= 2), polynomial kernel
    k(x, y) = (x.y / D + 1)^3, over the whole sets. Unbiased: 0 in expectation for two samples
    of one distribution, so it can be negative."""
    x, y = _as_features(features1, "features1"), _as_features(features2, "features2")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"KID features disagree: {x.shape} and {y.shape}; expected one D")
    dim, m, n = x.shape[1], x.shape[0], y.shape[0]
    # Unbiased: the diagonals k(x_i, x_i) are left out of the within-set means.
    within_x = (_kernel_sum(x, x, dim) - _kernel_diagonal_sum(x, dim)) / (m * (m - 1))
    within_y = (_kernel_sum(y, y, dim) - _kernel_diagonal_sum(y, dim)) / (n * (n - 1))
    return float(within_x + within_y - 2.0 * _kernel_sum(x, y, dim) / (m * n))


def _kernel_sum(x: np.ndarray, y: np.ndarray, dim: int, block: int = 1024) -> float:
    """sum_ij (x_i.y_j / dim + 1)^3, a block of rows at a time: memory O(block * N), not O(N^2)."""
    return float(sum(((x[i:i + block] @ y.T / dim + 1.0) ** 3).sum()
                     for i in range(0, x.shape[0], block)))


def _kernel_diagonal_sum(x: np.ndarray, dim: int) -> float:
    return float(((np.einsum("nd,nd->n", x, x) / dim + 1.0) ** 3).sum())


def load_image(path: str | os.PathLike) -> np.ndarray:
    """An image file -> uint8 (299, 299, 3) RGB, resized with PIL bicubic when not 299x299."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        size = (inception.INPUT_SIZE, inception.INPUT_SIZE)
        if image.size != size:
            image = image.resize(size, Image.Resampling.BICUBIC)
        return np.asarray(image, dtype=np.uint8)


def image_files(folder: str | os.PathLike) -> list[pathlib.Path]:
    """The .png/.jpg/.jpeg files in ``folder``, sorted; raises if there are fewer than 2."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {str(folder)!r} does not exist (expected a folder "
                                "of .png/.jpg images or a .npz written by --save_stats)")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < 2:
        raise ValueError(f"image folder {str(folder)!r} has {len(files)} .png/.jpg/.jpeg images; "
                         "FID and KID need at least 2")
    return files


@jax.jit
def _features_batch(params, images_uint8: jax.Array) -> jax.Array:
    return inception.InceptionV3().apply({"params": params},
                                         inception.preprocess_uint8(images_uint8))


def extract_features(params, images: Sequence[np.ndarray] | np.ndarray,
                     batch_size: int = 50) -> np.ndarray:
    """uint8 (N, 299, 299, 3) images -> pool3 features (N, 2048) float32, in jitted batches of
    ``batch_size`` (the last one zero-padded so that one compiled shape serves all)."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}; expected >= 1")
    params = jax.device_put(params)  # once, not with every batch (a no-op if already there)
    features = []
    for start in range(0, len(images), batch_size):
        batch = np.stack(images[start:start + batch_size])
        if batch.dtype != np.uint8 or batch.shape[1:] != (inception.INPUT_SIZE,) * 2 + (3,):
            raise ValueError(f"images {start}..{start + len(batch) - 1} are {batch.dtype} "
                             f"{batch.shape[1:]}; expected uint8 (299, 299, 3) (see load_image)")
        count = batch.shape[0]
        if count < batch_size:
            batch = np.concatenate([batch, np.zeros((batch_size - count,) + batch.shape[1:],
                                                    np.uint8)])
        features.append(np.asarray(_features_batch(params, batch))[:count])
    return np.concatenate(features)


def folder_features(params, folder: str | os.PathLike, batch_size: int = 50) -> np.ndarray:
    """Features (N, 2048) of the images in ``folder`` (see :func:`image_files`), loaded one batch
    at a time so memory stays at one batch of 299x299 images."""
    files = image_files(folder)
    params = jax.device_put(params)
    return np.concatenate([
        extract_features(params, [load_image(f) for f in files[i:i + batch_size]], batch_size)
        for i in range(0, len(files), batch_size)])


def save_statistics(path: str, features: np.ndarray) -> None:
    """Writes 'features' (N, D), 'mu' (D,), 'sigma' (D, D) float64 to ``path`` (an .npz)."""
    mu, sigma = feature_statistics(features)
    np.savez(path, features=np.asarray(features, np.float64), mu=mu, sigma=sigma)


def load_statistics_features(path: str) -> np.ndarray:
    """The (N, D) 'features' of an .npz written by :func:`save_statistics` (KID needs them, and
    mu/sigma follow from them)."""
    with np.load(path, allow_pickle=False) as archive:
        if "features" not in archive.files:
            raise ValueError(f"statistics file {path!r} has no 'features' (has {archive.files}); "
                             "expected an .npz written by `python -m maskgan_jax.fid --save_stats`")
        return _as_features(archive["features"], f"{path!r} 'features'")


def main(argv: Sequence[str] | None = None) -> int:
    runtime.setup()
    parser = argparse.ArgumentParser(prog="python -m maskgan_jax.fid",
                                     description=__doc__.split("\n", 1)[0])
    parser.add_argument("real", help="folder of real images, or an .npz from --save_stats")
    parser.add_argument("fake", help="folder of generated images, or an .npz from --save_stats")
    parser.add_argument("--inception", required=True,
                        help="Inception weights .npz (python -m maskgan_jax.convert_inception)")
    parser.add_argument("--batch_size", type=int, default=50, help="images per jitted batch")
    parser.add_argument("--save_stats", help="write the REAL set's features/mu/sigma to this .npz")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch_size={args.batch_size}; expected >= 1")
    params = None
    sets = []
    for path in (args.real, args.fake):
        if path.endswith(".npz"):
            sets.append(load_statistics_features(path))
        else:
            if params is None:
                params = inception.load_inception_params(args.inception)
            sets.append(folder_features(params, path, args.batch_size))
        print(f"{path}: {sets[-1].shape[0]} feature vectors")
    if args.save_stats:
        out = args.save_stats if args.save_stats.endswith(".npz") else args.save_stats + ".npz"
        save_statistics(out, sets[0])
        print(f"wrote the statistics of {args.real} to {out}")
    print(f"fid={fid_from_features(*sets):.8g} kid={kid_from_features(*sets):.8g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
