"""The editing benchmark's two tiers, pass/fail per criterion and edit kind, from its records.

"beats the baselines", in every edit kind (a `+keep_unedited` method is compared with the rows
composited the same way, a plain one with the plain rows):
- mask following in the edited region (the parser's pixel accuracy and mean IoU) at least
  MASK_FACTOR x the truth's and above the unedited source's;
- KID below the mean-colour painter's; colour error below the mean-colour painter's;
- `+keep_unedited` methods only: PSNR and SSIM over the whole image at least the mean-colour
  painter's.
"near the truth": in every edit kind, every criterion of NEAR_TRUTH_METRICS (and the pooled FID) at
least as good as the worst of the three degraded truths (JPEG, blur, 1-px shift) on it.

THRESHOLD_FACTORS holds the per-kind exceptions to the factors above, each set from the
calibration (tests/test_evaluate.py) to the strictest value that every degraded truth passes and
the baselines still fail; each entry says why.

A criterion whose figures are missing (no parser; no Inception weights, or KID/FID not computed for
that method) is reported under `not_evaluated`, never as passed; a tier with such criteria is not
passed.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Sequence

from maskgan_jax import edit_scores as scores

BEATS_BASELINES, NEAR_TRUTH = "beats the baselines", "near the truth"
TIERS = (BEATS_BASELINES, NEAR_TRUTH)
KEEP_SUFFIX = "+keep_unedited"
TRUTH, UNEDITED, MEAN_COLOUR = "truth", "unedited", "mean_colour"
DEGRADED_TRUTHS = ("truth_jpeg", "truth_blur", "truth_shift")
MASK_FACTOR = 0.8
_ACCURACY_VS_TRUTH = "mask pixel accuracy (edited) >= 0.8 x truth's"
_IOU_VS_TRUTH = "mask mean IoU (edited) >= 0.8 x truth's"
_COLOUR_VS_PAINTER = "colour error (edited) < mean_colour's"
_PSNR_VS_PAINTER = "PSNR (all) >= mean_colour's"
# (criterion name, edit kind) -> the factor used instead of the criterion's (see the module docstring).
# Measured on 20 faces per kind (seed 20261125, oracle parser: tests/test_evaluate.py) and on the
# test's own 6 per kind unless the entry says otherwise; each is the strictest factor (2 decimals)
# that all three degraded truths pass on both samples; the unedited source and both painters still
# fail the tier.
THRESHOLD_FACTORS: dict[tuple[str, str], float] = {
    # A 1-px shift moves the border of the open mouth, lips and teeth (3-4 px thick): shift / truth
    # 0.66 (pixel accuracy) and 0.41 (mean IoU: the thin lip classes lose most) on 20 faces.
    (_ACCURACY_VS_TRUTH, "smile"): 0.66,
    (_IOU_VS_TRUTH, "smile"): 0.40,
    # The added eye area is a ring 1-2 px wide: shift / truth 0.54 and 0.54 on 20 faces, 0.500 and
    # 0.498 on the test's 6.
    (_ACCURACY_VS_TRUTH, "larger_eyes"): 0.50,
    (_IOU_VS_TRUTH, "larger_eyes"): 0.49,
    # Uncovered ears and neck are slivers of a few pixels in some faces: on the test's 6 faces the
    # shift's mean IoU is 0.48 of the truth's (0.96 on 20 faces, where such slivers weigh less).
    (_IOU_VS_TRUTH, "hair_shorter"): 0.47,
    # Every class moves; the small ones (earrings, necklace, eyes) lose most: mean IoU 0.63.
    (_IOU_VS_TRUTH, "style_copy"): 0.61,
    # A whole new face: blurring its many thin parts shifts their mean colours by 16.7 levels, more
    # than the painter's 13.6 (the painter keeps each class's mean of the source, which shares the
    # style): 1.23 x the painter's; colour_fit (19.0) and the unedited source (43) still fail it.
    (_COLOUR_VS_PAINTER, "style_copy"): 1.24,
    # Composited: the shifted truth's image PSNR 29.24 dB vs the composited painter's 29.47 (the
    # painter's error stays inside thin eye rings, the shift's is everywhere the dilated region reaches).
    (_PSNR_VS_PAINTER, "larger_eyes"): 0.99,
    # Measured with a learnt parser, not the oracle: the glasses' frames are 1-2 px wide, and the
    # quickstart's parser (3,200 steps, hats on 30% of its faces; README, "Hats in the training faces")
    # read the blurred, composited truth's glasses at 0.751 of the truth's accuracy and IoU on 50 faces
    # (the parser trained with hats on 12%: 0.847; the oracle parser passes 0.8). Both painters still
    # fail the tier (mean_colour 0.790 and 0.576 composited, but KID and colour fail; colour_fit 0.774).
    (_ACCURACY_VS_TRUTH, "add_glasses"): 0.75,
    (_IOU_VS_TRUTH, "add_glasses"): 0.75,
}
NEAR_TRUTH_METRICS = (
    (scores.MASK_ACCURACY, "edited"), (scores.MASK_IOU, "edited"), (scores.MASK_ACCURACY, "all"),
    (scores.MASK_IOU, "all"), (scores.KID, "all"), (scores.COLOUR_ERROR, "edited"), (scores.PSNR, "unedited"),
    (scores.SSIM, "unedited"), (scores.PSNR, "edited"), (scores.SSIM, "edited"))

_RELATIONS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, ">": operator.gt, "<": operator.lt, "<=": operator.le}


@dataclasses.dataclass(frozen=True)
class Criterion:
    """value(method) RELATION factor x value(reference + the method's suffix), per edit kind."""

    name: str
    metric: str
    region: str
    reference: str
    relation: str
    factor: float = 1.0
    keep_unedited_only: bool = False


BEATS_BASELINES_CRITERIA = (
    Criterion(_ACCURACY_VS_TRUTH, scores.MASK_ACCURACY, "edited", TRUTH, ">=", MASK_FACTOR),
    Criterion(_IOU_VS_TRUTH, scores.MASK_IOU, "edited", TRUTH, ">=", MASK_FACTOR),
    Criterion("mask pixel accuracy (edited) > unedited's", scores.MASK_ACCURACY, "edited", UNEDITED, ">"),
    Criterion("mask mean IoU (edited) > unedited's", scores.MASK_IOU, "edited", UNEDITED, ">"),
    Criterion("KID < mean_colour's", scores.KID, "all", MEAN_COLOUR, "<"),
    Criterion(_COLOUR_VS_PAINTER, scores.COLOUR_ERROR, "edited", MEAN_COLOUR, "<"),
    Criterion(_PSNR_VS_PAINTER, scores.PSNR, "all", MEAN_COLOUR, ">=", keep_unedited_only=True),
    Criterion("SSIM (all) >= mean_colour's", scores.SSIM, "all", MEAN_COLOUR, ">=", keep_unedited_only=True),
)


def split_method(method: str) -> tuple[str, str]:
    """'ebst+keep_unedited' -> ('ebst', '+keep_unedited'); 'ebst' -> ('ebst', '')."""
    return (method[:-len(KEEP_SUFFIX)], KEEP_SUFFIX) if method.endswith(KEEP_SUFFIX) else (method, "")


def _lookup(records: Sequence[dict]) -> dict[tuple[str, str, str, str], float | None]:
    return {(r["method"], r["edit"], r["region"], r["metric"]): r["value"] for r in records}


def _verdict(method: str, tier: str, failed: list[str], not_evaluated: list[str]) -> dict:
    return {"method": method, "tier": tier, "passed": not failed and not not_evaluated, "failed": failed,
            "not_evaluated": not_evaluated}


def beats_the_baselines(method: str, records: Sequence[dict], kinds: Sequence[str],
                        factors: dict[tuple[str, str], float] | None = None) -> dict:
    """The tier's verdict for `method`: {"method", "tier", "passed", "failed", "not_evaluated"}, the
    lists holding "criterion / kind"."""
    factors = THRESHOLD_FACTORS if factors is None else factors
    values = _lookup(records)
    suffix = split_method(method)[1]
    failed, not_evaluated = [], []
    for criterion in BEATS_BASELINES_CRITERIA:
        if criterion.keep_unedited_only and not suffix:
            continue
        for kind in kinds:
            label = f"{criterion.name} / {kind}"
            value = values.get((method, kind, criterion.region, criterion.metric))
            reference = values.get((criterion.reference + suffix, kind, criterion.region, criterion.metric))
            if value is None or reference is None:
                not_evaluated.append(label)
                continue
            factor = factors.get((criterion.name, kind), criterion.factor)
            if not _RELATIONS[criterion.relation](value, factor * reference):
                failed.append(label)
    return _verdict(method, BEATS_BASELINES, failed, not_evaluated)


def near_the_truth(method: str, records: Sequence[dict], kinds: Sequence[str]) -> dict:
    """The tier's verdict for `method` (see beats_the_baselines): each figure at least as good as the
    worst of the degraded truths composited as `method` is."""
    values = _lookup(records)
    suffix = split_method(method)[1]
    checks = [(metric, region, kind) for kind in kinds for metric, region in NEAR_TRUTH_METRICS]
    checks.append((scores.FID, "all", scores.OVERALL))
    failed, not_evaluated = [], []
    for metric, region, kind in checks:
        label = f"{metric} ({region}) / {kind}"
        value = values.get((method, kind, region, metric))
        degraded = [values.get((name + suffix, kind, region, metric)) for name in DEGRADED_TRUTHS]
        if value is None or any(d is None for d in degraded):
            not_evaluated.append(label)
            continue
        higher = scores.HIGHER_IS_BETTER[metric]
        worst = min(degraded) if higher else max(degraded)
        if not (value >= worst if higher else value <= worst):
            failed.append(label)
    return _verdict(method, NEAR_TRUTH, failed, not_evaluated)


def verdicts(records: Sequence[dict], kinds: Sequence[str]) -> list[dict]:
    """Both tiers for every method of the records, in the records' order."""
    methods = dict.fromkeys(r["method"] for r in records)
    return [tier(method, records, kinds) for method in methods for tier in (beats_the_baselines, near_the_truth)]


def format_verdicts(verdicts_list: Sequence[dict]) -> str:
    """One line per method and tier: PASS, FAIL with the failed criteria, or NOT ESTABLISHED with what
    could not be evaluated."""
    lines = []
    for v in verdicts_list:
        if v["passed"]:
            status = "PASS"
        elif v["failed"]:
            status = f"FAIL ({len(v['failed'])}): " + "; ".join(v["failed"])
        else:
            status = "NOT ESTABLISHED"
        if v["not_evaluated"]:
            status += f" [not evaluated ({len(v['not_evaluated'])}): " + "; ".join(v["not_evaluated"][:4]) + (
                " ..." if len(v["not_evaluated"]) > 4 else "") + "]"
        lines.append(f"- {v['method']}, {v['tier']}: {status}")
    return "\n".join(lines)
