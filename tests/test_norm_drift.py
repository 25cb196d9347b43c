"""benchmarks.norm_drift: the statistics swap on the smoke generator."""

import jax
import numpy as np
import pytest

from configs import ebst as ebst_config
from maskgan_jax import edit, evaluate
from maskgan_jax.benchmarks import norm_drift
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


def test_the_statistics_swap_changes_edits_but_not_reconstructions(network, faces):
    module, params = network
    images, label_maps, wanted = faces
    edited, reconstructed, frozen = norm_drift.render_both(module, params, images, label_maps, wanted)
    assert not np.array_equal(edited, frozen)  # the wanted mask moved the statistics
    assert not np.array_equal(frozen, reconstructed)  # the layout itself still changes the result
    edited, reconstructed, frozen = norm_drift.render_both(module, params, images, label_maps, label_maps)
    assert np.abs(edited.astype(int) - reconstructed.astype(int)).max() == 0
    assert np.abs(frozen.astype(int) - reconstructed.astype(int)).max() <= 1  # another program: rounding


def test_as_usual_and_swapped_are_the_editing_modes(network, faces):
    module, params = network
    images, label_maps, wanted = faces
    edited, _, frozen = norm_drift.render_both(module, params, images, label_maps, wanted)
    for rendered, mode in ((edited, "edit"), (frozen, "face")):
        usual = np.asarray(jax.jit(edit.edit_images, static_argnums=(0, 5, 6, 7))(
            module, params, images, label_maps, wanted, 0, 0, mode)[0])
        assert np.abs(rendered.astype(int) - usual.astype(int)).max() <= 1, mode
