"""benchmarks.colour_drift: each row's colour difference on faces whose answer is known."""

import numpy as np

from maskgan_jax.benchmarks import colour_drift as cd

HAIR, SKIN = 13, 1


def _faces():
    """Two 8x8 faces: hair in the top 3 rows (the face) and top 5 (wanted), skin below; the second's
    wanted mask adds only 2 hair pixels (skipped)."""
    labels_face = np.full((2, 8, 8), SKIN, np.int32)
    labels_face[:, :3] = HAIR
    labels_wanted = labels_face.copy()
    labels_wanted[0, 3:5] = HAIR
    labels_wanted[1, 3, :2] = HAIR
    faces = np.zeros((2, 8, 8, 3), np.uint8)
    faces[labels_face == HAIR] = (100, 50, 20)
    truths = faces.copy()
    truths[labels_wanted == HAIR] = (110, 60, 30)  # kept and added hair: 10 levels brighter than the face's
    return faces, truths, labels_face, labels_wanted


def test_truth_as_edit_scores_zero_where_it_should():
    faces, truths, labels_face, labels_wanted = _faces()
    drift = cd.colour_drift(truths, faces, truths, faces, labels_face, labels_wanted, HAIR)
    assert drift.shape == (1, len(cd.ROWS))  # the second face adds too few pixels
    want = dict(zip(cd.ROWS, [0.0, 10.0, 0.0, 0.0, 0.0, 0.0, 10.0]))
    np.testing.assert_allclose(drift[0], [want[row] for row in cd.ROWS])


def test_layout_drift_is_measured_against_the_reconstruction():
    faces, truths, labels_face, labels_wanted = _faces()
    edited = faces.copy()
    edited[labels_wanted == HAIR] = (104, 54, 24)  # the face's hair, moved by 4 levels in the edit
    drift = dict(zip(cd.ROWS, cd.colour_drift(edited, faces, truths, faces, labels_face, labels_wanted, HAIR)[0]))
    assert drift["model kept vs reconstruction kept"] == 4.0
    assert drift["model added vs truth added"] == drift["model kept vs truth kept"] == 6.0
    assert drift["model added vs model kept"] == 0.0 and drift["reconstruction vs face"] == 0.0
