r"""The paper's protocol on CelebAMask-HQ: reconstruction, segmentation of generated faces, smile transfer.

    python -m maskgan_jax.evaluate --workdir=RUN --inception=inception.npz \
        --data=celebamask_hq/official_512 --split=test [--data_dir=DIR] [--num_faces=N]

The faces: the first --num_faces (default all) examples of the TFDS split, in the split's order, at the
generators' resolution. Every generator of the workdir (ebst, dmn) or of --checkpoints is a method.

1. Reconstruction (the table of SEAN and the paper): the generator given each face's own mask and the
   face itself as style (labels_t = labels_src = its mask; the plain output, nothing composited).
   PSNR (dB, capped at edit_scores.MAX_PSNR_DB) and SSIM of the whole image against the real face, with
   95% bootstrap intervals over faces; FID and KID of the reconstructions against the real faces
   (Inception features, paired resamples as the editing benchmark: maskgan_jax.edit_scores).
2. Segmentation: the run's parser on the reconstructions against the input masks: pixel accuracy and
   mean IoU from one confusion matrix over all faces (maskgan_jax.metrics, as `maskgan-parse
   --evaluate`); the parser on the real faces (row `real`) is the ceiling.
3. Smile transfer (MaskGAN's attribute-transfer benchmark): each non-smiling face (the dataset's
   'Smiling' label) takes the k-th smiling face as donor, k its rank among the non-smiling faces modulo
   the number of smiling ones (`smile_pairs`); the donor's mouth region (classes MOUTH_CLASSES) is pasted
   into the target's mask, the target's own mouth pixels outside it becoming skin (`paste_mouth`); the
   generator renders the edited mask in the target's style. Scores: the fraction of results that the
   run's attribute classifier (maskgan_jax.classify) finds smiling, beside the classifier on the real
   smiling faces (`real_smiling`: its ceiling) and on the real non-smiling targets (`real_not_smiling`:
   its floor), and its accuracy against the labels of all the faces (`real`); FID of the results against
   all the real faces (the interval resamples the results and the real faces each on its own). Each
   generator also as `+keep_unedited` (the target kept outside the edited region,
   edit.keep_unedited_alpha).

Without a parser, a classifier or Inception weights the figures that need them are skipped, the reason
in the report. Writes <out>/celeba_protocol.json ({"records": [{"task", "method", "metric", "value",
"interval"}]}) and <out>/celeba_protocol.md (the tables, also printed), and prints the run time.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from collections.abc import Callable, Sequence

import numpy as np

from maskgan_jax import edit as edit_lib
from maskgan_jax import edit_scores, fid, metrics, paths
from tfds_celebamask import labels

JSON_FILE, MARKDOWN_FILE = "celeba_protocol.json", "celeba_protocol.md"
RECONSTRUCTION, SEGMENTATION, SMILE_TRANSFER = "reconstruction", "segmentation", "smile_transfer"
PSNR, SSIM, FID, KID = edit_scores.PSNR, edit_scores.SSIM, edit_scores.FID, edit_scores.KID
PIXEL_ACCURACY, MEAN_IOU = "pixel_accuracy", "mean_iou"
SMILING_FRACTION, CLASSIFIER_ACCURACY = "classified_smiling", "classifier_accuracy"
REAL, REAL_SMILING, REAL_NOT_SMILING = "real", "real_smiling", "real_not_smiling"
SMILING = "Smiling"
MOUTH_CLASSES = ("mouth", "u_lip", "l_lip")
KEEP_SUFFIX = "+keep_unedited"
HIGHER_IS_BETTER = {PSNR: True, SSIM: True, FID: False, KID: False, PIXEL_ACCURACY: True, MEAN_IOU: True,
                    SMILING_FRACTION: True, CLASSIFIER_ACCURACY: True}
ParseFn = Callable[[np.ndarray], np.ndarray]  # uint8 (N, R, R, 3) -> uint8 (N, R, R) label maps
SmileFn = Callable[[np.ndarray], np.ndarray]  # uint8 (N, R, R, 3) -> bool (N,): classified smiling
FeaturesFn = Callable[[np.ndarray], np.ndarray]  # uint8 (N, R, R, 3) -> float (N, 2048) Inception features


@dataclasses.dataclass(frozen=True)
class Faces:
    """N faces of a split at resolution R: images uint8 (N, R, R, 3), masks uint8 (N, R, R) in 0..18,
    smiling bool (N,) (the dataset's 'Smiling' label), image_ids int64 (N,) (CelebA-HQ ids)."""

    images: np.ndarray
    masks: np.ndarray
    smiling: np.ndarray
    image_ids: np.ndarray


# ----------------------------------------------------------------------------- the data


def open_split(name: str, split: str, data_dir: str | None):
    """The TFDS data source of `split` of dataset `name` ('celebamask_hq/<config>').

    Raises:
      ValueError: an unknown dataset or config name, or a split the dataset lacks.
      FileNotFoundError: the dataset is not built in `data_dir` (the message gives the build command).
    """
    import tensorflow_datasets as tfds

    import tfds_celebamask
    from maskgan_jax import data as data_lib
    from tfds_celebamask.celebamask_hq.celebamask_hq_dataset_builder import Builder

    tfds_celebamask.register()
    configs = [config.name for config in Builder.BUILDER_CONFIGS]
    family, _, config_name = name.partition("/")
    if family != "celebamask_hq" or config_name not in configs:
        raise ValueError(f"--data={name!r}: expected celebamask_hq/<config>, <config> one of {configs}")
    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"--data={name}: the dataset is not built in {builder.data_dir}. Build it once from the manual download "
            f"(tfds_celebamask's MANUAL_DOWNLOAD_INSTRUCTIONS):\n  python -m tfds_celebamask.build --manual_dir=DIR "
            f"--data_dir={data_dir or data_lib.tfds_default_data_dir()} --config={config_name}")
    available = sorted(builder.info.splits)
    for part in split.split("+"):
        base = re.sub(r"\[.*\]$", "", part.strip())
        if base not in available:
            raise ValueError(f"--split={split!r}: {name} has no split {base!r}; its splits: {available}")
    return tfds.data_source(name, split=split, data_dir=data_dir, download=False)


def load_faces(source, resolution: int, num_faces: int | None = None) -> Faces:
    """The first `num_faces` (None: all) examples of a data source (open_split) as Faces.

    Raises:
      ValueError: an empty split, or images not at `resolution` (the generators').
    """
    count = len(source) if num_faces is None else min(num_faces, len(source))
    if count < 1:
        raise ValueError(f"the split has {len(source)} examples; the protocol needs at least one")
    examples = [source[i] for i in range(count)]
    images = np.stack([np.asarray(e["image"], np.uint8) for e in examples])
    if images.shape[1:3] != (resolution, resolution):
        raise ValueError(f"the dataset's images are {images.shape[2]}x{images.shape[1]}, the generators' "
                         f"{resolution}x{resolution}: take the --data config of that resolution")
    masks = np.stack([np.asarray(e["mask"], np.uint8).reshape(resolution, resolution) for e in examples])
    smiling = np.array([bool(e["attributes"][SMILING]) for e in examples])
    image_ids = np.array([int(e["image_id"]) for e in examples], np.int64)
    return Faces(images=images, masks=masks, smiling=smiling, image_ids=image_ids)


# ----------------------------------------------------------------------------- the smile edit


def smile_pairs(smiling: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(targets, donors), int64 (T,) each: every non-smiling face in order, and for the k-th of them the
    (k mod S)-th smiling face (S smiling faces). Both empty when either kind is missing."""
    smiling = np.asarray(smiling, bool)
    targets, donors = np.flatnonzero(~smiling), np.flatnonzero(smiling)
    if len(targets) == 0 or len(donors) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return targets, donors[np.arange(len(targets)) % len(donors)]


def paste_mouth(target_mask: np.ndarray, donor_mask: np.ndarray) -> np.ndarray:
    """The target's mask with the donor's mouth: uint8 (..., R, R) label maps -> uint8 (..., R, R).

    Where the donor has a MOUTH_CLASSES label, the donor's label; where the target has one outside that
    region, skin (the old mouth is painted over); elsewhere the target's label.
    """
    target_mask, donor_mask = np.asarray(target_mask), np.asarray(donor_mask)
    if target_mask.shape != donor_mask.shape:
        raise ValueError(f"paste_mouth: target mask {target_mask.shape} and donor mask {donor_mask.shape} differ")
    mouth_ids = [labels.CLASS_ID[name] for name in MOUTH_CLASSES]
    donor_mouth = np.isin(donor_mask, mouth_ids)
    old_mouth = np.isin(target_mask, mouth_ids) & ~donor_mouth
    wanted = np.where(old_mouth, labels.CLASS_ID["skin"], target_mask)
    return np.where(donor_mouth, donor_mask, wanted).astype(np.uint8)


# ----------------------------------------------------------------------------- records


def record(task: str, method: str, metric: str, value: float, resampled: np.ndarray | None) -> dict:
    """One result: {"task", "method", "metric", "value" (None if not finite), "interval" ([2.5%, 97.5%]
    of the finite resampled values, or None)}."""
    value = float(value)
    return {"task": task, "method": method, "metric": metric, "value": value if np.isfinite(value) else None,
            "interval": None if resampled is None else edit_scores.interval(np.asarray(resampled, np.float64))}


def mean_record(task: str, method: str, metric: str, values: np.ndarray, num_resamples: int) -> dict:
    """The mean of per-face `values` (N,) with its bootstrap interval over faces."""
    values = np.asarray(values, np.float64)
    counts = edit_scores.resample_counts(len(values), num_resamples, (len(values),))
    return record(task, method, metric, edit_scores.weighted_mean(values, np.ones((1, len(values))))[0],
                  edit_scores.weighted_mean(values, counts))


def per_face(metric: Callable[[np.ndarray, np.ndarray], np.ndarray], results: np.ndarray, reals: np.ndarray,
             chunk: int = 64) -> np.ndarray:
    """metric(results, reals) -> (N,), computed `chunk` faces at a time: the metrics work in float64, and
    a whole 512 px test split at once would take ~17 GB per array."""
    return np.concatenate([metric(results[i:i + chunk], reals[i:i + chunk]) for i in range(0, len(results), chunk)])


def reconstruction_records(method: str, results: np.ndarray, reals: np.ndarray, num_resamples: int,
                           features: np.ndarray | None = None, real_features: np.ndarray | None = None) -> list[dict]:
    """PSNR and SSIM of `results` against `reals` (uint8 (N, R, R, 3) each, face i against face i), and
    with features ((N, D) each) FID and KID with paired bootstrap intervals."""
    psnr = np.minimum(per_face(metrics.psnr, results, reals), edit_scores.MAX_PSNR_DB)
    records = [mean_record(RECONSTRUCTION, method, PSNR, psnr, num_resamples),
               mean_record(RECONSTRUCTION, method, SSIM, per_face(metrics.ssim, results, reals), num_resamples)]
    if features is not None and real_features is not None and len(results) >= 2:
        n = len(results)
        fid_counts = edit_scores.resample_counts(n, min(num_resamples, edit_scores.FID_RESAMPLES), (n, 2))
        records.append(record(RECONSTRUCTION, method, FID, fid.fid_from_features(features, real_features),
                              edit_scores.fid_resampled(features, real_features, fid_counts)))
        kid_counts = edit_scores.resample_counts(n, num_resamples, (n, 1))
        records.append(record(RECONSTRUCTION, method, KID, fid.kid_from_features(features, real_features),
                              edit_scores.kid_resampled(features, real_features, kid_counts)))
    return records


def unpaired_fid_record(task: str, method: str, features: np.ndarray, real_features: np.ndarray,
                        num_resamples: int) -> dict:
    """FID of results' features (n1, D) against other faces' (n2, D); the interval resamples each set on
    its own (edit_scores.fid_resampled_unpaired)."""
    n1, n2 = len(features), len(real_features)
    resamples = min(num_resamples, edit_scores.FID_RESAMPLES)
    counts = edit_scores.resample_counts(n1, resamples, (n1, 4))
    real_counts = edit_scores.resample_counts(n2, resamples, (n2, 5))
    return record(task, method, FID, fid.fid_from_features(features, real_features),
                  edit_scores.fid_resampled_unpaired(features, real_features, counts, real_counts))


def segmentation_records(method: str, masks: np.ndarray, parsed: np.ndarray, num_resamples: int) -> list[dict]:
    """Pixel accuracy and mean IoU (metrics.pixel_accuracy / mean_iou of the confusion matrix summed over
    faces, as `maskgan-parse --evaluate`) of `parsed` against `masks` (N, R, R) each, intervals from
    resampling the faces' confusion matrices."""
    n, c = len(masks), labels.NUM_CLASSES
    per_face_confusion = np.concatenate([  # in chunks, as per_face (int64 keys of every pixel)
        edit_scores.per_face_confusion(masks[i:i + 64], parsed[i:i + 64], np.ones(masks[i:i + 64].shape, bool), c)
        for i in range(0, n, 64)])
    counts = edit_scores.resample_counts(n, num_resamples, (n, 3))
    resampled = (counts @ per_face_confusion.reshape(n, c * c)).reshape(-1, c, c)
    total = per_face_confusion.sum(axis=0)
    return [record(SEGMENTATION, method, PIXEL_ACCURACY, metrics.pixel_accuracy(total),
                   [metrics.pixel_accuracy(m) for m in resampled]),
            record(SEGMENTATION, method, MEAN_IOU, metrics.mean_iou(total), [metrics.mean_iou(m) for m in resampled])]


def fraction_record(task: str, method: str, metric: str, hits: np.ndarray, num_resamples: int) -> dict:
    """The fraction of True in bool (N,) `hits`, with its bootstrap interval."""
    return mean_record(task, method, metric, np.asarray(hits, np.float64), num_resamples)


def classifier_accuracy(predicted: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """bool (N,): whether each face's predicted attribute (bool (N,)) is its label (bool (N,))."""
    predicted, wanted = np.asarray(predicted, bool), np.asarray(wanted, bool)
    if predicted.shape != wanted.shape:
        raise ValueError(f"classifier_accuracy: predictions {predicted.shape} and labels {wanted.shape} differ")
    return predicted == wanted


# ----------------------------------------------------------------------------- the protocol


def reconstruct(editor: edit_lib.Editor, faces: Faces) -> np.ndarray:
    """The generator's reconstructions: each face from its own mask and style, uint8 (N, R, R, 3)."""
    results, _ = editor.edit(faces.images, faces.masks, faces.masks)
    return results


def smile_edits(editor: edit_lib.Editor, faces: Faces, targets: np.ndarray, donors: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """(results, kept) of the smile edit of each target, uint8 (T, R, R, 3) each (see Editor.edit)."""
    wanted = paste_mouth(faces.masks[targets], faces.masks[donors])
    return editor.edit(faces.images[targets], faces.masks[targets], wanted)


def run_protocol(generators: dict[str, edit_lib.LoadedGenerator], faces: Faces, parse: ParseFn | None = None,
                 is_smiling: SmileFn | None = None, features: FeaturesFn | None = None, batch_size: int = 16,
                 num_resamples: int = edit_scores.BOOTSTRAP_RESAMPLES) -> tuple[list[dict], list[str]]:
    """Every figure of the protocol (see the module docstring) for every generator.

    Returns:
      (records, notes): the records, and a line per part skipped for want of faces.
    """
    real_features = None if features is None else features(faces.images)
    records, notes = [], []
    if parse is not None:
        records += segmentation_records(REAL, faces.masks, parse(faces.images), num_resamples)
    targets, donors = smile_pairs(faces.smiling)
    if len(targets) == 0:
        notes.append(f"smile transfer skipped: the faces hold {int(faces.smiling.sum())} smiling and "
                     f"{int((~faces.smiling).sum())} non-smiling faces; it needs both")
    if is_smiling is not None:
        found = is_smiling(faces.images)
        records.append(fraction_record(SMILE_TRANSFER, REAL, CLASSIFIER_ACCURACY,
                                       classifier_accuracy(found, faces.smiling), num_resamples))
        if len(targets):
            records.append(fraction_record(SMILE_TRANSFER, REAL_SMILING, SMILING_FRACTION, found[faces.smiling],
                                           num_resamples))
            records.append(fraction_record(SMILE_TRANSFER, REAL_NOT_SMILING, SMILING_FRACTION, found[targets],
                                           num_resamples))
    for name, loaded in generators.items():
        editor = edit_lib.Editor(loaded, batch_size)
        results = reconstruct(editor, faces)
        result_features = None if features is None else features(results)
        records += reconstruction_records(name, results, faces.images, num_resamples, result_features, real_features)
        if parse is not None:
            records += segmentation_records(name, faces.masks, parse(results), num_resamples)
        if len(targets) and (is_smiling is not None or features is not None):
            for method, edited in zip((name, name + KEEP_SUFFIX), smile_edits(editor, faces, targets, donors)):
                if is_smiling is not None:
                    records.append(fraction_record(SMILE_TRANSFER, method, SMILING_FRACTION, is_smiling(edited),
                                                   num_resamples))
                if features is not None and len(edited) >= 2:
                    records.append(unpaired_fid_record(SMILE_TRANSFER, method, features(edited), real_features,
                                                       num_resamples))
    return records, notes


# ----------------------------------------------------------------------------- the report


_TABLES = (  # (task, metric, format, title)
    (RECONSTRUCTION, PSNR, ".2f", "reconstruction: PSNR (dB) against the real face"),
    (RECONSTRUCTION, SSIM, ".4f", "reconstruction: SSIM against the real face"),
    (RECONSTRUCTION, FID, ".2f", "reconstruction: FID against the real faces"),
    (RECONSTRUCTION, KID, ".4f", "reconstruction: KID against the real faces"),
    (SEGMENTATION, PIXEL_ACCURACY, ".4f", "segmentation of the reconstructions: parser pixel accuracy vs the input "
                                          "masks (real: the parser on the real faces)"),
    (SEGMENTATION, MEAN_IOU, ".4f", "segmentation of the reconstructions: parser mean IoU vs the input masks"),
    (SMILE_TRANSFER, SMILING_FRACTION, ".3f", "smile transfer: fraction classified smiling (real_smiling: the "
                                              "classifier's ceiling; real_not_smiling: the targets, its floor)"),
    (SMILE_TRANSFER, CLASSIFIER_ACCURACY, ".3f", "smile classifier: accuracy on the real faces' Smiling labels"),
    (SMILE_TRANSFER, FID, ".2f", "smile transfer: FID of the results against all the real faces"),
)


def markdown(records: Sequence[dict], header: str = "") -> str:
    """One table per (task, metric) with records: a row per method, cells 'value [2.5%, 97.5%]'."""
    lookup = {(r["task"], r["metric"]): [] for r in records}
    for r in records:
        lookup[(r["task"], r["metric"])].append(r)
    lines = [header] if header else []
    for task, metric, fmt, title in _TABLES:
        rows = lookup.get((task, metric))
        if not rows:
            continue
        better = "higher" if HIGHER_IS_BETTER[metric] else "lower"
        lines += [f"### {title} ({better} is better)", "", f"| method | {metric} |", "|---|---|"]
        for r in rows:
            cell = "-" if r["value"] is None else f"{r['value']:{fmt}}"
            if r["value"] is not None and r["interval"] is not None:
                cell += f" [{r['interval'][0]:{fmt}}, {r['interval'][1]:{fmt}}]"
            lines.append(f"| {r['method']} | {cell} |")
        lines.append("")
    return "\n".join(lines)


def write_outputs(out: str | os.PathLike, records: list[dict], report: str) -> None:
    """<out>/JSON_FILE and <out>/MARKDOWN_FILE."""
    out = paths.as_path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / JSON_FILE).write_text(json.dumps({"records": records}, indent=1) + "\n")
    (out / MARKDOWN_FILE).write_text(report + "\n")


# ----------------------------------------------------------------------------- the command


def _load_parse(path: str, resolution: int, batch_size: int, required: bool) -> tuple[ParseFn | None, str]:
    """The parser of `path` and its description, or (None, why it is skipped) when `path` has none and
    it is not `required` (--parser given)."""
    from maskgan_jax import parse as parse_lib

    try:
        loaded = parse_lib.load_parser(path)
    except FileNotFoundError as error:
        if required:
            raise
        return None, f"segmentation skipped: {error} (give --parser)"
    if loaded.resolution != resolution:
        raise ValueError(f"parser {loaded.step_dir} is at {loaded.resolution}px, the generators at {resolution}px")
    return parse_lib.Parser(loaded, batch_size).parse, f"parser: {loaded.step_dir}"


def _load_smile(path: str, resolution: int, batch_size: int) -> tuple[SmileFn | None, str]:
    """The attribute classifier's 'Smiling' decision, or (None, why smile classification is skipped)."""
    from maskgan_jax import classify

    try:
        loaded = classify.load_classifier(path)
    except FileNotFoundError as error:
        return None, (f"smile classification skipped: {error} (train the parser phase, which trains the "
                      "attribute classifier beside the parser)")
    if SMILING not in loaded.attributes:
        return None, (f"smile classification skipped: the classifier of {loaded.step_dir} predicts "
                      f"{list(loaded.attributes)}, not {SMILING!r} (config.model.classifier.attributes)")
    if loaded.resolution != resolution:
        raise ValueError(f"classifier {loaded.step_dir} is at {loaded.resolution}px, the generators at {resolution}px")
    classifier = classify.Classifier(loaded, batch_size)
    return (lambda images: classifier.present(images, SMILING)), f"classifier: {loaded.step_dir}"


def main(args, source, generators: dict[str, edit_lib.LoadedGenerator], features: FeaturesFn | None,
         skipped: list[str], start: float) -> int:
    """`python -m maskgan_jax.evaluate --data=...`: the protocol on args.data's args.split, written to
    args.out or args.workdir. source: the split (open_split); generators: loaded by maskgan_jax.evaluate;
    features: the Inception (None: skipped, with the reason in `skipped`); start: the command's
    perf_counter at its start."""
    resolution = next(iter(generators.values())).resolution
    faces = load_faces(source, resolution, args.num_faces)
    parser_path = args.parser or args.workdir
    parse, parser_note = (None, "segmentation skipped: no --parser and no --workdir") if parser_path is None else \
        _load_parse(parser_path, resolution, args.batch_size, required=bool(args.parser))
    is_smiling, smile_note = (None, "smile classification skipped: no --parser and no --workdir") \
        if parser_path is None else _load_smile(parser_path, resolution, args.batch_size)
    records, notes = run_protocol(generators, faces, parse, is_smiling, features, args.batch_size, args.bootstrap)
    elapsed = time.perf_counter() - start
    described = "; ".join(f"{name} = {g.step_dir}" for name, g in generators.items())
    header = "\n".join([
        "## CelebAMask-HQ protocol", "",
        f"{len(faces.images)} faces of {args.data} split {args.split!r} ({int(faces.smiling.sum())} smiling) at "
        f"{resolution}x{resolution}; checkpoints: {described}. Cells: value [95% bootstrap interval over faces].",
        "", *(f"- {note}" for note in (parser_note, smile_note, *skipped, *notes)), ""])
    report = "\n".join([markdown(records, header), f"Protocol run time: {elapsed:.1f} s"])
    out = args.out or args.workdir
    write_outputs(out, records, report)
    print(report)
    print(f"Wrote {paths.as_path(out) / JSON_FILE} and {MARKDOWN_FILE}; run time {elapsed:.1f} s")
    return 0
