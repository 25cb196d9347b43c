"""The frozen VGG19 feature network of the perceptual loss (pix2pixHD ``Vgg19``), NHWC.

Only the layers up to ``conv5_1`` exist (13 convolutions, 12,944,960 parameters): the perceptual
loss reads relu1_1, relu2_1, relu3_1, relu4_1 and relu5_1, and nothing deeper.

Parameters are never trained. They come from a local ``.npz`` written by
``python -m maskgan_jax.convert_vgg19`` (from Keras' or torchvision's ImageNet VGG19) and are read
with :func:`load_vgg19_params`. "Frozen" is enforced twice: the parameters are never part of an
optimiser's state (train states keep them as a separate constant pytree), and
``losses.vgg_perceptual_loss`` wraps them in ``jax.lax.stop_gradient``, so their gradient is exactly
zero even when a caller differentiates with respect to them.

Input convention (``VGG19Features.input_mode``), images always arrive in [-1, 1] RGB:
- ``'raw'`` (default, faithful to the reference): the images go into the first convolution as
  given. MaskGAN/pix2pixHD feed [-1, 1] images to torchvision's VGG19 without ImageNet
  normalisation; use this with torchvision-converted weights to reproduce the reference loss.
- ``'imagenet'``: [-1, 1] -> [0, 1] -> (x - mean) / std with torchvision's ImageNet mean/std,
  the input these weights were trained on (torchvision-converted weights).
- ``'caffe'``: [-1, 1] -> [0, 255], RGB -> BGR, minus the Caffe BGR means (no std): the input
  Keras' ``VGG19(weights='imagenet')`` weights were trained on (``preprocess_input`` 'caffe' mode).
  Use this with Keras-converted weights; with 'imagenet' their activations would be off by ~60x.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from maskgan_jax.models.weights_file import read_npz_weights

# (block, number of 3x3 convs kept in that block); a 2x2/2 max-pool precedes blocks 2..5.
_BLOCK_CONVS = ((1, 2), (2, 2), (3, 4), (4, 4), (5, 1))
_BLOCK_CHANNELS = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}

#: Names of the returned activations, in the order of the tuple ``VGG19Features`` returns.
FEATURE_NAMES = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

INPUT_MODES = ("raw", "imagenet", "caffe")
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def _conv_layers() -> tuple[tuple[str, int, int], ...]:
    """(name, in_channels, out_channels) of the 13 convs, e.g. ('conv3_2', 256, 256)."""
    layers, in_channels = [], 3
    for block, n_convs in _BLOCK_CONVS:
        for index in range(1, n_convs + 1):
            layers.append((f"conv{block}_{index}", in_channels, _BLOCK_CHANNELS[block]))
            in_channels = _BLOCK_CHANNELS[block]
    return tuple(layers)


#: (name, in_channels, out_channels) of every conv, in network order: conv1_1 ... conv5_1.
CONV_LAYERS = _conv_layers()


def vgg19_param_shapes() -> dict[str, dict[str, tuple[int, ...]]]:
    """Expected shapes: {'conv1_1': {'kernel': (3, 3, 3, 64), 'bias': (64,)}, ...} (HWIO)."""
    return {name: {"kernel": (3, 3, cin, cout), "bias": (cout,)} for name, cin, cout in CONV_LAYERS}


def preprocess_input(images: jax.Array, input_mode: str) -> jax.Array:
    """Maps images (..., 3) RGB in [-1, 1] to the input the VGG19 weights expect.

    See the module docstring for the three modes. Returns an array of the same shape
    (channels reversed to BGR for 'caffe').
    """
    if input_mode == "raw":
        return images
    if input_mode == "imagenet":
        unit = (images + 1.0) * 0.5
        return (unit - jnp.asarray(IMAGENET_MEAN_RGB, images.dtype)) / jnp.asarray(
            IMAGENET_STD_RGB, images.dtype)
    if input_mode == "caffe":
        bgr_255 = (images[..., ::-1] + 1.0) * 127.5
        return bgr_255 - jnp.asarray(CAFFE_MEAN_BGR, images.dtype)
    raise ValueError(f"VGG19Features.input_mode={input_mode!r}; expected one of {INPUT_MODES}")


class VGG19Features(nn.Module):
    """VGG19 up to relu5_1; returns (relu1_1, relu2_1, relu3_1, relu4_1, relu5_1).

    Input: images (N, H, W, 3), RGB in [-1, 1] (mapped by ``input_mode``, see module docstring).
    Output: a tuple of 5 arrays in ``FEATURE_NAMES`` order, shapes
    (N, H, W, 64), (N, H/2, W/2, 128), (N, H/4, W/4, 256), (N, H/8, W/8, 512), (N, H/16, W/16, 512)
    (pooling floors odd sizes, as torchvision and Keras do). All values >= 0 (post-ReLU).
    Params: {'conv1_1': {'kernel': (3, 3, 3, 64), 'bias': (64,)}, ..., 'conv5_1': ...}, the tree
    :func:`load_vgg19_params` returns; apply with ``module.apply({'params': params}, images)``.
    """

    input_mode: str = "raw"
    dtype: Any = None  # computation dtype (e.g. jnp.bfloat16); parameters stay float32

    @nn.compact
    def __call__(self, images: jax.Array) -> tuple[jax.Array, ...]:
        x = preprocess_input(images, self.input_mode)
        features = []
        for block, n_convs in _BLOCK_CONVS:
            if block > 1:
                x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
            for index in range(1, n_convs + 1):
                # Zero padding 1 = torchvision's padding=1 = Keras' padding='same' for 3x3/1.
                x = nn.Conv(_BLOCK_CHANNELS[block], (3, 3), padding=((1, 1), (1, 1)),
                            dtype=self.dtype, name=f"conv{block}_{index}")(x)
                x = nn.relu(x)
                if index == 1:
                    features.append(x)
        return tuple(features)


_CONVERTER_HINT = ("make it with `python -m maskgan_jax.convert_vgg19 --keras_h5=PATH --out=X.npz` "
                   "or `--torch_state_dict=PATH --out=X.npz`")


def load_vgg19_params(path: str) -> dict[str, dict[str, np.ndarray]]:
    """Reads VGG19 parameters from a local ``.npz`` written by ``maskgan_jax.convert_vgg19``.

    The file holds float arrays under keys 'conv1_1/kernel' (3, 3, 3, 64) HWIO, 'conv1_1/bias'
    (64,), ... 'conv5_1/bias' (512,); other keys are ignored. Returns the parameter tree of
    :class:`VGG19Features` as float32 NumPy arrays (place them on devices as you like).
    Raises FileNotFoundError / ValueError naming the file, the key and what was expected.
    """
    shapes = vgg19_param_shapes()
    expected = {f"{layer}/{kind}": shape for layer, kinds in shapes.items() for kind, shape in kinds.items()}
    arrays = read_npz_weights(path, expected, "VGG19 weights file", f"(HWIO kernels) {_CONVERTER_HINT}")
    return {layer: {kind: arrays[f"{layer}/{kind}"] for kind in kinds} for layer, kinds in shapes.items()}
