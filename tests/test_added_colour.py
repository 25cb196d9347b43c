"""benchmarks.added_colour: rules scored on faces whose answer is known."""

import numpy as np

from maskgan_jax.benchmarks import added_colour as ac

NAMES = ("background", "hair", "cloth")
BACKGROUND, HAIR, CLOTH = range(3)


def _faces(n=20, seed=0):
    """Faces of three bands (background, hair, cloth), each band one random colour."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (n, 3, 3))
    labels = np.zeros((n, 6, 4), np.int32)
    labels[:, 2:4], labels[:, 4:] = HAIR, CLOTH
    faces = np.take_along_axis(colours[:, None, None], labels[..., None, None], axis=3)[:, :, :, 0]
    return faces.astype(np.uint8), labels, colours.astype(np.float64)


def _row(rows, name):
    return next(r for r in rows if r[0] == name)


def test_the_rule_the_truth_follows_scores_zero_and_the_models_own_rule_correlates_with_it():
    faces, labels, colours = _faces()
    truth, model = colours[:, CLOTH], colours[:, HAIR]  # the truth takes the clothes', the model the hair's
    rows = ac.rule_rows(model, truth, faces, labels, NAMES)
    _, count, error, with_model, with_truth = _row(rows, "copy the face's cloth")
    assert count == 20 and error == 0.0 and with_truth > 0.999
    _, _, error, with_model, with_truth = _row(rows, "copy the face's hair")
    assert with_model > 0.999 and error > 30.0  # independent uniform colours differ by ~85 levels
    assert _row(rows, "model")[2] == _row(rows, "copy the face's hair")[2]


def test_best_constant_and_painter_rows():
    faces, labels, colours = _faces()
    truth = colours[:, CLOTH]
    rows = ac.rule_rows(colours[:, HAIR], truth, faces, labels, NAMES)
    constant = _row(rows, "best constant (the truths' mean, in-sample)")
    np.testing.assert_allclose(constant[2], np.abs(truth - truth.mean(axis=0)).mean())
    painter = _row(rows, "painter (the face's mean colour)")
    # The face's mean: background 2 rows, hair 2, cloth 2 of 6, so a third of the cloth's colour.
    expected = np.abs(colours.mean(axis=1) - truth).mean()
    np.testing.assert_allclose(painter[2], expected, rtol=1e-12)


def test_classes_few_faces_show_get_no_row():
    faces, labels, colours = _faces()
    labels[4:, 4:] = BACKGROUND  # only 4 faces keep their clothes: under MIN_FACES
    rows = ac.rule_rows(colours[:, HAIR], colours[:, CLOTH], faces, labels, NAMES)
    assert [r[0] for r in rows if r[0].startswith("copy")] == ["copy the face's background", "copy the face's hair"]


def test_correlation_is_nan_for_a_constant_channel():
    a = np.ones((10, 3))
    b = np.random.default_rng(0).normal(size=(10, 3))
    assert np.isnan(ac.channel_correlation(a, b))
    assert ac.channel_correlation(b, 2 * b + 1) > 0.999


def test_parsed_shares_count_the_selected_pixels_only():
    parsed = np.array([[[HAIR, HAIR], [CLOTH, BACKGROUND]]])
    where = np.array([[[True, True], [True, False]]])  # the background pixel is not selected
    np.testing.assert_allclose(ac.parsed_shares(parsed, where, 3), [0.0, 2 / 3, 1 / 3])


def test_parsed_shares_reject_an_empty_selection():
    with np.testing.assert_raises_regex(ValueError, "no pixel"):
        ac.parsed_shares(np.zeros((1, 2, 2), np.int32), np.zeros((1, 2, 2), bool), 3)


def test_confusion_table_puts_the_added_class_first_and_the_largest_others_after():
    shares = {"model": np.array([0.1, 0.3, 0.6]), "truth": np.array([0.0, 0.0, 1.0])}
    lines = ac.format_confusion(shares, CLOTH, NAMES).splitlines()
    assert lines[0].startswith("| result | parsed as cloth |")
    assert lines[2] == "| model | 0.600 | hair 0.300, background 0.100 |"
    assert lines[3] == "| truth | 1.000 | background 0.000, hair 0.000 |"
