"""Imports the public PyTorch MaskGAN generator (latest_net_G.pth, label2face_512p) into Flax.

The state_dict has 94 entries (design doc, section 6). Conv weights are (out, in, kh, kw) and become
HWIO by transpose(2, 3, 1, 0); transposed-conv weights are (in, out, kh, kw) and become the
scatter-orientation (kh, kw, in, out) kernel of `UpConv` by transpose(2, 3, 0, 1). The 16 AdaIN
running buffers are unused by the network (AdaIN always normalises with the instance's statistics)
and are dropped.

Usage:
    module, variables = from_official_generator(load_state_dict("latest_net_G.pth"))
    image_out = module.apply(variables, image_t, one_hot(mask_t), one_hot(mask_src))
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np

from maskgan_jax.models import registry
from maskgan_jax.models.generator import DenseMappingNetwork

# AdaIN running statistics exist in the reference but never affect its output.
_UNUSED_KEY = re.compile(r"^model\.\d+\.conv_block\.\d\.norm\.running_(mean|var)$")
_INDEXED = re.compile(r"^(model|model_middle|model_last|conv_block)_(\d+)$")
_SFT_CONV = re.compile(r"^(scale|shift)_conv(\d)$")


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Reads a generator state_dict from `.npz` (NumPy) or `.pth`/`.pt` (needs the `torch` extra).

    Returns:
      key -> float32 NumPy array, keys as in the PyTorch module.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such state_dict file")
    if path.suffix == ".npz":
        with np.load(path) as data:
            return {k: np.asarray(data[k]) for k in data.files}
    if path.suffix in (".pth", ".pt"):
        try:
            import torch
        except ImportError as e:
            raise ImportError(f"{path}: reading a .pth file needs PyTorch (pip install 'maskgan_jax[torch]'), "
                              "or save the state_dict as .npz with numpy") from e
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, Mapping):
            raise ValueError(f"{path}: expected a state_dict (a mapping of names to tensors), got {type(state)}")
        return {k: v.detach().cpu().numpy() for k, v in state.items()}
    raise ValueError(f"{path}: expected a .npz or .pth state_dict file")


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
        raise KeyError(f"state_dict lacks {key!r}, needed to infer the generator's sizes")
    return tuple(state_dict[key].shape)


def infer_generator(state_dict: Mapping[str, np.ndarray]) -> DenseMappingNetwork:
    """Builds (through the registry) the DenseMappingNetwork whose sizes match the state_dict's tensor shapes."""
    ngf, num_classes = _shape(state_dict, "model.1.weight")[:2]
    sequential_convs = [k for k in state_dict if re.fullmatch(r"model\.\d+\.weight", k)]
    block_ids = {int(m.group(1)) for k in state_dict if (m := re.match(r"model\.(\d+)\.conv_block\.", k))}
    if not block_ids:
        raise KeyError("state_dict has no residual blocks (model.<i>.conv_block.*)")
    n_downsample = (min(block_ids) - 1) // 3 - 1
    n_encoder_deep = len({k.split(".")[2] for k in state_dict if k.startswith("enc_label.model_last.")})
    widths = tuple(_shape(state_dict, f"enc_label.model.{i}.conv.weight")[0] for i in range(3))
    last_conv = max(sequential_convs, key=lambda k: int(k.split(".")[1]))
    output_channels = state_dict[last_conv].shape[0]
    block = dict(name="dense_mapping_network", ngf=ngf, n_downsample=n_downsample, n_blocks=len(block_ids),
                 encoder_widths=widths, n_encoder_deep=n_encoder_deep, output_channels=output_channels)
    return registry.build(block, num_classes=num_classes, where="state_dict generator")


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
      ValueError naming every missing, unexpected or mis-shaped key.
    """
    module = infer_generator(state_dict)
    size = 4 * 2 ** module.n_encoder_deep * 2  # smallest input both encoders and the backbone accept
    size = max(size, 2 ** module.n_downsample)
    image = jax.ShapeDtypeStruct((1, size, size, module.output_channels), jnp.float32)
    mask = jax.ShapeDtypeStruct((1, size, size, module.num_classes), jnp.float32)
    abstract = jax.eval_shape(module.init, jax.random.key(0), image, mask, mask)["params"]
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
            misshaped.append(f"{key}: {tuple(np.shape(state_dict[key]))}")
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
        problems.append(f"mis-shaped keys (shape given; expected the layout of {module}): {misshaped}")
    if problems:
        raise ValueError("state_dict does not match the MaskGAN generator: " + "; ".join(problems))
    return module, {"params": flax.traverse_util.unflatten_dict(params)}
