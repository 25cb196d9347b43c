"""Edits of a synthetic face: pure functions Geometry -> Geometry with a known true result.

The style is never edited, so the ground truth of an edit is `render(edit(geometry), style)`.
Every edit has the signature `edit(geometry, donor=None) -> Geometry`; only `style_copy` uses
`donor` (the geometry of another face, which it returns: face B's shapes in face A's style).

`EDIT_CLASSES[name]` lists the classes an edit may change in the label map (a pixel whose
class changes has both its old and new class in the set); every other pixel keeps its class.
`edit_applies(name, geometry)` says whether an edit changes anything visible on this face
(adding a hat to a face wearing one does not).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from tfds_celebamask import labels
from tfds_celebamask.synthetic_params import (
    EYE_HEIGHT_MAX,
    EYE_WIDTH_MAX,
    HAIR_LENGTH_MAX,
    HAIR_LENGTH_MIN,
    Geometry,
)

Edit = Callable[..., Geometry]  # (geometry, donor=None) -> edited geometry

HAIR_STEP = 0.35  # hair_length change of one longer/shorter edit
EYE_HEIGHT_FACTOR, EYE_WIDTH_FACTOR = 1.45, 1.1
SMILE_OPEN = 0.6  # mouth_open after edit_smile (at least)


def edit_smile(geometry: Geometry, donor: Geometry | None = None) -> Geometry:
    """Full smile with the mouth open (teeth showing): corners up, lips apart."""
    return dataclasses.replace(geometry, smile=1.0, mouth_open=max(geometry.mouth_open, SMILE_OPEN))


def edit_hair_longer(geometry: Geometry, donor: Geometry | None = None) -> Geometry:
    """Side hair hangs HAIR_STEP lower (capped at HAIR_LENGTH_MAX); the fringe is kept."""
    return dataclasses.replace(geometry, hair_length=min(geometry.hair_length + HAIR_STEP, HAIR_LENGTH_MAX))


def edit_hair_shorter(geometry: Geometry, donor: Geometry | None = None) -> Geometry:
    """Side hair ends HAIR_STEP higher (not below HAIR_LENGTH_MIN); the fringe is kept."""
    return dataclasses.replace(geometry, hair_length=max(geometry.hair_length - HAIR_STEP, HAIR_LENGTH_MIN))


def edit_larger_eyes(geometry: Geometry, donor: Geometry | None = None) -> Geometry:
    """Eyes opened wider and a little longer (capped so that they stay off the nose)."""
    return dataclasses.replace(
        geometry,
        eye_height=min(geometry.eye_height * EYE_HEIGHT_FACTOR, EYE_HEIGHT_MAX),
        eye_width=min(geometry.eye_width * EYE_WIDTH_FACTOR, EYE_WIDTH_MAX),
    )


def edit_add_glasses(geometry: Geometry, donor: Geometry | None = None) -> Geometry:
    """Puts on the face's glasses (frames in the brow colour; the shape is in the geometry)."""
    return dataclasses.replace(geometry, has_glasses=True)


def edit_add_hat(geometry: Geometry, donor: Geometry | None = None) -> Geometry:
    """Puts on the face's hat (in the cloth colour; the shape is in the geometry)."""
    return dataclasses.replace(geometry, has_hat=True)


def edit_style_copy(geometry: Geometry, donor: Geometry | None = None) -> Geometry:
    """Style copy: returns the donor's geometry, to be rendered in this face's style."""
    if donor is None:
        raise ValueError("edit_style_copy needs donor=<the other face's Geometry>, got None.")
    return donor


EDITS: dict[str, Edit] = {
    "smile": edit_smile,
    "hair_longer": edit_hair_longer,
    "hair_shorter": edit_hair_shorter,
    "larger_eyes": edit_larger_eyes,
    "add_glasses": edit_add_glasses,
    "add_hat": edit_add_hat,
    "style_copy": edit_style_copy,
}

_HAIR_UNCOVERS = frozenset({"hair", "background", "skin", "l_ear", "r_ear", "cloth", "neck"})
# Classes each edit may change. Larger eyes may cover glass lenses (eyes paint over eye_g).
EDIT_CLASSES: dict[str, frozenset[str]] = {
    "smile": frozenset({"mouth", "u_lip", "l_lip", "skin"}),
    "hair_longer": _HAIR_UNCOVERS,
    "hair_shorter": _HAIR_UNCOVERS,
    "larger_eyes": frozenset({"l_eye", "r_eye", "skin", "eye_g"}),
    "add_glasses": frozenset({"eye_g", "skin", "nose", "background"}),
    "add_hat": frozenset({"hat", "hair", "background", "skin"}),
    "style_copy": frozenset(labels.CLASS_NAMES),
}


def edit_applies(name: str, geometry: Geometry) -> bool:
    """Whether edit `name` visibly changes this face (e.g. no hat yet for add_hat)."""
    g = geometry
    checks = {
        "smile": g.smile < 0.5 or g.mouth_open < 0.3,
        "hair_longer": g.has_hair and g.hair_length <= HAIR_LENGTH_MAX - HAIR_STEP,
        "hair_shorter": g.has_hair and g.hair_length >= HAIR_LENGTH_MIN + HAIR_STEP,
        "larger_eyes": g.eye_height * EYE_HEIGHT_FACTOR <= EYE_HEIGHT_MAX,
        "add_glasses": not g.has_glasses,
        "add_hat": not g.has_hat,
        "style_copy": True,
    }
    if name not in checks:
        raise KeyError(f"unknown edit {name!r}; expected one of {sorted(checks)}.")
    return checks[name]
