"""benchmarks.style_probe: the probe on features whose answer is known."""

import numpy as np
import pytest

from maskgan_jax.benchmarks import style_probe as sp

HAIR = 13


def _colours(n, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, 3))


def test_class_mean_colours_and_presence():
    images = np.zeros((2, 4, 4, 3), np.uint8)
    label_maps = np.zeros((2, 4, 4), np.int32)
    label_maps[0, :2] = HAIR  # 8 pixels
    label_maps[1, 0, :3] = HAIR  # 3 pixels: under MIN_PIXELS
    images[0, :2] = (10, 20, 30)
    images[0, 1, 0] = (30, 40, 50)
    colours, present = sp.class_mean_colours(images, label_maps, HAIR)
    np.testing.assert_allclose(colours[0], [12.5, 22.5, 32.5])
    np.testing.assert_array_equal(present, [True, False])
    np.testing.assert_array_equal(colours[1], 0.0)


def test_probe_recovers_colours_carried_linearly():
    colours = _colours(400)
    mixing = np.random.default_rng(1).normal(size=(3, 32))
    features = colours @ mixing + np.random.default_rng(2).normal(0, 0.01, (400, 32))
    probe, baseline, _ = sp.ridge_probe(features, colours, np.ones(400, bool))
    assert probe < 1.0  # levels: the colours are a linear function of the features
    assert baseline > 40.0  # uniform colours: their mean misses by ~64 levels


def test_probe_of_unrelated_features_scores_like_the_mean():
    colours = _colours(400)
    features = np.random.default_rng(3).normal(size=(400, 32))
    probe, baseline, _ = sp.ridge_probe(features, colours, np.ones(400, bool))
    assert probe > 0.9 * baseline  # nothing to learn: no better than predicting the mean


def test_absent_faces_are_left_out():
    colours = _colours(400)
    features = np.concatenate([colours, np.zeros((400, 5))], axis=1)
    present = np.ones(400, bool)
    present[::2] = False
    colours[~present] = 1e6  # would wreck the fit and the score if used
    probe, _, _ = sp.ridge_probe(features, colours, present)
    assert probe < 1.0


def test_too_few_faces_is_an_error():
    with pytest.raises(ValueError, match="at least 8 present faces"):
        sp.ridge_probe(np.zeros((20, 4)), np.zeros((20, 3)), np.ones(20, bool))
