"""Tiny checkpoints for the inference tests (the painter's, the README's edit commands): the smoke
config's generator, MaskVAE and parser, freshly initialised, in a workdir (as after `make quickstart`,
at smoke sizes)."""

import base64
import io

import jax
import numpy as np
from PIL import Image

from configs import ebst as ebst_config
from maskgan_jax import checkpoint
from maskgan_jax.models import registry
from maskgan_jax.state import NetState


def _save(workdir, phase, config, networks, step=1):
    manager = checkpoint.create_manager(workdir, phase, config.checkpoint, every_steps=1)
    checkpoint.save(manager, step, networks, {"step": np.int32(step)}, None, config, force=True)
    checkpoint.wait(manager)
    manager.close()


def _fresh_state(config, role, seed):
    module = registry.build_network(config, role)
    variables = jax.jit(lambda key: registry.init_variables(config, role, module, key))(jax.random.key(seed))
    return NetState(params=variables["params"], opt_state=None, batch_stats=variables.get("batch_stats", {}))


def make_workdir(root, with_mask_vae=True, with_parser=False, name="workdir"):
    """root/name with checkpoints/dmn (generator) and, optionally, checkpoints/maskvae and parser (the
    parser and the attribute classifier, as the parser phase saves them)."""
    config = ebst_config.get_config("smoke")
    workdir = root / name
    if with_mask_vae:
        _save(workdir, "maskvae", config, {"mask_vae": _fresh_state(config, "mask_vae", 1)})
    if with_parser:
        _save(workdir, "parser", config, {"parser": _fresh_state(config, "parser", 3),
                                          "classifier": _fresh_state(config, "classifier", 4)})
    _save(workdir, "dmn", config, {"generator": _fresh_state(config, "generator", 2)})
    return workdir


def png_b64(array, mode=None):
    """uint8 array -> base64 of its PNG (what the page sends)."""
    buffer = io.BytesIO()
    image = Image.fromarray(np.asarray(array, np.uint8))
    (image.convert(mode) if mode else image).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def mask_of(state):
    """The mask in a state answer: uint8 (H, W)."""
    return np.frombuffer(base64.b64decode(state["mask"]), np.uint8).reshape(state["height"], state["width"])


def result_of(state):
    """The result in a state answer: uint8 (H, W, 3)."""
    payload = state["result"].split(",", 1)[1]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB"))
