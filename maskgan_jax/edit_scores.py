"""The editing benchmark's scores: per-face quantities of one method's results, and per edit kind
the figures with 95% bootstrap intervals that resample faces.

Each method's N results (uint8 (N, R, R, 3), one per benchmark face, each face edited once) are
scored against the true edited images, in three regions: `edited` (the pixels whose label the edit
changes), `unedited` (the rest) and `all`. Per face:
- mask following: the confusion matrix of the parser's labels of the result against the wanted
  mask, over the region's pixels (`edited` and `all`); a kind's pixel accuracy and mean IoU come from
  the sum of its faces' matrices (maskgan_jax.metrics' conventions);
- realism: the result's Inception pool3 features (maskgan_jax.fid); a kind's KID is the unbiased
  MMD^2 between its results' and its truths' features, FID is over all kinds pooled (edit
  `overall`);
- colour: per class of the wanted mask inside the edited region, the mean colour of the result's
  pixels of that class against the truth's, |difference| averaged over R, G, B (0-255); the face's
  error is the mean over those classes;
- PSNR (dB, capped at MAX_PSNR_DB so every mean is finite) in every region; SSIM over `all` is the
  whole-image SSIM, inside `edited` and `unedited` the masked SSIM (metrics.masked_ssim: windows
  restricted to the region, so the surroundings are not scored).

Intervals: the faces of a kind are resampled with replacement (BOOTSTRAP_RESAMPLES times, FID
FID_RESAMPLES times: each costs an eigen-decomposition) and the statistic recomputed; the interval
is the 2.5 and 97.5 percentiles. The resamples depend only on (kind, face count), so every method
is resampled on the same faces (paired). KID and FID are resampled through kernel and Gram
matrices of the features, so a resample costs no Inception pass and no 2048 x 2048 sqrtm.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from maskgan_jax import fid, metrics
from tfds_celebamask import labels

MAX_PSNR_DB = 100.0
REGIONS = ("edited", "unedited", "all")
MASK_REGIONS = ("edited", "all")
OVERALL = "overall"  # the edit of the pooled FID
MASK_ACCURACY, MASK_IOU = "mask_pixel_accuracy", "mask_mean_iou"
KID, FID, COLOUR_ERROR, PSNR, SSIM = "kid", "fid", "colour_error", "psnr", "ssim"
# metric -> True where higher is better
HIGHER_IS_BETTER = {MASK_ACCURACY: True, MASK_IOU: True, KID: False, FID: False, COLOUR_ERROR: False,
                    PSNR: True, SSIM: True}
BOOTSTRAP_RESAMPLES = 1000
FID_RESAMPLES = 100
BOOTSTRAP_SEED = 20261130


@dataclasses.dataclass(frozen=True)
class FaceScores:
    """One method's per-face quantities over N faces.

    psnr, ssim: region -> float64 (N,). colour_error: float64 (N,), NaN for a face whose edited
    region is empty. confusion: region in MASK_REGIONS -> int64 (N, C, C) (true = wanted class,
    predicted = parsed class), None without a parser. features: float64 (N, 2048) with NaN rows
    for faces not passed through the Inception, None without one.
    """

    psnr: dict[str, np.ndarray]
    ssim: dict[str, np.ndarray]
    colour_error: np.ndarray
    confusion: dict[str, np.ndarray] | None = None
    features: np.ndarray | None = None


def per_face_confusion(wanted: np.ndarray, parsed: np.ndarray, region: np.ndarray,
                       num_classes: int = labels.NUM_CLASSES) -> np.ndarray:
    """int (N, H, W) wanted and parsed label maps, bool (N, H, W) region -> int64 (N, C, C) counts."""
    n = wanted.shape[0]
    face = np.broadcast_to(np.arange(n)[:, None, None], wanted.shape)
    keys = (face * num_classes + wanted.astype(np.int64)) * num_classes + parsed.astype(np.int64)
    counts = np.bincount(keys[region], minlength=n * num_classes * num_classes)
    return counts.reshape(n, num_classes, num_classes)


def per_face_colour_error(results: np.ndarray, truths: np.ndarray, wanted: np.ndarray, region: np.ndarray,
                          num_classes: int = labels.NUM_CLASSES) -> np.ndarray:
    """Mean over the wanted classes inside `region` of |mean colour of result - of truth| (0-255, averaged
    over channels), per face: float64 (N,), NaN where the region is empty."""
    n = results.shape[0]
    face = np.broadcast_to(np.arange(n)[:, None, None], wanted.shape)
    keys = (face * num_classes + wanted.astype(np.int64))[region]
    counts = np.bincount(keys, minlength=n * num_classes).reshape(n, num_classes)

    def class_means(images: np.ndarray) -> np.ndarray:
        pixels = images[region].astype(np.float64)
        sums = np.stack([np.bincount(keys, pixels[:, c], minlength=n * num_classes) for c in range(3)], -1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return sums.reshape(n, num_classes, 3) / counts[..., None]

    error = np.abs(class_means(results) - class_means(truths)).mean(axis=-1)  # (N, C), NaN for absent
    present = counts > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(present, error, 0.0).sum(axis=1) / present.sum(axis=1)


def face_scores(results: np.ndarray, truths: np.ndarray, wanted: np.ndarray, edited: np.ndarray,
                parsed: np.ndarray | None = None, features: np.ndarray | None = None) -> FaceScores:
    """Scores N results.

    Args:
      results, truths: uint8 (N, R, R, 3). wanted: int (N, R, R) wanted masks. edited: bool (N, R, R).
      parsed: uint8 (N, R, R), the parser's labels of the results, or None.
      features: (N, D) Inception features of the results (NaN rows: not computed), or None.
    """
    regions = {"edited": edited, "unedited": ~edited, "all": np.ones_like(edited)}
    psnr = {name: np.minimum(metrics.psnr(results, truths, region), MAX_PSNR_DB) for name, region in regions.items()}
    ssim = {"all": metrics.ssim(results, truths),
            "edited": metrics.masked_ssim(results, truths, edited),
            "unedited": metrics.masked_ssim(results, truths, ~edited)}
    confusion = None if parsed is None else {
        name: per_face_confusion(wanted, parsed, regions[name]) for name in MASK_REGIONS}
    return FaceScores(psnr=psnr, ssim=ssim, colour_error=per_face_colour_error(results, truths, wanted, edited),
                      confusion=confusion, features=None if features is None else np.asarray(features, np.float64))


# ----------------------------------------------------------------------------- statistics of resamples


def resample_counts(num_faces: int, num_resamples: int, seed: Sequence[int]) -> np.ndarray:
    """How often each face is drawn in each bootstrap resample: int64 (num_resamples, num_faces), rows
    summing to num_faces."""
    rng = np.random.default_rng([BOOTSTRAP_SEED, *seed])
    return rng.multinomial(num_faces, np.full(num_faces, 1.0 / num_faces), size=num_resamples)


def weighted_mean(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Means of (n,) per-face values under (B, n) counts, NaN faces left out: float64 (B,)."""
    valid = np.isfinite(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return counts @ np.where(valid, values, 0.0) / (counts @ valid)


def confusion_scores(confusion: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pixel accuracy (B,), mean IoU (B,)) of the summed (n, C, C) per-face confusion matrices under
    (B, n) counts. The mean IoU averages the classes of the wanted mask in the region (its rows with
    pixels): a class only in the prediction has no term of its own (its pixels are already another
    class's false negatives). metrics.mean_iou counts such a class as IoU 0, which inside an edited
    region of one or two classes lets a few stray pixels swamp the mean (measured: a 1-px shift of the
    truth gets 0.12-0.63 of the truth's edited-region mean IoU that way)."""
    n, c, _ = confusion.shape
    total = (counts @ confusion.reshape(n, c * c).astype(np.float64)).reshape(-1, c, c)
    true_positive = np.diagonal(total, axis1=1, axis2=2)
    in_truth = total.sum(axis=2)
    union = in_truth + total.sum(axis=1) - true_positive
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = true_positive.sum(axis=1) / total.sum(axis=(1, 2))
        iou = np.where(in_truth > 0, true_positive / union, np.nan)
        mean_iou = np.nansum(iou, axis=1) / np.isfinite(iou).sum(axis=1)
    return accuracy, mean_iou


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def kid_resampled(features: np.ndarray, truth_features: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """KID (fid.kid_from_features' kernel and unbiased form) of results vs truths of the same faces,
    each (n, D), under (B, n) counts (a face drawn k times enters both sets k times): float64 (B,)."""
    k_xx, k_yy, k_xy = (_polynomial_kernel(a, b) for a, b in
                        ((features, features), (truth_features, truth_features), (features, truth_features)))
    m = counts.sum(axis=1).astype(np.float64)
    counts = counts.astype(np.float64)

    def quadratic(kernel: np.ndarray) -> np.ndarray:
        return np.einsum("bi,ij,bj->b", counts, kernel, counts)

    # Pairs made only by drawing a face twice are left out: copies are the same element. Within a set,
    # every pair of copies of one face (the unbiased form leaves out an element's pairing with itself).
    # Across the sets, a face's result against its own truth (the pairs the benchmark makes similar)
    # keeps the full set's share of the mean, 1/m, and the other faces' pairs the rest. Kept, a face
    # drawn k times adds k(k-1) pairs at those terms' correlated values and the resamples move away
    # from the full set's KID (measured: intervals that missed their own point estimate). With each
    # face drawn once this is exactly fid.kid_from_features.
    # A resample that drew a single face (possible for tiny sets) has no pair of distinct faces: its
    # KID is NaN, and `interval` uses the finite resamples.
    distinct_pairs = m * m - (counts ** 2).sum(axis=1)
    distinct_pairs = np.where(distinct_pairs > 0, distinct_pairs, np.nan)
    within_x = (quadratic(k_xx) - counts ** 2 @ np.diag(k_xx)) / distinct_pairs
    within_y = (quadratic(k_yy) - counts ** 2 @ np.diag(k_yy)) / distinct_pairs
    own_pairs = counts @ np.diag(k_xy) / m
    other_pairs = (quadratic(k_xy) - counts ** 2 @ np.diag(k_xy)) / distinct_pairs
    cross = own_pairs / m + (1.0 - 1.0 / m) * other_pairs
    return within_x + within_y - 2.0 * cross


def fid_resampled(features: np.ndarray, truth_features: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """FID of results vs truths of the same faces, each (n, D), under (B, n) counts: float64 (B,).

    Computed in the span of the drawn faces: with A the centred, count-weighted features
    (S = A^T A), Tr S = trace(A A^T) and Tr sqrtm(S1 S2) = the nuclear norm of A1 A2^T (the square
    roots of the non-zero eigenvalues of S1 S2 are its singular values), all from n x n Gram matrices.
    """
    grams = {(a, b): x @ y.T for a, x in ((1, features), (2, truth_features))
             for b, y in ((1, features), (2, truth_features))}
    values = []
    for draw in counts:
        drawn = draw > 0
        c = draw[drawn].astype(np.float64)
        m = c.sum()
        g = {key: _centred_gram(gram[np.ix_(drawn, drawn)], c) for key, gram in grams.items()}
        weight = np.sqrt(c / (m - 1))
        traces = [float(c @ np.diag(g[a, a])) / (m - 1) for a in (1, 2)]
        cross = weight[:, None] * g[1, 2] * weight[None, :]
        nuclear = np.sqrt(np.clip(np.linalg.eigvalsh(cross @ cross.T), 0.0, None)).sum()
        raw = {key: gram[np.ix_(drawn, drawn)] for key, gram in grams.items()}
        mean_term = (c @ raw[1, 1] @ c + c @ raw[2, 2] @ c - 2 * c @ raw[1, 2] @ c) / m ** 2
        values.append(mean_term + traces[0] + traces[1] - 2.0 * nuclear)
    return np.array(values)


def fid_resampled_unpaired(features: np.ndarray, reference_features: np.ndarray, counts: np.ndarray,
                           reference_counts: np.ndarray) -> np.ndarray:
    """FID of results (n1, D) against a different reference set (n2, D), each resampled on its own:
    (B, n1) and (B, n2) counts -> float64 (B,). The Gram form of fid_resampled with the two sets' own
    weights: Tr sqrtm(S1 S2) is the nuclear norm of the weighted, centred cross Gram matrix (n1 x n2)."""
    grams = {(1, 1): features @ features.T, (2, 2): reference_features @ reference_features.T,
             (1, 2): features @ reference_features.T}
    values = []
    for draw1, draw2 in zip(counts, reference_counts):
        drawn = {1: draw1 > 0, 2: draw2 > 0}
        c = {1: draw1[drawn[1]].astype(np.float64), 2: draw2[drawn[2]].astype(np.float64)}
        m = {k: v.sum() for k, v in c.items()}
        raw = {(a, b): gram[np.ix_(drawn[a], drawn[b])] for (a, b), gram in grams.items()}
        centred = {(a, b): _centred_cross_gram(gram, c[a], c[b]) for (a, b), gram in raw.items()}
        traces = sum(float(c[k] @ np.diag(centred[k, k])) / (m[k] - 1) for k in (1, 2))
        cross = np.sqrt(c[1] / (m[1] - 1))[:, None] * centred[1, 2] * np.sqrt(c[2] / (m[2] - 1))[None, :]
        square = cross @ cross.T if cross.shape[0] <= cross.shape[1] else cross.T @ cross
        nuclear = np.sqrt(np.clip(np.linalg.eigvalsh(square), 0.0, None)).sum()
        mean_term = (c[1] @ raw[1, 1] @ c[1] / m[1] ** 2 + c[2] @ raw[2, 2] @ c[2] / m[2] ** 2
                     - 2 * c[1] @ raw[1, 2] @ c[2] / (m[1] * m[2]))
        values.append(mean_term + traces - 2.0 * nuclear)
    return np.array(values)


def _centred_cross_gram(gram: np.ndarray, counts_a: np.ndarray, counts_b: np.ndarray) -> np.ndarray:
    """(f_i - mu_a) . (g_j - mu_b) from the Gram matrix f_i . g_j (n_a, n_b), mu the count-weighted means."""
    m_a, m_b = counts_a.sum(), counts_b.sum()
    return (gram - (gram @ counts_b)[:, None] / m_b - (counts_a @ gram)[None, :] / m_a
            + counts_a @ gram @ counts_b / (m_a * m_b))


def _centred_gram(gram: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(f_i - mu_a) . (g_j - mu_b) from the Gram matrix f_i . g_j (n, n), mu = the count-weighted means."""
    m = counts.sum()
    return (gram - (gram @ counts)[:, None] / m - (counts @ gram)[None, :] / m
            + counts @ gram @ counts / m ** 2)


def interval(resampled: np.ndarray) -> list[float] | None:
    """[2.5, 97.5] percentiles of the finite resampled values, None when there are none."""
    finite = resampled[np.isfinite(resampled)]
    return None if finite.size == 0 else [float(v) for v in np.percentile(finite, [2.5, 97.5])]


def _record(method: str, edit: str, region: str, metric: str, value: float, resampled: np.ndarray) -> dict:
    value = float(value)
    return {"method": method, "edit": edit, "region": region, "metric": metric,
            "value": value if np.isfinite(value) else None, "interval": interval(resampled)}


def method_records(method: str, scores: FaceScores, kinds: Sequence[str], truth_features: np.ndarray | None,
                   num_resamples: int = BOOTSTRAP_RESAMPLES, fid_resamples: int = FID_RESAMPLES) -> list[dict]:
    """The records {"method", "edit", "region", "metric", "value", "interval"} of one method.

    Args:
      scores: its per-face scores. kinds: str (N,), each face's edit kind (the order of first
        appearance is the records' order). truth_features: the truths' (N, D) features (NaN rows as in
        scores.features), or None.
    A metric whose inputs are missing (no parser, no Inception) has no records.
    """
    kinds = np.asarray(kinds)
    records = []
    for position, kind in enumerate(dict.fromkeys(kinds.tolist())):
        faces = np.flatnonzero(kinds == kind)
        counts = resample_counts(len(faces), num_resamples, (position, len(faces)))
        ones = np.ones((1, len(faces)), np.int64)
        if scores.confusion is not None:
            for region in MASK_REGIONS:
                point, resampled = (confusion_scores(scores.confusion[region][faces], c) for c in (ones, counts))
                records.append(_record(method, kind, region, MASK_ACCURACY, point[0][0], resampled[0]))
                records.append(_record(method, kind, region, MASK_IOU, point[1][0], resampled[1]))
        if scores.features is not None and truth_features is not None:
            featured = faces[np.isfinite(scores.features[faces]).all(axis=1)]
            if len(featured) >= 2:
                x, y = scores.features[featured], truth_features[featured]
                counts_kid = resample_counts(len(featured), num_resamples, (position, len(featured), 1))
                records.append(_record(method, kind, "all", KID, fid.kid_from_features(x, y),
                                       kid_resampled(x, y, counts_kid)))
        records.append(_record(method, kind, "edited", COLOUR_ERROR, weighted_mean(scores.colour_error[faces], ones)[0],
                               weighted_mean(scores.colour_error[faces], counts)))
        for metric, table in ((PSNR, scores.psnr), (SSIM, scores.ssim)):
            for region in REGIONS:
                values = table[region][faces]
                records.append(_record(method, kind, region, metric, weighted_mean(values, ones)[0],
                                       weighted_mean(values, counts)))
    if scores.features is not None and truth_features is not None:
        featured = np.flatnonzero(np.isfinite(scores.features).all(axis=1))
        if len(featured) >= 2:
            x, y = scores.features[featured], truth_features[featured]
            counts_fid = resample_counts(len(featured), fid_resamples, (len(featured), 2))
            records.append(_record(method, OVERALL, "all", FID, fid.fid_from_features(x, y),
                                   fid_resampled(x, y, counts_fid)))
    return records
