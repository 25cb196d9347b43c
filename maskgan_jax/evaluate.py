r"""The ground-truth editing benchmark: edits of held-out synthetic faces scored against their true images.

    python -m maskgan_jax.evaluate --workdir=DIR --inception=inception.npz   # DIR's dmn, ebst and parser
    python -m maskgan_jax.evaluate --checkpoints=dmn=RUN/checkpoints/dmn,ebst=RUN/checkpoints/ebst \
        --parser=RUN --inception=inception.npz --out=DIR

The held-out set: synthetic faces 0, 1, 2, ... of seed --seed (20261125; training uses
config.data.synthetic.seed and the parser's evaluation 20261126; a checkpoint trained on the
benchmark's seed is refused). Each face takes one edit: the kinds take turns, a face going to the
next kind in turn that applies to it (edit_applies) and changes a pixel's label at this resolution,
until each kind has --num_per_edit faces (at least MIN_PER_EDIT on the command line). style_copy's
donor geometry comes from face DONOR_OFFSET + i of the same seed, a face no example uses. Per face:
the target image is its render JPEG-encoded at quality 90 (as the training images), its mask the
render's label map; the wanted mask and the true image are the label map and the clean render of
the edited geometry in the face's style; the edited region is where the two masks differ.

Rows (methods): `truth`; `truth_jpeg` (quality 90), `truth_blur` (Gaussian, sigma 1 px),
`truth_shift` (1 px right): what a near-perfect editor scores; `unedited` (the target),
`mean_colour` and `colour_fit` (per-class painters of the wanted mask: maskgan_jax.edit_baselines);
then each checkpoint's generator. Every row also with `+keep_unedited`: the target kept outside the
edited region by edit.keep_unedited_alpha, for the baselines exactly as for the models.

Scores (maskgan_jax.edit_scores, per edit kind with 95% bootstrap intervals over faces): mask
following (the parser's pixel accuracy and mean IoU against the wanted mask, edited region and
image; the truth row is the ceiling), realism (KID per kind and FID over all kinds, Inception
features against the truths'), colour error, PSNR / SSIM of the unedited pixels and of the edited
region. Tiers: maskgan_jax.edit_tiers. Without a parser (the workdir has none and no --parser) or
Inception weights (--inception missing) those figures are skipped with the reason printed, and the
tiers list their criteria as not evaluated. Inception features cost about 0.2 s an image on a 2-core
CPU: --realism_methods and --realism_per_edit bound them.

Writes <out>/edit_benchmark.json ({"records": [{"method", "edit", "region", "metric", "value",
"interval"}], "verdicts": [{"method", "tier", "passed", "failed", "not_evaluated"}]}),
<out>/edit_benchmark.md (the tables and tiers, also printed) and <out>/edit_benchmark_examples.png
(one example per kind: target | target mask | wanted mask | truth | painters | each model, plain
and composited), and prints its own run time.

With --data (a TFDS name, e.g. celebamask_hq/official_512; --split, default test; --data_dir;
--num_faces) it runs the paper's protocol on that CelebAMask-HQ split instead: reconstruction
FID / KID / PSNR / SSIM, segmentation of the reconstructions by the parser, and smile transfer judged
by the run's attribute classifier (maskgan_jax.celeba_protocol).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import time
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from maskgan_jax import edit as edit_lib
from maskgan_jax import edit_baselines as baselines
from maskgan_jax import cli, edit_report, edit_scores, edit_tiers, paths, runtime
from maskgan_jax import norm_statistics as norm_statistics_lib
from maskgan_jax.edit_baselines import jpeg_round_trip  # parse.held_out_faces imports it from here
from tfds_celebamask import synthetic

HELD_OUT_SEED = 20261125
DONOR_OFFSET = 1_000_000  # style_copy donors: faces DONOR_OFFSET + i, beyond any face an example uses
EDIT_KINDS: tuple[str, ...] = tuple(synthetic.EDITS)
MIN_PER_EDIT, DEFAULT_PER_EDIT = 50, 100
KEEP_SUFFIX = edit_tiers.KEEP_SUFFIX
TRUTH, UNEDITED, MEAN_COLOUR, COLOUR_FIT = "truth", "unedited", "mean_colour", "colour_fit"
JSON_FILE, MARKDOWN_FILE, EXAMPLES_FILE = edit_report.JSON_FILE, edit_report.MARKDOWN_FILE, edit_report.EXAMPLES_FILE
ParseFn = Callable[[np.ndarray], np.ndarray]  # uint8 (N, R, R, 3) -> uint8 (N, R, R) label maps
FeaturesFn = Callable[[np.ndarray], np.ndarray]  # uint8 (N, R, R, 3) -> float (N, 2048) Inception features


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


def held_out_examples(resolution: int, num_per_edit: int, seed: int = HELD_OUT_SEED,
                      edits: Sequence[str] = EDIT_KINDS, max_faces: int | None = None) -> list[Example]:
    """The benchmark's examples, one per face, grouped by edit kind in `edits` order, faces ascending.

    Args:
      resolution: render size R. num_per_edit: examples per edit kind.
      seed: the held-out dataset seed. max_faces: faces to draw at most (default 20 x kinds x num_per_edit).
    Raises:
      ValueError: an unknown edit, or too few faces to which an edit applies.
    """
    unknown = [e for e in edits if e not in synthetic.EDITS]
    if unknown:
        raise ValueError(f"unknown edits {unknown}; expected some of {list(synthetic.EDITS)}")
    if num_per_edit < 1:
        raise ValueError(f"num_per_edit must be >= 1, got {num_per_edit}")
    max_faces = min(max_faces or 20 * len(edits) * num_per_edit, DONOR_OFFSET)
    found: dict[str, list[Example]] = {e: [] for e in edits}
    turn, index = 0, 0
    while any(len(v) < num_per_edit for v in found.values()):
        if index >= max_faces:
            short = {e: len(v) for e, v in found.items() if len(v) < num_per_edit}
            raise ValueError(f"only {short} examples after {max_faces} faces of seed {seed}")
        geometry, style = synthetic.sample_face(synthetic.face_rng(seed, index))
        open_kinds = [e for e in edits if len(found[e]) < num_per_edit]
        start = turn % len(open_kinds)
        target = None
        for name in open_kinds[start:] + open_kinds[:start]:
            if not synthetic.edit_applies(name, geometry):
                continue
            donor = synthetic.sample_face(synthetic.face_rng(seed, DONOR_OFFSET + index))[0] \
                if name == "style_copy" else None
            true_image, wanted_labels = synthetic.render(synthetic.EDITS[name](geometry, donor), style, resolution)
            target = target or synthetic.render(geometry, style, resolution)
            if np.array_equal(wanted_labels, target[1]):
                continue  # too small to change a pixel's label at this resolution
            found[name].append(Example(edit=name, face_index=index, target_image=jpeg_round_trip(target[0]),
                                       target_labels=target[1], wanted_labels=wanted_labels, true_image=true_image))
            turn += 1
            break
        index += 1
    return [example for name in edits for example in found[name]]


def _stack(examples: Sequence[Example], field: str) -> np.ndarray:
    return np.stack([getattr(e, field) for e in examples])


# ----------------------------------------------------------------------------- rows


def reference_rows(examples: Sequence[Example]) -> dict[str, np.ndarray]:
    """The truth, the degraded truths, the unedited target and the painters: name -> uint8 (N, R, R, 3)."""
    truths, images = _stack(examples, "true_image"), _stack(examples, "target_image")
    labels_t, labels_src = _stack(examples, "target_labels"), _stack(examples, "wanted_labels")
    return {TRUTH: truths, "truth_jpeg": baselines.jpeg_images(truths), "truth_blur": baselines.blur_images(truths),
            "truth_shift": baselines.shift_images(truths), UNEDITED: images,
            MEAN_COLOUR: baselines.mean_colour_painter(images, labels_t, labels_src),
            COLOUR_FIT: baselines.colour_fit_painter(images, labels_t, labels_src)}


def with_keep_unedited(rows: dict[str, np.ndarray], examples: Sequence[Example], dilation: int,
                       feather: int) -> dict[str, np.ndarray]:
    """Each row followed by its `+keep_unedited` composite (baselines.composite_unedited)."""
    images = _stack(examples, "target_image")
    labels_t, labels_src = _stack(examples, "target_labels"), _stack(examples, "wanted_labels")
    out = {}
    for name, results in rows.items():
        out[name] = results
        out[name + KEEP_SUFFIX] = baselines.composite_unedited(results, images, labels_t, labels_src, dilation,
                                                               feather)
    return out


def generator_rows(generators: dict[str, edit_lib.LoadedGenerator], examples: Sequence[Example], batch_size: int,
                   dilation: int, feather: int, norm_statistics: str | None = None) -> dict[str, np.ndarray]:
    """Each generator's results and their `+keep_unedited` composites (edit.Editor): name -> uint8.
    norm_statistics: the editing mode (norm_statistics.MODES) for all; None: each checkpoint's config's."""
    images = _stack(examples, "target_image")
    labels_t, labels_src = _stack(examples, "target_labels"), _stack(examples, "wanted_labels")
    rows = {}
    for name, loaded in generators.items():
        editor = edit_lib.Editor(loaded, batch_size, dilation, feather, norm_statistics)
        rows[name], rows[name + KEEP_SUFFIX] = editor.edit(images, labels_t, labels_src)
    return rows


# ----------------------------------------------------------------------------- scoring


def inception_features(params, batch_size: int = 25) -> FeaturesFn:
    """A FeaturesFn with the FID Inception (maskgan_jax.fid): images upsampled to 299x299 with PIL
    bicubic (as the FID CLI), jitted batches; an image seen before (same bytes) is not recomputed."""
    from maskgan_jax import fid
    from maskgan_jax.models import inception

    cache: dict[bytes, np.ndarray] = {}
    size = (inception.INPUT_SIZE, inception.INPUT_SIZE)

    def features(images: np.ndarray) -> np.ndarray:
        keys = [hashlib.sha1(image.tobytes()).digest() for image in images]
        missing = list(dict.fromkeys(k for k in keys if k not in cache))
        first = {k: i for i, k in reversed(list(enumerate(keys)))}
        for start in range(0, len(missing), 10 * batch_size):
            chunk = missing[start:start + 10 * batch_size]
            big = [np.asarray(Image.fromarray(images[first[k]]).resize(size, Image.Resampling.BICUBIC)) for k in chunk]
            for key, vector in zip(chunk, fid.extract_features(params, big, batch_size)):
                cache[key] = vector.astype(np.float64)
        return np.stack([cache[k] for k in keys])

    return features


def realism_faces(kinds: Sequence[str], per_edit: int | None) -> np.ndarray:
    """bool (N,): the first `per_edit` faces of each kind (all when None)."""
    kinds = np.asarray(kinds)
    chosen = np.zeros(len(kinds), bool)
    for kind in dict.fromkeys(kinds.tolist()):
        chosen[np.flatnonzero(kinds == kind)[:per_edit]] = True
    return chosen


def score_rows(rows: dict[str, np.ndarray], examples: Sequence[Example], parse: ParseFn | None = None,
               features: FeaturesFn | None = None, realism_methods: Sequence[str] | None = None,
               realism_per_edit: int | None = None,
               num_resamples: int = edit_scores.BOOTSTRAP_RESAMPLES) -> list[dict]:
    """The records of every row (edit_scores.method_records).

    Args:
      rows: method -> uint8 (N, R, R, 3) results, one per example; must hold TRUTH when `features`.
      parse: the parser (None: no mask following). It is called on one method's results at a time,
        in example order.
      features: the Inception (None: no KID / FID); run on the truths and on the rows named in
        realism_methods (None: all), first realism_per_edit faces of each kind (None: all).
    """
    truths = _stack(examples, "true_image")
    wanted, edited = _stack(examples, "wanted_labels"), np.stack([e.edited_region for e in examples])
    kinds = [e.edit for e in examples]
    chosen = realism_faces(kinds, realism_per_edit)
    truth_features = None
    if features is not None:
        truth_features = np.full((len(examples), 2048), np.nan)
        truth_features[chosen] = features(truths[chosen])
    records = []
    for method, results in rows.items():
        method_features = None
        if truth_features is not None and (realism_methods is None or method in realism_methods):
            method_features = np.full_like(truth_features, np.nan)
            method_features[chosen] = features(results[chosen])
        scores = edit_scores.face_scores(results, truths, wanted, edited, None if parse is None else parse(results),
                                         method_features)
        records += edit_scores.method_records(method, scores, kinds, truth_features, num_resamples)
    return records


# ----------------------------------------------------------------------------- the benchmark


def parse_checkpoints(text: str) -> dict[str, str]:
    """'dmn=PATH,ebst=PATH' -> {'dmn': 'PATH', 'ebst': 'PATH'}; a bare PATH is named by its position."""
    reserved = {TRUTH, UNEDITED, MEAN_COLOUR, COLOUR_FIT, *edit_tiers.DEGRADED_TRUTHS}
    named = {}
    for position, part in enumerate(p.strip() for p in text.split(",") if p.strip()):
        name, sep, path = part.partition("=")
        if not sep:
            name, path = f"checkpoint{position}", part
        if name in named or name in reserved or name.endswith(KEEP_SUFFIX):
            raise ValueError(f"--checkpoints: the name {name!r} is used twice or reserved")
        named[name] = path
    return named


def workdir_checkpoints(workdir: str | os.PathLike) -> dict[str, tuple[str, str]]:
    """The phases of a workdir that hold a generator, oldest first (dmn, then ebst: the ablation's
    order): name -> (workdir, phase)."""
    return {phase: (str(workdir), phase) for phase in reversed(edit_lib.workdir_phases(workdir))}


def check_not_trained_on(what: str, config, seed: int) -> None:
    """Refuses a network whose stored config trained on synthetic seed `seed`, the benchmark's."""
    synthetic_config = config.data.get("synthetic") if "data" in config else None
    if synthetic_config is not None and int(synthetic_config.seed) == seed:
        raise ValueError(f"{what} was trained on synthetic seed {seed}, the benchmark's held-out seed; pass "
                         "another --seed")


def run_benchmark(generators: dict[str, edit_lib.LoadedGenerator], resolution: int, num_per_edit: int,
                  seed: int = HELD_OUT_SEED, edits: Sequence[str] = EDIT_KINDS, parse: ParseFn | None = None,
                  features: FeaturesFn | None = None, realism_methods: Sequence[str] | None = None,
                  realism_per_edit: int | None = None, batch_size: int = 16, dilation: int | None = None,
                  feather: int | None = None, num_resamples: int = edit_scores.BOOTSTRAP_RESAMPLES,
                  norm_statistics: str | None = None
                  ) -> tuple[list[dict], list[dict], list[Example], dict[str, np.ndarray]]:
    """Scores the reference rows and every generator, plain and composited, on the held-out set.

    Returns:
      (records, verdicts, examples, rows): rows maps method -> uint8 (N, R, R, 3) results.
    """
    for name, loaded in generators.items():
        if loaded.resolution != resolution:
            raise ValueError(f"checkpoint {name} ({loaded.step_dir}) is at {loaded.resolution}px, the benchmark "
                             f"at {resolution}px")
        check_not_trained_on(f"checkpoint {name} ({loaded.step_dir})", loaded.config, seed)
    default_dilation, default_feather = edit_lib.default_margins(resolution)
    dilation = default_dilation if dilation is None else dilation
    feather = default_feather if feather is None else feather
    examples = held_out_examples(resolution, num_per_edit, seed, edits)
    rows = with_keep_unedited(reference_rows(examples), examples, dilation, feather)
    rows.update(generator_rows(generators, examples, batch_size, dilation, feather, norm_statistics))
    records = score_rows(rows, examples, parse, features, realism_methods, realism_per_edit, num_resamples)
    return records, edit_tiers.verdicts(records, list(dict.fromkeys(edits))), examples, rows


def load_parse_fn(path: str, resolution: int, seed: int, batch_size: int) -> tuple[ParseFn, str]:
    """The trained parser of `path` (parse.load_parser) as a ParseFn, and its description."""
    from maskgan_jax import parse as parse_lib

    loaded = parse_lib.load_parser(path)
    if loaded.resolution != resolution:
        raise ValueError(f"parser {loaded.step_dir} is at {loaded.resolution}px, the benchmark at {resolution}px")
    check_not_trained_on(f"parser {loaded.step_dir}", loaded.config, seed)
    return parse_lib.Parser(loaded, batch_size).parse, str(loaded.step_dir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m maskgan_jax.evaluate",
                                     description="Ground-truth editing benchmark on held-out synthetic faces "
                                                 "(with --data: the CelebAMask-HQ protocol).")
    parser.add_argument("--workdir", help="training workdir: benchmarks its dmn and ebst checkpoints with its "
                                          "parser; results are written here unless --out")
    parser.add_argument("--checkpoints", help="instead of the workdir's: NAME=PATH,NAME=PATH (workdir, phase "
                                              "or step directories)")
    parser.add_argument("--parser", help="the parser's workdir, phase or step directory (default: --workdir's)")
    parser.add_argument("--inception", default="", help="FID Inception weights .npz (python -m "
                        "maskgan_jax.convert_inception); missing: KID and FID are skipped")
    parser.add_argument("--out", help="output folder (default: --workdir)")
    parser.add_argument("--num_per_edit", type=int, default=DEFAULT_PER_EDIT,
                        help=f"faces per edit kind, one edit each (at least {MIN_PER_EDIT})")
    parser.add_argument("--realism_per_edit", type=int, default=None,
                        help="KID/FID on the first this many faces of each kind (default: all)")
    parser.add_argument("--realism_methods", default="",
                        help="KID/FID only for these rows, comma-separated (a name covers its +keep_unedited "
                             "row; default: all)")
    parser.add_argument("--bootstrap", type=int, default=edit_scores.BOOTSTRAP_RESAMPLES,
                        help="bootstrap resamples of the faces per interval")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="held-out synthetic faces' seed")
    parser.add_argument("--edits", default=",".join(EDIT_KINDS), help="edit kinds, comma-separated")
    parser.add_argument("--resolution", type=int, default=None,
                        help="benchmark resolution (default: the checkpoints'; needed without checkpoints)")
    parser.add_argument("--batch_size", type=int, default=16, help="edits per compiled generator call (with --data "
                        "also images per Inception call)")
    parser.add_argument("--dilation", type=int, default=None, help="keep_unedited dilation (pixels)")
    parser.add_argument("--feather", type=int, default=None, help="keep_unedited feather (pixels)")
    parser.add_argument("--norm_statistics", default=None, choices=norm_statistics_lib.MODES,
                        help="the generators' normalisation statistics when editing (maskgan_jax.norm_statistics; "
                             "default: each checkpoint's config.edit.norm_statistics)")
    parser.add_argument("--jax_cache_dir", default=cli.DEFAULT_CACHE_DIR,
                        help="persistent compilation cache ('' turns it off)")
    parser.add_argument("--data", default=None,
                        help="TFDS name, e.g. celebamask_hq/official_512: run the CelebAMask-HQ protocol on it "
                             "instead of the synthetic benchmark (maskgan_jax.celeba_protocol)")
    parser.add_argument("--split", default="test", help="--data: the TFDS split")
    parser.add_argument("--data_dir", default=None, help="--data: the TFDS data dir (default: TFDS's)")
    parser.add_argument("--num_faces", type=int, default=None, help="--data: the first this many faces (default: all)")
    return parser


def load_features(inception_file: str, skipped: list[str], batch_size: int = 25) -> FeaturesFn | None:
    """The Inception FeaturesFn of `inception_file` (jitted batches of `batch_size`), or None (the reason
    appended to `skipped`)."""
    inception_path = paths.as_path(inception_file) if inception_file else None
    if inception_path is not None and inception_path.is_file():
        from maskgan_jax.models import inception

        return inception_features(inception.load_inception_params(str(inception_path)), batch_size)
    skipped.append(f"KID and FID skipped: --inception={inception_file!r} is not a file (make fid-weights, "
                   "then python -m maskgan_jax.convert_inception)")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    runtime.setup()
    parser = build_parser()
    args = parser.parse_args(argv)
    out = args.out or args.workdir
    if out is None:
        parser.error("give --workdir or --out")
    if args.num_per_edit < MIN_PER_EDIT:
        parser.error(f"--num_per_edit={args.num_per_edit}: at least {MIN_PER_EDIT} faces per edit kind")
    if args.realism_per_edit is not None and args.realism_per_edit < 2:
        parser.error(f"--realism_per_edit={args.realism_per_edit}: KID needs at least 2 faces per kind")
    if args.bootstrap < 10:
        parser.error(f"--bootstrap={args.bootstrap}: at least 10 resamples")
    if args.data is not None and not (args.workdir or args.checkpoints):
        parser.error("--data needs checkpoints to evaluate: give --workdir or --checkpoints")
    if args.num_faces is not None and args.num_faces < 1:
        parser.error(f"--num_faces={args.num_faces}: at least 1")
    start = time.perf_counter()
    runtime.enable_compilation_cache(args.jax_cache_dir)
    if args.data is not None:  # a wrong name, split or data dir fails before any checkpoint is read
        from maskgan_jax import celeba_protocol

        source = celeba_protocol.open_split(args.data, args.split, args.data_dir)
    if args.checkpoints:
        sources = {name: (path, None) for name, path in parse_checkpoints(args.checkpoints).items()}
    elif args.workdir:
        sources = workdir_checkpoints(args.workdir)
        if not sources:
            parser.error(f"{args.workdir}: no checkpoints/dmn or checkpoints/ebst with a finished step")
    else:
        sources = {}
    if not sources and args.resolution is None:
        parser.error("without checkpoints, give --resolution (only the reference rows are scored)")
    mesh = edit_lib.editing_mesh()
    generators = {name: edit_lib.load_generator(path, phase, args.resolution, mesh)
                  for name, (path, phase) in sources.items()}
    resolutions = {g.resolution for g in generators.values()}
    if len(resolutions) > 1:
        parser.error(f"the checkpoints differ in resolution: {sorted(resolutions)}")
    resolution = args.resolution or resolutions.pop()
    skipped = []
    if args.data is not None:
        features = load_features(args.inception, skipped, args.batch_size)
        return celeba_protocol.main(args, source, generators, features, skipped, start)
    parse, parser_note = None, "none"
    if args.parser or args.workdir:
        try:
            parse, parser_note = load_parse_fn(args.parser or args.workdir, resolution, args.seed, args.batch_size)
        except FileNotFoundError as error:
            if args.parser:
                raise
            skipped.append(f"mask following skipped: {error} (give --parser)")
    else:
        skipped.append("mask following skipped: no --parser and no --workdir")
    features = load_features(args.inception, skipped)
    edits = [e.strip() for e in args.edits.split(",") if e.strip()]
    named = [m.strip() for m in args.realism_methods.split(",") if m.strip()]
    realism_methods = [m + suffix for m in named for suffix in ("", KEEP_SUFFIX)] or None
    records, verdicts, examples, rows = run_benchmark(
        generators, resolution, args.num_per_edit, args.seed, edits, parse, features, realism_methods,
        args.realism_per_edit, args.batch_size, args.dilation, args.feather, args.bootstrap, args.norm_statistics)
    elapsed = time.perf_counter() - start
    described = "; ".join(
        f"{name} = {g.step_dir} ({args.norm_statistics or norm_statistics_lib.config_mode(g.config)} statistics)"
        for name, g in generators.items()) or "none"
    realism = (f"KID/FID on the first {args.realism_per_edit or args.num_per_edit} faces per kind of "
               f"{', '.join(named) + ' (plain and composited)' if named else 'every row'}")
    header = "\n".join([
        "## Ground-truth editing benchmark", "",
        f"{len(examples)} edits of independent held-out synthetic faces (seed {args.seed}, {args.num_per_edit} per "
        f"kind, one edit per face) at {resolution}x{resolution}; checkpoints: {described}; parser: {parser_note}; "
        f"{realism}. Cells: value [95% bootstrap interval over faces]. The truth row is the ceiling.", "",
        *(f"- {note}" for note in skipped), ""])
    figure_rows = {name: images for name, images in rows.items() if name in (MEAN_COLOUR, COLOUR_FIT)
                   or name in generators or edit_tiers.split_method(name)[0] in generators}
    markdown = "\n".join([edit_report.markdown_tables(records, header), "### Tiers", "",
                          edit_tiers.format_verdicts(verdicts), "", f"Benchmark run time: {elapsed:.1f} s"])
    edit_report.write_outputs(out, records, verdicts, examples, figure_rows, markdown)
    print(markdown)
    print(f"Wrote {paths.as_path(out) / JSON_FILE}, {MARKDOWN_FILE} and {EXAMPLES_FILE}; run time {elapsed:.1f} s")
    return 0


def run() -> None:
    cli.run("maskgan_jax.evaluate", main)


if __name__ == "__main__":
    run()
