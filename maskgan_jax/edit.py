r"""Mask-guided face editing from a training checkpoint: G_A(I_t, M_t, M_src).

The target face I_t with its mask M_t is re-rendered on the wanted mask M_src, keeping I_t's style.
Only the generator's parameters are read from the checkpoint (no optimiser state, no other
network), onto every local device (CPU, one GPU or many; the batch is split over them).

    # style copy: the wanted mask is a whole mask (another face's, or a hand-edited one)
    python -m maskgan_jax.edit --checkpoint=WORKDIR --image=face.jpg --mask=face.png \
        --wanted=other.png --out=result.png
    # attribute transfer: these classes' regions come from another mask, the rest is kept
    python -m maskgan_jax.edit --checkpoint=WORKDIR --image=face.jpg --mask=face.png \
        --transfer=mouth,u_lip,l_lip --from=smiling.png --out=result.png
    # batch over folders (files matched by name stem; --wanted/--from may also be one file)
    python -m maskgan_jax.edit --checkpoint=WORKDIR --image=IMAGES/ --mask=MASKS/ --wanted=WANTED/ --out=OUT/
    # batch over a TFDS split: each face takes the mask (or --transfer classes) of the next one
    python -m maskgan_jax.edit --checkpoint=WORKDIR --tfds=celebamask_hq/official_64 --split=test --out=OUT/

--checkpoint is a training workdir (its newest phase holding a generator: ebst, else dmn; or
--phase), a phase directory (checkpoints/dmn, its latest step) or a step directory. Masks are
label-id or palette-coloured PNGs (maskgan_jax.mask_io). Inputs of any size are resized to the
model's resolution (from the checkpoint's stored config); results are written at that resolution,
each with a grid `<name>_grid.png`: target | target mask | wanted mask | result.

--keep_unedited: outside the pixels where the wanted mask differs from the target mask, grown by
--dilation pixels and then feathered over 2 * --feather pixels, the result keeps the target's own
pixels (see `keep_unedited_alpha`).

JAX's persistent compilation cache (--jax_cache_dir) makes a second run skip compilation; the
generator is compiled once per input shape (the batch is padded to --batch_size).
"""

from __future__ import annotations

import time

_PROCESS_START = time.perf_counter()  # before the heavy imports: "time to first result" counts them

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any
from collections.abc import Iterable, Iterator, Sequence

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from maskgan_jax import checkpoint as checkpoint_lib
from maskgan_jax import mask_io, runtime
from maskgan_jax.models import DenseMappingNetwork, one_hot_mask, registry
from maskgan_jax.phases import GENERATOR_PHASES
from maskgan_jax.sharding import DATA_AXIS
from tfds_celebamask import labels

GENERATOR_ITEM = "generator"
DEFAULT_CACHE_DIR = "~/.cache/maskgan_jax/jax_cache"


# ----------------------------------------------------------------------------- devices


def editing_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over all local devices (or `devices`); editing splits the batch over it."""
    devices = list(devices) if devices is not None else jax.local_devices()
    return Mesh(np.asarray(devices), (DATA_AXIS,))


# ----------------------------------------------------------------------------- loading the generator


def workdir_phases(workdir: str | Path) -> tuple[str, ...]:
    """The phases of GENERATOR_PHASES (in that order) with a finished checkpoint in `workdir`."""
    found = []
    for phase in GENERATOR_PHASES:
        phase_dir = checkpoint_lib.phase_directory(workdir, phase)
        if phase_dir.is_dir() and ocp.utils.checkpoint_steps(phase_dir):
            found.append(phase)
    return tuple(found)


def find_generator_checkpoint(path: str | Path, phase: str | None = None) -> Path:
    """The step directory of the checkpoint to edit with.

    Args:
      path: a workdir (its `checkpoints/<phase>`, newest phase first: GENERATOR_PHASES), a phase
        directory (its latest finished step) or a step directory.
      phase: with a workdir, the phase to take ('dmn', 'ebst'); None takes the newest.
    Returns:
      The step directory, which holds a `generator` item.
    Raises:
      FileNotFoundError: no finished checkpoint, or one without a generator item.
    """
    path = Path(path).expanduser().absolute()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint, phase or workdir directory")
    if (path / "checkpoints").is_dir():  # a workdir
        phases = (phase,) if phase else GENERATOR_PHASES
        for name in phases:
            if name in workdir_phases(path):
                return _with_generator(*checkpoint_lib.find_latest(checkpoint_lib.phase_directory(path, name)))
        present = sorted(p.name for p in (path / "checkpoints").iterdir() if p.is_dir())
        raise FileNotFoundError(f"{path}: no finished checkpoint with a generator in checkpoints/"
                                f"{{{','.join(phases)}}} (found phases {present}; the maskvae phase stores "
                                "no generator)")
    return _with_generator(*checkpoint_lib.find_latest(path))


def _with_generator(phase_dir: Path, step: int) -> Path:
    step_dir = phase_dir / str(step)
    if not (step_dir / GENERATOR_ITEM).is_dir():
        present = sorted(p.name for p in step_dir.iterdir() if p.is_dir())
        raise FileNotFoundError(f"{step_dir}: checkpoint has no {GENERATOR_ITEM!r} item (it has {present})")
    return step_dir


def generator_from_config(config: ml_collections.ConfigDict, compute_dtype: str = "float32") -> DenseMappingNetwork:
    """The generator of a run config (the registry's network for config.model.generator), computing
    in `compute_dtype` ('float32' or 'bfloat16') whatever the run trained in."""
    return registry.build_network(config, "generator", dtype=compute_dtype)


@dataclasses.dataclass(frozen=True)
class LoadedGenerator:
    """A generator ready to edit with.

    module: the DenseMappingNetwork. params: its `params` collection, replicated on `mesh`.
    resolution: the side length it was trained at (config.resolution). config: the run's config.
    step_dir: the checkpoint step directory read. mesh: the devices it runs on.
    """

    module: DenseMappingNetwork
    params: Any
    resolution: int
    config: ml_collections.ConfigDict
    step_dir: Path
    mesh: Mesh


def abstract_params(module: DenseMappingNetwork, resolution: int, sharding: jax.sharding.Sharding) -> Any:
    """ShapeDtypeStructs (with `sharding`) of the generator's params at `resolution`; allocates nothing."""
    image = jnp.zeros((1, resolution, resolution, 3), jnp.float32)
    mask = jnp.zeros((1, resolution, resolution, module.num_classes), jnp.float32)
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), image, mask, mask))["params"]
    return jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)


def _check_stored_params(item_dir: Path, stored: Any, expected: Any) -> None:
    """Compares the stored generator's parameter names and shapes (orbax metadata tree) with the
    config's network (`expected`: ShapeDtypeStructs)."""
    if not hasattr(stored, "keys") or "params" not in stored:
        raise ValueError(f"{item_dir}: the generator item holds no 'params' (is this a NetState checkpoint?)")
    stored_shapes = {k: tuple(v.shape) for k, v in flax.traverse_util.flatten_dict(dict(stored["params"])).items()}
    expected_shapes = {k: tuple(v.shape) for k, v in flax.traverse_util.flatten_dict(expected).items()}
    for key in sorted(set(stored_shapes) | set(expected_shapes)):
        want, have = expected_shapes.get(key), stored_shapes.get(key)
        if want != have:
            raise ValueError(f"{item_dir}: parameter {'/'.join(key)} is {have} in the checkpoint but the stored "
                             f"config's generator expects {want}; the checkpoint and its config do not match")


def load_generator(path: str | Path, phase: str | None = None, resolution: int | None = None,
                   mesh: Mesh | None = None, compute_dtype: str = "float32") -> LoadedGenerator:
    """Reads only the generator's params from a checkpoint, replicated over `mesh`.

    Args:
      path: workdir, phase or step directory (see find_generator_checkpoint).
      phase: with a workdir, which phase ('dmn', 'ebst'); None: the newest.
      resolution: the resolution the caller needs; None accepts the checkpoint's.
      mesh: devices to place the params on; None: all local devices.
      compute_dtype: 'float32' or 'bfloat16' (parameters stay float32).
    Raises:
      FileNotFoundError: no checkpoint, no generator item, or no stored config.
      ValueError: the config's resolution differs from `resolution`, or the stored parameters do
        not fit the config's network.
    """
    step_dir = find_generator_checkpoint(path, phase)
    config = ml_collections.ConfigDict(checkpoint_lib.read_config(step_dir))
    trained_at = int(config.resolution)
    if resolution is not None and int(resolution) != trained_at:
        raise ValueError(f"{step_dir}: the checkpoint's generator was trained at {trained_at}x{trained_at} "
                         f"(its config.resolution) but resolution {resolution} was requested")
    module = generator_from_config(config, compute_dtype)
    mesh = mesh or editing_mesh()
    target = abstract_params(module, trained_at, NamedSharding(mesh, PartitionSpec()))
    item_dir = epath.Path(step_dir / GENERATOR_ITEM)
    item = {"params": target}
    # The item's own handler: a Checkpointer would also look for step-level metadata and warn.
    handler = ocp.PyTreeCheckpointHandler()
    try:
        _check_stored_params(item_dir, handler.metadata(item_dir), target)
        # partial_restore reads the params subtree only: the optimiser state is never loaded.
        restored = handler.restore(item_dir, args=ocp.args.PyTreeRestore(
            item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item), partial_restore=True))
    finally:
        handler.close()
    return LoadedGenerator(module=module, params=restored["params"], resolution=trained_at, config=config,
                           step_dir=step_dir, mesh=mesh)


# ----------------------------------------------------------------------------- the edit itself


def default_margins(resolution: int) -> tuple[int, int]:
    """(dilation, feather) in pixels for --keep_unedited: 1/32 of the side each (2 and 2 at 64)."""
    margin = max(1, resolution // 32)
    return margin, margin


def keep_unedited_alpha(labels_t: jax.Array, labels_src: jax.Array, dilation: int, feather: int) -> jax.Array:
    """Weight of the generated image per pixel for --keep_unedited; the target gets 1 - alpha.

    The changed pixels (labels_t != labels_src) are grown by `dilation + feather` pixels
    (square structuring element), then box-averaged over a (2 feather + 1)^2 window (edges
    replicated). So alpha is exactly 1 within `dilation` pixels (Chebyshev) of a changed pixel,
    ramps down over the next 2 * feather pixels, and is exactly 0 beyond: there the result is
    the target's own pixels, bit for bit.

    Args:
      labels_t, labels_src: int (N, H, W) label maps.
      dilation, feather: pixels, >= 0.
    Returns:
      float32 (N, H, W, 1) in [0, 1].
    """
    if dilation < 0 or feather < 0:
        raise ValueError(f"dilation and feather must be >= 0, got {dilation} and {feather}")
    changed = (labels_t != labels_src).astype(jnp.float32)[..., None]
    grow = dilation + feather
    if grow:
        window = (1, 2 * grow + 1, 2 * grow + 1, 1)
        changed = jax.lax.reduce_window(changed, 0.0, jax.lax.max, window, (1, 1, 1, 1), "SAME")
    if not feather:
        return changed
    padded = jnp.pad(changed, ((0, 0), (feather, feather), (feather, feather), (0, 0)), mode="edge")
    size = 2 * feather + 1
    total = jax.lax.reduce_window(padded, 0.0, jax.lax.add, (1, size, size, 1), (1, 1, 1, 1), "VALID")
    return total / float(size * size)


def edit_images(module: DenseMappingNetwork, params: Any, images: jax.Array, labels_t: jax.Array,
                labels_src: jax.Array, dilation: int, feather: int) -> tuple[jax.Array, jax.Array]:
    """One batch of edits, pure.

    Args:
      images: uint8 (N, H, W, 3) target faces. labels_t: int (N, H, W) their masks.
      labels_src: int (N, H, W) wanted masks. dilation, feather: see keep_unedited_alpha.
    Returns:
      (result, kept): uint8 (N, H, W, 3) each; `kept` is `result` with the target's pixels
      outside the edited region (--keep_unedited).
    """
    target = images.astype(jnp.float32)
    generated = module.apply({"params": params}, target / 127.5 - 1.0,
                             one_hot_mask(labels_t, module.num_classes), one_hot_mask(labels_src, module.num_classes))
    generated = jnp.clip((generated.astype(jnp.float32) + 1.0) * 127.5, 0.0, 255.0)
    alpha = keep_unedited_alpha(labels_t, labels_src, dilation, feather)
    kept = alpha * generated + (1.0 - alpha) * target  # exact target where alpha == 0
    return jnp.round(generated).astype(jnp.uint8), jnp.round(kept).astype(jnp.uint8)


class Editor:
    """Edits batches of faces with a loaded generator, compiled once per input shape.

    Inputs are padded to a fixed batch (a multiple of the device count) so every call after the
    first reuses the same compiled program.
    """

    def __init__(self, loaded: LoadedGenerator, batch_size: int = 8, dilation: int | None = None,
                 feather: int | None = None):
        devices = loaded.mesh.devices.size
        self.loaded = loaded
        self.batch_size = max(devices, -(-batch_size // devices) * devices)
        default_dilation, default_feather = default_margins(loaded.resolution)
        self.dilation = default_dilation if dilation is None else dilation
        self.feather = default_feather if feather is None else feather
        batch = NamedSharding(loaded.mesh, PartitionSpec(DATA_AXIS))
        replicated = NamedSharding(loaded.mesh, PartitionSpec())
        self._edit = jax.jit(
            lambda params, images, labels_t, labels_src: edit_images(
                loaded.module, params, images, labels_t, labels_src, self.dilation, self.feather),
            in_shardings=(replicated, batch, batch, batch), out_shardings=(batch, batch))

    @property
    def resolution(self) -> int:
        return self.loaded.resolution

    def edit(self, images: np.ndarray, labels_t: np.ndarray, labels_src: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
        """Edits N faces at the model's resolution R.

        Args:
          images: uint8 (N, R, R, 3). labels_t, labels_src: (N, R, R) ids in 0..18.
        Returns:
          (result, kept): uint8 (N, R, R, 3) each (see edit_images).
        """
        images, labels_t, labels_src = np.asarray(images), np.asarray(labels_t), np.asarray(labels_src)
        size = self.resolution
        if images.ndim != 4 or images.shape[1:] != (size, size, 3) or images.dtype != np.uint8:
            raise ValueError(f"images: expected uint8 (N, {size}, {size}, 3), got {images.dtype} {images.shape}")
        for name, value in (("labels_t", labels_t), ("labels_src", labels_src)):
            if value.shape != images.shape[:3]:
                raise ValueError(f"{name}: expected shape {images.shape[:3]}, got {value.shape}")
            bad = (value < 0) | (value >= labels.NUM_CLASSES)
            if bad.any():
                n, y, x = (int(v[0]) for v in np.nonzero(bad))
                raise ValueError(f"{name}[{n}]: pixel (x={x}, y={y}) has label {int(value[n, y, x])}, outside "
                                 f"0..{labels.NUM_CLASSES - 1}")
        results, kept = [], []
        for start in range(0, len(images), self.batch_size):
            chunk = slice(start, start + self.batch_size)
            count = len(images[chunk])
            padded = [_pad_batch(a[chunk], self.batch_size) for a in
                      (images, labels_t.astype(np.int32), labels_src.astype(np.int32))]
            result, result_kept = self._edit(self.loaded.params, *padded)
            results.append(np.asarray(result)[:count])
            kept.append(np.asarray(result_kept)[:count])
        if not results:
            empty = np.zeros((0, size, size, 3), np.uint8)
            return empty, empty
        return np.concatenate(results), np.concatenate(kept)


def _pad_batch(array: np.ndarray, size: int) -> np.ndarray:
    """Pads the leading axis to `size` by repeating the last row (any valid input will do)."""
    missing = size - len(array)
    if missing <= 0:
        return array
    return np.concatenate([array, np.repeat(array[-1:], missing, axis=0)])


# ----------------------------------------------------------------------------- requests from files or TFDS


@dataclasses.dataclass(frozen=True)
class EditRequest:
    """One face to edit, at the model's resolution R.

    name: output file stem. image: uint8 (R, R, 3). labels_t, labels_src: uint8 (R, R).
    """

    name: str
    image: np.ndarray
    labels_t: np.ndarray
    labels_src: np.ndarray


def make_request(name: str, image: np.ndarray, mask: np.ndarray, resolution: int, wanted: np.ndarray | None = None,
                 transfer: Sequence[int] | None = None, other: np.ndarray | None = None,
                 source: str = "") -> EditRequest:
    """Validates and resizes one edit's inputs.

    Args:
      image: uint8 (H, W, 3); mask: its label map (H, W), the same size.
      wanted: the wanted label map (any size), or None to transfer `transfer` classes from
        `other` (any size) onto `mask`.
    """
    where = f"{source}: " if source else ""
    if image.shape[:2] != mask.shape:
        raise ValueError(f"{where}image is {image.shape[1]}x{image.shape[0]} but its mask is "
                         f"{mask.shape[1]}x{mask.shape[0]} (width x height); they must be the same size")
    labels_t = mask_io.resize_labels(mask_io.check_labels(mask, f"{where}mask"), resolution)
    if wanted is None:
        if transfer is None or other is None:
            raise ValueError(f"{where}give a wanted mask, or classes to transfer and the mask to take them from")
        other = mask_io.resize_labels(mask_io.check_labels(other, f"{where}--from mask"), resolution)
        labels_src = mask_io.transfer_classes(labels_t, other, transfer)
    else:
        labels_src = mask_io.resize_labels(mask_io.check_labels(wanted, f"{where}wanted mask"), resolution)
    return EditRequest(name=name, image=mask_io.resize_image(image, resolution), labels_t=labels_t,
                       labels_src=labels_src)


def _images_in(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in mask_io.IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{folder}: no image files ({', '.join(mask_io.IMAGE_SUFFIXES)})")
    return files


def _match(folder_or_file: Path, stem: str, what: str) -> Path:
    """The file for `stem`: the path itself if a file, else folder/<stem>.<image suffix>."""
    if folder_or_file.is_file():
        return folder_or_file
    matches = [folder_or_file / f"{stem}{suffix}" for suffix in mask_io.IMAGE_SUFFIXES + (".PNG",)]
    matches = [m for m in matches if m.is_file()]
    if not matches:
        raise FileNotFoundError(f"{folder_or_file}: no {what} for {stem!r} (expected {stem}.png)")
    return matches[0]


def file_requests(image: str | Path, mask: str | Path, resolution: int, wanted: str | Path | None = None,
                  transfer: Sequence[int] | None = None, from_mask: str | Path | None = None
                  ) -> Iterator[EditRequest]:
    """Edit requests from files: `image` is one file, or a folder of faces whose masks (and wanted
    or --from masks, when those are folders) have the same name stems."""
    image, mask = Path(image), Path(mask)
    if not image.exists():
        raise FileNotFoundError(f"{image}: no such image file or folder")
    if (wanted is None) == (from_mask is None):
        raise ValueError("give exactly one of --wanted (a full wanted mask) and --from (with --transfer)")
    if from_mask is not None and not transfer:
        raise ValueError("--from needs --transfer=CLASS,CLASS,... (the classes to take from it)")
    images = _images_in(image) if image.is_dir() else [image]
    if image.is_dir() and mask.is_file():
        raise ValueError(f"--image is a folder ({image}) but --mask is one file ({mask}); give a folder of masks")
    for path in images:
        stem = path.stem
        mask_path = _match(mask, stem, "mask")
        face, face_mask = mask_io.read_image(path), mask_io.read_mask(mask_path)
        if wanted is not None:
            wanted_path = _match(Path(wanted), stem, "wanted mask")
            yield make_request(stem, face, face_mask, resolution, wanted=mask_io.read_mask(wanted_path),
                               source=f"{path} + {mask_path}")
        else:
            from_path = _match(Path(from_mask), stem, "--from mask")
            yield make_request(stem, face, face_mask, resolution, transfer=transfer,
                               other=mask_io.read_mask(from_path), source=f"{path} + {mask_path}")


def tfds_requests(name: str, split: str, resolution: int, data_dir: str | None = None,
                  transfer: Sequence[int] | None = None, limit: int | None = None) -> Iterator[EditRequest]:
    """Edit requests over a TFDS split of celebamask_hq: face i takes the mask of face i + 1 (the last
    wraps to the first), whole (style copy) or only the `transfer` classes."""
    import tensorflow_datasets as tfds  # slow; only here

    from tfds_celebamask import register
    register()

    source = tfds.data_source(name, split=split, data_dir=data_dir)
    count = len(source) if limit is None else min(limit, len(source))
    if count < 2:
        raise ValueError(f"{name} split {split!r}: {count} examples; need at least 2 (each takes the next's mask)")

    def mask_of(example: dict[str, Any]) -> np.ndarray:
        mask = np.asarray(example["mask"])
        return mask[..., 0] if mask.ndim == 3 else mask

    for i in range(count):
        example, neighbour = source[i], source[(i + 1) % count]
        other = mask_of(neighbour)
        stem = f"{int(example['image_id'])}"
        kwargs = dict(transfer=transfer, other=other) if transfer else dict(wanted=other)
        yield make_request(stem, np.asarray(example["image"]), mask_of(example), resolution,
                           source=f"{name}[{split}] #{i}", **kwargs)


def grid_image(request: EditRequest, result: np.ndarray) -> np.ndarray:
    """target | target mask | wanted mask | result, side by side: uint8 (R, 4R, 3)."""
    return np.concatenate([request.image, mask_io.colour_labels(request.labels_t),
                           mask_io.colour_labels(request.labels_src), result], axis=1)


def _batches(requests: Iterable[EditRequest], size: int) -> Iterator[list[EditRequest]]:
    batch: list[EditRequest] = []
    for request in requests:
        batch.append(request)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclasses.dataclass(frozen=True)
class EditRun:
    """What a run wrote: result paths, seconds from process start to the first result on disk,
    and the throughput of the batches after the first (None with a single batch)."""

    outputs: list[Path]
    first_result_seconds: float
    steady_edits_per_second: float | None


def run_edits(editor: Editor, requests: Iterable[EditRequest], out: str | Path, keep_unedited: bool = False,
              single_file: bool = False) -> EditRun:
    """Edits every request and writes `<out>/<name>.png` and `<out>/<name>_grid.png` (or, with
    `single_file`, `out` itself and `<out stem>_grid.png` beside it)."""
    out = Path(out)
    outputs: list[Path] = []
    first = None
    steady_start, steady_count = None, 0
    for batch in _batches(requests, editor.batch_size):
        results, kept = editor.edit(np.stack([r.image for r in batch]), np.stack([r.labels_t for r in batch]),
                                    np.stack([r.labels_src for r in batch]))
        chosen = kept if keep_unedited else results
        for request, result in zip(batch, chosen):
            if np.array_equal(request.labels_t, request.labels_src):
                logging.warning("%s: the wanted mask equals the target mask; the result only re-renders the face",
                                request.name)
            path = out if single_file else out / f"{request.name}.png"
            grid_path = path.with_name(f"{path.stem}_grid.png")
            mask_io.write_image(path, result)
            mask_io.write_image(grid_path, grid_image(request, result))
            outputs.append(path)
        now = time.perf_counter()
        if first is None:
            first = now - _PROCESS_START
            steady_start = now
        else:
            steady_count += len(batch)
    if first is None:
        raise ValueError("nothing to edit: no inputs found")
    steady = steady_count / (time.perf_counter() - steady_start) if steady_count else None
    return EditRun(outputs=outputs, first_result_seconds=first, steady_edits_per_second=steady)


# ----------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maskgan-edit", description="Mask-guided face editing with a MaskGAN checkpoint's generator.",
        epilog="Examples are in the module docstring: python -c 'import maskgan_jax.edit as e; help(e)'")
    parser.add_argument("--checkpoint", required=True,
                        help="training workdir, phase directory (checkpoints/dmn) or step directory")
    parser.add_argument("--phase", choices=GENERATOR_PHASES, default=None,
                        help="with a workdir: the phase to load (default: the newest, ebst before dmn)")
    parser.add_argument("--resolution", type=int, default=None,
                        help="expected model resolution; an error if the checkpoint's config differs")
    parser.add_argument("--image", help="target face image, or a folder of them")
    parser.add_argument("--mask", help="the target's mask (label-id or palette PNG), or a folder (same stems)")
    parser.add_argument("--wanted", help="wanted mask (file or folder): style copy / hand-edited mask")
    parser.add_argument("--transfer", help="classes to take from --from, e.g. mouth,u_lip,l_lip")
    parser.add_argument("--from", dest="from_mask", help="mask (file or folder) that --transfer classes come from")
    parser.add_argument("--tfds", help="TFDS dataset name, e.g. celebamask_hq/official_64 (instead of --image)")
    parser.add_argument("--split", default="test", help="TFDS split (default test), e.g. 'test[:16]'")
    parser.add_argument("--data_dir", default=None, help="TFDS data_dir (default: TFDS's own)")
    parser.add_argument("--num", type=int, default=None, help="TFDS: edit at most this many faces")
    parser.add_argument("--out", required=True,
                        help="output folder; or, for one --image, a .png file (its grid goes beside it)")
    parser.add_argument("--keep_unedited", action="store_true",
                        help="keep the target's pixels outside the edited region (dilated, feathered)")
    parser.add_argument("--dilation", type=int, default=None, help="pixels (default resolution/32)")
    parser.add_argument("--feather", type=int, default=None, help="pixels (default resolution/32)")
    parser.add_argument("--batch_size", type=int, default=8, help="edits per compiled call")
    parser.add_argument("--compute_dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--jax_cache_dir", default=DEFAULT_CACHE_DIR,
                        help="persistent compilation cache ('' turns it off)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    runtime.setup()
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.tfds is None) == (args.image is None):
        parser.error("give either --image (and --mask) or --tfds")
    if args.image is not None and args.mask is None:
        parser.error("--image needs --mask (the target's own mask)")
    if args.tfds is not None and args.wanted is not None:
        parser.error("with --tfds each face takes the next face's mask; --wanted does not apply")
    if args.batch_size < 1:
        parser.error(f"--batch_size must be >= 1, got {args.batch_size}")
    transfer = mask_io.parse_classes(args.transfer) if args.transfer else None
    runtime.enable_compilation_cache(args.jax_cache_dir)
    loaded = load_generator(args.checkpoint, args.phase, args.resolution, compute_dtype=args.compute_dtype)
    logging.info("Generator from %s (%dx%d) on %d device(s)", loaded.step_dir, loaded.resolution, loaded.resolution,
                 loaded.mesh.devices.size)
    one_face = args.image is not None and Path(args.image).is_file()
    # One face: compile for a batch of one (per device) instead of padding it to --batch_size.
    editor = Editor(loaded, 1 if one_face else args.batch_size, args.dilation, args.feather)
    out = Path(args.out)
    single_file = one_face and out.suffix.lower() in (".png", ".jpg")
    if args.tfds is not None:
        requests = tfds_requests(args.tfds, args.split, loaded.resolution, args.data_dir, transfer, args.num)
    else:
        requests = file_requests(args.image, args.mask, loaded.resolution, args.wanted, transfer, args.from_mask)
    run = run_edits(editor, requests, out, args.keep_unedited, single_file)
    rate = f", then {run.steady_edits_per_second:.1f} edits/s" if run.steady_edits_per_second else ""
    print(f"{len(run.outputs)} edit(s) written to {out if single_file else out.absolute()}: first result "
          f"{run.first_result_seconds:.2f} s after start{rate}")
    return 0


def run() -> None:
    """Console script `maskgan-edit`."""
    try:
        sys.exit(main())
    except (FileNotFoundError, ValueError) as error:
        print(f"maskgan-edit: error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run()
