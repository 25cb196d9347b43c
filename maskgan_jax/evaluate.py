r"""The ground-truth editing benchmark: edits of held-out synthetic faces scored against their true images.

    python -m maskgan_jax.evaluate --workdir=DIR        # the dmn and ebst checkpoints of a training run
    python -m maskgan_jax.evaluate --checkpoints=dmn=RUN/checkpoints/dmn,ebst=RUN/checkpoints/ebst --out=DIR

The held-out set: synthetic faces of seed --seed (20261125 by default; training uses
config.data.synthetic.seed, and a checkpoint trained on the benchmark's seed is refused), faces
0, 1, 2, ... in order. Each face takes every edit kind that applies to it (edit_applies) and
still lacks examples, until each kind has --num_per_edit examples: smile, hair_longer,
hair_shorter, larger_eyes, add_glasses, add_hat, and style_copy (the geometry of the next face,
i + 1, in this face's style). For each example:
- the target image is the face's render JPEG-encoded at quality 90 and decoded, as the training
  images are; its mask is the render's label map;
- the wanted mask is the true label map of the edited face, and the true image is the clean
  render of the edited geometry in the face's style (synthetic_faces.md: edits are geometry
  changes, so the truth is known);
- the edited region is where the wanted mask differs from the target mask, the unedited region
  the rest. A face whose edit changes no pixel's label at this resolution is skipped for that
  edit. (The true image also changes a little outside the edited region: anti-aliased part
  borders over a changed hidden layer, sub-pixel parts such as glasses temples, the iris of a
  larger eye inside pixels that stay eye. Those changes are part of the truth.)

Methods (rows): `unedited` (the target image itself), `mean_colour` (each class of the wanted
mask painted with the mean colour of the target's pixels of that class; classes absent from the
target take the target's mean colour), and per checkpoint its generator's result, plain and with
`+keep_unedited` (maskgan_jax.edit).

Scores: PSNR and SSIM (maskgan_jax.metrics, uint8 images, data range 255) against the true
image over the whole image (`all`), the edited region and the unedited region; per example,
then averaged per edit kind and over all examples (`overall`, every kind with the same count).
A per-example PSNR is capped at 100 dB (identical pixels) so every mean is finite.

Writes <out>/edit_benchmark.json (a list of {"method", "edit", "region", "psnr", "ssim"}),
<out>/edit_benchmark.md (the tables, also printed) and <out>/edit_benchmark_examples.png (one
example per edit kind: target | target mask | wanted mask | truth | mean_colour | each
checkpoint's result | with keep_unedited).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import sys
import time
from pathlib import Path
from collections.abc import Sequence

import numpy as np
from PIL import Image

from maskgan_jax import edit as edit_lib
from maskgan_jax import mask_io, metrics, runtime
from tfds_celebamask import labels
from tfds_celebamask import synthetic

HELD_OUT_SEED = 20261125
EDIT_KINDS: tuple[str, ...] = tuple(synthetic.EDITS)
REGIONS = ("all", "edited", "unedited")
OVERALL = "overall"
UNEDITED, MEAN_COLOUR = "unedited", "mean_colour"
KEEP_SUFFIX = "+keep_unedited"
MAX_PSNR_DB = 100.0
TARGET_JPEG_QUALITY = synthetic.JPEG_QUALITY
JSON_FILE, MARKDOWN_FILE, EXAMPLES_FILE = "edit_benchmark.json", "edit_benchmark.md", "edit_benchmark_examples.png"


# ----------------------------------------------------------------------------- the held-out set


@dataclasses.dataclass(frozen=True)
class Example:
    """One benchmark edit at resolution R.

    edit: the edit kind. face_index: the held-out face (seed, index).
    target_image: uint8 (R, R, 3), JPEG round trip of the face's render. target_labels: uint8 (R, R).
    wanted_labels: uint8 (R, R), the edited face's true label map.
    true_image: uint8 (R, R, 3), the edited face's clean render.
    """

    edit: str
    face_index: int
    target_image: np.ndarray
    target_labels: np.ndarray
    wanted_labels: np.ndarray
    true_image: np.ndarray

    @property
    def edited_region(self) -> np.ndarray:
        """bool (R, R): pixels whose label the edit changes."""
        return self.target_labels != self.wanted_labels


def jpeg_round_trip(image: np.ndarray, quality: int = TARGET_JPEG_QUALITY) -> np.ndarray:
    """uint8 (H, W, 3) -> the same image JPEG-encoded at `quality` and decoded."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"), dtype=np.uint8)


def held_out_examples(resolution: int, num_per_edit: int, seed: int = HELD_OUT_SEED,
                      edits: Sequence[str] = EDIT_KINDS, max_faces: int | None = None) -> list[Example]:
    """The benchmark's examples, grouped by edit kind in `edits` order, faces ascending within a kind.

    Args:
      resolution: render size R. num_per_edit: examples per edit kind.
      seed: the held-out dataset seed. max_faces: faces to draw at most (default 50 x num_per_edit).
    Raises:
      ValueError: an unknown edit, or too few faces to which an edit applies.
    """
    unknown = [e for e in edits if e not in synthetic.EDITS]
    if unknown:
        raise ValueError(f"unknown edits {unknown}; expected some of {list(synthetic.EDITS)}")
    if num_per_edit < 1:
        raise ValueError(f"num_per_edit must be >= 1, got {num_per_edit}")
    max_faces = max_faces or 50 * num_per_edit
    found: dict[str, list[Example]] = {e: [] for e in edits}
    index = 0
    while any(len(v) < num_per_edit for v in found.values()):
        if index >= max_faces:
            short = {e: len(v) for e, v in found.items() if len(v) < num_per_edit}
            raise ValueError(f"only {short} examples after {max_faces} faces of seed {seed}")
        geometry, style = synthetic.sample_face(synthetic.face_rng(seed, index))
        target_image, target_labels = None, None
        for name in edits:
            if len(found[name]) >= num_per_edit or not synthetic.edit_applies(name, geometry):
                continue
            if target_image is None:
                target_image, target_labels = synthetic.render(geometry, style, resolution)
            donor = synthetic.sample_face(synthetic.face_rng(seed, index + 1))[0] if name == "style_copy" else None
            true_image, wanted_labels = synthetic.render(synthetic.EDITS[name](geometry, donor), style, resolution)
            if np.array_equal(wanted_labels, target_labels):
                continue  # too small to change a pixel's label at this resolution
            found[name].append(Example(edit=name, face_index=index, target_image=jpeg_round_trip(target_image),
                                       target_labels=target_labels, wanted_labels=wanted_labels,
                                       true_image=true_image))
        index += 1
    return [example for name in edits for example in found[name]]


# ----------------------------------------------------------------------------- baselines and scores


def mean_colour_painter(images: np.ndarray, labels_t: np.ndarray, labels_src: np.ndarray,
                        num_classes: int = labels.NUM_CLASSES) -> np.ndarray:
    """Paints each class of the wanted mask with the mean colour of the target's pixels of that class.

    Args:
      images: uint8 (N, H, W, 3) targets. labels_t: int (N, H, W) their masks. labels_src: int
        (N, H, W) wanted masks.
    Returns:
      uint8 (N, H, W, 3); a class absent from a target takes that target's mean colour.
    """
    n = images.shape[0]
    flat_labels = (labels_t.astype(np.int64) + num_classes * np.arange(n)[:, None, None]).reshape(-1)
    pixels = images.reshape(-1, 3).astype(np.float64)
    counts = np.bincount(flat_labels, minlength=n * num_classes).reshape(n, num_classes)
    sums = np.stack([np.bincount(flat_labels, pixels[:, c], minlength=n * num_classes) for c in range(3)], -1)
    sums = sums.reshape(n, num_classes, 3)
    overall = images.reshape(n, -1, 3).mean(axis=1)  # (N, 3)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts[..., None] > 0, sums / counts[..., None], overall[:, None, :])
    painted = np.take_along_axis(means, labels_src.reshape(n, -1, 1).astype(np.int64), axis=1)
    return np.clip(np.round(painted), 0, 255).astype(np.uint8).reshape(images.shape)


def score(results: np.ndarray, examples: Sequence[Example]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-example (PSNR capped at MAX_PSNR_DB, SSIM) of results against the true images, per region.

    Args:
      results: uint8 (N, R, R, 3), one per example.
    Returns:
      region -> (psnr float64 (N,), ssim float64 (N,)).
    """
    truths = np.stack([e.true_image for e in examples])
    edited = np.stack([e.edited_region for e in examples])
    ssim_map = metrics.ssim_map(results, truths)
    scores = {}
    for region_name, region in (("all", np.ones_like(edited)), ("edited", edited), ("unedited", ~edited)):
        psnr = np.minimum(metrics.psnr(results, truths, region), MAX_PSNR_DB)
        with np.errstate(invalid="ignore", divide="ignore"):
            ssim = np.where(region, ssim_map, 0.0).sum(axis=(1, 2)) / region.sum(axis=(1, 2))
        scores[region_name] = (psnr, ssim)
    return scores


def summarise(method: str, scores: dict[str, tuple[np.ndarray, np.ndarray]], examples: Sequence[Example]
              ) -> list[dict]:
    """Records {"method", "edit", "region", "psnr", "ssim"}: means per edit kind, then OVERALL.

    A region empty in an example (e.g. nothing unedited) leaves that example out of its mean."""
    kinds = np.array([e.edit for e in examples])
    records = []
    for edit in list(dict.fromkeys(kinds)) + [OVERALL]:
        chosen = np.ones(len(kinds), bool) if edit == OVERALL else kinds == edit
        for region in REGIONS:
            psnr, ssim = scores[region]
            records.append({"method": method, "edit": edit, "region": region,
                            "psnr": float(np.nanmean(psnr[chosen])), "ssim": float(np.nanmean(ssim[chosen]))})
    return records


def markdown_tables(records: Sequence[dict], header: str = "") -> str:
    """One table per region: a row per method, a column per edit kind and overall; cells 'PSNR / SSIM'."""
    methods = list(dict.fromkeys(r["method"] for r in records))
    edits = list(dict.fromkeys(r["edit"] for r in records))
    lookup = {(r["method"], r["edit"], r["region"]): r for r in records}
    lines = [header] if header else []
    for region in REGIONS:
        lines += [f"### {region} pixels: PSNR (dB) / SSIM", "",
                  "| method | " + " | ".join(edits) + " |", "|---|" + "---|" * len(edits)]
        for method in methods:
            cells = []
            for edit in edits:
                r = lookup.get((method, edit, region))
                cells.append(f"{r['psnr']:.2f} / {r['ssim']:.3f}" if r else "-")
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def examples_figure(examples: Sequence[Example], results: dict[str, np.ndarray]) -> np.ndarray:
    """First example of each edit kind, one per row: target | target mask | wanted mask | truth |
    each method's result in `results` order (name -> uint8 (N, R, R, 3)); uint8 image."""
    rows = []
    for edit in dict.fromkeys(e.edit for e in examples):
        i = next(k for k, e in enumerate(examples) if e.edit == edit)
        e = examples[i]
        columns = [e.target_image, mask_io.colour_labels(e.target_labels), mask_io.colour_labels(e.wanted_labels),
                   e.true_image] + [images[i] for images in results.values()]
        rows.append(np.concatenate(columns, axis=1))
    return np.concatenate(rows, axis=0)


# ----------------------------------------------------------------------------- the benchmark


def parse_checkpoints(text: str) -> dict[str, str]:
    """'dmn=PATH,ebst=PATH' -> {'dmn': 'PATH', 'ebst': 'PATH'}; a bare PATH is named by its position."""
    named = {}
    for position, part in enumerate(p.strip() for p in text.split(",") if p.strip()):
        name, sep, path = part.partition("=")
        if not sep:
            name, path = f"checkpoint{position}", part
        if name in named or name in (UNEDITED, MEAN_COLOUR):
            raise ValueError(f"--checkpoints: the name {name!r} is used twice or reserved")
        named[name] = path
    return named


def workdir_checkpoints(workdir: str | Path) -> dict[str, tuple[str, str]]:
    """The phases of a workdir that hold a generator, oldest first (dmn, then ebst: the ablation's
    order): name -> (workdir, phase)."""
    return {phase: (str(workdir), phase) for phase in reversed(edit_lib.workdir_phases(workdir))}


def run_benchmark(generators: dict[str, edit_lib.LoadedGenerator], resolution: int, num_per_edit: int,
                  seed: int = HELD_OUT_SEED, edits: Sequence[str] = EDIT_KINDS, batch_size: int = 16,
                  dilation: int | None = None, feather: int | None = None
                  ) -> tuple[list[dict], list[Example], dict[str, np.ndarray]]:
    """Scores the baselines and every generator on the held-out set.

    Returns:
      (records, examples, results): the JSON records; the examples; method -> uint8 results.
    """
    for name, loaded in generators.items():
        if loaded.resolution != resolution:
            raise ValueError(f"checkpoint {name} ({loaded.step_dir}) is at {loaded.resolution}px, the benchmark "
                             f"at {resolution}px")
        synthetic_config = loaded.config.data.get("synthetic") if "data" in loaded.config else None
        if synthetic_config is not None and int(synthetic_config.seed) == seed:
            raise ValueError(f"checkpoint {name} ({loaded.step_dir}) was trained on synthetic seed {seed}, the "
                             f"benchmark's held-out seed; pass another --seed")
    examples = held_out_examples(resolution, num_per_edit, seed, edits)
    images = np.stack([e.target_image for e in examples])
    labels_t = np.stack([e.target_labels for e in examples])
    labels_src = np.stack([e.wanted_labels for e in examples])
    results = {UNEDITED: images, MEAN_COLOUR: mean_colour_painter(images, labels_t, labels_src)}
    for name, loaded in generators.items():
        editor = edit_lib.Editor(loaded, batch_size, dilation, feather)
        results[name], results[name + KEEP_SUFFIX] = editor.edit(images, labels_t, labels_src)
    records = []
    for method, method_results in results.items():
        records += summarise(method, score(method_results, examples), examples)
    return records, examples, results


def write_outputs(out: str | Path, records: list[dict], examples: Sequence[Example], results: dict[str, np.ndarray],
                  header: str) -> str:
    """Writes the JSON, the Markdown tables and the examples figure into `out`; returns the Markdown."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / JSON_FILE).write_text(json.dumps(records, indent=1) + "\n")
    markdown = markdown_tables(records, header)
    (out / MARKDOWN_FILE).write_text(markdown + "\n")
    shown = {name: images for name, images in results.items() if name != UNEDITED}  # the target is column 1
    mask_io.write_image(out / EXAMPLES_FILE, examples_figure(examples, shown))
    return markdown


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m maskgan_jax.evaluate",
                                     description="Ground-truth editing benchmark on held-out synthetic faces.")
    parser.add_argument("--workdir", help="training workdir: benchmarks its dmn and ebst checkpoints; "
                                          "results are written here unless --out")
    parser.add_argument("--checkpoints", help="instead of the workdir's: NAME=PATH,NAME=PATH (workdir, phase "
                                              "or step directories)")
    parser.add_argument("--out", help="output folder (default: --workdir)")
    parser.add_argument("--num_per_edit", type=int, default=50, help="examples per edit kind")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="held-out synthetic faces' seed")
    parser.add_argument("--edits", default=",".join(EDIT_KINDS), help="edit kinds, comma-separated")
    parser.add_argument("--resolution", type=int, default=None,
                        help="benchmark resolution (default: the checkpoints'; needed without checkpoints)")
    parser.add_argument("--batch_size", type=int, default=16, help="edits per compiled generator call")
    parser.add_argument("--dilation", type=int, default=None, help="keep_unedited dilation (pixels)")
    parser.add_argument("--feather", type=int, default=None, help="keep_unedited feather (pixels)")
    parser.add_argument("--jax_cache_dir", default=edit_lib.DEFAULT_CACHE_DIR,
                        help="persistent compilation cache ('' turns it off)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    runtime.setup()
    parser = build_parser()
    args = parser.parse_args(argv)
    out = args.out or args.workdir
    if out is None:
        parser.error("give --workdir or --out")
    start = time.perf_counter()
    runtime.enable_compilation_cache(args.jax_cache_dir)
    if args.checkpoints:
        sources = {name: (path, None) for name, path in parse_checkpoints(args.checkpoints).items()}
    elif args.workdir:
        sources = workdir_checkpoints(args.workdir)
        if not sources:
            parser.error(f"{args.workdir}: no checkpoints/dmn or checkpoints/ebst with a finished step")
    else:
        sources = {}
    if not sources and args.resolution is None:
        parser.error("without checkpoints, give --resolution (only the baselines are scored)")
    mesh = edit_lib.editing_mesh()
    generators = {name: edit_lib.load_generator(path, phase, args.resolution, mesh)
                  for name, (path, phase) in sources.items()}
    resolutions = {g.resolution for g in generators.values()}
    if len(resolutions) > 1:
        parser.error(f"the checkpoints differ in resolution: {sorted(resolutions)}")
    resolution = args.resolution or resolutions.pop()
    edits = [e.strip() for e in args.edits.split(",") if e.strip()]
    records, examples, results = run_benchmark(generators, resolution, args.num_per_edit, args.seed, edits,
                                               args.batch_size, args.dilation, args.feather)
    described = "; ".join(f"{name} = {g.step_dir}" for name, g in generators.items()) or "none"
    header = (f"## Ground-truth editing benchmark\n\n{len(examples)} edits of held-out synthetic faces (seed "
              f"{args.seed}, {args.num_per_edit} per kind) at {resolution}x{resolution}; checkpoints: {described}. "
              f"Higher is better. Regions: all pixels, the pixels whose label the edit changes, and the rest.\n")
    markdown = write_outputs(out, records, examples, results, header)
    print(markdown)
    print(f"Wrote {Path(out) / JSON_FILE}, {MARKDOWN_FILE} and {EXAMPLES_FILE} in {time.perf_counter() - start:.1f} s")
    return 0


def run() -> None:
    try:
        sys.exit(main())
    except (FileNotFoundError, ValueError) as error:
        print(f"evaluate: error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run()
