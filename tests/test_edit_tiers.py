"""The editing benchmark's tiers (maskgan_jax.edit_tiers) on hand-made records."""

from maskgan_jax import edit_scores as s
from maskgan_jax import edit_tiers

KINDS = ("smile", "add_hat")
KEEP = edit_tiers.KEEP_SUFFIX


def _records(values):
    """{(method, metric, region): value or {kind: value}} -> records for both kinds."""
    records = []
    for (method, metric, region), value in values.items():
        kinds = [s.OVERALL] if metric == s.FID else KINDS
        for kind in kinds:
            v = value[kind] if isinstance(value, dict) else value
            records.append({"method": method, "edit": kind, "region": region, "metric": metric, "value": v,
                            "interval": None})
    return records


def _row(accuracy, iou, kid, colour, psnr=30.0, ssim=0.9, fid_value=1.0):
    return {(s.MASK_ACCURACY, "edited"): accuracy, (s.MASK_IOU, "edited"): iou, (s.KID, "all"): kid,
            (s.COLOUR_ERROR, "edited"): colour, (s.PSNR, "all"): psnr, (s.SSIM, "all"): ssim,
            (s.MASK_ACCURACY, "all"): accuracy, (s.MASK_IOU, "all"): iou, (s.PSNR, "unedited"): psnr,
            (s.SSIM, "unedited"): ssim, (s.PSNR, "edited"): psnr, (s.SSIM, "edited"): ssim, (s.FID, "all"): fid_value}


def _table(rows):
    return _records({(method, metric, region): value
                     for method, row in rows.items() for (metric, region), value in row.items()})


REFERENCE = {
    "truth": _row(0.9, 0.8, 0.0, 0.0, 100.0, 1.0, 0.0),
    "truth_jpeg": _row(0.88, 0.78, 0.001, 2.0, 35.0, 0.97, 0.5),
    "truth_blur": _row(0.85, 0.75, 0.002, 4.0, 30.0, 0.93, 0.8),
    "truth_shift": _row(0.8, 0.7, 0.001, 6.0, 28.0, 0.9, 0.4),
    "unedited": _row(0.1, 0.05, 0.01, 40.0, 20.0, 0.8, 5.0),
    "mean_colour": _row(0.9, 0.8, 0.05, 20.0, 22.0, 0.7, 20.0),
}


def test_beats_the_baselines_per_criterion_and_kind():
    model = _row(0.85, {"smile": 0.5, "add_hat": 0.7}, 0.01, 10.0)  # IoU 0.5 < 0.8 x 0.8 in smile
    records = _table({**REFERENCE, "model": model})
    verdict = edit_tiers.beats_the_baselines("model", records, KINDS, factors={})  # the criteria as written
    assert verdict == {"method": "model", "tier": edit_tiers.BEATS_BASELINES, "passed": False,
                       "failed": ["mask mean IoU (edited) >= 0.8 x truth's / smile"], "not_evaluated": []}
    # A per-kind factor moves that threshold; mean_colour fails its own strict "below" criteria.
    factors = {("mask mean IoU (edited) >= 0.8 x truth's", "smile"): 0.6}
    assert edit_tiers.beats_the_baselines("model", records, KINDS, factors)["passed"]
    painter = edit_tiers.beats_the_baselines("mean_colour", records, KINDS, factors={})
    assert set(painter["failed"]) == {f"{c} / {k}" for c in ("KID < mean_colour's", "colour error (edited) < "
                                                                  "mean_colour's") for k in KINDS}


def test_keep_unedited_rows_are_compared_with_rows_composited_alike():
    rows = {**REFERENCE, "model": _row(0.85, 0.7, 0.01, 10.0, psnr=25.0, ssim=0.8)}
    composited = {name + KEEP: row for name, row in rows.items()}
    composited["mean_colour" + KEEP] = _row(0.9, 0.8, 0.05, 20.0, psnr=26.0, ssim=0.75)
    records = _table({**rows, **composited})
    assert edit_tiers.beats_the_baselines("model", records, KINDS, {})["passed"]  # plain: no PSNR/SSIM criterion
    verdict = edit_tiers.beats_the_baselines("model" + KEEP, records, KINDS, {})
    assert verdict["failed"] == [f"PSNR (all) >= mean_colour's / {k}" for k in KINDS]


def test_near_the_truth_takes_the_worst_degraded_truth_per_criterion():
    records = _table({**REFERENCE, "model": _row(0.8, 0.7, 0.002, 6.0, 28.0, 0.9, 0.8)})
    assert edit_tiers.near_the_truth("model", records, KINDS)["passed"]
    assert edit_tiers.near_the_truth("truth", records, KINDS)["passed"]
    worse = _table({**REFERENCE, "model": _row(0.8, 0.7, 0.0021, 6.0, 28.0, 0.9, 0.81)})
    assert edit_tiers.near_the_truth("model", worse, KINDS)["failed"] == [
        "kid (all) / smile", "kid (all) / add_hat", "fid (all) / overall"]


def test_missing_figures_are_not_evaluated_never_passed():
    records = [r for r in _table({**REFERENCE, "model": _row(0.85, 0.75, 0.001, 6.0, 28.0, 0.9)})
               if r["metric"] not in (s.KID, s.FID)]  # as without Inception weights
    for verdict in (edit_tiers.beats_the_baselines("model", records, KINDS),
                    edit_tiers.near_the_truth("model", records, KINDS)):
        assert not verdict["passed"] and not verdict["failed"]
        assert verdict["not_evaluated"] and all("kid" in c.lower() or "fid" in c for c in verdict["not_evaluated"])
    assert "NOT ESTABLISHED" in edit_tiers.format_verdicts([verdict])
