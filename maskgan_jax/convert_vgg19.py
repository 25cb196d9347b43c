"""ImageNet VGG19 weights (Keras h5 or torchvision state_dict) -> the ``.npz`` VGG19Features reads.

    python -m maskgan_jax.convert_vgg19 \
        --keras_h5=vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 --out=vgg19.npz
    python -m maskgan_jax.convert_vgg19 --torch_state_dict=vgg19-dcbb9e9d.pth --out=vgg19.npz

The output holds 'conv1_1/kernel' (3, 3, 3, 64) HWIO float32, 'conv1_1/bias' (64,), ... up to
conv5_1 (see ``models.vgg.vgg19_param_shapes``). Nothing is downloaded.

Keras files read (with h5py, no Keras needed):
- the official ``vgg19_weights_tf_dim_ordering_tf_kernels[_notop].h5`` and any legacy Keras h5
  (``model.save('x.h5')``, ``save_weights('x.h5')`` in Keras 2): one group per layer named
  ``block1_conv1`` ... (at the root or under ``model_weights/``), datasets such as
  ``block1_conv1/block1_conv1/kernel:0`` or ``block1_conv1/block1_conv1_W_1:0``;
- Keras 3 ``model.save_weights('x.weights.h5')``: ``layers/conv2d_<k>/vars/{0,1}``, the layer name
  in the ``name`` attribute of ``vars`` (when absent, layers are taken in their saved order);
- Keras 3 ``model.save('x.keras')``: the zip's ``model.weights.h5``, as above.
In every layout, a layer's kernel is its one 4-D dataset and its bias its one 1-D dataset.
Keras' ImageNet weights expect Caffe-style input: use ``VGG19Features(input_mode='caffe')``.

torchvision: a ``.pth`` state_dict (needs PyTorch) or an ``.npz`` of it, keys
``features.{0,2,5,7,10,12,14,16,19,21,23,25,28}.{weight,bias}``, weights OIHW (-> HWIO). The
reference loss is ``input_mode='raw'`` with these weights ('imagenet' is their training input).
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

import h5py
import numpy as np

from maskgan_jax.models.vgg import CONV_LAYERS, vgg19_param_shapes

#: torchvision ``vgg19().features`` index of each conv (ReLUs and pools sit between them).
TORCHVISION_FEATURE_INDEX = {
    "conv1_1": 0, "conv1_2": 2, "conv2_1": 5, "conv2_2": 7,
    "conv3_1": 10, "conv3_2": 12, "conv3_3": 14, "conv3_4": 16,
    "conv4_1": 19, "conv4_2": 21, "conv4_3": 23, "conv4_4": 25, "conv5_1": 28,
}

_KERAS_LAYER = re.compile(r"block([1-5])_conv([1-4])")
_KERAS3_CONV_GROUP = re.compile(r"conv2d(?:_(\d+))?")
_OPTIMIZER_GROUPS = ("optimizer_weights", "optimizer")  # legacy h5, Keras 3


def keras_layer_name(layer: str) -> str:
    """'conv3_2' -> 'block3_conv2' (the Keras applications name)."""
    block, index = layer[len("conv"):].split("_")
    return f"block{block}_conv{index}"


def _decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _keras_layer_of(h5: h5py.File, dataset_path: str) -> str | None:
    """The Keras layer a dataset belongs to: the nearest ancestor group named ``blockB_convC``
    or whose ``name`` attribute is (Keras 3 ``vars`` groups)."""
    parts = dataset_path.split("/")[:-1]
    for depth in range(len(parts), 0, -1):
        if _KERAS_LAYER.fullmatch(parts[depth - 1]):
            return parts[depth - 1]
        name_attr = h5["/".join(parts[:depth])].attrs.get("name")
        if name_attr is not None and _KERAS_LAYER.fullmatch(_decode(name_attr)):
            return _decode(name_attr)
    return None


def _datasets_by_layer(h5: h5py.File) -> dict[str, list[tuple[str, np.ndarray]]]:
    """{'block1_conv1': [(dataset path, array), ...], ...} for every named conv layer."""
    found: dict[str, list[tuple[str, np.ndarray]]] = {}

    def visit(path: str, obj: Any) -> None:
        # Optimiser slots (legacy 'optimizer_weights/...', Keras 3 'optimizer/...') mirror the
        # layer shapes; they are not weights.
        if not isinstance(obj, h5py.Dataset) or path.split("/")[0] in _OPTIMIZER_GROUPS:
            return
        layer = _keras_layer_of(h5, path)
        if layer is not None:
            found.setdefault(layer, []).append((path, obj[()]))

    h5.visititems(visit)
    return found


def _keras3_unnamed_layers(h5: h5py.File) -> dict[str, list[tuple[str, np.ndarray]]]:
    """Keras 3 ``.weights.h5`` without layer names: ``layers/conv2d``, ``layers/conv2d_1``, ...
    are numbered in the model's layer order, which for VGG19 is block1_conv1, block1_conv2, ..."""
    if "layers" not in h5:
        return {}
    numbered = []
    for group_name in h5["layers"]:
        match = _KERAS3_CONV_GROUP.fullmatch(group_name)
        if match and "vars" in h5["layers"][group_name]:
            numbered.append((int(match.group(1) or 0), group_name))
    keras_names = [f"block{b}_conv{i}" for b, n in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4))
                   for i in range(1, n + 1)]
    found = {}
    for (_, group_name), keras_name in zip(sorted(numbered), keras_names):
        variables = h5["layers"][group_name]["vars"]
        found[keras_name] = [(f"layers/{group_name}/vars/{key}", variables[key][()])
                             for key in variables]
    return found


def _open_keras_weights(path: str) -> h5py.File:
    """h5py handle on a Keras h5 file, or on the ``model.weights.h5`` inside a ``.keras`` zip."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if "model.weights.h5" not in archive.namelist():
                raise ValueError(f"{path!r} is a zip but has no 'model.weights.h5' (has "
                                 f"{archive.namelist()}); expected a Keras 3 .keras file")
            return h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r")
    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise FileNotFoundError(f"Keras weights file {path!r} does not exist") from None
    except OSError as error:
        raise ValueError(f"{path!r} is not an HDF5 file ({error}); expected Keras VGG19 "
                         "weights (.h5, .weights.h5 or .keras)") from None


def from_keras_h5(path: str) -> dict[str, np.ndarray]:
    """Reads Keras VGG19 weights (any layout in the module docstring) into the npz dict.

    Returns {'conv1_1/kernel': (3, 3, 3, 64) float32 HWIO, 'conv1_1/bias': (64,), ...} for the
    13 convs up to conv5_1 (Keras kernels are already HWIO). Raises ValueError naming the file
    and the layer that is missing, ambiguous or misshaped.
    """
    with _open_keras_weights(path) as h5:
        found = _datasets_by_layer(h5) or _keras3_unnamed_layers(h5)
    arrays = {}
    for layer, _, _ in CONV_LAYERS:
        keras_name = keras_layer_name(layer)
        if keras_name not in found:
            raise ValueError(f"Keras weights file {path!r} has no layer {keras_name!r} (found "
                             f"layers {sorted(found)}); expected a Keras VGG19 weights file")
        entries = found[keras_name]
        for kind, ndim in (("kernel", 4), ("bias", 1)):
            matches = [(p, a) for p, a in entries if a.ndim == ndim]
            if len(matches) != 1:
                raise ValueError(f"Keras weights file {path!r}: layer {keras_name!r} has "
                                 f"{len(matches)} {ndim}-D datasets {[p for p, _ in matches]}; "
                                 f"expected exactly one {kind}")
            arrays[f"{layer}/{kind}"] = matches[0][1]
    return _checked(arrays, f"Keras weights file {path!r}")


def from_torchvision_state_dict(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """torchvision ``vgg19().state_dict()`` (tensors or arrays) -> the npz dict.

    Reads ``features.<i>.weight`` (O, I, 3, 3) and ``features.<i>.bias`` (O,) for the 13 convs up
    to conv5_1 (indices in ``TORCHVISION_FEATURE_INDEX``; other keys are ignored) and returns
    {'conv1_1/kernel': (3, 3, I, O) float32 HWIO, 'conv1_1/bias': (O,), ...}.
    """
    arrays = {}
    for layer, index in TORCHVISION_FEATURE_INDEX.items():
        for kind, torch_kind in (("kernel", "weight"), ("bias", "bias")):
            key = f"features.{index}.{torch_kind}"
            if key not in state_dict:
                raise ValueError(f"torchvision state_dict has no key {key!r} ({layer}); expected "
                                 f"a torchvision vgg19 state_dict (keys 'features.<i>.weight')")
            value = state_dict[key]
            if hasattr(value, "detach"):  # a torch.Tensor
                value = value.detach().cpu().numpy()
            value = np.asarray(value)
            if kind == "kernel":
                if value.ndim != 4:
                    raise ValueError(f"torchvision state_dict key {key!r} has shape {value.shape}; "
                                     "expected a 4-D OIHW conv weight")
                value = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
            arrays[f"{layer}/{kind}"] = value
    return _checked(arrays, "torchvision state_dict")


def load_torchvision_state_dict(path: str) -> Mapping[str, Any]:
    """A torchvision state_dict from ``.npz`` (NumPy only) or ``.pth``/``.pt`` (needs PyTorch)."""
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    try:
        import torch
    except ImportError:
        raise ImportError(f"reading {path!r} needs PyTorch (`pip install torch`, or the 'torch' "
                          "extra); alternatively save the state_dict as .npz elsewhere with "
                          "`np.savez(out, **{k: v.numpy() for k, v in sd.items()})`") from None
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"{path!r} holds a {type(state_dict).__name__}, expected a state_dict")
    return state_dict


def _checked(arrays: dict[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
    """Casts to float32 after checking every shape against VGG19's."""
    for layer, shapes in vgg19_param_shapes().items():
        for kind, expected_shape in shapes.items():
            key = f"{layer}/{kind}"
            if arrays[key].shape != expected_shape:
                raise ValueError(f"{source}: {key} has shape {arrays[key].shape} after conversion; "
                                 f"expected {expected_shape} (HWIO)")
            arrays[key] = np.asarray(arrays[key], dtype=np.float32)
    return arrays


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maskgan_jax.convert_vgg19",
                                     description=__doc__.split("\n", 1)[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--keras_h5", help="Keras VGG19 weights: .h5, .weights.h5 or .keras")
    source.add_argument("--torch_state_dict", help="torchvision vgg19 state_dict: .pth or .npz")
    parser.add_argument("--out", required=True, help="output .npz path")
    args = parser.parse_args(argv)
    if args.keras_h5:
        arrays, input_mode = from_keras_h5(args.keras_h5), "caffe"
    else:
        arrays = from_torchvision_state_dict(load_torchvision_state_dict(args.torch_state_dict))
        input_mode = "raw (reference) or imagenet"
    out = args.out if args.out.endswith(".npz") else args.out + ".npz"  # np.savez would add it
    np.savez(out, **arrays)
    print(f"wrote {len(arrays)} arrays ({sum(a.size for a in arrays.values()):,} parameters) to "
          f"{out}; matching VGG19Features input_mode: {input_mode}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
