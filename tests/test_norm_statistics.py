"""The editing modes of maskgan_jax.norm_statistics and the layer mechanism under them (layers.normalise)."""

import dataclasses

import jax
import ml_collections
import numpy as np
import pytest

from configs import ebst as ebst_config
from maskgan_jax import edit, evaluate
from maskgan_jax import norm_statistics as ns
from maskgan_jax.models import one_hot_mask
from maskgan_jax.models.layers import NORM_STATISTICS
from tfds_celebamask import labels

RESOLUTION = 64
HAT = labels.CLASS_ID["hat"]


@pytest.fixture(scope="module")
def network():
    """The smoke config's generator (64 px) at its initialisation."""
    module = edit.generator_from_config(ebst_config.get_config("smoke"))
    image = np.zeros((1, RESOLUTION, RESOLUTION, 3), np.float32)
    mask = np.zeros((1, RESOLUTION, RESOLUTION, labels.NUM_CLASSES), np.float32)
    variables = jax.jit(module.init)(jax.random.key(0), image, mask, mask)
    assert set(variables) == {"params"}  # initialising records no statistics
    return module, variables["params"]


@pytest.fixture(scope="module")
def faces():
    """Two of the benchmark's faces: a hair_longer edit (adds no class) and an add_hat edit (adds the hat)."""
    examples = [evaluate.held_out_examples(RESOLUTION, 1, edits=(kind,))[0] for kind in ("hair_longer", "add_hat")]
    stack = lambda field: np.stack([getattr(e, field) for e in examples]).astype(np.int32)
    return stack("target_image").astype(np.uint8), stack("target_labels"), stack("wanted_labels")


@pytest.fixture(scope="module")
def renders(network, faces):
    """Each mode's edits of `faces`, and the reconstructions (wanted = own mask) in each mode."""
    module, params = network
    images, labels_t, labels_src = faces
    run = jax.jit(lambda p, a, b, mode: edit.edit_images(module, p, images, a, b, 0, 0, mode)[0], static_argnums=3)
    edits = {mode: np.asarray(run(params, labels_t, labels_src, mode)) for mode in ns.MODES}
    reconstructions = {mode: np.asarray(run(params, labels_t, labels_t, mode)) for mode in ns.MODES}
    return edits, reconstructions


def test_recording_gives_one_mean_and_variance_per_normalisation_layer(network, faces):
    module, params = network
    images, labels_t, _ = faces
    mask = one_hot_mask(labels_t, module.num_classes)
    style = module.apply({"params": params}, images / 127.5 - 1.0, mask, None, style_only=True)
    _, recorded = module.apply({"params": params}, None, None, mask, style=style, mutable=[NORM_STATISTICS])
    leaves = jax.tree_util.tree_leaves_with_path(recorded[NORM_STATISTICS])
    # InstanceNorm after the stem and each down conv, AdaIN twice per residual block, IN after each up conv.
    layers = 1 + module.n_downsample + 2 * module.n_blocks + module.n_downsample
    assert len(leaves) == 2 * layers
    stem = recorded[NORM_STATISTICS]["down"]
    assert stem["norm_1_mean"].shape == stem["norm_1_var"].shape == (2, 1, 1, module.ngf)
    assert (np.asarray(stem["norm_1_var"]) >= 0).all()


def test_edit_mode_is_the_paper_network_unchanged(network, faces, renders):
    module, params = network
    images, labels_t, labels_src = faces
    one_hot = lambda m: one_hot_mask(m, module.num_classes)
    generated = module.apply({"params": params}, images / 127.5 - 1.0, one_hot(labels_t), one_hot(labels_src))
    expected = np.round(np.clip((np.asarray(generated, np.float64) + 1) * 127.5, 0, 255))
    assert np.abs(renders[0]["edit"].astype(np.float64) - expected).max() <= 1  # one jit vs eager: rounding


def test_reconstructions_agree_in_every_mode(renders):
    _, reconstructions = renders
    for mode in ("face", "face_unless_added"):
        assert np.abs(reconstructions[mode].astype(int) - reconstructions["edit"].astype(int)).max() <= 1, mode


def test_face_mode_changes_edits_and_face_unless_added_chooses_per_face(renders):
    edits, _ = renders
    # Face 0 (longer hair) adds no class: the face's statistics; face 1 (a hat) adds one: the edit's own.
    assert np.abs(edits["face"][0].astype(int) - edits["edit"][0].astype(int)).max() > 8
    np.testing.assert_array_equal(edits["face_unless_added"][0], edits["face"][0])
    np.testing.assert_array_equal(edits["face_unless_added"][1], edits["edit"][1])


def test_adds_class_on_known_masks(faces):
    _, labels_t, labels_src = faces
    np.testing.assert_array_equal(np.asarray(ns.adds_class(labels_t, labels_src, labels.NUM_CLASSES)), [False, True])
    one_pixel = labels_t.copy()
    one_pixel[0, 0, 0] = HAT  # a single pixel of a class counts
    assert not (labels_t[0] == HAT).any()
    np.testing.assert_array_equal(np.asarray(ns.adds_class(labels_t, one_pixel, labels.NUM_CLASSES)), [True, False])
    removed = np.where(labels_t == labels.CLASS_ID["hair"], labels.CLASS_ID["skin"], labels_t)  # only removes
    assert not np.asarray(ns.adds_class(labels_t, removed, labels.NUM_CLASSES)).any()


def test_config_mode_defaults_to_the_paper_and_names_a_bad_value():
    config = ebst_config.get_config()
    assert ns.config_mode(config) == "edit"
    del config["edit"]  # a run written before the field existed
    assert ns.config_mode(config) == "edit"
    with pytest.raises(ValueError, match=r"config.edit.norm_statistics='faces': expected one of"):
        ns.config_mode(ml_collections.ConfigDict({"edit": {"norm_statistics": "faces"}}))


def test_editor_follows_the_checkpoint_config_unless_told(network, faces, renders):
    module, params = network
    images, labels_t, labels_src = faces
    config = ebst_config.get_config("smoke")
    config.edit.norm_statistics = "face"
    mesh = edit.editing_mesh()
    loaded = edit.LoadedGenerator(module=module, params=params, resolution=RESOLUTION, config=config,
                                  step_dir=None, mesh=mesh)
    edits, _ = renders
    for told, mode in ((None, "face"), ("edit", "edit")):
        editor = edit.Editor(loaded, batch_size=2, norm_statistics=told)
        assert editor.norm_statistics == mode
        result, _ = editor.edit(images, labels_t, labels_src)
        assert np.abs(result.astype(int) - edits[mode].astype(int)).max() <= 1, mode
        # The encode-once path renders the same.
        style = editor.encode_style(images[0], labels_t[0])
        rendered, _ = editor.render(style, images[0], labels_t[0], labels_src[0])
        np.testing.assert_array_equal(rendered, result[0])
    with pytest.raises(ValueError, match="norm_statistics='source'"):
        edit.Editor(dataclasses.replace(loaded), norm_statistics="source")
