r"""Which classes' colours the style vector carries: a linear probe from G_A's style vector to each class's
mean colour, beside the generator's own reconstruction of that colour.

    python -m maskgan_jax.benchmarks.style_probe --checkpoint=RUN --phase=dmn

On fresh synthetic faces (seed --seed, which neither training nor the editing benchmark uses), rendered
at the checkpoint's resolution and JPEG round-tripped like the benchmark's, per class it prints
(|mean colour difference|, 0-255, averaged over RGB and the test faces):
- probe: a ridge regression from the standardised style vector (N, style_dim) to the face's mean
  colour of the class, fitted on the first 3/4 of the faces (ridge chosen on a held-back third of
  those) and scored on the last 1/4;
- mean: predicting the training faces' mean colour for every face (what a probe that learned
  nothing scores);
- reconstruction: the generator's output on the face's own mask vs the face, over the class.
A probe near `mean` says the style vector lost that class's colour (the encoder's fault); a probe well
under a poor reconstruction says the vector has it and the backbone does not render it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

from maskgan_jax import runtime
from maskgan_jax.benchmarks.common import add_generator_arguments

CLASSES = ("background", "skin", "neck", "hair", "cloth", "l_brow", "l_eye", "u_lip", "l_ear")
RIDGES = (1.0, 10.0, 100.0, 1000.0)
MIN_PIXELS = 4  # faces with fewer pixels of a class do not count for it
PROBE_SEED = 4242  # synthetic faces no config trains on and the benchmark (20261125) does not use


def class_mean_colours(images: np.ndarray, label_maps: np.ndarray, label: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean colour of class `label` per face: float64 (N, 3) in 0-255 (0 where absent) and bool (N,),
    whether the face has at least MIN_PIXELS of it. images: uint8 or float (N, H, W, 3); label_maps: (N, H, W)."""
    where = label_maps == label
    counts = where.sum(axis=(1, 2))
    sums = (images.astype(np.float64) * where[..., None]).sum(axis=(1, 2))
    present = counts >= MIN_PIXELS
    return np.where(present[:, None], sums / np.maximum(counts, 1)[:, None], 0.0), present


def _ridge_fit(x: np.ndarray, y: np.ndarray, ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights (D, 3) and intercept (3,) of a ridge regression of y (N, 3) on x (N, D)."""
    offset = y.mean(axis=0)
    weights = np.linalg.solve(x.T @ x + ridge * np.eye(x.shape[1]), x.T @ (y - offset))
    return weights, offset


def ridge_probe(features: np.ndarray, targets: np.ndarray, present: np.ndarray,
                ridges: Sequence[float] = RIDGES) -> tuple[float, float, float]:
    """Fits targets from features on the first 3/4 of the faces, scores the last 1/4.

    Args:
      features: float (N, D), e.g. style vectors. targets: float (N, 3) colours. present: bool (N,),
        which faces count.
    Returns:
      (probe error, error of predicting the fitted faces' mean, chosen ridge): mean |difference| over
      the test faces and the 3 channels.
    Raises:
      ValueError: fewer than 8 present faces on either side of the split.
    """
    n = len(features)
    fit, test = present & (np.arange(n) < 3 * n // 4), present & (np.arange(n) >= 3 * n // 4)
    if fit.sum() < 8 or test.sum() < 8:
        raise ValueError(f"ridge_probe needs at least 8 present faces to fit and to test, got {fit.sum()} and "
                         f"{test.sum()}")
    mean, scale = features[fit].mean(axis=0), features[fit].std(axis=0) + 1e-8
    z = (features - mean) / scale
    idx = np.flatnonzero(fit)
    inner, held = idx[:2 * len(idx) // 3], idx[2 * len(idx) // 3:]

    def error(ridge: float, on: np.ndarray, scored: np.ndarray) -> float:
        weights, offset = _ridge_fit(z[on], targets[on], ridge)
        return float(np.abs(z[scored] @ weights + offset - targets[scored]).mean())

    ridge = min(ridges, key=lambda r: error(r, inner, held))
    baseline = float(np.abs(targets[fit].mean(axis=0) - targets[test]).mean())
    return error(ridge, fit, test), baseline, ridge


def probe_table(styles: np.ndarray, reconstructions: np.ndarray, faces: np.ndarray, label_maps: np.ndarray,
                classes: Sequence[str] = CLASSES) -> str:
    """The Markdown table of the module doc: one row per class in `classes`.

    styles: float (N, style_dim). reconstructions, faces: (N, H, W, 3) in 0-255. label_maps: int (N, H, W).
    """
    from tfds_celebamask import labels

    n = len(faces)
    test = np.arange(n) >= 3 * n // 4
    lines = [f"| class ({n} faces, last {test.sum()} scored) | share of faces | probe | mean | reconstruction |",
             "|---|---|---|---|---|"]
    for name in classes:
        truth, present = class_mean_colours(faces, label_maps, labels.CLASS_ID[name])
        rendered, _ = class_mean_colours(reconstructions, label_maps, labels.CLASS_ID[name])
        probe, baseline, _ = ridge_probe(styles, truth, present)
        reconstruction = float(np.abs(rendered - truth)[test & present].mean())
        lines.append(f"| {name} | {present.mean():.2f} | {probe:.1f} | {baseline:.1f} | {reconstruction:.1f} |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m maskgan_jax.benchmarks.style_probe",
                                     description=__doc__.splitlines()[0])
    add_generator_arguments(parser)
    parser.add_argument("--num_faces", type=int, default=1200, help="faces (at least 64)")
    parser.add_argument("--seed", type=int, default=PROBE_SEED, help="synthetic seed of the faces")
    parser.add_argument("--batch_size", type=int, default=50, help="faces per generator call")
    args = parser.parse_args(argv)
    if args.num_faces < 64:
        parser.error(f"--num_faces={args.num_faces}: at least 64 (the probe fits 3/4 and scores 1/4)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    runtime.setup()
    args = parse_args(argv)
    import jax

    from maskgan_jax import edit as edit_lib
    from maskgan_jax.edit_baselines import jpeg_round_trip
    from tfds_celebamask import labels, synthetic

    generator = edit_lib.load_generator(args.checkpoint, phase=args.phase)
    rendered = [synthetic.render(*synthetic.sample_face(synthetic.face_rng(args.seed, i)), generator.resolution)
                for i in range(args.num_faces)]
    faces = np.stack([jpeg_round_trip(image) for image, _ in rendered])
    label_maps = np.stack([label_map for _, label_map in rendered]).astype(np.int32)

    def style_and_reconstruction(params, images, masks):
        onehot = jax.nn.one_hot(masks, labels.NUM_CLASSES)
        x = images.astype(np.float32) / 127.5 - 1.0
        style = generator.module.apply({"params": params}, x, onehot, None, style_only=True)
        return style, (generator.module.apply({"params": params}, None, None, onehot, style=style) + 1.0) * 127.5

    run = jax.jit(style_and_reconstruction)
    batches = [run(generator.params, faces[s:s + args.batch_size], label_maps[s:s + args.batch_size])
               for s in range(0, args.num_faces, args.batch_size)]
    styles = np.concatenate([np.asarray(s, np.float64) for s, _ in batches])
    reconstructions = np.concatenate([np.asarray(r, np.float64) for _, r in batches])
    print(f"{generator.step_dir}: style vector of {styles.shape[1]} values")
    print(probe_table(styles, reconstructions, faces, label_maps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
