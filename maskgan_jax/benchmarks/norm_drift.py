r"""How much of an edit's colour drift the generator's instance normalisation causes.

    python -m maskgan_jax.benchmarks.norm_drift --checkpoint=RUN --phase=ebst --parser=RUN

The DMN normalises every backbone feature map over the whole image (InstanceNorm in the down and up
paths, AdaIN in the residual blocks), so a wanted mask that changes the share of a class changes
what every pixel's features become: the colours of the classes an edit keeps move too
(`colour_drift`). This diagnostic renders each of the editing benchmark's edits twice: as usual,
and with every normalisation layer's statistics (per face and channel: mean and variance over the
image) replaced by those of the same network's reconstruction of the face on its own mask. It
prints, per edit kind, the benchmark's colour error, the parser's pixel accuracy in the edited region
(with --parser) and the PSNR of the unedited pixels, for the mean-colour painter and both renderings,
then `colour_drift`'s table for one class of one kind under both.

The second rendering is the editing mode `config.edit.norm_statistics="face"` (maskgan_jax.norm_statistics).
The faces are the benchmark's (`evaluate.held_out_examples`, all kinds drawn together), so the "as usual"
columns equal the benchmark's figures for the same checkpoint with the paper's "edit" statistics.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from maskgan_jax import runtime
from maskgan_jax.benchmarks.common import add_generator_arguments, check_class_name, example_arrays


def render_both(module: Any, params: Any, faces: np.ndarray, labels_face: np.ndarray,
                labels_wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Renders the edits as usual, the reconstructions, and the edits with the reconstructions' statistics.

    Args:
      module, params: a DenseMappingNetwork and its parameters.
      faces: uint8 (N, H, W, 3); labels_face, labels_wanted: int (N, H, W).
    Returns:
      (edited, reconstructed, edited_with_reconstruction_statistics), each uint8 (N, H, W, 3).
    """
    from maskgan_jax import edit as edit_lib

    render = jax.jit(lambda p, f, a, b, mode: edit_lib.edit_images(module, p, f, a, b, 0, 0, mode)[0],
                     static_argnums=4)
    return tuple(np.asarray(render(params, faces, labels_face, wanted, mode)) for wanted, mode in
                 ((labels_wanted, "edit"), (labels_face, "edit"), (labels_wanted, "face")))


def kind_scores(results: np.ndarray, truths: np.ndarray, wanted: np.ndarray, edited_region: np.ndarray,
                parsed: np.ndarray | None) -> tuple[float, float, float]:
    """(colour error in the edited region, parser pixel accuracy there (NaN without `parsed`), PSNR of the
    unedited pixels): the editing benchmark's point estimates (means over faces). Shapes as in
    edit_scores.face_scores."""
    from maskgan_jax import edit_scores

    scores = edit_scores.face_scores(results, truths, wanted, edited_region, parsed)
    accuracy = float("nan")
    if scores.confusion is not None:
        accuracy = float(edit_scores.confusion_scores(scores.confusion["edited"], np.ones((1, len(results))))[0][0])
    return float(np.nanmean(scores.colour_error)), accuracy, float(np.nanmean(scores.psnr["unedited"]))


def _kind_row(group: Sequence[Any], generator: Any, parse: Any, label: int) -> tuple[str, list[np.ndarray]]:
    """One edit kind's table cells (after the kind's name) and its colour_drift tables for `label` (as
    usual, with the reconstruction's statistics). group: that kind's evaluate.Example list."""
    from maskgan_jax import edit_baselines
    from maskgan_jax.benchmarks import colour_drift

    faces, truths, labels_face, labels_wanted = example_arrays(group)
    region = np.stack([e.edited_region for e in group])
    edited, reconstructed, frozen = render_both(generator.module, generator.params, faces, labels_face, labels_wanted)

    def score(images, with_parser=True):
        parsed = np.asarray(parse(images)) if parse is not None and with_parser else None
        return kind_scores(images, truths, labels_wanted, region, parsed)

    painter = edit_baselines.mean_colour_painter(faces, labels_face, labels_wanted)
    (painter_colour, _, _), usual, held = score(painter, with_parser=False), score(edited), score(frozen)
    row = (f"{painter_colour:.2f} / {usual[0]:.2f} / {held[0]:.2f} | {usual[1]:.3f} / {held[1]:.3f} | "
           f"{usual[2]:.2f} / {held[2]:.2f}")
    tables = [colour_drift.colour_drift(images, reconstructed, truths, faces, labels_face, labels_wanted, label)
              for images in (edited, frozen)]
    return row, tables


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    from tfds_celebamask import labels

    parser = argparse.ArgumentParser(prog="python -m maskgan_jax.benchmarks.norm_drift",
                                     description=__doc__.splitlines()[0])
    add_generator_arguments(parser)
    parser.add_argument("--parser", default=None, help="a parser's workdir, phase or step directory (optional)")
    parser.add_argument("--num_per_edit", type=int, default=50, help="benchmark faces per edit kind")
    parser.add_argument("--drift_edit", default="hair_longer", help="the edit kind of the colour_drift table")
    parser.add_argument("--label", default="hair", help=f"its class, one of {labels.CLASS_NAMES}")
    args = parser.parse_args(argv)
    check_class_name(parser, "--label", args.label)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    runtime.setup()
    args = parse_args(argv)
    from maskgan_jax import edit as edit_lib, evaluate
    from maskgan_jax.benchmarks import colour_drift
    from tfds_celebamask import labels

    if args.drift_edit not in evaluate.EDIT_KINDS:
        raise SystemExit(f"--drift_edit={args.drift_edit!r}: expected one of {list(evaluate.EDIT_KINDS)}")
    generator = edit_lib.load_generator(args.checkpoint, phase=args.phase)
    parse = None
    if args.parser:
        parse, _ = evaluate.load_parse_fn(args.parser, generator.resolution, evaluate.HELD_OUT_SEED, 50)
    examples = evaluate.held_out_examples(generator.resolution, args.num_per_edit)
    print("| edit kind | colour error: painter / as usual / reconstruction's statistics | parser accuracy, "
          "edited: as usual / reconstruction's | PSNR unedited (dB): as usual / reconstruction's |")
    print("|---|---|---|---|")
    drift = None
    for kind in dict.fromkeys(e.edit for e in examples):
        group = [e for e in examples if e.edit == kind]
        row, tables = _kind_row(group, generator, parse, labels.CLASS_ID[args.label])
        print(f"| {kind} | {row} |")
        if kind == args.drift_edit:
            drift = tables
    for name, table in zip(("as usual", "with the reconstruction's statistics"), drift):
        print(f"\n{args.drift_edit}, {args.label}, {name}:")
        print(colour_drift.format_table(table, args.drift_edit, args.label))
    return 0


if __name__ == "__main__":
    sys.exit(main())
