r"""Which colour a model gives a class that an edit adds and the face lacks (a hat added to a hatless face).

    python -m maskgan_jax.benchmarks.added_colour --checkpoint=RUN --phase=ebst --edit=add_hat --label=hat

The synthetic faces fix the colour of an added part from the style the face shows (a hat takes the
clothes' colour), so the true colour is known. On the editing benchmark's held-out faces of one edit
kind, per face, the mean colour of `--label` over the wanted mask's pixels of it: the model's, the
truth's, and that of simple rules: the mean-colour painter's (the face's mean colour, its rule for an
absent class), the best constant (the truths' mean over these faces: no face-specific information,
fitted in-sample, so optimistic) and, for every class the face shows, "copy that class's colour".
Each row prints its error against the truth (0-255, |difference| averaged over RGB, mean over
faces) and its correlation over faces with the model's and with the truth's colour (Pearson, per RGB
channel, averaged): a rule that correlates with the model's colour is what the model does; one that
correlates with the truth's is what it should do.

With --parser, also what a face parser calls the added class's wanted pixels in three images: the
model's edit, the model's re-rendering of the true edited face from itself (the class shown to its
style encoder: can it draw the class on that layout at all), and the truth.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

from maskgan_jax import runtime
from maskgan_jax.benchmarks.common import add_generator_arguments, check_class_name, example_arrays
from maskgan_jax.benchmarks.style_probe import class_mean_colours

MIN_FACES = 8  # a correlation over fewer faces says little
CONFUSION_CLASSES = 4  # parsed classes shown per row of the parser's table, the largest shares


def channel_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation over faces per RGB channel, averaged: a, b float (F, 3). NaN where a channel of
    either does not vary."""
    a, b = a - a.mean(axis=0), b - b.mean(axis=0)
    denominator = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.mean((a * b).sum(axis=0) / denominator))


def rule_rows(model: np.ndarray, truth: np.ndarray, faces: np.ndarray, labels_face: np.ndarray,
              class_names: Sequence[str]) -> list[tuple[str, int, float, float, float]]:
    """The table's rows: (rule, faces scored, error vs truth, correlation with the model's, with the truth's).

    Args:
      model, truth: float (F, 3), the added class's mean colour (0-255) in the model's result and the truth.
      faces: uint8 (F, H, W, 3), the faces edited; labels_face: int (F, H, W), their masks.
      class_names: name of each class id (a "copy" row per class that at least MIN_FACES faces show).
    """
    def row(name, colours, where):
        return (name, int(where.sum()), float(np.abs(colours[where] - truth[where]).mean()),
                channel_correlation(colours[where], model[where]), channel_correlation(colours[where], truth[where]))

    everyone = np.ones(len(truth), bool)
    rows = [row("model", model, everyone),
            row("painter (the face's mean colour)", faces.reshape(len(faces), -1, 3).mean(axis=1), everyone),
            row("best constant (the truths' mean, in-sample)", np.broadcast_to(truth.mean(axis=0), truth.shape),
                everyone)]
    for label, name in enumerate(class_names):
        colours, present = class_mean_colours(faces, labels_face, label)
        if present.sum() >= MIN_FACES:
            rows.append(row(f"copy the face's {name}", colours, present))
    return rows


def format_table(rows: list[tuple[str, int, float, float, float]], edit: str, label_name: str) -> str:
    lines = [f"| {edit}: colour of the added {label_name} | faces | error vs truth | corr. with model's | "
             "corr. with truth's |", "|---|---|---|---|---|"]
    for name, count, error, with_model, with_truth in rows:
        lines.append(f"| {name} | {count} | {error:.2f} | {with_model:.2f} | {with_truth:.2f} |")
    return "\n".join(lines)


def parsed_shares(parsed: np.ndarray, where: np.ndarray, num_classes: int) -> np.ndarray:
    """Share of the pixels in `where` that the parser labels each class: float (num_classes,), sums to 1.

    parsed: int (F, H, W) parsed label maps; where: bool (F, H, W), e.g. the added class's wanted pixels.
    Raises ValueError when `where` selects no pixel.
    """
    if not where.any():
        raise ValueError("no pixel to score: the wanted masks hold none of the added class")
    return np.bincount(parsed[where].astype(np.int64), minlength=num_classes) / where.sum()


def format_confusion(shares: dict[str, np.ndarray], label: int, class_names: Sequence[str]) -> str:
    """Markdown: per row (`shares`: name -> parsed_shares), the added class's own share, then the
    CONFUSION_CLASSES largest other shares."""
    lines = [f"| result | parsed as {class_names[label]} | most parsed as instead |", "|---|---|---|"]
    for name, share in shares.items():
        others = [k for k in np.argsort(-share, kind="stable") if k != label][:CONFUSION_CLASSES]
        instead = ", ".join(f"{class_names[k]} {share[k]:.3f}" for k in others)
        lines.append(f"| {name} | {share[label]:.3f} | {instead} |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    from tfds_celebamask import labels

    parser = argparse.ArgumentParser(prog="python -m maskgan_jax.benchmarks.added_colour",
                                     description=__doc__.splitlines()[0])
    add_generator_arguments(parser)
    parser.add_argument("--edit", default="add_hat", help="an edit kind of the benchmark that adds a class")
    parser.add_argument("--label", default="hat", help=f"the added class, one of {labels.CLASS_NAMES}")
    parser.add_argument("--num_faces", type=int, default=50, help="held-out faces of that kind")
    parser.add_argument("--parser", default=None,
                        help="a trained face parser's workdir or checkpoint: also print what it calls the added "
                             "class's pixels")
    args = parser.parse_args(argv)
    check_class_name(parser, "--label", args.label)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    runtime.setup()
    args = parse_args(argv)
    import jax

    from maskgan_jax import edit as edit_lib, evaluate
    from tfds_celebamask import labels

    generator = edit_lib.load_generator(args.checkpoint, phase=args.phase)
    examples = evaluate.held_out_examples(generator.resolution, args.num_faces, edits=(args.edit,))
    faces, truths, labels_face, labels_wanted = example_arrays(examples)
    label = labels.CLASS_ID[args.label]
    added = labels_wanted == label
    if (labels_face[added] == label).any():
        raise ValueError(f"--edit={args.edit} keeps {args.label} where the face has it; this tool is for a class "
                         "the edit adds to faces without it")
    render = jax.jit(lambda p, f, a, b: edit_lib.edit_images(generator.module, p, f, a, b, 0, 0)[0])
    edited = np.asarray(render(generator.params, faces, labels_face, labels_wanted))
    model, model_present = class_mean_colours(edited, labels_wanted, label)
    truth, _ = class_mean_colours(truths, labels_wanted, label)
    keep = model_present  # faces whose added part has at least MIN_PIXELS
    rows = rule_rows(model[keep], truth[keep], faces[keep], labels_face[keep], labels.CLASS_NAMES)
    print(format_table(rows, args.edit, args.label))
    if args.parser:
        parse, _ = evaluate.load_parse_fn(args.parser, generator.resolution, evaluate.HELD_OUT_SEED, batch_size=16)
        # The model re-rendering each true edited face from itself (the class shown to its style encoder):
        # whether it can draw the class on that layout at all, apart from inferring its look.
        reconstructed = np.asarray(render(generator.params, truths, labels_wanted, labels_wanted))
        shares = {name: parsed_shares(np.asarray(parse(images)), added, len(labels.CLASS_NAMES))
                  for name, images in (("model", edited), ("model, re-rendering the truth", reconstructed),
                                       ("truth", truths))}
        print()
        print(format_confusion(shares, label, labels.CLASS_NAMES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
