r"""Mask-guided face editing from a checkpoint: G_A(I_t, M_t, M_src).

The target face I_t with its mask M_t is re-rendered on the wanted mask M_src, keeping I_t's style.
Only the generator's parameters are read from the checkpoint (no optimiser state, no other
network), onto every local device (CPU, one GPU or many; the batch is split over them).

    # style copy: the wanted mask is a whole mask (another face's, or a hand-edited one)
    maskgan-edit --checkpoint=WORKDIR --image=face.jpg --mask=face.png --wanted=other.png --out=result.png
    # attribute transfer: these classes' regions come from another mask, the rest is kept
    maskgan-edit --checkpoint=WORKDIR --image=face.jpg --mask=face.png \
        --transfer=mouth,u_lip,l_lip --from=smiling.png --out=result.png
    # your own photo, no mask: a parser makes it (written beside the result as result_mask.png)
    maskgan-edit --checkpoint=WORKDIR --parser=WORKDIR --image=me.jpg --transfer=hair --from=other.png --out=me_hair.png
    # masks numbered as the face-parsing (BiSeNet) models number them
    maskgan-edit ... --label_order=face_parsing
    # batch over folders (files matched by name stem; --wanted/--from may also be one file)
    maskgan-edit --checkpoint=WORKDIR --image=IMAGES/ --mask=MASKS/ --wanted=WANTED/ --out=OUT/
    # batch over a TFDS split: each face takes the mask (or --transfer classes) of the next one
    maskgan-edit --checkpoint=WORKDIR --tfds=celebamask_hq/official_64 --split=test --out=OUT/
    # mask interpolation with the MaskVAE (paper, Fig. 13), rendered on --image's face
    maskgan-edit --checkpoint=WORKDIR --interpolate --from=A.png --to=B.png --steps=8 \
        --image=face.jpg --mask=face.png --out=OUT/
    maskgan-edit --list_classes

--checkpoint is a training workdir (its newest phase holding a generator: ebst, else dmn; or
--phase), a phase directory (checkpoints/dmn, its latest step), a step directory, or what
`python -m maskgan_jax.convert` / `python -m maskgan_jax.export` write; any etils.epath path (gs://...).
Masks are label-id or palette-coloured PNGs (maskgan_jax.mask_io) of their image's size. Photos of
any size and aspect are padded to a square and resized to the model's resolution (from the
checkpoint's stored config), and the result is pasted back at the photo's own size
(maskgan_jax.framing); each result gets a grid `<name>_grid.png` at the model's resolution:
target | target mask | wanted mask | result.

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
import json
import os
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

from maskgan_jax import cli, framing, inputs, mask_io, paths, runtime
from maskgan_jax import norm_statistics as norm_statistics_lib
from maskgan_jax.models import DenseMappingNetwork, one_hot_mask, registry
from maskgan_jax.phases import GENERATOR_PHASES
from maskgan_jax.sharding import DATA_AXIS
from tfds_celebamask import labels

GENERATOR_ITEM = "generator"
MASK_VAE_ITEM = "mask_vae"
CONFIG_ITEM = "config"
# Phases whose checkpoints hold the MaskVAE, the most trained first (EBST keeps it frozen).
MASK_VAE_PHASES = ("ebst", "maskvae")


# ----------------------------------------------------------------------------- devices


def editing_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over all local devices (or `devices`); editing splits the batch over it."""
    devices = list(devices) if devices is not None else jax.local_devices()
    return Mesh(np.asarray(devices), (DATA_AXIS,))


# ----------------------------------------------------------------------------- finding items in a run


def _latest_step(directory: epath.Path) -> int | None:
    """The newest finished step under a phase directory (orbax's step folders), or None."""
    if not directory.is_dir():
        return None
    steps = ocp.utils.checkpoint_steps(directory)
    return max(steps) if steps else None


def _step_directories(path: epath.Path, phases: Sequence[str]) -> list[epath.Path]:
    """Candidate step directories at `path`, in the order to try: a workdir's checkpoints/<phase>
    for each of `phases`; else `path` as a phase directory (its latest step); else `path` itself."""
    found = []
    if (path / "checkpoints").is_dir():
        for phase in phases:
            step = _latest_step(path / "checkpoints" / phase)
            if step is not None:
                found.append(path / "checkpoints" / phase / str(step))
        return found
    if path.name.isdigit():
        return [path]
    step = _latest_step(path)
    return [path / str(step)] if step is not None else []


def find_item(path: str | os.PathLike, item: str, phases: Sequence[str]) -> epath.Path:
    """The step directory holding network `item` ('generator', 'mask_vae', 'parser').

    Args:
      path: a workdir (its checkpoints/<phase> for `phases`, in order), a phase directory (its latest
        finished step), a step directory, or an export; local or any etils.epath path.
      item: the item's name. phases: the workdir phases that may hold it, preferred first.
    Raises:
      FileNotFoundError: no such path, no finished checkpoint, or none holding `item`.
    """
    path = paths.as_path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint, phase or workdir directory")
    candidates = _step_directories(path, phases)
    for step_dir in candidates:
        if (step_dir / item).is_dir():
            return step_dir
    if (path / "checkpoints").is_dir():
        present = sorted(p.name for p in (path / "checkpoints").iterdir() if p.is_dir())
        raise FileNotFoundError(f"{path}: no finished checkpoint with a {item} in checkpoints/"
                                f"{{{','.join(phases)}}} (found phases {present})")
    if not candidates:
        raise FileNotFoundError(f"{path}: no finished checkpoint found (looked for a step directory, a phase "
                                "directory with step subdirectories, or a workdir)")
    step_dir = candidates[0]
    present = sorted(p.name for p in step_dir.iterdir() if p.is_dir())
    raise FileNotFoundError(f"{step_dir}: checkpoint has no {item!r} item (it has {present})")


def workdir_phases(workdir: str | os.PathLike) -> tuple[str, ...]:
    """The phases of GENERATOR_PHASES (in that order) with a finished checkpoint in `workdir`."""
    root = paths.as_path(workdir) / "checkpoints"
    return tuple(phase for phase in GENERATOR_PHASES if _latest_step(root / phase) is not None)


def find_generator_checkpoint(path: str | os.PathLike, phase: str | None = None) -> epath.Path:
    """The step directory of the checkpoint to edit with.

    Args:
      path: a workdir (its `checkpoints/<phase>`, newest phase first: GENERATOR_PHASES), a phase
        directory (its latest finished step), a step directory, or an export/convert output.
      phase: with a workdir, the phase to take ('dmn', 'ebst'); None takes the newest.
    Returns:
      The step directory, which holds a `generator` item.
    Raises:
      FileNotFoundError: no finished checkpoint, or one without a generator item.
    """
    try:
        return find_item(path, GENERATOR_ITEM, (phase,) if phase else GENERATOR_PHASES)
    except FileNotFoundError as error:
        if "checkpoints/{" in str(error):
            raise FileNotFoundError(f"{error}; the maskvae phase stores no generator") from None
        raise


def read_run_config(step_dir: epath.Path) -> ml_collections.ConfigDict:
    """The run config stored with a checkpoint step (its `config` item)."""
    config_file = step_dir / CONFIG_ITEM / "metadata"
    if not config_file.is_file():
        raise FileNotFoundError(f"{step_dir}: checkpoint has no stored config ({CONFIG_ITEM}/metadata)")
    return ml_collections.ConfigDict(json.loads(config_file.read_text()))


def check_stored_params(item_dir: epath.Path, stored: Any, expected: Any, what: str) -> None:
    """Compares a stored network's parameter names and shapes (orbax metadata tree) with the
    config's network (`expected`: ShapeDtypeStructs); the error names the parameter and both shapes."""
    if not hasattr(stored, "keys") or "params" not in stored:
        raise ValueError(f"{item_dir}: the {what} item holds no 'params' (is this a NetState checkpoint?)")
    stored_shapes = {k: tuple(v.shape) for k, v in flax.traverse_util.flatten_dict(dict(stored["params"])).items()}
    expected_shapes = {k: tuple(v.shape) for k, v in flax.traverse_util.flatten_dict(expected).items()}
    for key in sorted(set(stored_shapes) | set(expected_shapes)):
        want, have = expected_shapes.get(key), stored_shapes.get(key)
        if want != have:
            raise ValueError(f"{item_dir}: parameter {'/'.join(key)} is {have} in the checkpoint but the stored "
                             f"config's {what} expects {want}; the checkpoint and its config do not match")


def restore_item(item_dir: epath.Path, target: dict[str, Any], what: str) -> dict[str, Any]:
    """Reads the collections of `target` ({'params': ..., maybe 'batch_stats': ...}, ShapeDtypeStructs
    with shardings) from one network item, and nothing else (no optimiser state)."""
    # The item's own handler: a Checkpointer would also look for step-level metadata and warn.
    handler = ocp.PyTreeCheckpointHandler()
    try:
        check_stored_params(item_dir, handler.metadata(item_dir), target["params"], what)
        return handler.restore(item_dir, args=ocp.args.PyTreeRestore(
            item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target), partial_restore=True))
    finally:
        handler.close()


# ----------------------------------------------------------------------------- loading the generator


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
    step_dir: epath.Path
    mesh: Mesh


def abstract_params(module: DenseMappingNetwork, resolution: int, sharding: jax.sharding.Sharding) -> Any:
    """ShapeDtypeStructs (with `sharding`) of the generator's params at `resolution`; allocates nothing."""
    image = jnp.zeros((1, resolution, resolution, 3), jnp.float32)
    mask = jnp.zeros((1, resolution, resolution, module.num_classes), jnp.float32)
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), image, mask, mask))["params"]
    return jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)


def load_generator(path: str | os.PathLike, phase: str | None = None, resolution: int | None = None,
                   mesh: Mesh | None = None, compute_dtype: str = "float32") -> LoadedGenerator:
    """Reads only the generator's params from a checkpoint, replicated over `mesh`.

    Args:
      path: workdir, phase or step directory, or an export (see find_generator_checkpoint).
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
    config = read_run_config(step_dir)
    trained_at = int(config.resolution)
    if resolution is not None and int(resolution) != trained_at:
        raise ValueError(f"{step_dir}: the checkpoint's generator was trained at {trained_at}x{trained_at} "
                         f"(its config.resolution) but resolution {resolution} was requested")
    module = generator_from_config(config, compute_dtype)
    mesh = mesh or editing_mesh()
    target = abstract_params(module, trained_at, NamedSharding(mesh, PartitionSpec()))
    restored = restore_item(step_dir / GENERATOR_ITEM, {"params": target}, "generator")
    return LoadedGenerator(module=module, params=restored["params"], resolution=trained_at, config=config,
                           step_dir=step_dir, mesh=mesh)


# ----------------------------------------------------------------------------- the MaskVAE


@dataclasses.dataclass(frozen=True)
class LoadedMaskVAE:
    """A MaskVAE ready to encode and decode masks: module, variables ({'params', 'batch_stats'},
    replicated), resolution, config, step_dir."""

    module: Any
    variables: Any
    resolution: int
    config: ml_collections.ConfigDict
    step_dir: epath.Path


def load_mask_vae(path: str | os.PathLike, mesh: Mesh | None = None) -> LoadedMaskVAE:
    """Reads the MaskVAE's params and BatchNorm statistics (no optimiser state) from a workdir (its
    ebst, else maskvae phase), a phase or step directory, or an export."""
    step_dir = find_item(path, MASK_VAE_ITEM, MASK_VAE_PHASES)
    config = read_run_config(step_dir)
    module = registry.build_network(config, "mask_vae", dtype="float32")
    mesh = mesh or editing_mesh()
    replicated = NamedSharding(mesh, PartitionSpec())
    shapes = jax.eval_shape(lambda: registry.init_variables(config, "mask_vae", module, jax.random.key(0)))
    target = jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated),
                                    dict(shapes))
    variables = restore_item(step_dir / MASK_VAE_ITEM, target, "mask_vae")
    return LoadedMaskVAE(module=module, variables=variables, resolution=int(config.resolution), config=config,
                         step_dir=step_dir)


def interpolate_masks(vae: LoadedMaskVAE, mask_a: np.ndarray, mask_b: np.ndarray, steps: int) -> np.ndarray:
    """Masks decoded from the MaskVAE's latent path between two masks (paper, Fig. 13).

    Args:
      mask_a, mask_b: uint8 (R, R) label maps at the MaskVAE's resolution.
      steps: how many masks, >= 2; the first decodes z_A, the last z_B (posterior means), the others
        are evenly spaced on the line between.
    Returns:
      uint8 (steps, R, R) label maps (argmax of the decoded logits).
    """
    if steps < 2:
        raise inputs.InputError(f"--steps must be >= 2 (the two ends included), got {steps}")
    module = vae.module

    @jax.jit
    def path(variables, ends):
        mean, _ = module.apply(variables, one_hot_mask(ends, module.num_classes), False, method=module.encode)
        weights = jnp.linspace(0.0, 1.0, steps)[:, None]
        latents = (1.0 - weights) * mean[0] + weights * mean[1]
        logits = module.apply(variables, latents, False, method=module.decode)
        return jnp.argmax(logits, axis=-1).astype(jnp.uint8)

    return np.asarray(path(vae.variables, np.stack([mask_a, mask_b]).astype(np.int32)))
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
                labels_src: jax.Array, dilation: int, feather: int, norm_statistics: str = "edit"
                ) -> tuple[jax.Array, jax.Array]:
    """One batch of edits, pure.

    Args:
      images: uint8 (N, H, W, 3) target faces. labels_t: int (N, H, W) their masks.
      labels_src: int (N, H, W) wanted masks. dilation, feather: see keep_unedited_alpha.
      norm_statistics: the normalisation statistics to render with, one of norm_statistics.MODES
        ("edit": the paper's).
    Returns:
      (result, kept): uint8 (N, H, W, 3) each; `kept` is `result` with the target's pixels
      outside the edited region (--keep_unedited).
    """
    styles = encode_styles(module, params, images, labels_t)
    return render_styles(module, params, styles, images, labels_t, labels_src, dilation, feather, norm_statistics)


def encode_styles(module: DenseMappingNetwork, params: Any, images: jax.Array, labels_t: jax.Array) -> jax.Array:
    """The style vectors of target faces, pure: uint8 (N, H, W, 3) faces and int (N, H, W) their masks
    -> float (N, style_dim), what `render_styles` reuses for every wanted mask of those faces."""
    return module.apply({"params": params}, images.astype(jnp.float32) / 127.5 - 1.0,
                        one_hot_mask(labels_t, module.num_classes), None, style_only=True)


def render_styles(module: DenseMappingNetwork, params: Any, styles: jax.Array, images: jax.Array,
                  labels_t: jax.Array, labels_src: jax.Array, dilation: int, feather: int,
                  norm_statistics: str = "edit") -> tuple[jax.Array, jax.Array]:
    """`edit_images` from styles encoded earlier (encode_styles): the same (result, kept), uint8
    (N, H, W, 3) each, without re-reading the faces through the style encoder."""
    generated = norm_statistics_lib.render(module, params, styles, labels_t, labels_src, norm_statistics)
    generated = jnp.clip((generated.astype(jnp.float32) + 1.0) * 127.5, 0.0, 255.0)
    alpha = keep_unedited_alpha(labels_t, labels_src, dilation, feather)
    kept = alpha * generated + (1.0 - alpha) * images.astype(jnp.float32)  # exact target where alpha == 0
    return jnp.round(generated).astype(jnp.uint8), jnp.round(kept).astype(jnp.uint8)


class Editor:
    """Edits batches of faces with a loaded generator, compiled once per input shape.

    Inputs are padded to a fixed batch (a multiple of the device count) so every call after the
    first reuses the same compiled program.
    """

    def __init__(self, loaded: LoadedGenerator, batch_size: int = 8, dilation: int | None = None,
                 feather: int | None = None, norm_statistics: str | None = None):
        """norm_statistics: one of norm_statistics.MODES; None: the checkpoint's config.edit.norm_statistics."""
        devices = loaded.mesh.devices.size
        self.loaded = loaded
        self.norm_statistics = (norm_statistics_lib.config_mode(loaded.config) if norm_statistics is None
                                else norm_statistics_lib.check_mode(norm_statistics))
        self.batch_size = max(devices, -(-batch_size // devices) * devices)
        default_dilation, default_feather = default_margins(loaded.resolution)
        self.dilation = default_dilation if dilation is None else dilation
        self.feather = default_feather if feather is None else feather
        batch = NamedSharding(loaded.mesh, PartitionSpec(DATA_AXIS))
        replicated = NamedSharding(loaded.mesh, PartitionSpec())
        self._edit = jax.jit(
            lambda params, images, labels_t, labels_src: edit_images(
                loaded.module, params, images, labels_t, labels_src, self.dilation, self.feather,
                self.norm_statistics),
            in_shardings=(replicated, batch, batch, batch), out_shardings=(batch, batch))

        self._encode = jax.jit(lambda params, images, labels_t: encode_styles(loaded.module, params, images, labels_t),
                               in_shardings=(replicated, batch, batch), out_shardings=batch)
        self._render = jax.jit(
            lambda params, styles, images, labels_t, labels_src: render_styles(
                loaded.module, params, styles, images, labels_t, labels_src, self.dilation, self.feather,
                self.norm_statistics),
            in_shardings=(replicated, batch, batch, batch, batch), out_shardings=(batch, batch))

    @property
    def resolution(self) -> int:
        return self.loaded.resolution

    def encode_style(self, image: np.ndarray, labels_t: np.ndarray) -> np.ndarray:
        """The style vector of one face: uint8 (R, R, 3) and its (R, R) mask -> float32 (style_dim,).

        Compiled once (the batch is padded to batch_size); see render."""
        _check_one(image, labels_t, self.resolution)
        padded = [_pad_batch(a[None], self.batch_size) for a in (image, labels_t.astype(np.int32))]
        return np.asarray(self._encode(self.loaded.params, *padded))[0]

    def render(self, style: np.ndarray, image: np.ndarray, labels_t: np.ndarray, labels_src: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        """One face re-rendered on `labels_src` from its encoded `style` (encode_style of image,
        labels_t): (result, kept), uint8 (R, R, 3) each, equal to edit()'s for the same inputs."""
        _check_one(image, labels_t, self.resolution)
        _check_one(image, labels_src, self.resolution)
        padded = [_pad_batch(a[None], self.batch_size) for a in
                  (np.asarray(style), image, labels_t.astype(np.int32), labels_src.astype(np.int32))]
        result, kept = self._render(self.loaded.params, *padded)
        return np.asarray(result)[0], np.asarray(kept)[0]

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


def _check_one(image: np.ndarray, label_map: np.ndarray, size: int) -> None:
    """Refuses anything but one uint8 (size, size, 3) face and its (size, size) label map in 0..18."""
    if image.shape != (size, size, 3) or image.dtype != np.uint8:
        raise ValueError(f"image: expected uint8 ({size}, {size}, 3), got {image.dtype} {image.shape}")
    if np.shape(label_map) != (size, size):
        raise ValueError(f"label map: expected shape ({size}, {size}), got {np.shape(label_map)}")
    mask_io.check_labels(np.asarray(label_map), "label map")


def _pad_batch(array: np.ndarray, size: int) -> np.ndarray:
    """Pads the leading axis to `size` by repeating the last row (any valid input will do)."""
    missing = size - len(array)
    if missing <= 0:
        return array
    return np.concatenate([array, np.repeat(array[-1:], missing, axis=0)])


# ----------------------------------------------------------------------------- requests from files or TFDS


@dataclasses.dataclass(frozen=True)
class EditRequest:
    """One face to edit.

    name: output file stem. image: uint8 (R, R, 3), the photo in the model's square (framing).
    labels_t, labels_src: uint8 (R, R), its mask and the wanted mask there. photo: the photo itself,
    uint8 (H, W, 3); photo_labels_t, photo_labels_src: uint8 (H, W) its masks at its size.
    frame: where the photo sits in the model's square.
    """

    name: str
    image: np.ndarray
    labels_t: np.ndarray
    labels_src: np.ndarray
    photo: np.ndarray
    photo_labels_t: np.ndarray
    photo_labels_src: np.ndarray
    frame: framing.Frame


def make_request(name: str, image: np.ndarray, mask: np.ndarray, resolution: int, wanted: np.ndarray | None = None,
                 transfer: Sequence[int] | None = None, other: np.ndarray | None = None,
                 source: str = "") -> EditRequest:
    """Validates one edit's inputs and frames them into the model's square.

    Args:
      image: uint8 (H, W, 3), any size and aspect; mask: its label map (H, W).
      wanted: the wanted label map (H, W), or None to transfer `transfer` classes from `other`
        (H, W) onto `mask`. Every mask must have the image's size: none is stretched.
      source: names the inputs in errors.
    """
    where = f"{source}: " if source else ""
    inputs.check_same_size(image.shape, np.shape(mask), f"{where}the image", "its mask")
    labels_t = mask_io.check_labels(mask, f"{where}mask")
    if wanted is None:
        if transfer is None or other is None:
            raise inputs.InputError(f"{where}give a wanted mask, or classes to transfer and the mask to take "
                                    "them from")
        inputs.check_same_size(image.shape, np.shape(other), f"{where}the image", "the --from mask")
        labels_src = mask_io.transfer_classes(labels_t, mask_io.check_labels(other, f"{where}--from mask"), transfer)
    else:
        inputs.check_same_size(image.shape, np.shape(wanted), f"{where}the image", "the wanted mask")
        labels_src = mask_io.check_labels(wanted, f"{where}wanted mask")
    frame = framing.frame_of(image.shape[0], image.shape[1], resolution)
    return EditRequest(name=name, image=framing.image_to_square(image, frame),
                       labels_t=framing.labels_to_square(labels_t, frame),
                       labels_src=framing.labels_to_square(labels_src, frame), photo=image,
                       photo_labels_t=labels_t, photo_labels_src=labels_src, frame=frame)


def _images_in(folder: epath.Path) -> list[epath.Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in mask_io.IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{folder}: no image files ({', '.join(mask_io.IMAGE_SUFFIXES)})")
    return files


def _match(folder_or_file: epath.Path, stem: str, what: str) -> epath.Path:
    """The file for `stem`: the path itself if a file, else folder/<stem>.<image suffix>."""
    if folder_or_file.is_file():
        return folder_or_file
    if not folder_or_file.exists():
        raise FileNotFoundError(f"{folder_or_file}: no such {what} file or folder")
    matches = [folder_or_file / f"{stem}{suffix}" for suffix in mask_io.IMAGE_SUFFIXES + (".PNG",)]
    matches = [m for m in matches if m.is_file()]
    if not matches:
        raise FileNotFoundError(f"{folder_or_file}: no {what} for {stem!r} (expected {stem}.png)")
    return matches[0]


# A function that makes the mask of a photo: uint8 (H, W, 3) -> uint8 (H, W) (a parser).
MaskMaker = Any


def file_requests(image: str | os.PathLike, mask: str | os.PathLike | None, resolution: int,
                  wanted: str | os.PathLike | None = None, transfer: Sequence[int] | None = None,
                  from_mask: str | os.PathLike | None = None, label_order: str = "celebamask",
                  make_mask: MaskMaker | None = None) -> Iterator[EditRequest]:
    """Edit requests from files: `image` is one file, or a folder of faces whose masks (and wanted
    or --from masks, when those are folders) have the same name stems.

    Masks are read in `label_order`; with `mask` None, `make_mask(photo)` makes each photo's mask.
    """
    image = paths.as_path(image)
    if not image.exists():
        raise FileNotFoundError(f"{image}: no such image file or folder")
    if (wanted is None) == (from_mask is None):
        raise inputs.InputError("give exactly one of --wanted (a full wanted mask) and --from (with --transfer)")
    if from_mask is not None and not transfer:
        raise inputs.InputError("--from needs --transfer=CLASS,CLASS,... (the classes to take from it)")
    if mask is None and make_mask is None:
        raise inputs.InputError("--image needs --mask (the photo's own mask), or --parser to make one")
    mask = paths.as_path(mask) if mask is not None else None
    images = _images_in(image) if image.is_dir() else [image]
    if image.is_dir() and mask is not None and mask.is_file():
        raise inputs.InputError(f"--image is a folder ({image}) but --mask is one file ({mask}); give a folder "
                                "of masks")
    for path in images:
        stem = path.stem
        face = mask_io.read_image(path)
        if mask is None:
            face_mask, mask_source = make_mask(face), f"{path} (parsed)"
        else:
            mask_path = _match(mask, stem, "mask")
            face_mask, mask_source = mask_io.read_mask(mask_path, label_order), str(mask_path)
        if wanted is not None:
            wanted_path = _match(paths.as_path(wanted), stem, "wanted mask")
            yield make_request(stem, face, face_mask, resolution, wanted=mask_io.read_mask(wanted_path, label_order),
                               source=f"{path} + {mask_source} + {wanted_path}")
        else:
            from_path = _match(paths.as_path(from_mask), stem, "--from mask")
            yield make_request(stem, face, face_mask, resolution, transfer=transfer,
                               other=mask_io.read_mask(from_path, label_order),
                               source=f"{path} + {mask_source} + {from_path}")


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
    """target | target mask | wanted mask | result, side by side at the model's resolution:
    uint8 (R, 4R, 3)."""
    return np.concatenate([request.image, mask_io.colour_labels(request.labels_t),
                           mask_io.colour_labels(request.labels_src), result], axis=1)


def paste_back(request: EditRequest, result: np.ndarray, keep_unedited: bool, dilation: int,
               feather: int) -> np.ndarray:
    """The model's uint8 (R, R, 3) result at the photo's size, uint8 (H, W, 3); with `keep_unedited`,
    the photo's own pixels outside the edited region (margins scaled to the photo's size)."""
    generated = framing.image_from_square(result, request.frame)
    if not keep_unedited:
        return generated
    alpha = framing.keep_unedited_alpha(request.photo_labels_t, request.photo_labels_src,
                                        framing.scaled_margin(dilation, request.frame),
                                        framing.scaled_margin(feather, request.frame))
    return framing.blend_kept(request.photo, generated, alpha)


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

    outputs: list[epath.Path]
    first_result_seconds: float
    steady_edits_per_second: float | None


def run_edits(editor: Editor, requests: Iterable[EditRequest], out: str | os.PathLike, keep_unedited: bool = False,
              single_file: bool = False, write_masks: bool = False) -> EditRun:
    """Edits every request and writes `<out>/<name>.png` (at the photo's size) and
    `<out>/<name>_grid.png` (or, with `single_file`, `out` itself and `<out stem>_grid.png` beside
    it); with `write_masks`, also the photo's mask and the wanted mask as `<stem>_mask.png` and
    `<stem>_wanted.png` (palette colours, editable and reusable as --mask / --wanted)."""
    out = paths.as_path(out)
    outputs: list[epath.Path] = []
    first = None
    steady_start, steady_count = None, 0
    for batch in _batches(requests, editor.batch_size):
        results, _ = editor.edit(np.stack([r.image for r in batch]), np.stack([r.labels_t for r in batch]),
                                 np.stack([r.labels_src for r in batch]))
        for request, result in zip(batch, results):
            if np.array_equal(request.labels_t, request.labels_src):
                logging.warning("%s: the wanted mask equals the target mask; the result only re-renders the face",
                                request.name)
            path = out if single_file else out / f"{request.name}.png"
            mask_io.write_image(path, paste_back(request, result, keep_unedited, editor.dilation, editor.feather))
            mask_io.write_image(path.with_name(f"{path.stem}_grid.png"), grid_image(request, result))
            if write_masks:
                mask_io.write_mask(path.with_name(f"{path.stem}_mask.png"), request.photo_labels_t, palette=True)
                mask_io.write_mask(path.with_name(f"{path.stem}_wanted.png"), request.photo_labels_src, palette=True)
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


# ----------------------------------------------------------------------------- mask interpolation


def run_interpolation(editor: Editor, vae: LoadedMaskVAE, mask_a: np.ndarray, mask_b: np.ndarray, steps: int,
                      image: np.ndarray, mask: np.ndarray, out: str | os.PathLike) -> list[epath.Path]:
    """Writes the MaskVAE's `steps` masks from A to B (`mask_<i>.png`, palette) and the faces the
    generator renders on them in the style of `image` (`face_<i>.png`), plus `strip.png`: masks
    above, faces below, uint8 (2R, steps * R, 3). All inputs are label maps / images already checked
    and framed to the model's resolution R."""
    if vae.resolution != editor.resolution:
        raise inputs.InputError(f"{vae.step_dir}: the MaskVAE works at {vae.resolution}x{vae.resolution} but the "
                                f"generator at {editor.resolution}x{editor.resolution}")
    masks = interpolate_masks(vae, mask_a, mask_b, steps)
    faces, _ = editor.edit(np.repeat(image[None], steps, axis=0), np.repeat(mask[None], steps, axis=0), masks)
    out = paths.as_path(out)
    written = []
    for index, (decoded, face) in enumerate(zip(masks, faces)):
        mask_io.write_mask(out / f"mask_{index:02d}.png", decoded, palette=True)
        mask_io.write_image(out / f"face_{index:02d}.png", face)
        written.append(out / f"face_{index:02d}.png")
    strip = np.concatenate([np.concatenate(list(mask_io.colour_labels(masks)), axis=1),
                            np.concatenate(list(faces), axis=1)], axis=0)
    mask_io.write_image(out / "strip.png", strip)
    return written


# ----------------------------------------------------------------------------- command line


def class_table() -> str:
    """The 19 classes: CelebAMask-HQ id, face-parsing id, name and palette colour, one per line."""
    face_parsing = {name: i for i, name in enumerate(mask_io.FACE_PARSING_CLASSES)}
    lines = ["id  face_parsing_id  name        palette RGB"]
    for class_id, name in enumerate(labels.CLASS_NAMES):
        red, green, blue = (int(c) for c in labels.PALETTE[class_id])
        lines.append(f"{class_id:>2}  {face_parsing[name]:>15}  {name:<10}  ({red:>3}, {green:>3}, {blue:>3}) "
                     f"#{red:02x}{green:02x}{blue:02x}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maskgan-edit", description="Mask-guided face editing with a MaskGAN checkpoint's generator.",
        epilog="Examples are in the module docstring: python -c 'import maskgan_jax.edit as e; help(e)'")
    parser.add_argument("--checkpoint",
                        help="training workdir, phase directory (checkpoints/dmn), step directory, or the output "
                             "of maskgan_jax.convert / maskgan_jax.export (any etils.epath path, e.g. gs://)")
    parser.add_argument("--phase", choices=GENERATOR_PHASES, default=None,
                        help="with a workdir: the phase to load (default: the newest, ebst before dmn)")
    parser.add_argument("--resolution", type=int, default=None,
                        help="expected model resolution; an error if the checkpoint's config differs")
    parser.add_argument("--image", help="target face image (any size), or a folder of them")
    parser.add_argument("--mask", help="the target's mask (label-id or palette PNG, the image's size), or a folder "
                                       "(same stems); omit it to make it with --parser")
    parser.add_argument("--parser", help="a checkpoint holding a face parser: makes the masks that --mask omits")
    parser.add_argument("--label_order", choices=tuple(mask_io.LABEL_ORDERS), default="celebamask",
                        help="how label-id mask files number the classes (--list_classes shows both)")
    parser.add_argument("--wanted", help="wanted mask (file or folder): style copy / hand-edited mask")
    parser.add_argument("--transfer", help="classes to take from --from, e.g. mouth,u_lip,l_lip")
    parser.add_argument("--from", dest="from_mask",
                        help="mask (file or folder) that --transfer classes come from; with --interpolate, mask A")
    parser.add_argument("--interpolate", action="store_true",
                        help="write the MaskVAE's masks from --from to --to and the faces rendered on them")
    parser.add_argument("--to", dest="to_mask", help="--interpolate: mask B")
    parser.add_argument("--steps", type=int, default=8, help="--interpolate: masks from A to B, ends included")
    parser.add_argument("--tfds", help="TFDS dataset name, e.g. celebamask_hq/official_64 (instead of --image)")
    parser.add_argument("--split", default="test", help="TFDS split (default test), e.g. 'test[:16]'")
    parser.add_argument("--data_dir", default=None, help="TFDS data_dir (default: TFDS's own)")
    parser.add_argument("--num", type=int, default=None, help="TFDS: edit at most this many faces")
    parser.add_argument("--out",
                        help="output folder; or, for one --image, a .png file (its grid goes beside it)")
    parser.add_argument("--keep_unedited", action="store_true",
                        help="keep the target's pixels outside the edited region (dilated, feathered)")
    parser.add_argument("--dilation", type=int, default=None, help="pixels at the model's size (default R/32)")
    parser.add_argument("--feather", type=int, default=None, help="pixels at the model's size (default R/32)")
    parser.add_argument("--norm_statistics", default=None, choices=norm_statistics_lib.MODES,
                        help="normalise by the edit's statistics (the paper), the face's reconstruction's, or "
                             "the face's unless the wanted mask adds a class (maskgan_jax.norm_statistics; "
                             "default: the checkpoint's config.edit.norm_statistics)")
    parser.add_argument("--list_classes", action="store_true", help="print the 19 classes, their ids and colours")
    cli.add_runtime_flags(parser, batch_size=8, what="edits")
    return parser


def _check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """parser.error (exit 2) on flags that do not go together."""
    for flag in ("checkpoint", "out"):
        if getattr(args, flag) is None:
            parser.error(f"--{flag} is required (or --list_classes)")
    cli.check_runtime_flags(parser, args)
    if args.interpolate:
        missing = [flag for flag, value in (("--from", args.from_mask), ("--to", args.to_mask),
                                            ("--image", args.image)) if value is None]
        if missing:
            parser.error(f"--interpolate needs {', '.join(missing)} (masks A and B, and the face to render)")
        if args.mask is None and args.parser is None:
            parser.error("--interpolate needs --mask (the face's own mask) or --parser to make it")
        if args.tfds or args.wanted or args.transfer:
            parser.error("--interpolate takes --from, --to, --image (and --mask or --parser); not --tfds, "
                         "--wanted or --transfer")
        return
    if args.to_mask is not None:
        parser.error("--to goes with --interpolate")
    if (args.tfds is None) == (args.image is None):
        parser.error("give either --image (and --mask or --parser) or --tfds")
    if args.image is not None and args.mask is None and args.parser is None:
        parser.error("--image needs --mask (the target's own mask), or --parser to make one")
    if args.tfds is not None and args.wanted is not None:
        parser.error("with --tfds each face takes the next face's mask; --wanted does not apply")


def _mask_maker(parser_path: str | None, compute_dtype: str) -> MaskMaker | None:
    """photo -> its mask (uint8 (H, W)) with the parser at `parser_path`, framed like the edits."""
    if parser_path is None:
        return None
    from maskgan_jax import parse  # only when asked: parse imports this module

    face_parser = parse.Parser(parse.load_parser(parser_path, compute_dtype=compute_dtype), batch_size=1)
    return lambda photo: face_parser.parse_any_size([photo])[0]


def _interpolate(args: argparse.Namespace, editor: Editor) -> int:
    vae = load_mask_vae(args.checkpoint, editor.loaded.mesh)
    photo = mask_io.read_image(args.image)
    make_mask = _mask_maker(args.parser, args.compute_dtype)
    photo_mask = (mask_io.read_mask(args.mask, args.label_order) if args.mask is not None else make_mask(photo))
    inputs.check_same_size(photo.shape, photo_mask.shape, f"{args.image}", "its mask")
    frame = framing.frame_of(photo.shape[0], photo.shape[1], editor.resolution)
    ends = []
    for path in (args.from_mask, args.to_mask):
        end = mask_io.read_mask(path, args.label_order)
        ends.append(framing.labels_to_square(end, framing.frame_of(*end.shape, editor.resolution)))
    written = run_interpolation(editor, vae, ends[0], ends[1], args.steps, framing.image_to_square(photo, frame),
                                framing.labels_to_square(photo_mask, frame), args.out)
    print(f"{len(written)} interpolated masks and faces written to {paths.as_path(args.out)} (strip.png)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    runtime.setup()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_classes:
        print(class_table())
        return 0
    _check_arguments(parser, args)
    transfer = mask_io.parse_classes(args.transfer) if args.transfer else None
    runtime.enable_compilation_cache(args.jax_cache_dir)
    loaded = load_generator(args.checkpoint, args.phase, args.resolution, compute_dtype=args.compute_dtype)
    logging.info("Generator from %s (%dx%d) on %d device(s)", loaded.step_dir, loaded.resolution, loaded.resolution,
                 loaded.mesh.devices.size)
    one_face = args.image is not None and paths.as_path(args.image).is_file()
    # One face: compile for a batch of one (per device) instead of padding it to --batch_size.
    batch_size = 1 if one_face and not args.interpolate else args.batch_size
    editor = Editor(loaded, batch_size, args.dilation, args.feather, args.norm_statistics)
    if args.interpolate:
        return _interpolate(args, editor)
    out = paths.as_path(args.out)
    single_file = one_face and out.suffix.lower() in (".png", ".jpg")
    if args.tfds is not None:
        requests = tfds_requests(args.tfds, args.split, loaded.resolution, args.data_dir, transfer, args.num)
    else:
        requests = file_requests(args.image, args.mask, loaded.resolution, args.wanted, transfer, args.from_mask,
                                 args.label_order, _mask_maker(args.parser if args.mask is None else None,
                                                               args.compute_dtype))
    run = run_edits(editor, requests, out, args.keep_unedited, single_file, write_masks=args.mask is None and
                    args.tfds is None)
    rate = f", then {run.steady_edits_per_second:.1f} edits/s" if run.steady_edits_per_second else ""
    print(f"{len(run.outputs)} edit(s) written to {out}: first result "
          f"{run.first_result_seconds:.2f} s after start{rate}")
    return 0


def run() -> None:
    """Console script `maskgan-edit`."""
    cli.run("maskgan-edit", main)


if __name__ == "__main__":
    run()
