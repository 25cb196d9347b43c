"""Importing the public PyTorch generator: the fixture is the public code's own output."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maskgan_jax.convert import from_official_generator, load_state_dict
from maskgan_jax.models import one_hot_mask

FIXTURE = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def state_dict():
    return load_state_dict(FIXTURE / "state_dict.npz")


def test_imported_generator_reproduces_public_output(state_dict):
    module, variables = from_official_generator(state_dict)
    info = json.loads((FIXTURE / "info.json").read_text())
    assert (module.ngf, module.n_downsample, module.n_blocks) == (info["ngf"], info["n_downsample"], info["n_blocks"])
    io = np.load(FIXTURE / "io.npz")
    out = module.apply(variables, jnp.asarray(io["image_t"]), one_hot_mask(io["mask_t"]), one_hot_mask(io["mask_src"]))
    assert float(np.max(np.abs(np.asarray(out) - io["output"]))) < 1e-4
    assert float(np.max(np.abs(np.asarray(out) - io["output_fp64"]))) < 1e-4


def test_imported_parameter_count_matches_reference(state_dict):
    _, variables = from_official_generator(state_dict)
    info = json.loads((FIXTURE / "info.json").read_text())
    running_buffers = sum(v.size for k, v in state_dict.items() if "running_" in k)
    count = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(variables))
    assert count == info["params"]
    assert count + running_buffers == sum(v.size for v in state_dict.values())


def test_rejects_missing_unexpected_and_misshaped_keys(state_dict):
    broken = dict(state_dict)
    del broken["enc_style.sft1.SFT_scale_conv1.bias"]
    broken["extra.weight"] = np.zeros(3)
    broken["model.33.bias"] = np.zeros(4)
    with pytest.raises(ValueError) as info:
        from_official_generator(broken)
    message = str(info.value)
    assert "missing keys: ['enc_style.sft1.SFT_scale_conv1.bias']" in message
    assert "unexpected keys: ['extra.weight']" in message
    assert "model.33.bias: (4,)" in message


def test_load_state_dict_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        load_state_dict(tmp_path / "nothing.npz")
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"expected a \.npz or \.pth"):
        load_state_dict(tmp_path / "weights.bin")
