r"""Where an edit's colour error comes from: the class it adds, the same class where it is kept, and
the same network's reconstruction of the face on its own mask.

    python -m maskgan_jax.benchmarks.colour_drift --checkpoint=RUN --phase=ebst --edit=hair_longer --label=hair

On the editing benchmark's held-out faces of one edit kind, for one class (`--label`), per face:
- added: the wanted mask's pixels of the class where the face had another (the edit's new part);
- kept: pixels of the class in both masks.
It prints the mean and median over faces of |mean colour difference| (0-255, averaged over RGB):
model added vs truth added (the benchmark's colour error, for this class), the painter (the face's own
mean colour of the class) vs truth added, model kept vs truth kept, model added vs model kept, truth
added vs truth kept (how much the true colour itself varies), and the reconstruction (the face on its
own mask) vs the face, over the class, and the edit vs the reconstruction on the kept pixels (the
same network, style and pixels; only the wanted layout differs). A model whose kept pixels drift from
its own reconstruction is moved by the layout, not by what it lacks of the style.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

from maskgan_jax import runtime
from maskgan_jax.benchmarks.common import add_generator_arguments, check_class_name, example_arrays

ROWS = ("model added vs truth added", "painter vs truth added", "model kept vs truth kept",
        "model added vs model kept", "truth added vs truth kept", "reconstruction vs face",
        "model kept vs reconstruction kept")
MIN_PIXELS = 4  # faces whose added or kept part is smaller are skipped


def _mean_colour(image: np.ndarray, where: np.ndarray) -> np.ndarray:
    return image[where].astype(np.float64).mean(axis=0)


def colour_drift(edited: np.ndarray, reconstructed: np.ndarray, truths: np.ndarray, faces: np.ndarray,
                 labels_face: np.ndarray, labels_wanted: np.ndarray, label: int) -> np.ndarray:
    """Per face, the colour differences of ROWS (float64 (F, len(ROWS)), F = faces with at least
    MIN_PIXELS added and kept pixels of `label`).

    edited, reconstructed, truths, faces: uint8 (N, H, W, 3): the model's edit, its reconstruction on
    the face's own mask, the true edited face, the face. labels_face, labels_wanted: int (N, H, W).
    """
    rows = []
    for i in range(len(faces)):
        had, wanted = labels_face[i] == label, labels_wanted[i] == label
        added, kept = wanted & ~had, wanted & had
        if added.sum() < MIN_PIXELS or kept.sum() < MIN_PIXELS:
            continue
        truth_added, truth_kept = _mean_colour(truths[i], added), _mean_colour(truths[i], kept)
        model_added, model_kept = _mean_colour(edited[i], added), _mean_colour(edited[i], kept)
        face_class = _mean_colour(faces[i], had)
        pairs = ((model_added, truth_added), (face_class, truth_added), (model_kept, truth_kept),
                 (model_added, model_kept), (truth_added, truth_kept),
                 (_mean_colour(reconstructed[i], had), face_class),
                 (model_kept, _mean_colour(reconstructed[i], kept)))
        rows.append([np.abs(a - b).mean() for a, b in pairs])
    return np.asarray(rows, np.float64).reshape(-1, len(ROWS))


def format_table(drift: np.ndarray, edit: str, label_name: str) -> str:
    lines = [f"| {edit}, class {label_name} ({len(drift)} faces) | mean | median |", "|---|---|---|"]
    for name, column in zip(ROWS, drift.T):
        lines.append(f"| {name} | {column.mean():.2f} | {np.median(column):.2f} |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    from tfds_celebamask import labels

    parser = argparse.ArgumentParser(prog="python -m maskgan_jax.benchmarks.colour_drift",
                                     description=__doc__.splitlines()[0])
    add_generator_arguments(parser)
    parser.add_argument("--edit", default="hair_longer", help="an edit kind of the benchmark")
    parser.add_argument("--label", default="hair", help=f"a class name, one of {labels.CLASS_NAMES}")
    parser.add_argument("--num_faces", type=int, default=50, help="held-out faces of that kind")
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
    render = jax.jit(lambda p, f, a, b: edit_lib.edit_images(generator.module, p, f, a, b, 0, 0)[0])
    edited = np.asarray(render(generator.params, faces, labels_face, labels_wanted))
    reconstructed = np.asarray(render(generator.params, faces, labels_face, labels_face))
    drift = colour_drift(edited, reconstructed, truths, faces, labels_face, labels_wanted, labels.CLASS_ID[args.label])
    print(format_table(drift, args.edit, args.label))
    return 0


if __name__ == "__main__":
    sys.exit(main())
