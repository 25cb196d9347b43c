"""Blurring the parser's training faces (maskgan_jax.parser_blur)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy import ndimage

from configs import ebst
from maskgan_jax import parser_blur, phases, train
from maskgan_jax import sharding as sharding_lib
from maskgan_jax import state as state_lib
from maskgan_jax import steps as steps_lib


def _blur(**fields):
    return ml_collections.ConfigDict({**dict(rate=1.0, min_sigma=1.0, max_sigma=1.0, local_fraction=0.0), **fields})


def _faces(count=6, size=12, seed=0):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.uniform(-1, 1, (count, size, size, 3)).astype(np.float32))


def test_gaussian_blur_is_scipys_reflecting_filter_per_face():
    images = _faces(count=2)
    sigma = jnp.asarray([1.0, 0.5])
    out = np.asarray(parser_blur.gaussian_blur(images, sigma, radius=4))
    for face, s in zip(range(2), (1.0, 0.5)):
        # scipy truncates at int(4 sigma + 0.5) pixels (2 for sigma 0.5); the weights this adds beyond
        # that, at 3 and 4 pixels, are below 2e-8 of the centre's. The rest is float32 rounding.
        want = ndimage.gaussian_filter(np.asarray(images[face], np.float64), (s, s, 0), mode="reflect", truncate=4.0)
        np.testing.assert_allclose(out[face], want, atol=1e-6)


def test_every_face_blurred_whole_when_rate_is_one_and_no_local_blur():
    images = _faces()
    labels = jnp.zeros(images.shape[:3], jnp.int32)
    out = parser_blur.blur_faces(images, labels, _blur(), jax.random.key(0))
    want = parser_blur.gaussian_blur(images, jnp.ones(6), radius=3)
    np.testing.assert_allclose(np.asarray(out), np.asarray(want), atol=1e-6)


def test_rate_zero_returns_the_faces_bit_for_bit():
    images = _faces()
    out = parser_blur.blur_faces(images, jnp.zeros(images.shape[:3], jnp.int32), _blur(rate=0.0), jax.random.key(1))
    np.testing.assert_array_equal(np.asarray(out), np.asarray(images))


def test_local_blur_touches_only_the_chosen_class_grown_by_a_pixel():
    images = _faces(count=64, size=10, seed=2)
    labels = np.zeros((64, 10, 10), np.int32)
    labels[:, 4:6, 4:6] = 1  # skin: a 2x2 patch; the rest background
    out = np.asarray(parser_blur.blur_faces(images, jnp.asarray(labels), _blur(local_fraction=1.0), jax.random.key(3)))
    source, blurred = np.asarray(images), np.asarray(parser_blur.gaussian_blur(images, jnp.ones(64), radius=3))
    grown = np.zeros((10, 10), bool)
    grown[3:7, 3:7] = True  # the patch grown by one pixel
    kinds = []
    for face in range(64):
        if np.array_equal(out[face], source[face]):
            kinds.append("absent class")  # 17 of the 19 classes are not in these faces
        elif np.allclose(out[face], blurred[face], atol=1e-6):
            kinds.append("background")  # grown by a pixel, background covers the 2x2 patch too
        else:
            np.testing.assert_allclose(out[face][grown], blurred[face][grown], atol=1e-6)
            np.testing.assert_array_equal(out[face][~grown], source[face][~grown])
            kinds.append("skin")
    assert set(kinds) == {"absent class", "background", "skin"}, kinds


@pytest.mark.parametrize("field, value, message", [
    ("rate", 1.5, "parser_blur.rate"), ("local_fraction", -0.1, "parser_blur.local_fraction"),
    ("min_sigma", 0.0, "min_sigma <= max_sigma"), ("max_sigma", 0.5, "min_sigma <= max_sigma")])
def test_out_of_range_fields_are_named(field, value, message):
    with pytest.raises(ValueError, match=message):
        parser_blur.check(_blur(**{field: value}))


def test_the_parser_step_reads_blurred_faces_and_the_classifier_the_clean_ones():
    config = ebst.get_config("smoke")
    config.data.parser_blur.update(dict(rate=1.0, local_fraction=0.0))
    networks = state_lib.build_networks(config)
    txs = {name: state_lib.optimizer(config.phases.parser) for name in phases.TRAINED["parser"]}
    states, _ = train.fresh_states("parser", networks, config, txs,
                                   sharding_lib.create_mesh(config.mesh, jax.devices()[:1]))
    rng = np.random.default_rng(4)
    size = config.resolution
    batch = {"image": rng.uniform(-1, 1, (2, size, size, 3)).astype(np.float32),
             "mask": rng.integers(0, config.num_classes, (2, size, size)).astype(np.int32),
             "attributes": rng.integers(0, 2, (2, 40)).astype(np.int32)}
    metrics = {}
    for rate in (0.0, 1.0):
        config.data.parser_blur.rate = rate
        step_fn = steps_lib.make_parser_step(networks, config, txs["parser"], txs["classifier"])
        _, _, metrics[rate] = jax.jit(step_fn)(states, steps_lib.Guard.create(), batch, jnp.int32(0), None)
    assert float(metrics[0.0]["parser/parser_cross_entropy"]) != float(metrics[1.0]["parser/parser_cross_entropy"])
    assert float(metrics[0.0]["classifier/total"]) == float(metrics[1.0]["classifier/total"])
