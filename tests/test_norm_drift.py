"""benchmarks.norm_drift: the statistics swap on the smoke generator, whose layers are known."""

import jax
import numpy as np
import pytest

from configs import ebst as ebst_config
from maskgan_jax import edit, evaluate
from maskgan_jax.benchmarks import norm_drift
from maskgan_jax.models import generator, pix2pixhd
from tfds_celebamask import labels

RESOLUTION = 64


@pytest.fixture(scope="module")
def network():
    config = ebst_config.get_config("smoke")
    module = edit.generator_from_config(config)
    image = np.zeros((1, RESOLUTION, RESOLUTION, 3), np.float32)
    mask = np.zeros((1, RESOLUTION, RESOLUTION, labels.NUM_CLASSES), np.float32)
    params = jax.jit(module.init)(jax.random.key(0), image, mask, mask)["params"]
    return module, params


@pytest.fixture(scope="module")
def faces():
    """Two of the benchmark's hair_longer edits: faces, their masks, the wanted masks."""
    examples = evaluate.held_out_examples(RESOLUTION, 2, edits=("hair_longer",))
    stack = lambda field: np.stack([getattr(e, field) for e in examples])
    return stack("target_image"), stack("target_labels").astype(np.int32), stack("wanted_labels").astype(np.int32)


def test_one_statistic_per_normalisation_layer_and_edits_change_only_through_them(network, faces):
    module, params = network
    images, label_maps, wanted = faces
    statistics = norm_drift.NormStatistics()
    with norm_drift.normalisation_from(statistics):
        np.asarray(edit.edit_images(module, params, images, label_maps, wanted, 0, 0)[0])
    # InstanceNorm after the stem and each down conv, AdaIN twice per residual block, then each up conv.
    expected = 1 + module.n_downsample + 2 * module.n_blocks + module.n_downsample
    assert len(statistics.recorded) == expected
    assert statistics.recorded[0][0].shape == (2, 1, 1, module.ngf)
    edited, reconstructed, frozen = norm_drift.render_both(module, params, images, label_maps, wanted)
    assert not np.array_equal(edited, frozen)  # the wanted mask moved the statistics
    assert not np.array_equal(frozen, reconstructed)  # the layout itself still changes the result


def test_unchanged_mask_renders_identically_three_ways(network, faces):
    module, params = network
    images, label_maps, _ = faces
    edited, reconstructed, frozen = norm_drift.render_both(module, params, images, label_maps, label_maps)
    np.testing.assert_array_equal(edited, reconstructed)
    np.testing.assert_array_equal(frozen, reconstructed)


def test_as_usual_matches_the_editing_path_and_the_layers_are_restored(network, faces):
    module, params = network
    images, label_maps, wanted = faces
    saved = pix2pixhd.instance_norm, generator.adain
    edited, _, _ = norm_drift.render_both(module, params, images, label_maps, wanted)
    assert (pix2pixhd.instance_norm, generator.adain) == saved
    usual = np.asarray(jax.jit(edit.edit_images, static_argnums=(0, 5, 6))(module, params, images, label_maps,
                                                                           wanted, 0, 0)[0])
    assert np.abs(edited.astype(int) - usual.astype(int)).max() <= 1  # plain vs fast forms: rounding


def test_replaying_more_layers_than_recorded_is_an_error():
    statistics = norm_drift.NormStatistics()
    x = np.ones((1, 2, 2, 3), np.float32)
    statistics.instance_norm(x)
    statistics.replaying = True
    statistics.instance_norm(x)
    with pytest.raises(RuntimeError, match="call 2, but only 1 were recorded"):
        statistics.instance_norm(x)
