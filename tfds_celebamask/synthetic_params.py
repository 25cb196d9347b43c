"""Parameters of a synthetic face: geometry (shapes, layout, pose) and style (colours, textures).

A face is a pair (Geometry, Style) of frozen dataclasses holding plain floats, bools and RGB
triples. The label map depends on the geometry only; the image on both. Edits change the
geometry and keep the style, so the true result of an edit is `render(edit(g), s)`.

The image spans [-1, 1] on both axes (y down). Geometry lengths are in head-frame units
(origin at the face centre, axes turned with the head's roll, one unit = head_scale image
half-widths) except the few marked as image-frame (head placement, shoulders, neckline).
Angles are radians. Person-left (`l_eye`, `l_brow`, `l_ear`) is the image's right (+x).

`sample_geometry(rng)` and `sample_style(rng)` draw a face from a numpy Generator;
`attributes(g, s)` gives its 40 CelebA attribute values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from tfds_celebamask import labels

RGB = tuple[float, float, float]  # each channel in [0, 1]

# Range of hair_length for a face with hair; the hair edits step inside it.
HAIR_LENGTH_MIN, HAIR_LENGTH_MAX = 0.1, 1.0
# Largest eye half-height / half-width; edit_larger_eyes stops there (keeps eyes off the nose).
EYE_HEIGHT_MAX, EYE_WIDTH_MAX = 0.046, 0.07
# How often a face wears each accessory: the distribution every benchmark and held-out face follows.
# A training set may draw them more often (`accessory_rates`); the rest of each face stays the same.
ACCESSORY_RATES = {"hat": 0.12, "glasses": 0.15, "earrings": 0.25, "necklace": 0.15}


def accessory_rates(overrides: Mapping[str, float] | None = None,
                    where: str = "accessory_rates") -> dict[str, float]:
    """ACCESSORY_RATES with `overrides` (accessory name -> probability in [0, 1]) applied.

    Raises ValueError naming `where`, the key and what was expected for an unknown accessory or a
    rate outside [0, 1].
    """
    rates = dict(ACCESSORY_RATES)
    for name, rate in (overrides or {}).items():
        if name not in ACCESSORY_RATES:
            raise ValueError(f"{where}: unknown accessory {name!r}, expected names from {sorted(ACCESSORY_RATES)}")
        if not 0.0 <= float(rate) <= 1.0:
            raise ValueError(f"{where}.{name}: {rate} is not a probability in [0, 1]")
        rates[name] = float(rate)
    return rates


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Shapes, layout and pose of one face (lengths in image half-widths, angles in radians)."""

    # Head placement in the image and pose.
    head_x: float  # face centre x in the image, [-0.04, 0.04]
    head_y: float  # face centre y in the image, [0.0, 0.08]
    head_scale: float  # image half-widths per head-frame unit, [1.25, 1.45]
    yaw: float  # turns features sideways, [-0.25, 0.25]; > 0 moves them to +x
    pitch: float  # moves features up (> 0) or down, [-0.15, 0.15]
    roll: float  # in-plane tilt of the head about the chin, [-0.2, 0.2]
    # Face oval: half-width, half-height, narrowing towards the chin.
    face_width: float  # [0.34, 0.41]
    face_height: float  # [0.45, 0.52]
    chin_taper: float  # [0.12, 0.35]
    # Eyes (centres at (+-eye_spacing, eye_y)).
    eye_y: float  # [-0.12, -0.07]
    eye_spacing: float  # [0.145, 0.17]
    eye_width: float  # half-width, [0.05, 0.062]
    eye_height: float  # half-height (openness), [0.014, 0.03]
    eye_tilt: float  # outer corners up when > 0, [-0.1, 0.15]
    iris_size: float  # iris radius as a fraction of eye_width, [0.55, 0.8]
    gaze: float  # iris offset as a fraction of eye_width, [-0.25, 0.25]
    # Brows (centre line eye_y - brow_gap).
    brow_gap: float  # [0.065, 0.09]
    brow_width: float  # half-width, [0.065, 0.085]
    brow_thickness: float  # [0.018, 0.04]
    brow_arch: float  # [0.0, 0.025]
    # Ears (at the sides of the oval).
    ear_y: float  # [-0.05, 0.0]
    ear_width: float  # [0.035, 0.055]
    ear_height: float  # [0.07, 0.095]
    # Nose (from the eye line down to the tip).
    nose_y: float  # tip, [0.08, 0.13]
    nose_width: float  # half-width of the nostril wings, [0.045, 0.065]
    nose_bridge: float  # half-width of the bridge, [0.016, 0.026]
    # Mouth and lips.
    mouth_y: float  # centre line, nose_y + [0.11, 0.15]
    mouth_width: float  # half-width, [0.085, 0.115]
    upper_lip: float  # thickness, [0.012, 0.026]
    lower_lip: float  # thickness, [0.016, 0.034]
    smile: float  # [0, 1]: corners up, mouth wider
    mouth_open: float  # [0, 1]: 0 closed (no `mouth` class), 1 wide open
    # Hair.
    has_hair: bool  # False: bald (no hair class at all)
    hair_length: float  # [HAIR_LENGTH_MIN, HAIR_LENGTH_MAX]: side hair ends at the temple..shoulders
    hair_volume: float  # how far hair stands off the head, [0.03, 0.1]
    hairline: float  # forehead hairline height as a fraction of face_height, [0.55, 0.8]
    bangs: bool  # a fringe down to just above the brows
    bangs_gap: float  # fringe clearance above the brows, [0.012, 0.05]
    hair_part: float  # parting offset, [-0.5, 0.5]
    hair_wave: float  # [0, 1], waviness of the silhouette and strands
    # Accessories (shape parameters exist whether or not the item is worn).
    has_glasses: bool
    lens_width: float  # added to 0.45 * eye_spacing for the lens half-width, [0.02, 0.035]
    lens_height: float  # lens half-height, [0.035, 0.05]
    lens_square: float  # 0 round .. 1 rectangular, [0, 1]
    frame_thickness: float  # [0.006, 0.014]
    has_hat: bool
    hat_height: float  # crown clearance above the head, [0.03, 0.12]
    hat_brim: float  # brim overhang at the sides, [0.0, 0.1]
    hat_lift: float  # extra height of the hat band above the brows, [0.0, 0.06]
    has_earrings: bool
    earring_size: float  # radius, [0.012, 0.022]
    earring_drop: float  # hang below the lobe, [0.0, 0.04]
    has_necklace: bool
    necklace_height: float  # position between chin (0) and collar (1), [0.35, 0.8]
    necklace_sag: float  # [0.02, 0.06]
    # Neck and clothes (not turned with the head; image frame except neck_width).
    neck_width: float  # half-width in head-frame units, [0.14, 0.19]
    shoulder_y: float  # collar height in the image, [0.8, 0.92]
    shoulder_slope: float  # drop of the shoulders towards the image sides, [0.0, 0.15]
    neckline_depth: float  # [0.05, 0.2]
    neckline_width: float  # [0.1, 0.2]
    neckline_v: bool  # V neckline (else round)


@dataclasses.dataclass(frozen=True)
class Style:
    """Colours and textures of one face (RGB channels in [0, 1])."""

    skin: RGB
    skin_shading: float  # depth of the shading, [0.2, 0.5]
    light_x: float  # light direction, [-0.6, 0.6]
    light_y: float  # [-0.6, 0.1]
    blush: float  # cheek redness, [0, 1]
    skin_phase: float  # phase of the fine skin texture, [0, 2 pi)
    hair: RGB
    hair_sheen: float  # highlight band strength, [0.05, 0.35]
    strand_freq: float  # strands per radian around the crown, [25, 60]
    strand_contrast: float  # [0.1, 0.35]
    strand_phase: float  # [0, 2 pi)
    brow: RGB  # also the glasses frames' colour
    iris: RGB
    lip: RGB
    cloth: RGB  # also the hat's colour
    cloth_accent: RGB
    cloth_stripes: float  # stripe contrast, 0 (none) .. 0.8
    cloth_checks: float  # check contrast, 0 (none) .. 0.8
    cloth_dots: float  # dot contrast, 0 (none) .. 0.8
    cloth_freq: float  # pattern frequency (cycles per half-width), [4, 12]
    cloth_angle: float  # pattern angle, [-0.8, 0.8]
    metal: RGB  # earrings and necklace
    background_top: RGB
    background_bottom: RGB
    background_angle: float  # gradient direction, [0, 2 pi)
    background_blob_x: float  # soft light spot, [-1, 1]
    background_blob_y: float  # [-1, 1]
    background_blob: float  # spot strength, [-0.2, 0.3]
    background_phase: float  # phase of the low-frequency texture, [0, 2 pi)


# Base hair colours; a sampled colour stays nearest its base, which names the attribute.
HAIR_BASES: dict[str, RGB] = {
    "black": (0.07, 0.06, 0.06),
    "brown": (0.33, 0.2, 0.11),
    "blond": (0.78, 0.64, 0.38),
    "gray": (0.62, 0.62, 0.63),
    "red": (0.55, 0.22, 0.1),
}
_SKIN_TONES: tuple[RGB, ...] = (
    (0.96, 0.8, 0.69), (0.92, 0.72, 0.58), (0.8, 0.6, 0.45), (0.62, 0.44, 0.32), (0.42, 0.29, 0.21),
)
_IRIS_COLOURS: tuple[RGB, ...] = (
    (0.3, 0.18, 0.08), (0.18, 0.1, 0.05), (0.25, 0.42, 0.6), (0.35, 0.45, 0.25), (0.45, 0.42, 0.35),
)
_METALS: tuple[RGB, ...] = ((0.85, 0.68, 0.3), (0.78, 0.78, 0.8), (0.7, 0.45, 0.35))


def _u(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def _flag(rng: np.random.Generator, p: float) -> bool:
    return bool(rng.random() < p)


def _jitter(rng: np.random.Generator, base: RGB, amount: float) -> RGB:
    values = np.clip(np.asarray(base) + rng.uniform(-amount, amount, 3), 0.0, 1.0)
    return tuple(float(v) for v in values)


def _pick(rng: np.random.Generator, options: tuple[RGB, ...]) -> RGB:
    return options[int(rng.integers(len(options)))]


def sample_geometry(rng: np.random.Generator, rates: Mapping[str, float] | None = None) -> Geometry:
    """Draws a face geometry; the same generator state gives the same geometry.

    rates: accessory name -> probability (default ACCESSORY_RATES; see `accessory_rates`). Every
    rate draws the same random numbers, so changing one changes only which faces wear that accessory.
    """
    rates = ACCESSORY_RATES if rates is None else rates
    smiling = _flag(rng, 0.45)
    nose_y = _u(rng, 0.08, 0.13)
    return Geometry(
        head_x=_u(rng, -0.04, 0.04),
        head_y=_u(rng, 0.0, 0.08),
        head_scale=_u(rng, 1.25, 1.45),
        yaw=_u(rng, -0.25, 0.25),
        pitch=_u(rng, -0.15, 0.15),
        roll=_u(rng, -0.2, 0.2),
        face_width=_u(rng, 0.34, 0.41),
        face_height=_u(rng, 0.45, 0.52),
        chin_taper=_u(rng, 0.12, 0.35),
        eye_y=_u(rng, -0.12, -0.07),
        eye_spacing=_u(rng, 0.145, 0.17),
        eye_width=_u(rng, 0.05, 0.062),
        eye_height=_u(rng, 0.014, 0.03),
        eye_tilt=_u(rng, -0.1, 0.15),
        iris_size=_u(rng, 0.55, 0.8),
        gaze=_u(rng, -0.25, 0.25),
        brow_gap=_u(rng, 0.065, 0.09),
        brow_width=_u(rng, 0.065, 0.085),
        brow_thickness=_u(rng, 0.018, 0.04),
        brow_arch=_u(rng, 0.0, 0.025),
        ear_y=_u(rng, -0.05, 0.0),
        ear_width=_u(rng, 0.035, 0.055),
        ear_height=_u(rng, 0.07, 0.095),
        nose_y=nose_y,
        nose_width=_u(rng, 0.045, 0.065),
        nose_bridge=_u(rng, 0.016, 0.026),
        mouth_y=nose_y + _u(rng, 0.11, 0.15),
        mouth_width=_u(rng, 0.085, 0.115),
        upper_lip=_u(rng, 0.012, 0.026),
        lower_lip=_u(rng, 0.016, 0.034),
        smile=_u(rng, 0.6, 1.0) if smiling else _u(rng, 0.0, 0.35),
        mouth_open=(_u(rng, 0.0, 0.9) if smiling else _u(rng, 0.0, 0.4)) if _flag(rng, 0.6) else 0.0,
        has_hair=_flag(rng, 0.94),
        hair_length=_u(rng, HAIR_LENGTH_MIN, HAIR_LENGTH_MAX),
        hair_volume=_u(rng, 0.03, 0.1),
        hairline=_u(rng, 0.55, 0.8),
        bangs=_flag(rng, 0.3),
        bangs_gap=_u(rng, 0.012, 0.05),
        hair_part=_u(rng, -0.5, 0.5),
        hair_wave=_u(rng, 0.0, 1.0),
        has_glasses=_flag(rng, rates["glasses"]),
        lens_width=_u(rng, 0.02, 0.035),
        lens_height=_u(rng, 0.035, 0.05),
        lens_square=_u(rng, 0.0, 1.0),
        frame_thickness=_u(rng, 0.006, 0.014),
        has_hat=_flag(rng, rates["hat"]),
        hat_height=_u(rng, 0.03, 0.12),
        hat_brim=_u(rng, 0.0, 0.1),
        hat_lift=_u(rng, 0.0, 0.06),
        has_earrings=_flag(rng, rates["earrings"]),
        earring_size=_u(rng, 0.012, 0.022),
        earring_drop=_u(rng, 0.0, 0.04),
        has_necklace=_flag(rng, rates["necklace"]),
        necklace_height=_u(rng, 0.35, 0.8),
        necklace_sag=_u(rng, 0.02, 0.06),
        neck_width=_u(rng, 0.14, 0.19),
        shoulder_y=_u(rng, 0.8, 0.92),
        shoulder_slope=_u(rng, 0.0, 0.15),
        neckline_depth=_u(rng, 0.05, 0.2),
        neckline_width=_u(rng, 0.1, 0.2),
        neckline_v=_flag(rng, 0.4),
    )


def sample_style(rng: np.random.Generator) -> Style:
    """Draws a face style; the same generator state gives the same style."""
    hair_base = list(HAIR_BASES.values())[int(rng.integers(len(HAIR_BASES)))]
    hair = _jitter(rng, hair_base, 0.05)
    # Brows are a darker, slightly varied take on the hair colour.
    brow = _jitter(rng, tuple(0.7 * c for c in hair), 0.04)
    pattern = int(rng.integers(4))  # 0 plain, 1 stripes, 2 checks, 3 dots
    contrast = _u(rng, 0.3, 0.8)
    return Style(
        skin=_jitter(rng, _pick(rng, _SKIN_TONES), 0.04),
        skin_shading=_u(rng, 0.2, 0.5),
        light_x=_u(rng, -0.6, 0.6),
        light_y=_u(rng, -0.6, 0.1),
        blush=_u(rng, 0.0, 1.0),
        skin_phase=_u(rng, 0.0, 2 * np.pi),
        hair=hair,
        hair_sheen=_u(rng, 0.05, 0.35),
        strand_freq=_u(rng, 25.0, 60.0),
        strand_contrast=_u(rng, 0.1, 0.35),
        strand_phase=_u(rng, 0.0, 2 * np.pi),
        brow=brow,
        iris=_jitter(rng, _pick(rng, _IRIS_COLOURS), 0.05),
        lip=_jitter(rng, (0.72, 0.33, 0.35), 0.12),
        cloth=_jitter(rng, (0.5, 0.5, 0.5), 0.45),
        cloth_accent=_jitter(rng, (0.5, 0.5, 0.5), 0.45),
        cloth_stripes=contrast if pattern == 1 else 0.0,
        cloth_checks=contrast if pattern == 2 else 0.0,
        cloth_dots=contrast if pattern == 3 else 0.0,
        cloth_freq=_u(rng, 4.0, 12.0),
        cloth_angle=_u(rng, -0.8, 0.8),
        metal=_jitter(rng, _pick(rng, _METALS), 0.05),
        background_top=_jitter(rng, (0.5, 0.5, 0.5), 0.45),
        background_bottom=_jitter(rng, (0.5, 0.5, 0.5), 0.45),
        background_angle=_u(rng, 0.0, 2 * np.pi),
        background_blob_x=_u(rng, -1.0, 1.0),
        background_blob_y=_u(rng, -1.0, 1.0),
        background_blob=_u(rng, -0.2, 0.3),
        background_phase=_u(rng, 0.0, 2 * np.pi),
    )


def sample_face(rng: np.random.Generator, rates: Mapping[str, float] | None = None) -> tuple[Geometry, Style]:
    """Draws (geometry, style), in that order, from one generator; `rates` as in sample_geometry."""
    geometry = sample_geometry(rng, rates)
    return geometry, sample_style(rng)


def face_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of face `index` in a dataset drawn with `seed` (independent of N and order)."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}.")
    return np.random.default_rng([seed, index])


def hair_colour_name(style: Style) -> str:
    """Name of the base hair colour nearest the style's hair (a key of HAIR_BASES)."""
    names = list(HAIR_BASES)
    bases = np.array([HAIR_BASES[n] for n in names])
    return names[int(np.argmin(((bases - np.array(style.hair)) ** 2).sum(axis=1)))]


def _luminance(rgb: RGB) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def attributes(geometry: Geometry, style: Style) -> np.ndarray:
    """The 40 CelebA attributes (labels.ATTRIBUTE_NAMES order) as int8 in {-1, 1}.

    Filled from the geometry (Smiling, Eyeglasses, Bangs, Bald, ...) and, for hair colour, pale
    skin, rosy cheeks and lipstick, from the style; attributes neither defines are -1.
    """
    g = geometry
    hair_name = hair_colour_name(style)
    lip = style.lip
    present = {
        "Arched_Eyebrows": g.brow_arch > 0.015,
        "Bald": not g.has_hair,
        "Bangs": g.has_hair and g.bangs,
        "Big_Lips": g.upper_lip + g.lower_lip > 0.048,
        "Big_Nose": g.nose_width > 0.059,
        "Black_Hair": g.has_hair and hair_name == "black",
        "Blond_Hair": g.has_hair and hair_name == "blond",
        "Brown_Hair": g.has_hair and hair_name == "brown",
        "Bushy_Eyebrows": g.brow_thickness > 0.033,
        "Chubby": g.face_width / g.face_height > 0.85,
        "Eyeglasses": g.has_glasses,
        "Gray_Hair": g.has_hair and hair_name == "gray",
        "Mouth_Slightly_Open": g.mouth_open > 0.3,
        "Narrow_Eyes": g.eye_height < 0.018,
        "Pale_Skin": _luminance(style.skin) > 0.8,
        "Receding_Hairline": g.has_hair and not g.bangs and g.hairline > 0.75,
        "Rosy_Cheeks": style.blush > 0.75,
        "Smiling": g.smile > 0.5,
        "Straight_Hair": g.has_hair and g.hair_wave < 0.3,
        "Wavy_Hair": g.has_hair and g.hair_wave > 0.6,
        "Wearing_Earrings": g.has_earrings,
        "Wearing_Hat": g.has_hat,
        "Wearing_Lipstick": lip[0] - 0.5 * (lip[1] + lip[2]) > 0.45,
        "Wearing_Necklace": g.has_necklace,
    }
    values = np.full(len(labels.ATTRIBUTE_NAMES), -1, dtype=np.int8)
    for name, is_present in present.items():
        values[labels.ATTRIBUTE_NAMES.index(name)] = 1 if is_present else -1
    return values


# Attributes `attributes` defines (the others are always -1).
DEFINED_ATTRIBUTES: tuple[str, ...] = (
    "Arched_Eyebrows", "Bald", "Bangs", "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair",
    "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Eyeglasses", "Gray_Hair", "Mouth_Slightly_Open",
    "Narrow_Eyes", "Pale_Skin", "Receding_Hairline", "Rosy_Cheeks", "Smiling", "Straight_Hair",
    "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace",
)


def pose_degrees(geometry: Geometry) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees, as written to CelebAMask-HQ-pose-anno.txt."""
    return tuple(float(np.degrees(a)) for a in (geometry.yaw, geometry.pitch, geometry.roll))
