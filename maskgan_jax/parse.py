r"""Face parsing from a training checkpoint: face image -> mask (19 CelebAMask-HQ classes).

    # one face; the mask comes back at the image's own size, as label ids (default) or palette colours
    python -m maskgan_jax.parse --checkpoint=WORKDIR --image=face.jpg --out=face_mask.png
    python -m maskgan_jax.parse --checkpoint=WORKDIR --image=face.jpg --out=face_mask.png --format=palette
    # a folder of faces -> a folder of masks (<stem>.png)
    python -m maskgan_jax.parse --checkpoint=WORKDIR --image=FACES/ --out=MASKS/
    # accuracy on held-out synthetic faces (a seed neither training nor the editing benchmark uses)
    python -m maskgan_jax.parse --checkpoint=WORKDIR --evaluate --num_faces=500

--checkpoint is a training workdir (its checkpoints/parser), the parser phase's directory (its latest
step) or a step directory. Only the parser's parameters are read (no optimiser state, no other network),
onto every local device. Inputs of any size are resized to the model's resolution (from the
checkpoint's stored config) without squashing: padded to a square by repeating its edges, resized
(an area average when shrinking, bicubic when enlarging, as the dataset builder), parsed, and the
label map is resized back (nearest-neighbour: labels never blend) and cropped to the input's size
(maskgan_jax.framing). Each face is parsed with its mirror image and the two answers averaged
(`parse_images`; --no-flip_average: one pass). Unreadable, empty, corrupt or oversized image files are
errors naming the file (maskgan_jax.inputs, shared with `maskgan-edit`). Masks are written as maskgan_jax.mask_io
writes them: label ids (PNG mode L) or CelebAMask-HQ palette colours (RGB), both readable by `maskgan-edit`.

--evaluate scores the parser on faces 0..num_faces-1 of synthetic seed --seed (default 20261126),
rendered at the model's resolution and JPEG-encoded as the training faces are: pixel accuracy, mean
IoU over the classes present, and each class's IoU, from one confusion matrix over all the faces'
pixels (maskgan_jax.metrics). A checkpoint trained on that seed is refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from PIL import Image

from maskgan_jax import cli, framing, mask_io, metrics, paths, runtime
from maskgan_jax import edit as edit_lib
from maskgan_jax.edit import editing_mesh
from maskgan_jax.models import registry
from maskgan_jax.sharding import DATA_AXIS
from tfds_celebamask import labels

PARSER_ITEM = "parser"
PARSER_PHASE = "parser"
# Held-out faces for --evaluate: not the quickstart's training seed (1234), not the editing benchmark's
# (maskgan_jax.evaluate.HELD_OUT_SEED = 20261125).
EVALUATION_SEED = 20261126
FORMATS = ("ids", "palette")


# ----------------------------------------------------------------------------- loading the parser


def find_parser_checkpoint(path: str | os.PathLike) -> epath.Path:
    """The step directory holding the parser: `path` (local or any etils.epath path, e.g. gs://) is a
    workdir (its checkpoints/parser), a phase directory (its latest finished step), a step directory or
    an export (maskgan_jax.export).

    Raises:
      FileNotFoundError: no such directory, no finished checkpoint, or one without a parser item.
    """
    try:
        return edit_lib.find_item(path, PARSER_ITEM, (PARSER_PHASE,))
    except FileNotFoundError as error:
        if "checkpoints/{" in str(error):
            raise FileNotFoundError(f"{error}; train the parser phase (config.phases.parser.num_steps > 0)") from None
        raise


@dataclasses.dataclass(frozen=True)
class LoadedParser:
    """A parser ready to run.

    module: the registry's network for config.model.parser. params: its `params`, replicated on `mesh`.
    resolution: the side it was trained at. config: the run's config. step_dir: the checkpoint read.
    """

    module: Any
    params: Any
    resolution: int
    config: ml_collections.ConfigDict
    step_dir: epath.Path
    mesh: Mesh


def load_parser(path: str | os.PathLike, mesh: Mesh | None = None, compute_dtype: str = "float32") -> LoadedParser:
    """Reads only the parser's params from a checkpoint (see find_parser_checkpoint), replicated over
    `mesh` (None: all local devices); `compute_dtype` 'float32' or 'bfloat16' (params stay float32)."""
    step_dir = find_parser_checkpoint(path)
    config = edit_lib.read_run_config(step_dir)
    module = registry.build_network(config, "parser", dtype=compute_dtype)
    mesh = mesh or editing_mesh()
    replicated = NamedSharding(mesh, PartitionSpec())
    shapes = jax.eval_shape(lambda: registry.init_variables(config, "parser", module, jax.random.key(0)))["params"]
    target = jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated), shapes)
    # Only the params subtree is read: the optimiser state is never loaded.
    restored = edit_lib.restore_item(step_dir / PARSER_ITEM, {"params": target}, "parser")
    return LoadedParser(module=module, params=restored["params"], resolution=int(config.resolution), config=config,
                        step_dir=step_dir, mesh=mesh)


# ----------------------------------------------------------------------------- parsing


# Reorders a mirrored face's class channels to the face's own classes (the permutation is an involution).
_UNFLIP = np.argsort(labels.flip_permutation())


def parse_images(module: Any, params: Any, images: jax.Array, flip_average: bool = True) -> jax.Array:
    """uint8 (N, R, R, 3) faces -> uint8 (N, R, R) label maps, pure.

    flip_average: the argmax of the summed log-probabilities of the face and of its mirror image (whose
    left/right classes are swapped back, tfds_celebamask.labels.flip_permutation), the usual test-time
    flip of segmentation; it costs a second forward pass. Held-out synthetic faces, the quickstart parser
    after 2,400 steps: mean IoU 0.684 -> 0.701 (README, "The face parser"). False: one pass, the argmax.
    """
    inputs = images.astype(jnp.float32) / 127.5 - 1.0
    log_probs = jax.nn.log_softmax(module.apply({"params": params}, inputs))
    if flip_average:
        mirrored = jax.nn.log_softmax(module.apply({"params": params}, inputs[:, :, ::-1]))[:, :, ::-1]
        # Channel c of the mirror's output scores class flip_permutation()[c] of the face itself.
        log_probs = log_probs + mirrored[..., _UNFLIP]
    return jnp.argmax(log_probs, axis=-1).astype(jnp.uint8)


def _pad_batch(array: np.ndarray, size: int) -> np.ndarray:
    missing = size - len(array)
    return array if missing <= 0 else np.concatenate([array, np.repeat(array[-1:], missing, axis=0)])


class Parser:
    """Parses batches of faces at the model's resolution, compiled once (batches padded to a fixed size,
    a multiple of the device count, split over the devices); flip_average: see `parse_images`."""

    def __init__(self, loaded: LoadedParser, batch_size: int = 16, flip_average: bool = True):
        devices = loaded.mesh.devices.size
        self.loaded = loaded
        self.batch_size = max(devices, -(-batch_size // devices) * devices)
        batch = NamedSharding(loaded.mesh, PartitionSpec(DATA_AXIS))
        replicated = NamedSharding(loaded.mesh, PartitionSpec())
        self._parse = jax.jit(lambda params, images: parse_images(loaded.module, params, images, flip_average),
                              in_shardings=(replicated, batch), out_shardings=batch)

    @property
    def resolution(self) -> int:
        return self.loaded.resolution

    def parse(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, R, R, 3) -> uint8 (N, R, R) class ids, R the model's resolution."""
        images = np.asarray(images)
        size = self.resolution
        if images.ndim != 4 or images.shape[1:] != (size, size, 3) or images.dtype != np.uint8:
            raise ValueError(f"images: expected uint8 (N, {size}, {size}, 3), got {images.dtype} {images.shape}")
        parsed = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start:start + self.batch_size]
            parsed.append(np.asarray(self._parse(self.loaded.params, _pad_batch(chunk, self.batch_size)))[:len(chunk)])
        return np.concatenate(parsed) if parsed else np.zeros((0, size, size), np.uint8)

    def parse_any_size(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """uint8 (H_i, W_i, 3) faces of any sizes and aspects -> uint8 (H_i, W_i) label maps at each
        input's size; each face is framed into the model's square, never squashed (maskgan_jax.framing)."""
        frames = [framing.frame_of(image.shape[0], image.shape[1], self.resolution) for image in images]
        squares = [framing.image_to_square(image, frame) for image, frame in zip(images, frames)]
        parsed = self.parse(np.stack(squares)) if squares else []
        return [framing.labels_from_square(label_map, frame) for label_map, frame in zip(parsed, frames)]


def resize_labels_to(label_map: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a uint8 (h, w) label map to `shape` = (H, W)."""
    height, width = shape
    if label_map.shape == (height, width):
        return label_map
    resized = Image.fromarray(np.asarray(label_map, np.uint8)).resize((width, height), Image.Resampling.NEAREST)
    return np.asarray(resized, dtype=np.uint8)


def read_face(path: epath.Path) -> np.ndarray:
    """An image file -> uint8 (H, W, 3); a missing, empty, corrupt or oversized file is an error naming
    the file (maskgan_jax.inputs.open_image_file, the checks `maskgan-edit` makes too)."""
    return mask_io.read_image(path)


def input_files(image: epath.Path, out: epath.Path) -> list[tuple[epath.Path, epath.Path]]:
    """(input image, output mask) pairs: one file -> `out` (a .png file, or a folder to put <stem>.png
    in); a folder of images -> `out`/<stem>.png each."""
    if not image.exists():
        raise FileNotFoundError(f"{image}: no such image file or folder")
    if image.is_file():
        target = out if out.suffix.lower() == ".png" else out / f"{image.stem}.png"
        return [(image, target)]
    files = sorted(p for p in image.iterdir() if p.is_file() and p.suffix.lower() in mask_io.IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{image}: no image files ({', '.join(mask_io.IMAGE_SUFFIXES)})")
    if out.suffix.lower() == ".png" and not out.is_dir():
        raise ValueError(f"--image is a folder ({image}) but --out is a .png file ({out}); give an output folder")
    return [(path, out / f"{path.stem}.png") for path in files]


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def parse_files(parser: Parser, pairs: list[tuple[epath.Path, epath.Path]], palette: bool) -> list[epath.Path]:
    """Parses every input and writes its mask (label ids, or palette colours) at the input's size."""
    written = []
    for chunk in _chunks(pairs, parser.batch_size):
        faces = [read_face(source) for source, _ in chunk]
        for (_, target), label_map in zip(chunk, parser.parse_any_size(faces)):
            mask_io.write_mask(target, label_map, palette=palette)
            written.append(target)
    return written


# ----------------------------------------------------------------------------- evaluation


def held_out_faces(resolution: int, num_faces: int, seed: int = EVALUATION_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic faces 0..num_faces-1 of `seed` at `resolution`, JPEG round-tripped as the training faces
    are: (uint8 (N, R, R, 3) images, uint8 (N, R, R) true label maps)."""
    from maskgan_jax.evaluate import jpeg_round_trip
    from tfds_celebamask import synthetic

    images, truths = [], []
    for index in range(num_faces):
        image, label_map = synthetic.render(*synthetic.sample_face(synthetic.face_rng(seed, index)), resolution)
        images.append(jpeg_round_trip(image))
        truths.append(label_map)
    return np.stack(images), np.stack(truths).astype(np.uint8)


def evaluate(parser: Parser, num_faces: int, seed: int = EVALUATION_SEED) -> dict[str, Any]:
    """Scores the parser on held-out synthetic faces. Returns {'pixel_accuracy', 'mean_iou',
    'iou': {class name: IoU or None when the class is in neither truth nor prediction}, 'num_faces',
    'seed'}."""
    synthetic_training = parser.loaded.config.data.synthetic
    if synthetic_training.num_faces and int(synthetic_training.seed) == seed:
        raise ValueError(f"--seed={seed} is the seed the checkpoint's synthetic training faces were drawn from; "
                         "choose another")
    if num_faces < 1:
        raise ValueError(f"--num_faces must be >= 1, got {num_faces}")
    images, truths = held_out_faces(parser.resolution, num_faces, seed)
    confusion = metrics.confusion_matrix(truths, parser.parse(images), labels.NUM_CLASSES)
    per_class = metrics.iou_per_class(confusion)
    return {"pixel_accuracy": metrics.pixel_accuracy(confusion), "mean_iou": metrics.mean_iou(confusion),
            "iou": {name: None if np.isnan(value) else float(value)
                    for name, value in zip(labels.CLASS_NAMES, per_class)},
            "num_faces": num_faces, "seed": seed}


def format_scores(scores: dict[str, Any]) -> str:
    lines = [f"held-out synthetic faces: {scores['num_faces']} (seed {scores['seed']})",
             f"pixel accuracy {scores['pixel_accuracy']:.4f}", f"mean IoU       {scores['mean_iou']:.4f}",
             "IoU per class:"]
    lines += [f"  {name:<10} {'absent' if value is None else f'{value:.4f}'}" for name, value in scores["iou"].items()]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maskgan-parse", description="Face parsing (image -> 19-class mask) with a MaskGAN run's parser.",
        epilog="Examples are in the module docstring: python -c 'import maskgan_jax.parse as p; help(p)'")
    parser.add_argument("--checkpoint", required=True,
                        help="training workdir, parser phase directory (checkpoints/parser) or step directory")
    parser.add_argument("--image", help="face image (any size), or a folder of them")
    parser.add_argument("--out", help="output mask (.png), or folder (<stem>.png per image); with --evaluate, "
                        "a JSON file for the scores")
    parser.add_argument("--format", choices=FORMATS, default="ids",
                        help="ids: label-id PNG (mode L); palette: CelebAMask-HQ colours (RGB)")
    parser.add_argument("--evaluate", action="store_true", help="score on held-out synthetic faces instead")
    parser.add_argument("--num_faces", type=int, default=500, help="--evaluate: held-out faces")
    parser.add_argument("--seed", type=int, default=EVALUATION_SEED, help="--evaluate: held-out faces' seed")
    parser.add_argument("--flip_average", action=argparse.BooleanOptionalAction, default=True,
                        help="average each face's parse with its mirror image's (default); --no-flip_average: "
                        "one pass, half the time")
    cli.add_runtime_flags(parser, batch_size=16, what="faces")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    runtime.setup()
    arguments = build_parser()
    args = arguments.parse_args(argv)
    if not args.evaluate and (args.image is None or args.out is None):
        arguments.error("give --image and --out (or --evaluate)")
    cli.check_runtime_flags(arguments, args)
    pairs = None if args.evaluate else input_files(paths.as_path(args.image), paths.as_path(args.out))
    runtime.enable_compilation_cache(args.jax_cache_dir)
    loaded = load_parser(args.checkpoint, compute_dtype=args.compute_dtype)
    batch_size = 1 if pairs is not None and len(pairs) == 1 else args.batch_size
    parser = Parser(loaded, batch_size, flip_average=args.flip_average)
    if args.evaluate:
        scores = evaluate(parser, args.num_faces, args.seed)
        print(f"parser {loaded.step_dir} ({loaded.resolution}x{loaded.resolution})")
        print(format_scores(scores))
        if args.out:
            out = paths.as_path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(scores, indent=2))
        return 0
    written = parse_files(parser, pairs, palette=args.format == "palette")
    where = written[0] if len(written) == 1 else paths.as_path(args.out)
    print(f"{len(written)} mask(s) ({args.format}) written to {where}")
    return 0


def run() -> None:
    """Console script `maskgan-parse`."""
    cli.run("maskgan-parse", main)


if __name__ == "__main__":
    run()
