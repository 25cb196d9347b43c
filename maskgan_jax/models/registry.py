"""Every network by name: `config.model.<role>.name` picks a flax module class, the block's other
fields are its constructor arguments, and `build_network` is the one place that instantiates it.

Adding a network is one module file, one `REGISTRY` line and one config block:

    config.model.parser = dict(name="unet", width=32, depth=4)
    REGISTRY["unet"] = NetworkSpec(UNet, init_inputs=_one_image)

Fields the whole run shares (`num_classes`, `resolution`, the compute `dtype`) are passed to every
class that declares them, so blocks hold only what is particular to one network.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from maskgan_jax.models.blender import AlphaBlender
from maskgan_jax.models.classifier import AttributeClassifier
from maskgan_jax.models.discriminator import MultiScaleDiscriminator
from maskgan_jax.models.generator import DenseMappingNetwork
from maskgan_jax.models.mask_vae import MaskVAE
from maskgan_jax.models.parser import UNet

# (module, resolution, num_classes) -> (positional args, keyword args) of the module's __call__ that
# `init` traces: zero batches of one example at the training size.
InitInputs = Callable[[nn.Module, int, int], tuple[tuple[Any, ...], dict[str, Any]]]


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
    """A registered network.

    cls: the flax module class. init_inputs: the example call `init` traces (see InitInputs).
    rng_streams: the PRNG streams `init` needs; the network's init key is split into one per stream.
    """

    cls: type[nn.Module]
    init_inputs: InitInputs
    rng_streams: tuple[str, ...] = ("params",)


def _image(resolution: int) -> jax.Array:
    return jnp.zeros((1, resolution, resolution, 3), jnp.float32)


def _mask(resolution: int, num_classes: int) -> jax.Array:
    return jnp.zeros((1, resolution, resolution, num_classes), jnp.float32)


def _generator_inputs(module, resolution, num_classes):
    del module
    return (_image(resolution), _mask(resolution, num_classes), _mask(resolution, num_classes)), {}


def _discriminator_inputs(module, resolution, num_classes):
    del module
    return (jnp.zeros((1, resolution, resolution, num_classes + 3), jnp.float32),), {}


def _mask_vae_inputs(module, resolution, num_classes):
    del module
    return (_mask(resolution, num_classes),), {"train": False}


def _blender_inputs(module, resolution, num_classes):
    del module, num_classes
    return (_image(resolution), _image(resolution)), {}


def _parser_inputs(module, resolution, num_classes):
    del module, num_classes
    return (_image(resolution),), {}


REGISTRY: dict[str, NetworkSpec] = {
    "dense_mapping_network": NetworkSpec(DenseMappingNetwork, _generator_inputs),
    "multiscale_patchgan": NetworkSpec(MultiScaleDiscriminator, _discriminator_inputs),
    "mask_vae": NetworkSpec(MaskVAE, _mask_vae_inputs, rng_streams=("params", "reparam")),
    "alpha_blender": NetworkSpec(AlphaBlender, _blender_inputs),
    "unet": NetworkSpec(UNet, _parser_inputs),
    "attribute_classifier": NetworkSpec(AttributeClassifier, _parser_inputs),
}

COMPUTE_DTYPES = ("float32", "bfloat16")


def compute_dtype(name: str) -> jnp.dtype:
    """'float32' or 'bfloat16' (config.model.compute_dtype) -> the dtype networks compute in."""
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"config.model.compute_dtype: expected one of {COMPUTE_DTYPES}, got {name!r}")
    return jnp.dtype(name)


def spec(config: ml_collections.ConfigDict, role: str) -> NetworkSpec:
    """The registered network that `config.model.<role>.name` names."""
    if role not in config.model or not isinstance(config.model[role], ml_collections.ConfigDict):
        raise KeyError(f"config.model has no network block {role!r}")
    name = config.model[role].get("name")
    if name not in REGISTRY:
        raise ValueError(f"config.model.{role}.name: unknown network {name!r}; registered: {sorted(REGISTRY)}")
    return REGISTRY[name]


def build_network(config: ml_collections.ConfigDict, role: str, dtype: str | None = None) -> nn.Module:
    """Instantiates the network of block `config.model.<role>`.

    Args:
      config: a run config (`model.<role>`, `num_classes`, `resolution`, `model.compute_dtype`).
      role: the block's name, e.g. 'generator', 'discriminator', 'mask_vae', 'blender', 'classifier'.
      dtype: compute dtype name overriding `config.model.compute_dtype` (inference may differ).
    Raises:
      ValueError: an unknown class name, or a block field the class does not take (named).
    """
    spec(config, role)  # a missing block or unknown name is reported with the block's path
    return build(config.model[role], num_classes=config.num_classes, resolution=config.resolution,
                 dtype=dtype or config.model.compute_dtype, where=f"config.model.{role}")


def build(block: Mapping[str, Any], *, num_classes: int, resolution: int | None = None,
          dtype: str = "float32", where: str = "block") -> nn.Module:
    """Instantiates the network of one block ({'name': registered name, **constructor fields}) outside
    a run config (converters, benchmarks). `where` names the block in errors; `resolution` None leaves
    the class default (networks that are resolution-agnostic do not declare it)."""
    name = block.get("name")
    if name not in REGISTRY:
        raise ValueError(f"{where}.name: unknown network {name!r}; registered: {sorted(REGISTRY)}")
    cls = REGISTRY[name].cls
    declared = {field.name for field in dataclasses.fields(cls)} - {"name", "parent"}
    # Lists come back from JSON (checkpointed configs) and the command line; modules hash their fields.
    fields = {key: tuple(value) if isinstance(value, list) else value for key, value in block.items() if key != "name"}
    unknown = sorted(set(fields) - declared)
    if unknown:
        raise ValueError(f"{where}: {cls.__name__} has no field(s) {unknown}; its fields: {sorted(declared)}")
    shared = {"num_classes": num_classes, "resolution": resolution, "dtype": compute_dtype(dtype)}
    shared = {key: value for key, value in shared.items() if key in declared and value is not None}
    return cls(**shared, **fields)


def init_variables(config: ml_collections.ConfigDict, role: str, module: nn.Module,
                   rng: jax.Array) -> dict[str, Any]:
    """Initial variables of `module` (built for `role`) from `rng`, traced at the run's resolution."""
    network = spec(config, role)
    args, kwargs = network.init_inputs(module, config.resolution, config.num_classes)
    if len(network.rng_streams) == 1:
        rngs = {network.rng_streams[0]: rng}
    else:
        rngs = dict(zip(network.rng_streams, jax.random.split(rng, len(network.rng_streams))))
    return module.init(rngs, *args, **kwargs)
