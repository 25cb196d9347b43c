"""maskgan_jax.style_hiding and its use in the reconstruction step (DMN, EBST stage 1)."""

import jax
import numpy as np
import pytest

from configs import ebst
from maskgan_jax import state as state_lib
from maskgan_jax import steps as steps_lib
from maskgan_jax import style_hiding
from tfds_celebamask import labels

HAT, HAIR = labels.CLASS_ID["hat"], labels.CLASS_ID["hair"]


def _faces(num=4, size=8, seed=0):
    rng = np.random.default_rng(seed)
    label_map = rng.choice([labels.CLASS_ID["skin"], HAIR, HAT], size=(num, size, size)).astype(np.int32)
    return rng.uniform(-1, 1, (num, size, size, 3)).astype(np.float32), label_map


def test_hidden_pixels_become_background_in_the_mean_colour_of_the_rest():
    image, label_map = _faces()
    hidden_image, hidden_labels = map(np.asarray, style_hiding.hide_classes(image, label_map, (HAT,), 1.0,
                                                                             jax.random.key(0)))
    hat = label_map == HAT
    assert hat.any(axis=(1, 2)).all()
    np.testing.assert_array_equal(hidden_labels[hat], labels.CLASS_ID["background"])
    np.testing.assert_array_equal(hidden_labels[~hat], label_map[~hat])
    np.testing.assert_array_equal(hidden_image[~hat], image[~hat])
    for n in range(len(image)):
        expected = image[n][~hat[n]].mean(axis=0)
        np.testing.assert_allclose(hidden_image[n][hat[n]], np.broadcast_to(expected, (hat[n].sum(), 3)),
                                   rtol=1e-5, atol=1e-6)


def test_rate_chooses_whole_faces_reproducibly():
    image, label_map = _faces(num=400)
    key = jax.random.key(3)
    _, first = style_hiding.hide_classes(image, label_map, (HAT,), 0.25, key)
    _, again = style_hiding.hide_classes(image, label_map, (HAT,), 0.25, key)
    np.testing.assert_array_equal(first, again)
    chosen = ~(np.asarray(first) == label_map).all(axis=(1, 2))
    # Every face holds hat pixels: a chosen face has lost all of them, an unchosen one none.
    assert not (np.asarray(first)[chosen] == HAT).any()
    assert 0.18 < chosen.mean() < 0.32  # 100 +- 8.7 of 400: far inside
    for ids, rate in (((), 1.0), ((HAT,), 0.0)):
        same_image, same_labels = style_hiding.hide_classes(image, label_map, ids, rate, key)
        assert same_image is image and same_labels is label_map


def test_unknown_class_is_named():
    assert style_hiding.class_ids(("hat", "eye_g")) == (HAT, labels.CLASS_ID["eye_g"])
    with pytest.raises(ValueError, match=r"config.data.style_hiding.classes: unknown class 'hats'"):
        style_hiding.class_ids(("hats",))


def test_applies_per_phase_and_names_bad_fields():
    hiding = ebst.get_config("smoke").data.style_hiding
    assert not style_hiding.applies(hiding, "dmn")  # off by default
    hiding.update(dict(classes=("hat",), rate=0.5, phases=("ebst",)))
    assert style_hiding.applies(hiding, "ebst") and not style_hiding.applies(hiding, "dmn")
    hiding.phases = ("dmn", "parser")
    with pytest.raises(ValueError, match=r"config.data.style_hiding.phases: unknown phase 'parser'"):
        style_hiding.applies(hiding, "dmn")
    hiding.update(dict(phases=("dmn",), rate=1.5))
    with pytest.raises(ValueError, match=r"config.data.style_hiding.rate: 1.5 is not a probability"):
        style_hiding.applies(hiding, "dmn")


def _dmn_update(config, networks, batch):
    """The generator's parameters after one DMN step from the seed-0 initialisation (1 device)."""
    tx = state_lib.optimizer(config.phases.dmn)
    step = jax.jit(steps_lib.make_dmn_step(networks, config, tx, tx))
    states = {name: state_lib.new_net_state(state_lib.init_variables(name, networks, config,
                                                                      state_lib.init_rng(name, config)), tx)
              for name in ("generator", "discriminator")}
    new, guard, _ = step(states, steps_lib.Guard.create(), batch, np.int32(3), None)
    assert int(guard.first_bad_step) == -1
    return jax.device_get(new["generator"].params)


def test_the_step_hides_classes_from_the_style_encoder_only_when_present():
    config = ebst.get_config("smoke")
    networks = state_lib.build_networks(config)
    image, label_map = _faces(num=2, size=config.resolution)
    no_hat = np.where(label_map == HAT, HAIR, label_map)
    trees = {}
    for classes, rate in (((), 0.0), (("hat",), 1.0)):
        config.data.style_hiding.update(dict(classes=classes, rate=rate))
        for name, masks in (("hat", label_map), ("no hat", no_hat)):
            trees[(rate, name)] = _dmn_update(config, networks, {"image": image, "mask": masks})
    differs = lambda a, b: any(not np.array_equal(x, y) for x, y in
                               zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))
    assert differs(trees[(0.0, "hat")], trees[(1.0, "hat")])
    assert not differs(trees[(0.0, "no hat")], trees[(1.0, "no hat")])
    # Hiding named for EBST only leaves the DMN phase's step as the paper's.
    config.data.style_hiding.phases = ("ebst",)
    assert not differs(trees[(0.0, "hat")], _dmn_update(config, networks, {"image": image, "mask": label_map}))

