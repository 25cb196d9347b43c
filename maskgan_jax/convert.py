"""Imports the public PyTorch MaskGAN generator (latest_net_G.pth, label2face_512p) into Flax.

The state_dict has 94 entries (design doc, section 6). Conv weights are (out, in, kh, kw) and become
HWIO by transpose(2, 3, 1, 0); transposed-conv weights are (in, out, kh, kw) and become the
scatter-orientation (kh, kw, in, out) kernel of `UpConv` by transpose(2, 3, 0, 1). The 16 AdaIN
running buffers are unused by the network (AdaIN always normalises with the instance's statistics)
and are dropped.

From the command line, a checkpoint that `maskgan-edit --checkpoint=DIR` and
`maskgan_jax.load_editor(DIR)` load directly (the generator's params and the config they need; the
widths, depths and class count come from the tensors, the resolution from --resolution):

    python -m maskgan_jax.convert --state_dict=latest_net_G.pth --out=DIR            # 512x512
    python -m maskgan_jax.convert --state_dict=state_dict.npz --out=DIR --resolution=64

A .pth file needs PyTorch (`pip install 'maskgan_jax[torch]'`); a .npz of the same tensors
(`np.savez(f, **{k: v.numpy() for k, v in sd.items()})`) does not. A missing or unexpected key, a
tensor of the wrong shape, or a file that is not a state_dict is an error naming it, and nothing is
left at --out after a failure (the checkpoint is written to a temporary sibling, then renamed).

In Python:
    module, variables = from_official_generator(load_state_dict("latest_net_G.pth"))
    image_out = module.apply(variables, image_t, one_hot(mask_t), one_hot(mask_src))
"""

from __future__ import annotations

import argparse
import io
import os
import re
import uuid
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np

from maskgan_jax import cli, inputs, paths
from maskgan_jax.models import registry
from maskgan_jax.models.generator import DenseMappingNetwork

# The public label2face_512p generator's training resolution.
DEFAULT_RESOLUTION = 512
GENERATOR_FIELDS = ("ngf", "n_downsample", "n_blocks", "encoder_widths", "n_encoder_deep", "output_channels")

# AdaIN running statistics exist in the reference but never affect its output.
_UNUSED_KEY = re.compile(r"^model\.\d+\.conv_block\.\d\.norm\.running_(mean|var)$")
_INDEXED = re.compile(r"^(model|model_middle|model_last|conv_block)_(\d+)$")
_SFT_CONV = re.compile(r"^(scale|shift)_conv(\d)$")


def _arrays(state: Any, path: Any) -> dict[str, np.ndarray]:
    """A loaded state_dict (or a training checkpoint holding one under 'state_dict' / 'model', or a
    DataParallel one with 'module.' prefixes) -> key -> NumPy array."""
    if isinstance(state, Mapping) and not any(hasattr(v, "shape") for v in state.values()):
        for key in ("state_dict", "model", "netG", "G"):
            if isinstance(state.get(key), Mapping):
                state = state[key]
                break
    if not isinstance(state, Mapping) or not state:
        raise inputs.InputError(f"{path}: not a state_dict (expected a mapping of parameter names to tensors, "
                                f"got {type(state).__name__}{' (empty)' if isinstance(state, Mapping) else ''})")
    arrays = {}
    for key, value in state.items():
        if not hasattr(value, "shape"):
            raise inputs.InputError(f"{path}: not a state_dict: entry {key!r} is a {type(value).__name__}, not a "
                                    "tensor")
        value = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
        arrays[key.removeprefix("module.")] = value
    return arrays


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a generator state_dict from `.npz` (NumPy) or `.pth`/`.pt` (needs the `torch` extra).

    Returns:
      key -> NumPy array, keys as in the PyTorch module ('module.' prefixes dropped).
    Raises:
      FileNotFoundError: no such file. ImportError: a .pth file without PyTorch.
      inputs.InputError: another suffix, an empty file, or one that is not a state_dict (named).
    """
    path = paths.as_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such state_dict file")
    if path.suffix not in (".npz", ".pth", ".pt"):
        raise inputs.InputError(f"{path}: expected a .npz or .pth state_dict file")
    data = path.read_bytes()
    if not data:
        raise inputs.InputError(f"{path}: empty file (expected a state_dict)")
    if path.suffix == ".npz":
        try:
            archive = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
            raise inputs.InputError(f"{path}: not a state_dict .npz ({error})") from None
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise inputs.InputError(f"{path}: not a state_dict .npz (it holds a single {inputs.describe(archive)} "
                                    "array, not named tensors)")
        with archive:
            try:
                return _arrays({k: archive[k] for k in archive.files}, path)
            except (ValueError, OSError, zipfile.BadZipFile) as error:
                if isinstance(error, inputs.InputError):
                    raise
                raise inputs.InputError(f"{path}: not a state_dict .npz ({error})") from None
    try:
        import torch
    except ImportError as e:
        raise ImportError(f"{path}: reading a .pth file needs PyTorch (pip install 'maskgan_jax[torch]'), "
                          "or save the state_dict as .npz with numpy") from e
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a file that is not its format
        raise inputs.InputError(f"{path}: not a PyTorch state_dict ({type(error).__name__}: {error})") from None
    return _arrays(state, path)


def _torch_key(flax_path: tuple[str, ...]) -> str:
    """('up', 'model_20', 'kernel') -> 'model.20.weight': the PyTorch name of a Flax parameter."""
    parts = []
    for name in flax_path:
        if name in ("down", "up"):  # Flax grouping of the reference's single nn.Sequential
            continue
        if name == "kernel":
            parts.append("weight")
        elif match := _INDEXED.match(name):
            parts.extend(match.groups())
        elif match := _SFT_CONV.match(name):
            parts.append(f"SFT_{match.group(1)}_conv{match.group(2)}")
        else:
            parts.append(name)
    return ".".join(parts)


def _shape(state_dict: Mapping[str, np.ndarray], key: str) -> tuple[int, ...]:
    if key not in state_dict:
        raise inputs.InputError(f"state_dict lacks {key!r}, needed to infer the generator's sizes (is this the "
                                "MaskGAN generator's state_dict, latest_net_G.pth?)")
    return tuple(state_dict[key].shape)


def infer_generator(state_dict: Mapping[str, np.ndarray]) -> DenseMappingNetwork:
    """Builds (through the registry) the DenseMappingNetwork whose sizes match the state_dict's tensor shapes."""
    ngf, num_classes = _shape(state_dict, "model.1.weight")[:2]
    sequential_convs = [k for k in state_dict if re.fullmatch(r"model\.\d+\.weight", k)]
    block_ids = {int(m.group(1)) for k in state_dict if (m := re.match(r"model\.(\d+)\.conv_block\.", k))}
    if not block_ids:
        raise inputs.InputError("state_dict has no residual blocks (model.<i>.conv_block.*)")
    n_downsample = (min(block_ids) - 1) // 3 - 1
    n_encoder_deep = len({k.split(".")[2] for k in state_dict if k.startswith("enc_label.model_last.")})
    widths = tuple(_shape(state_dict, f"enc_label.model.{i}.conv.weight")[0] for i in range(3))
    last_conv = max(sequential_convs, key=lambda k: int(k.split(".")[1]))
    output_channels = state_dict[last_conv].shape[0]
    block = dict(name="dense_mapping_network", ngf=ngf, n_downsample=n_downsample, n_blocks=len(block_ids),
                 encoder_widths=widths, n_encoder_deep=n_encoder_deep, output_channels=output_channels)
    return registry.build(block, num_classes=num_classes, where="state_dict generator")


def _torch_shape(flax_shape: tuple[int, ...], flax_path: tuple[str, ...], transposed: bool) -> tuple[int, ...]:
    """The PyTorch layout of a Flax parameter's shape (the inverse of _to_flax)."""
    if flax_path[-1] != "kernel":
        return tuple(flax_shape)
    kh, kw, a, b = flax_shape
    return (a, b, kh, kw) if transposed else (b, a, kh, kw)


def _to_flax(value: np.ndarray, flax_path: tuple[str, ...], transposed: bool) -> np.ndarray:
    value = np.asarray(value, dtype=np.float32)
    if flax_path[-1] != "kernel":
        return value
    return value.transpose(2, 3, 0, 1) if transposed else value.transpose(2, 3, 1, 0)


def from_official_generator(state_dict: Mapping[str, np.ndarray]) -> tuple[DenseMappingNetwork, dict[str, Any]]:
    """Converts the public PyTorch generator's state_dict into a Flax module and its variables.

    Args:
      state_dict: PyTorch parameter name -> array (NumPy or anything np.asarray takes).
    Returns:
      (module, {"params": ...}) with float32 parameters.
    Raises:
      inputs.InputError (a ValueError) naming every missing, unexpected or mis-shaped key, with the shape
      given and the shape expected.
    """
    module = infer_generator(state_dict)
    # The smallest input both encoders and the backbone accept; traced only.
    abstract = jax.eval_shape(module.init, jax.random.key(0), *_example_inputs(module))["params"]
    flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(abstract))
    first_up = 1 + 3 * (module.n_downsample + 1) + module.n_blocks
    transposed_modules = {f"model_{first_up + 3 * i}" for i in range(module.n_downsample)}

    params, missing, misshaped = {}, [], []
    for flax_path, leaf in flat.items():
        key = _torch_key(flax_path)
        if key not in state_dict:
            missing.append(key)
            continue
        transposed = flax_path[0] == "up" and flax_path[1] in transposed_modules
        value = _to_flax(state_dict[key], flax_path, transposed)
        if value.shape != leaf.shape:
            expected = _torch_shape(tuple(leaf.shape), flax_path, transposed)
            misshaped.append(f"{key}: {tuple(np.shape(state_dict[key]))} given, {expected} expected")
            continue
        params[flax_path] = value
    used = {_torch_key(p) for p in flat}
    unexpected = sorted(k for k in state_dict if k not in used and not _UNUSED_KEY.match(k))
    problems = []
    if missing:
        problems.append(f"missing keys: {sorted(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {unexpected}")
    if misshaped:
        problems.append(f"mis-shaped keys (PyTorch layouts, for the generator the other tensors imply: "
                        f"{generator_block(module)}): {misshaped}")
    if problems:
        raise inputs.InputError("state_dict does not match the MaskGAN generator: " + "; ".join(problems))
    return module, {"params": flax.traverse_util.unflatten_dict(params)}


# ----------------------------------------------------------------------------- a checkpoint on disk


def generator_block(module: DenseMappingNetwork) -> dict[str, Any]:
    """The config block (`config.model.generator`) that rebuilds `module` through the registry."""
    block = {"name": "dense_mapping_network"}
    for field in GENERATOR_FIELDS:
        value = getattr(module, field)
        block[field] = list(value) if isinstance(value, tuple) else value
    return block


def inference_config(module: DenseMappingNetwork, resolution: int, source: str) -> dict[str, Any]:
    """The run config an imported generator needs to be loaded for editing (JSON-able): its
    resolution, class count, compute dtype and generator block, and where it came from."""
    return {"resolution": int(resolution), "num_classes": int(module.num_classes), "seed": 0,
            "model": {"compute_dtype": "float32", "generator": generator_block(module)},
            "source": {"converted_from": source}}


def check_resolution(module: DenseMappingNetwork, resolution: int) -> None:
    """Refuses a resolution the generator cannot run at (traced once, nothing computed): its encoders
    and down/upsampling need sides they can halve."""
    image = jax.ShapeDtypeStruct((1, resolution, resolution, module.output_channels), jnp.float32)
    mask = jax.ShapeDtypeStruct((1, resolution, resolution, module.num_classes), jnp.float32)
    try:
        shapes = jax.eval_shape(module.init, jax.random.key(0), image, mask, mask)
        out = jax.eval_shape(module.apply, shapes, image, mask, mask)
    except (ValueError, TypeError) as error:
        raise inputs.InputError(f"--resolution={resolution}: this generator cannot run at that size "
                                f"({str(error).splitlines()[0]})") from None
    if out.shape != image.shape:
        raise inputs.InputError(f"--resolution={resolution}: this generator (n_downsample={module.n_downsample}, "
                                f"n_encoder_deep={module.n_encoder_deep}) returns {out.shape[1]}x{out.shape[2]} "
                                "at that size; give a multiple of a larger power of two")


def temporary_sibling(path: Any) -> Any:
    """A fresh name beside `path` for writing before the final rename."""
    return path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"


def write_params_checkpoint(out: str | os.PathLike, items: Mapping[str, Any], config: Mapping[str, Any],
                            step: int = 0) -> Any:
    """Writes a params-only checkpoint that every run loader reads: `<out>/<step>/{<item>, config}`
    (an orbax step like a training phase directory's), each item {'params': ..., maybe 'batch_stats'}.

    Written into a temporary sibling and renamed to `out` when complete: a failure leaves nothing at
    `out`. An existing `out` is refused (nothing is overwritten). Returns `out` as an epath.Path.
    """
    import orbax.checkpoint as ocp

    out = paths.as_path(out)
    if out.exists():
        raise FileExistsError(f"{out}: already exists; give a new --out (nothing is overwritten)")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = temporary_sibling(out)
    try:
        args = {name: ocp.args.StandardSave(tree) for name, tree in items.items()}
        args["config"] = ocp.args.JsonSave(dict(config))
        with ocp.CheckpointManager(staging) as manager:
            manager.save(step, args=ocp.args.Composite(**args), force=True)
            manager.wait_until_finished()
        staging.rename(out)
    finally:
        if staging.exists():
            staging.rmtree()
    return out


def convert_to_checkpoint(state_dict_path: str | os.PathLike, out: str | os.PathLike,
                          resolution: int = DEFAULT_RESOLUTION) -> tuple[Any, DenseMappingNetwork]:
    """latest_net_G.pth (or .npz) -> a checkpoint at `out` that maskgan-edit and load_editor read.
    Returns (out, module). Errors name the file, the key or both shapes."""
    state_dict_path = paths.as_path(state_dict_path)
    state_dict = load_state_dict(state_dict_path)
    try:
        module, variables = from_official_generator(state_dict)
    except inputs.InputError as error:
        raise inputs.InputError(f"{state_dict_path}: {error}") from None
    check_resolution(module, resolution)
    written = write_params_checkpoint(out, {"generator": {"params": variables["params"]}},
                                      inference_config(module, resolution, str(state_dict_path)))
    return written, module


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m maskgan_jax.convert",
        description="Import the public PyTorch MaskGAN generator (latest_net_G.pth) as a checkpoint that "
                    "maskgan-edit --checkpoint=OUT and maskgan_jax.load_editor(OUT) load.")
    parser.add_argument("--state_dict", required=True, help="latest_net_G.pth (needs torch) or a .npz of its tensors")
    parser.add_argument("--out", required=True, help="the checkpoint directory to create (must not exist; gs:// ok)")
    parser.add_argument("--resolution", type=int, default=DEFAULT_RESOLUTION,
                        help="the side the generator was trained at (not in the tensors; label2face_512p: 512)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out, module = convert_to_checkpoint(args.state_dict, args.out, args.resolution)
    count = sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(
        jax.eval_shape(module.init, jax.random.key(0), *_example_inputs(module))))
    print(f"{out}: generator {generator_block(module)} at {args.resolution}x{args.resolution}, "
          f"{count:,} parameters; edit with: maskgan-edit --checkpoint={out} ...")
    return 0


def _example_inputs(module: DenseMappingNetwork) -> tuple[jax.ShapeDtypeStruct, ...]:
    size = max(4 * 2 ** module.n_encoder_deep * 2, 2 ** module.n_downsample)
    image = jax.ShapeDtypeStruct((1, size, size, module.output_channels), jnp.float32)
    mask = jax.ShapeDtypeStruct((1, size, size, module.num_classes), jnp.float32)
    return image, mask, mask


def run() -> None:
    """Console script `maskgan-convert` (also `python -m maskgan_jax.convert`)."""
    cli.run("python -m maskgan_jax.convert", main)


if __name__ == "__main__":
    run()
