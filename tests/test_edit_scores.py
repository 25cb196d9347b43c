"""The editing benchmark's per-face scores and bootstrap statistics (maskgan_jax.edit_scores), and the
masked SSIM they use (maskgan_jax.metrics.masked_ssim)."""

import numpy as np
import pytest

from maskgan_jax import edit_scores, fid, metrics


def test_masked_ssim_is_ssim_on_the_whole_image_and_blind_outside_the_region():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (2, 24, 20, 3))
    y = np.clip(x + rng.integers(-30, 30, x.shape), 0, 255)
    np.testing.assert_allclose(metrics.masked_ssim(x, y, np.ones((2, 24, 20), bool)), metrics.ssim(x, y), atol=1e-12)
    region = np.zeros((2, 24, 20), bool)
    region[:, 8:11, 4:16] = True  # a thin band
    before = metrics.masked_ssim(x, y, region)
    y_elsewhere = y.copy()
    y_elsewhere[~region] = rng.integers(0, 256, (int((~region).sum()), 3))
    np.testing.assert_allclose(metrics.masked_ssim(x, y_elsewhere, region), before, atol=1e-12)
    # ... while the map averaged over the region (metrics.ssim) does see the surroundings.
    assert np.abs(metrics.ssim(x, y_elsewhere, region) - metrics.ssim(x, y, region)).max() > 0.01
    assert np.isnan(metrics.masked_ssim(x, y, np.zeros_like(region))).all()


def test_colour_error_per_class_in_the_region():
    truth = np.zeros((1, 4, 4, 3), np.uint8)
    result = truth.copy()
    wanted = np.zeros((1, 4, 4), np.int64)
    wanted[0, :, 2:] = 3
    region = np.zeros((1, 4, 4), bool)
    region[0, :2] = True  # class 0 and class 3 pixels, 4 each
    result[0, 0, 0] = (40, 40, 40)  # class 0: mean off by 10 in every channel
    result[0, 1, 3] = (0, 0, 60)  # class 3: mean off by 15 in blue, 0 elsewhere
    result[0, 3] = 255  # outside the region: ignored
    error = edit_scores.per_face_colour_error(result, truth, wanted, region)
    np.testing.assert_allclose(error, [(10.0 + 5.0) / 2])
    assert np.isnan(edit_scores.per_face_colour_error(result, truth, wanted, np.zeros_like(region)))[0]


def test_confusion_statistics_match_metrics_on_the_pooled_faces():
    rng = np.random.default_rng(1)
    wanted = rng.integers(0, 5, (6, 8, 8))
    parsed = np.where(rng.random((6, 8, 8)) < 0.7, wanted, rng.integers(0, 5, (6, 8, 8)))
    region = rng.random((6, 8, 8)) < 0.5
    per_face = edit_scores.per_face_confusion(wanted, parsed, region, num_classes=5)
    counts = np.array([[1, 1, 1, 1, 1, 1], [2, 0, 0, 1, 3, 0]])
    accuracy, mean_iou = edit_scores.confusion_scores(per_face, counts)
    for row, draw in enumerate(counts):
        faces = np.repeat(np.arange(6), draw)
        pooled = metrics.confusion_matrix(wanted[faces][region[faces]], parsed[faces][region[faces]], 5)
        assert accuracy[row] == pytest.approx(metrics.pixel_accuracy(pooled))
        assert mean_iou[row] == pytest.approx(metrics.mean_iou(pooled))  # every class is in the truth here
    # A class only in the prediction lowers its neighbours' IoU, and adds no IoU-0 term of its own.
    wanted = np.zeros((1, 4, 4), np.int64)
    parsed = wanted.copy()
    parsed[0, 0, 0] = 2
    per_face = edit_scores.per_face_confusion(wanted, parsed, np.ones((1, 4, 4), bool), num_classes=3)
    accuracy, mean_iou = edit_scores.confusion_scores(per_face, np.ones((1, 1), np.int64))
    assert accuracy[0] == mean_iou[0] == pytest.approx(15 / 16)


def test_kid_and_fid_resamples_match_the_formulas_of_fid():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(12, 40))
    y = 0.7 * x + rng.normal(0.3, 1.0, size=(12, 40))
    ones = np.ones((1, 12), np.int64)
    assert edit_scores.kid_resampled(x, y, ones)[0] == pytest.approx(fid.kid_from_features(x, y), rel=1e-10)
    assert edit_scores.fid_resampled(x, y, ones)[0] == pytest.approx(fid.fid_from_features(x, y), rel=1e-8)
    # A resample is the statistic of the drawn faces, each as often as drawn.
    draw = np.array([[3, 0, 1, 0, 2, 1, 0, 0, 2, 1, 1, 1]])
    faces = np.repeat(np.arange(12), draw[0])
    assert edit_scores.fid_resampled(x, y, draw)[0] == pytest.approx(fid.fid_from_features(x[faces], y[faces]),
                                                                     rel=1e-8)
    # KID leaves out the pairs that only drawing a face twice makes: within a set every pair of copies
    # of one face; across the sets, each face's own pairs keep the full set's 1/m share of the mean.
    other_face = faces[:, None] != faces[None, :]
    within = lambda k: k[other_face].mean()
    kernel = lambda a, b: (a @ b.T / 40 + 1.0) ** 3
    xs, ys = x[faces], y[faces]
    m = len(faces)
    cross = np.diag(kernel(xs, ys)).mean() / m + (1 - 1 / m) * kernel(xs, ys)[other_face].mean()
    expected = within(kernel(xs, xs)) + within(kernel(ys, ys)) - 2 * cross
    assert edit_scores.kid_resampled(x, y, draw)[0] == pytest.approx(expected, rel=1e-10)
    # So the resamples centre on the full set's KID (here for results that equal the truth up to noise).
    y_close = x + rng.normal(0, 0.1, size=x.shape)
    resampled = edit_scores.kid_resampled(x, y_close, edit_scores.resample_counts(12, 400, (0,)))
    full = fid.kid_from_features(x, y_close)
    assert abs(np.median(resampled) - full) < 0.25 * np.std(resampled)


def test_method_records_per_kind_with_intervals():
    rng = np.random.default_rng(3)
    n = 8
    truths = rng.integers(0, 256, (n, 16, 16, 3)).astype(np.uint8)
    results = np.clip(truths.astype(int) + rng.integers(-20, 20, truths.shape), 0, 255).astype(np.uint8)
    wanted = rng.integers(0, 3, (n, 16, 16))
    edited = np.zeros((n, 16, 16), bool)
    edited[:, 4:12, 4:12] = True
    features = rng.normal(size=(n, 2048))
    features[-1] = np.nan  # a face without features: left out of KID and FID
    scores = edit_scores.face_scores(results, truths, wanted, edited, parsed=wanted, features=features)
    kinds = ["a"] * 4 + ["b"] * 4
    records = edit_scores.method_records("m", scores, kinds, rng.normal(size=(n, 2048)), num_resamples=200,
                                         fid_resamples=20)
    lookup = {(r["edit"], r["region"], r["metric"]): r for r in records}
    assert lookup["a", "edited", edit_scores.MASK_ACCURACY]["value"] == 1.0  # parsed == wanted
    psnr_a = lookup["a", "edited", edit_scores.PSNR]
    assert psnr_a["value"] == pytest.approx(scores.psnr["edited"][:4].mean())
    low, high = psnr_a["interval"]
    assert low <= psnr_a["value"] <= high and low < high
    assert {r["edit"] for r in records if r["metric"] == edit_scores.FID} == {edit_scores.OVERALL}
    assert lookup["b", "all", edit_scores.KID]["interval"] is not None
    no_inputs = edit_scores.method_records("m", edit_scores.face_scores(results, truths, wanted, edited), kinds, None,
                                           num_resamples=20)
    assert not {edit_scores.KID, edit_scores.FID, edit_scores.MASK_ACCURACY} & {r["metric"] for r in no_inputs}
