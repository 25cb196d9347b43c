"""The network registry: every config block builds its class, errors name the block, and a new
network is one registry line and one config block."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from configs import ebst
from maskgan_jax import state as state_lib
from maskgan_jax.models import (AlphaBlender, AttributeClassifier, DenseMappingNetwork, MaskVAE,
                                MultiScaleDiscriminator, UNet, registry)


def test_every_block_builds_its_class_with_the_run_fields():
    config = ebst.get_config("smoke")
    config.model.compute_dtype = "bfloat16"
    networks = state_lib.build_networks(config)
    expected = {"generator": DenseMappingNetwork, "discriminator": MultiScaleDiscriminator,
                "mask_vae": MaskVAE, "blender": AlphaBlender, "parser": UNet, "classifier": AttributeClassifier}
    for role, cls in expected.items():
        module = getattr(networks, role)
        assert type(module) is cls, role
        assert module.dtype == jnp.bfloat16, role
        for field, value in config.model[role].items():
            if field != "name":
                assert getattr(module, field) == (tuple(value) if isinstance(value, list) else value), (role, field)
    assert networks.generator.num_classes == config.num_classes
    assert (networks.mask_vae.num_classes, networks.mask_vae.resolution) == (config.num_classes, config.resolution)


def test_dtype_argument_overrides_the_config():
    config = ebst.get_config("smoke")
    assert registry.build_network(config, "generator", dtype="bfloat16").dtype == jnp.bfloat16
    with pytest.raises(ValueError, match="compute_dtype.*float16"):
        registry.build_network(config, "generator", dtype="float16")


def test_bad_blocks_are_named():
    config = ebst.get_config("smoke")
    config.model.discriminator.name = "stylegan"
    with pytest.raises(ValueError, match=r"config.model.discriminator.name: unknown network 'stylegan'"):
        registry.build_network(config, "discriminator")
    config = ebst.get_config("smoke")
    config.model.blender.depth = 3
    with pytest.raises(ValueError, match=r"config.model.blender: AlphaBlender has no field\(s\) \['depth'\]"):
        registry.build_network(config, "blender")
    with pytest.raises(KeyError, match="no network block 'segmenter'"):
        registry.build_network(config, "segmenter")


class _TinyParser(nn.Module):
    """A stand-in for a new network: image (N, H, W, 3) -> class logits (N, H, W, num_classes)."""

    num_classes: int = 19
    width: int = 4
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, image):
        return nn.Conv(self.num_classes, (1, 1), dtype=self.dtype)(nn.relu(nn.Conv(self.width, (3, 3))(image)))


def test_a_new_network_is_one_registry_line_and_one_config_block(monkeypatch):
    monkeypatch.setitem(registry.REGISTRY, "tiny_parser", registry.NetworkSpec(
        _TinyParser, init_inputs=lambda module, resolution, num_classes: (
            (jnp.zeros((1, resolution, resolution, 3)),), {})))
    config = ebst.get_config("smoke")
    config.model.segmenter = dict(name="tiny_parser", width=8)
    module = registry.build_network(config, "segmenter")
    assert dataclasses.astuple(module)[:2] == (config.num_classes, 8)
    variables = registry.init_variables(config, "segmenter", module, jax.random.key(0))
    logits = module.apply(variables, jnp.zeros((2, config.resolution, config.resolution, 3)))
    assert logits.shape == (2, config.resolution, config.resolution, config.num_classes)


def test_init_variables_splits_the_key_over_the_networks_streams():
    config = ebst.get_config("smoke")
    module = registry.build_network(config, "mask_vae")
    rng = jax.random.key(3)
    params_rng, reparam_rng = jax.random.split(rng)
    x = jnp.zeros((1, config.resolution, config.resolution, config.num_classes))
    expected = module.init({"params": params_rng, "reparam": reparam_rng}, x, train=False)
    got = registry.init_variables(config, "mask_vae", module, rng)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), expected, got))
