"""Renders a synthetic face: (Geometry, Style) -> RGB image, 19-class label map, 18 part masks.

Every part is a signed distance field (SDF, negative inside, in image half-widths) evaluated
at the pixel centres. A part's mask is `sdf < 0` (centre sampling); the label map paints the
masks in id order 1..18 over background 0, a later part overwriting an earlier one, exactly
like the CelebAMask-HQ merge. The image is composited in the same order with soft coverage
`clip(0.5 - sdf / pixel, 0, 1)`, which anti-aliases borders and keeps image and labels in
register: where the label map says a class, that class's colour field is on top.

Parts are shaped so that painting in id order gives a plausible picture: ears, neck,
earrings, necklace and clothes are cut by the face oval; the neck is cut by the necklace;
the clothes by the neckline; hair covers the head down to the hairline and hangs behind the
neck and clothes. Only the geometry shapes the SDFs, so the label map ignores the style.

Colour varies inside every region: lit skin, nose and lip shading, irises with pupils,
strand-textured hair and brows, patterned and shaded clothes, a gradient background.
Regions an edit can add take a look fixed by what the face shows: the hat the cloth colour,
the glasses frames the brow colour, the open mouth and teeth a fixed look.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from tfds_celebamask import labels
from tfds_celebamask.synthetic_params import Geometry, Style

# Depth of each feature in front of the face plane (image half-widths): sets how far yaw and
# pitch move it. Ears sit behind, so they move the other way.
_DEPTH = {"eye": 0.25, "brow": 0.25, "nose": 0.34, "mouth": 0.28, "ear": -0.12}
# Fixed looks of regions that only some faces show (so an edit adding them is well posed).
_MOUTH_INSIDE = np.array([0.34, 0.08, 0.09], np.float32)
_TEETH = np.array([0.93, 0.9, 0.83], np.float32)
_SCLERA = np.array([0.93, 0.91, 0.88], np.float32)
_PUPIL = np.array([0.03, 0.03, 0.03], np.float32)
_LENS_TINT = 0.88  # glasses lenses darken what is behind them a little

PART_IDS = tuple(range(1, labels.NUM_CLASSES))  # 1..18, the merge order


@dataclasses.dataclass(frozen=True)
class Rendered:
    """A rendered face.

    image: uint8 (S, S, 3) RGB, before JPEG encoding.
    labels: uint8 (S, S) in [0, 19): the id-order merge of `masks`.
    masks: bool (18, S, S), masks[k] is the full region of part id k + 1 (also where a later
      part covers it); all False for a part the face lacks.
    """

    image: np.ndarray
    labels: np.ndarray
    masks: np.ndarray


@functools.lru_cache(maxsize=8)
def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x, y), each float32 (size, size) in (-1, 1), y down."""
    centres = ((np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0).astype(np.float32)
    x, y = np.meshgrid(centres, centres)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def _ellipse(u: np.ndarray, v: np.ndarray, a: float, b: float) -> np.ndarray:
    """Approximate SDF of the ellipse |u/a|^2 + |v/b|^2 <= 1 (exact sign, distance ~ near the edge)."""
    return (np.sqrt((u / a) ** 2 + (v / b) ** 2) - 1.0) * min(a, b)


def _rotate(du: np.ndarray, dv: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates in a frame turned by `angle` (radians, y down: > 0 turns +x towards +y)."""
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    return du * c + dv * s, dv * c - du * s


def _smooth(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _bump(du: np.ndarray, dv: np.ndarray, su: float, sv: float) -> np.ndarray:
    """Gaussian bump exp(-(du/su)^2 - (dv/sv)^2), 1 at the centre."""
    return np.exp(-((du / su) ** 2 + (dv / sv) ** 2))


def _rgb(colour) -> np.ndarray:
    return np.asarray(colour, dtype=np.float32)


@dataclasses.dataclass(frozen=True)
class _Layout:
    """Where the features are, after pose (head frame), derived once from the geometry."""

    g: Geometry
    px: float  # pixel size in image half-widths
    px_head: float  # pixel size in head-frame units
    x: np.ndarray  # image coordinates (S, S)
    y: np.ndarray
    u: np.ndarray  # head-frame coordinates (S, S)
    v: np.ndarray
    face_sdf: np.ndarray  # face oval SDF in head-frame units (S, S)
    face_sdf_image: np.ndarray  # the same in image half-widths

    def shift(self, part: str) -> tuple[float, float]:
        """Head-frame offset of a feature at the depth of `part` due to yaw and pitch."""
        depth = _DEPTH[part]
        return depth * float(np.sin(self.g.yaw)), -depth * float(np.sin(self.g.pitch))

    def eye_centre(self, side: int) -> tuple[float, float]:
        dx, dy = self.shift("eye")
        return side * self.g.eye_spacing + dx, self.g.eye_y + dy

    def foreshorten(self, side: int) -> float:
        """Width factor of a feature on `side` (+1 image right): the side turned away narrows."""
        return 1.0 - 0.6 * float(np.sin(self.g.yaw)) * side

    def brow_centre(self, side: int) -> tuple[float, float]:
        dx, dy = self.shift("brow")
        return side * (self.g.eye_spacing + 0.005) + dx, self.g.eye_y - self.g.brow_gap + dy

    def brow_top(self) -> float:
        """Highest head-frame y any brow reaches (used to keep bangs and hats off the brows)."""
        _, cy = self.brow_centre(1)
        return cy - self.g.brow_arch - 0.5 * self.g.brow_thickness

    def lens_half_size(self) -> tuple[float, float]:
        return 0.45 * self.g.eye_spacing + self.g.lens_width, self.g.lens_height

    def face_half_width(self, v: float) -> float:
        g = self.g
        t = min(max(v / g.face_height, 0.0), 1.0)
        return g.face_width * (1.0 - g.chin_taper * t * t)

    def ear_centre(self, side: int) -> tuple[float, float]:
        dx, dy = self.shift("ear")
        ey = self.g.ear_y + dy
        return side * (self.face_half_width(ey) + 0.55 * self.g.ear_width) + dx, ey

    def hat_bottom(self) -> float:
        """Head-frame y of the hat's lower edge: above brows, lenses (worn or not) and ears."""
        g = self.g
        lens_top = self.eye_centre(1)[1] - g.lens_height - g.frame_thickness
        ear_top = self.ear_centre(1)[1] - g.ear_height
        return min(self.brow_top(), lens_top, ear_top) - 0.025 - g.hat_lift

    def skull(self) -> tuple[float, float, float]:
        """Centre y, half-width and half-height of the hair's skull ellipse (head frame)."""
        g = self.g
        centre = -0.1 * g.face_height
        return centre, g.face_width + g.hair_volume, 0.9 * g.face_height + g.hair_volume

    def chin_y(self) -> float:
        """Image y of the chin (roll turns the head about a point near it)."""
        return self.g.head_y + self.g.face_height * self.g.head_scale

    def neck_half_width(self, y: np.ndarray) -> np.ndarray:
        """Neck half-width in the image at image heights `y`; it widens into the shoulders."""
        g = self.g
        return g.neck_width * g.head_scale * (1.0 + 0.35 * _smooth((y - g.shoulder_y + 0.05) / 0.25))

    def neckline_y(self) -> float:
        return self.g.shoulder_y - 0.02


def _layout(g: Geometry, size: int) -> _Layout:
    x, y = _pixel_grid(size)
    # Roll turns the head about a point near the chin, so the chin stays on the neck.
    pivot_v = 0.8 * g.face_height
    inv_scale = np.float32(1.0 / g.head_scale)
    du, dv = _rotate(x - g.head_x, y - (g.head_y + pivot_v * g.head_scale), g.roll)
    u = du * inv_scale
    v = dv * inv_scale + np.float32(pivot_v)
    taper = g.chin_taper * np.clip(v / g.face_height, 0.0, 1.0) ** 2
    half_width = g.face_width * (1.0 - taper)
    radius = np.sqrt((u / half_width) ** 2 + (v / g.face_height) ** 2)
    face = ((radius - 1.0) * (0.9 * g.face_width)).astype(np.float32)
    px = 2.0 / size
    return _Layout(
        g=g, px=px, px_head=px / g.head_scale, x=x, y=y, u=u, v=v,
        face_sdf=face, face_sdf_image=face * np.float32(g.head_scale),
    )


# ----------------------------------------------------------------------------- part shapes


def _nose_sdf(lay: _Layout) -> np.ndarray:
    g = lay.g
    dx, dy = lay.shift("nose")
    top, tip = g.eye_y + 0.03 + dy, g.nose_y + dy
    nu, v = lay.u - dx, lay.v
    t = np.clip((v - top) / (tip - top), 0.0, 1.0)
    half_width = g.nose_bridge + (0.7 * g.nose_width - g.nose_bridge) * t * t
    bridge = np.maximum(np.maximum(np.abs(nu) - half_width, top - v), v - tip)
    wings = _ellipse(nu, v - (tip - 0.012), g.nose_width, 0.028)
    return np.minimum(bridge, wings)


def _lens_sdf(lay: _Layout, side: int) -> np.ndarray:
    """SDF of one lens's inside (without the frame)."""
    g = lay.g
    cx, cy = lay.eye_centre(side)
    half_w, half_h = lay.lens_half_size()
    half_w *= lay.foreshorten(side)
    lu, lv = (lay.u - cx) / half_w, (lay.v - cy - 0.004) / half_h
    lu2, lv2 = lu * lu, lv * lv
    round_ = np.sqrt(lu2 + lv2)
    square = np.sqrt(np.sqrt(lu2 * lu2 + lv2 * lv2))
    return ((1.0 - g.lens_square) * round_ + g.lens_square * square - 1.0) * half_h


def _glasses_sdf(lay: _Layout) -> np.ndarray:
    g = lay.g
    t = g.frame_thickness
    lenses = np.minimum(_lens_sdf(lay, 1), _lens_sdf(lay, -1)) - t
    left_x, cy = lay.eye_centre(1)
    right_x, _ = lay.eye_centre(-1)
    _, half_h = lay.lens_half_size()
    mid_x = 0.5 * (left_x + right_x)
    bridge = np.maximum(
        np.abs(lay.v - (cy - 0.3 * half_h)) - 0.7 * t, np.abs(lay.u - mid_x) - 0.5 * (left_x - right_x)
    )
    # Temples from the lens rims back to the edge of the face (hidden behind it beyond).
    inner_reach = 0.5 * (left_x - right_x) + 0.5 * lay.lens_half_size()[0]
    arms = np.maximum(np.abs(lay.v - (cy - 0.45 * half_h)) - 0.6 * t, lay.face_sdf + 0.004)
    arms = np.maximum(arms, inner_reach - np.abs(lay.u - mid_x))
    return np.minimum(np.minimum(lenses, bridge), arms)


def _eye_sdf(lay: _Layout, side: int) -> np.ndarray:
    g = lay.g
    cx, cy = lay.eye_centre(side)
    eu, ev = _rotate(lay.u - cx, lay.v - cy, -g.eye_tilt * side)
    half_w = g.eye_width * lay.foreshorten(side)
    # Almond: the upper lid arches higher than the lower.
    half_h = np.where(ev < 0, np.float32(g.eye_height), np.float32(0.8 * g.eye_height))
    return (np.sqrt((eu / half_w) ** 2 + (ev / half_h) ** 2) - 1.0) * half_h


def _brow_local(lay: _Layout, side: int) -> tuple[np.ndarray, np.ndarray, float]:
    g = lay.g
    cx, cy = lay.brow_centre(side)
    bu, bv = _rotate(lay.u - cx, lay.v - cy, -0.5 * g.eye_tilt * side)
    return bu, bv, g.brow_width * lay.foreshorten(side)


def _brow_sdf(lay: _Layout, side: int) -> np.ndarray:
    g = lay.g
    bu, bv, half_w = _brow_local(lay, side)
    s = np.clip(bu * (side / half_w), -1.0, 1.0)  # -1 inner end (by the nose), +1 outer end
    centre_line = -g.brow_arch * (1.0 - s * s)
    thickness = g.brow_thickness * (0.8 - 0.35 * s)
    return np.maximum(np.abs(bv - centre_line) - 0.5 * thickness, np.abs(bu) - half_w)


def _ear_sdf(lay: _Layout, side: int) -> np.ndarray:
    g = lay.g
    cx, cy = lay.ear_centre(side)
    eu, ev = _rotate(lay.u - cx, lay.v - cy, 0.15 * side)
    return np.maximum(_ellipse(eu, ev, g.ear_width, g.ear_height), -lay.face_sdf)


@dataclasses.dataclass(frozen=True)
class _MouthLines:
    """Mouth-local coordinates and the lip boundaries (all (S, S)); mv grows downwards."""

    mu: np.ndarray
    mv: np.ndarray
    half_w: float
    envelope: np.ndarray  # sqrt(1 - (mu/half_w)^2), 0 beyond the corners
    top: np.ndarray  # upper lip: top..open_top
    open_top: np.ndarray  # mouth inside: open_top..open_bottom
    open_bottom: np.ndarray  # lower lip: open_bottom..bottom
    bottom: np.ndarray


def _mouth_lines(lay: _Layout) -> _MouthLines:
    g = lay.g
    dx, dy = lay.shift("mouth")
    mu, mv = lay.u - dx, lay.v - (g.mouth_y + dy)
    half_w = g.mouth_width * (1.0 + 0.12 * g.smile)
    t = mu / half_w
    envelope = np.sqrt(np.clip(1.0 - t * t, 0.0, 1.0))
    # A smile lifts the corners and drops the middle a little.
    centre = g.smile * (0.026 * (1.0 - t * t) - 0.012)
    gap = g.mouth_open * 0.06 * envelope
    open_top, open_bottom = centre - 0.3 * gap, centre + 0.7 * gap
    cupid_bow = 1.0 - 0.3 * np.exp(-((t / 0.18) ** 2))
    top = open_top - g.upper_lip * envelope * cupid_bow * (1.0 - 0.3 * g.smile)
    bottom = open_bottom + g.lower_lip * envelope * (1.0 - 0.2 * g.smile)
    return _MouthLines(mu, mv, half_w, envelope, top, open_top, open_bottom, bottom)


def _band_sdf(lines: _MouthLines, upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """SDF (vertical distance) of the band upper < mv < lower between the mouth corners."""
    return np.maximum(np.maximum(upper - lines.mv, lines.mv - lower), np.abs(lines.mu) - lines.half_w)


def _hairline(lay: _Layout) -> np.ndarray:
    """Head-frame y of the hair's lower edge across the face, (S, S) (hair above it)."""
    g = lay.g
    ratio = lay.u / g.face_width
    if g.bangs:
        fringe = lay.brow_top() - g.bangs_gap
        jag = 0.006 * np.sin(lay.u * 70.0 + 9.0 * g.hair_part) * (1.0 + g.hair_wave)
        return fringe - 0.008 - jag - 0.03 * ratio * ratio  # curves up at the sides
    part = 0.05 * np.exp(-(((lay.u - g.hair_part * g.face_width) / 0.05) ** 2))
    return -g.hairline * g.face_height + 0.35 * g.face_height * ratio * ratio - part


def _hair_sdf(lay: _Layout) -> np.ndarray:
    g = lay.g
    u, v = lay.u, lay.v
    centre, half_w, half_h = lay.skull()
    crown = np.maximum(_ellipse(u, v - centre, half_w, half_h), v - centre)
    # Side hair hangs from the skull's widest line down to a length-set bottom, with waves.
    bottom = centre + 0.05 + g.hair_length * 0.85
    wave = g.hair_wave * 0.018 * np.sin(v * 38.0 + 5.0 * g.hair_part)
    side_w = half_w + 0.05 * _smooth((v - centre) / 0.5) + wave
    rounded_bottom = bottom - 0.06 * (u / half_w) ** 2
    # It starts a little above the skull's lower cut so that the union has no seam.
    hang = np.maximum(np.maximum(np.abs(u) - side_w, v - rounded_bottom), centre - 0.03 - v)
    # The face shows below the hairline.
    face_shown = np.maximum(lay.face_sdf, _hairline(lay) - v)
    return np.maximum(np.minimum(crown, hang), -face_shown)


def _hat_sdf(lay: _Layout) -> np.ndarray:
    g = lay.g
    u, v = lay.u, lay.v
    base = lay.hat_bottom()
    _, skull_w, _ = lay.skull()
    skull_top = lay.skull()[0] - lay.skull()[2]
    band = 0.045
    half_w = skull_w + 0.03
    crown_h = (base - band) - skull_top + g.hat_height
    # The crown reaches down into the brim so that the union has no seam.
    crown = np.maximum(_ellipse(u, v - (base - band), half_w, crown_h), v - base + 0.5 * band)
    brim = np.maximum(np.maximum(np.abs(u) - (half_w + g.hat_brim), (base - band) - v), v - base)
    return np.minimum(crown, brim)


def _earring_place(lay: _Layout, side: int) -> tuple[float, float, float]:
    """(x, lobe y, stud centre y) of the earring on `side`, head frame."""
    g = lay.g
    cx, cy = lay.ear_centre(side)
    lobe = cy + 0.85 * g.ear_height
    return cx, lobe, lobe + g.earring_drop + g.earring_size


def _earrings_sdf(lay: _Layout) -> np.ndarray:
    g = lay.g
    rings = []
    for side in (1, -1):
        cx, lobe, stud_y = _earring_place(lay, side)
        stud = _ellipse(lay.u - cx, lay.v - stud_y, g.earring_size, g.earring_size)
        hook_v = np.abs(lay.v - 0.5 * (lobe + stud_y)) - 0.5 * (stud_y - lobe)
        hook = np.maximum(np.abs(lay.u - cx) - 0.003, hook_v)
        rings.append(np.minimum(stud, hook))
    # An earring behind the head (far side, turned away) is hidden by the face.
    return np.maximum(np.minimum(rings[0], rings[1]), -lay.face_sdf)


def _necklace_line(lay: _Layout) -> np.ndarray:
    g = lay.g
    top = lay.chin_y() + g.necklace_height * (lay.neckline_y() - lay.chin_y())
    nx = (lay.x - g.head_x) / (g.neck_width * g.head_scale)
    return top + g.necklace_sag * nx * nx


def _necklace_sdf(lay: _Layout) -> np.ndarray:
    g = lay.g
    across = np.abs(lay.x - g.head_x) - lay.neck_half_width(lay.y)
    band = np.maximum(np.abs(lay.y - _necklace_line(lay)) - 0.012, across)
    return np.maximum(band, -lay.face_sdf_image)


def _cloth_top_sdf(lay: _Layout) -> np.ndarray:
    g = lay.g
    dx = np.abs(lay.x - g.head_x)
    top = g.shoulder_y + g.shoulder_slope * (dx / 0.8) ** 2 + 3.0 * np.maximum(dx - 0.85, 0.0) ** 2
    return (top - lay.y) * 0.9


def _neckline_sdf(lay: _Layout) -> np.ndarray:
    g = lay.g
    dx = lay.x - g.head_x
    if g.neckline_v:
        bottom = lay.neckline_y() + g.neckline_depth + 0.05
        slope = g.neckline_width / (bottom - lay.neckline_y())
        return (np.abs(dx) - (bottom - lay.y) * slope) / np.sqrt(1.0 + slope * slope)
    return _ellipse(dx, lay.y - lay.neckline_y(), g.neckline_width, g.neckline_depth + 0.04)


def _neck_sdf(lay: _Layout, cloth_top: np.ndarray, neckline: np.ndarray) -> np.ndarray:
    g = lay.g
    band = np.maximum(np.abs(lay.x - g.head_x) - lay.neck_half_width(lay.y), g.head_y - lay.y)
    # Skin showing through the neckline; it reaches 1.5 px under the cloth's edge so that no
    # background shows through the seam between the two soft edges (the cloth covers it).
    chest = np.maximum(neckline - 1.5 * lay.px, cloth_top)
    neck = np.maximum(np.minimum(band, chest), -lay.face_sdf_image)
    if g.has_necklace:
        neck = np.maximum(neck, -_necklace_sdf(lay))
    return neck


def _part_sdfs(lay: _Layout) -> dict[int, np.ndarray]:
    """SDF (S, S) float32 in image half-widths of every part the face has, by class id 1..18."""
    g = lay.g
    ids = labels.CLASS_ID
    sdfs: dict[int, np.ndarray] = {ids["skin"]: lay.face_sdf, ids["nose"]: _nose_sdf(lay)}
    if g.has_glasses:
        sdfs[ids["eye_g"]] = _glasses_sdf(lay)
    for side, suffix in ((1, "l"), (-1, "r")):
        sdfs[ids[f"{suffix}_eye"]] = _eye_sdf(lay, side)
        sdfs[ids[f"{suffix}_brow"]] = _brow_sdf(lay, side)
        sdfs[ids[f"{suffix}_ear"]] = _ear_sdf(lay, side)
    lines = _mouth_lines(lay)
    if g.mouth_open > 0:
        sdfs[ids["mouth"]] = _band_sdf(lines, lines.open_top, lines.open_bottom)
    sdfs[ids["u_lip"]] = _band_sdf(lines, lines.top, lines.open_top)
    sdfs[ids["l_lip"]] = _band_sdf(lines, lines.open_bottom, lines.bottom)
    if g.has_hair:
        sdfs[ids["hair"]] = _hair_sdf(lay)
    if g.has_hat:
        sdfs[ids["hat"]] = _hat_sdf(lay)
    if g.has_earrings:
        sdfs[ids["ear_r"]] = _earrings_sdf(lay)
    # Head-frame SDFs so far; the rest are drawn in the image frame.
    scale = np.float32(g.head_scale)
    sdfs = {k: sdf * scale for k, sdf in sdfs.items()}
    if g.has_necklace:
        sdfs[ids["neck_l"]] = _necklace_sdf(lay)
    cloth_top, neckline = _cloth_top_sdf(lay), _neckline_sdf(lay)
    sdfs[ids["neck"]] = _neck_sdf(lay, cloth_top, neckline)
    sdfs[ids["cloth"]] = np.maximum(np.maximum(cloth_top, -neckline), -lay.face_sdf_image)
    return {k: sdfs[k].astype(np.float32, copy=False) for k in sorted(sdfs)}


# ----------------------------------------------------------------------------- colour fields
# Each takes the layout, a crop `sl` (row slice, column slice), the style and the image painted
# so far inside the crop, and returns the part's colour there, float32 (h, w, 3) in ~[0, 1].

_Crop = tuple[slice, slice]


def _light(style: Style) -> tuple[float, float, float]:
    norm = float(np.sqrt(style.light_x**2 + style.light_y**2 + 1.0))
    return style.light_x / norm, style.light_y / norm, 1.0 / norm


def _lambert(style: Style, nx: np.ndarray, ny: np.ndarray) -> np.ndarray:
    """1 - shading * (1 - n.l) for the sphere-like normal (nx, ny, sqrt(1 - nx^2 - ny^2))."""
    lx, ly, lz = _light(style)
    nz = np.sqrt(np.clip(1.0 - nx * nx - ny * ny, 0.02, 1.0))
    lit = np.clip(nx * lx + ny * ly + nz * lz, 0.0, 1.0)
    return 1.0 - style.skin_shading * (1.0 - lit)


def _skin_field(lay: _Layout, sl: _Crop, style: Style) -> np.ndarray:
    """Lit, lightly textured skin with blushed cheeks, (h, w, 3)."""
    g = lay.g
    u, v = lay.u[sl], lay.v[sl]
    yaw_dx = 0.25 * float(np.sin(g.yaw))
    shade = _lambert(style, (u - yaw_dx) / g.face_width, (v + 0.1 * g.face_height) / (1.1 * g.face_height))
    p = style.skin_phase
    # Soft blotches rather than a regular grid: a few rotated low-frequency waves.
    texture = 1.0 + 0.02 * (
        np.sin(u * 23.0 + v * 9.0 + p)
        + np.sin(v * 19.0 - u * 7.0 + 2.0 * p)
        + 0.5 * np.sin((u - v) * 41.0 + 3.0 * p)
    )
    colour = _rgb(style.skin) * (shade * texture)[..., None]
    eye_dx, _ = lay.shift("eye")
    cheeks = _bump(np.abs(u - eye_dx) - g.eye_spacing - 0.01, v - g.nose_y, 0.065, 0.05)
    blush = (0.35 * style.blush * cheeks)[..., None]
    return colour + blush * (_rgb((0.85, 0.32, 0.33)) * shade[..., None] - colour)


def _colour_skin(lay: _Layout, sl: _Crop, style: Style, below: np.ndarray) -> np.ndarray:
    return _skin_field(lay, sl, style)


def _colour_nose(lay: _Layout, sl: _Crop, style: Style, below: np.ndarray) -> np.ndarray:
    g = lay.g
    dx, dy = lay.shift("nose")
    nu, v = lay.u[sl] - dx, lay.v[sl]
    tip = g.nose_y + dy
    # The side away from the light is in shadow; the tip catches a highlight; nostrils are dark.
    away = np.clip(-nu * np.sign(style.light_x or 1.0) / g.nose_width, 0.0, 1.0)
    factor = 1.0 - 0.22 * away * _smooth((v - g.eye_y) / 0.1)
    # Soft shadow lines down both sides of the bridge and under the tip.
    sides = np.exp(-(((np.abs(nu) - g.nose_bridge) / 0.008) ** 2)) * _smooth((v - g.eye_y - 0.03) / 0.06)
    factor = factor - 0.1 * sides - 0.12 * _smooth((v - tip + 0.004) / 0.01)
    factor = factor + 0.1 * _bump(nu, v - tip + 0.03, 0.022, 0.02)
    nostrils = _bump(np.abs(nu) - 0.45 * g.nose_width, v - tip + 0.002, 0.013, 0.008)
    factor = factor * (1.0 - 0.55 * nostrils)
    return _skin_field(lay, sl, style) * factor[..., None]


def _colour_glasses(lay: _Layout, sl: _Crop, style: Style, below: np.ndarray) -> np.ndarray:
    # Lenses tint what is behind them and carry a faint glare; the frames take the brow colour.
    lens = np.minimum(_lens_sdf(lay, 1)[sl], _lens_sdf(lay, -1)[sl])
    rim = np.clip(0.5 + lens / lay.px_head, 0.0, 1.0)[..., None]
    glare = 0.08 * _smooth(1.0 - np.abs(lay.u[sl] + lay.v[sl] - lay.g.eye_y) / 0.03)
    lens_look = below * _LENS_TINT + glare[..., None]
    return lens_look + rim * (_rgb(style.brow) - lens_look)


def _colour_eye(side: int):
    def colour(lay: _Layout, sl: _Crop, style: Style, below: np.ndarray) -> np.ndarray:
        g = lay.g
        cx, cy = lay.eye_centre(side)
        du, dv = lay.u[sl] - cx, lay.v[sl] - cy
        half_w = g.eye_width * lay.foreshorten(side)
        # Upper lid shadow and lash line.
        lid = 0.55 + 0.45 * _smooth((dv + g.eye_height) / (1.2 * g.eye_height))
        colour = _SCLERA * lid[..., None]
        iris_r = g.iris_size * g.eye_width
        r = np.sqrt((du - g.gaze * half_w) ** 2 + (dv - 0.1 * g.eye_height) ** 2) / iris_r
        iris = _rgb(style.iris) * (0.65 + 0.6 * r * (1.0 - r) + 0.1 * np.sin(du * 400.0))[..., None]
        iris = iris * (1.0 - 0.45 * _smooth((r - 0.8) / 0.2))[..., None] * lid[..., None]
        in_iris = np.clip((1.0 - r) * iris_r / lay.px_head + 0.5, 0.0, 1.0)[..., None]
        colour = colour + in_iris * (iris - colour)
        in_pupil = np.clip((0.42 - r) * iris_r / lay.px_head + 0.5, 0.0, 1.0)[..., None]
        colour = colour + in_pupil * (_PUPIL - colour)
        spark = _bump(du - g.gaze * half_w + 0.3 * iris_r, dv + 0.3 * iris_r, 0.18 * iris_r, 0.18 * iris_r)
        return colour + (0.8 * spark)[..., None] * (1.0 - colour)

    return colour


def _colour_brow(side: int):
    def colour(lay: _Layout, sl: _Crop, style: Style, below: np.ndarray) -> np.ndarray:
        bu, bv, half_w = _brow_local(lay, side)
        bu, bv = bu[sl], bv[sl]
        hairs = 1.0 + 0.3 * np.sin(bu * (side * 260.0) + bv * 140.0 + style.strand_phase)
        fade = 0.35 * _smooth(bu * (side / half_w))  # thinner, lighter towards the outer end
        brow = _rgb(style.brow) * hairs[..., None]
        return brow + fade[..., None] * (below - brow)

    return colour


def _colour_ear(side: int):
    def colour(lay: _Layout, sl: _Crop, style: Style, below: np.ndarray) -> np.ndarray:
        g = lay.g
        cx, cy = lay.ear_centre(side)
        du, dv = lay.u[sl] - cx + 0.2 * side * g.ear_width, lay.v[sl] - cy
        inner = _bump(du, dv, 0.45 * g.ear_width, 0.55 * g.ear_height)
        return _skin_field(lay, sl, style) * (0.92 - 0.25 * inner)[..., None]

    return colour


def _colour_mouth(lay: _Layout, sl: _Crop, style: Style, below: np.ndarray) -> np.ndarray:
    # A fixed look (no style): dark inside, upper teeth with faint gaps.
    lines = _mouth_lines(lay)
    mu, mv = lines.mu[sl], lines.mv[sl]
    top, bottom = lines.open_top[sl], lines.open_bottom[sl]
    depth = 1.0 - 0.4 * lines.envelope[sl]
    colour = _MOUTH_INSIDE * depth[..., None]
    teeth_edge = top + 0.45 * (bottom - top) - 0.004
    in_teeth = np.clip((teeth_edge - mv) / lay.px_head + 0.5, 0.0, 1.0) * _smooth(lines.envelope[sl] / 0.5)
    teeth = _TEETH * (0.88 + 0.12 * np.abs(np.cos(mu * 70.0)))[..., None]
    return colour + in_teeth[..., None] * (teeth - colour)


def _colour_lip(upper: bool):
    def colour(lay: _Layout, sl: _Crop, style: Style, below: np.ndarray) -> np.ndarray:
        lines = _mouth_lines(lay)
        mu, mv = lines.mu[sl], lines.mv[sl]
        inner = lines.open_top[sl] if upper else lines.open_bottom[sl]
        # Darker along the mouth line, lighter on the lower lip's fullest part.
        crease = 0.7 + 0.3 * _smooth(np.abs(mv - inner) / 0.01)
        factor = crease * (0.82 if upper else 1.0)
        if not upper:
            middle = 0.5 * (lines.open_bottom[sl] + lines.bottom[sl])
            factor = factor + 0.18 * _bump(mu, mv - middle, 0.5 * lines.half_w, 0.008)
        shade = _lambert(style, mu / (3.0 * lines.half_w), np.zeros_like(mu))
        return _rgb(style.lip) * (factor * shade)[..., None]

    return colour


def _colour_hair(lay: _Layout, sl: _Crop, style: Style, below: np.ndarray) -> np.ndarray:
    g = lay.g
    u, v = lay.u[sl], lay.v[sl]
    centre, half_w, half_h = lay.skull()
    crown_x, crown_y = g.hair_part * g.face_width, centre - half_h + 0.05
    du, dv = u - crown_x, v - crown_y
    radius = np.sqrt(du * du + dv * dv)
    # Strands run out from the crown: a texture across the angle around it, bent by waves.
    angle = np.arctan2(du, dv + 0.15) + g.hair_wave * 0.06 * np.sin(radius * 30.0)
    f, p = style.strand_freq, style.strand_phase
    strands = 0.6 * np.sin(angle * f + p) + 0.4 * np.sin(angle * (2.3 * f) + 1.7 * p)
    sheen = style.hair_sheen * np.exp(-(((radius - 0.22) / 0.07) ** 2))
    # Darker where hair meets the face and at the ends.
    shadow = 1.0 - 0.3 * _smooth(1.0 - np.abs(lay.face_sdf[sl]) / 0.04) - 0.25 * _smooth((radius - 0.6) / 0.6)
    # Strands also add a little light, so that near-black hair shows texture too.
    texture = (1.0 + style.strand_contrast * strands) * shadow
    glow = 0.08 * style.strand_contrast * (strands + 1.0) * shadow
    colour = _rgb(style.hair) * texture[..., None] + glow[..., None]
    shine = _rgb((0.95, 0.92, 0.85)) * np.maximum(_rgb(style.hair) ** 0.5, 0.45)
    return colour + (sheen * 0.6)[..., None] * (shine - colour)


def _colour_hat(lay: _Layout, sl: _Crop, style: Style, below: np.ndarray) -> np.ndarray:
    # The hat takes the cloth's base colour (visible on every face), shaded as a dome.
    u, v = lay.u[sl], lay.v[sl]
    base = lay.hat_bottom()
    _, skull_w, _ = lay.skull()
    shade = _lambert(style, u / (skull_w + 0.05), (v - base) / 0.5)
    band = 1.0 - 0.2 * _smooth((v - base + 0.045) / 0.004)
    ribs = 1.0 + 0.04 * np.sin(u * 90.0)
    return _rgb(style.cloth) * (shade * band * ribs)[..., None]


def _colour_earrings(lay: _Layout, sl: _Crop, style: Style, below: np.ndarray) -> np.ndarray:
    g = lay.g
    u, v = lay.u[sl], lay.v[sl]
    glint = np.zeros_like(u)
    for side in (1, -1):
        cx, _, stud_y = _earring_place(lay, side)
        r = g.earring_size
        glint = np.maximum(glint, _bump(u - cx + 0.35 * r, v - stud_y + 0.35 * r, 0.45 * r, 0.45 * r))
    return _rgb(style.metal) * (0.7 + 0.6 * glint)[..., None]


def _colour_necklace(lay: _Layout, sl: _Crop, style: Style, below: np.ndarray) -> np.ndarray:
    beads = 0.7 + 0.4 * np.abs(np.cos(lay.x[sl] * 110.0))
    return _rgb(style.metal) * beads[..., None]


def _colour_neck(lay: _Layout, sl: _Crop, style: Style, below: np.ndarray) -> np.ndarray:
    x, y = lay.x[sl], lay.y[sl]
    shade = _lambert(style, (x - lay.g.head_x) / 0.5, np.zeros_like(x))
    under_chin = 0.7 + 0.3 * _smooth((y - lay.chin_y() + 0.02) / 0.14)
    return _rgb(style.skin) * (0.93 * shade * under_chin)[..., None]


def _colour_cloth(lay: _Layout, sl: _Crop, style: Style, below: np.ndarray) -> np.ndarray:
    g = lay.g
    x, y = lay.x[sl] - g.head_x, lay.y[sl]
    c, s = np.cos(style.cloth_angle), np.sin(style.cloth_angle)
    a, b = (x * c + y * s) * style.cloth_freq, (y * c - x * s) * style.cloth_freq
    stripes = _smooth(0.5 + 2.0 * np.sin(a * np.pi))
    checks = _smooth(0.5 + 4.0 * np.sin(a * np.pi) * np.sin(b * np.pi))
    dots = _smooth((0.3 - np.sqrt((a - np.round(a)) ** 2 + (b - np.round(b)) ** 2)) * 12.0)
    accent = style.cloth_stripes * stripes + style.cloth_checks * checks + style.cloth_dots * dots
    colour = _rgb(style.cloth) + accent[..., None] * (_rgb(style.cloth_accent) - _rgb(style.cloth))
    folds = 0.9 + 0.08 * np.sin(x * 9.0 + y * 4.0) + 0.05 * np.sin(x * 23.0 - y * 7.0)
    collar = 0.8 + 0.2 * _smooth((y - g.shoulder_y + 0.01) / 0.08)
    return colour * (folds * collar * (1.0 - 0.25 * _smooth((np.abs(x) - 0.5) / 0.5)))[..., None]


def _background(lay: _Layout, style: Style) -> np.ndarray:
    """Gradient with a soft light spot and low-frequency texture, float32 (S, S, 3)."""
    x, y = lay.x, lay.y
    along = x * np.cos(style.background_angle) + y * np.sin(style.background_angle)
    t = np.clip(0.5 + 0.5 * along, 0.0, 1.0)
    top, bottom = _rgb(style.background_top), _rgb(style.background_bottom)
    colour = top + t[..., None] * (bottom - top)
    spot = style.background_blob * _bump(x - style.background_blob_x, y - style.background_blob_y, 0.7, 0.7)
    p = style.background_phase
    texture = 0.05 * np.sin(x * 4.0 + p) * np.sin(y * 5.0 + 2.0 * p) + 0.02 * np.sin((x - 0.6 * y) * 9.0 + p)
    return colour * (1.0 + texture)[..., None] + spot[..., None]


_COLOURS = {
    labels.CLASS_ID["skin"]: _colour_skin,
    labels.CLASS_ID["nose"]: _colour_nose,
    labels.CLASS_ID["eye_g"]: _colour_glasses,
    labels.CLASS_ID["l_eye"]: _colour_eye(1),
    labels.CLASS_ID["r_eye"]: _colour_eye(-1),
    labels.CLASS_ID["l_brow"]: _colour_brow(1),
    labels.CLASS_ID["r_brow"]: _colour_brow(-1),
    labels.CLASS_ID["l_ear"]: _colour_ear(1),
    labels.CLASS_ID["r_ear"]: _colour_ear(-1),
    labels.CLASS_ID["mouth"]: _colour_mouth,
    labels.CLASS_ID["u_lip"]: _colour_lip(upper=True),
    labels.CLASS_ID["l_lip"]: _colour_lip(upper=False),
    labels.CLASS_ID["hair"]: _colour_hair,
    labels.CLASS_ID["hat"]: _colour_hat,
    labels.CLASS_ID["ear_r"]: _colour_earrings,
    labels.CLASS_ID["neck_l"]: _colour_necklace,
    labels.CLASS_ID["neck"]: _colour_neck,
    labels.CLASS_ID["cloth"]: _colour_cloth,
}


# ----------------------------------------------------------------------------- public API


def _check_size(size: int) -> None:
    if not isinstance(size, (int, np.integer)) or size < 8:
        raise ValueError(f"size must be an int >= 8 (pixels per side), got {size!r}.")


def _masks_and_labels(sdfs: dict[int, np.ndarray], size: int) -> tuple[np.ndarray, np.ndarray]:
    masks = np.zeros((len(PART_IDS), size, size), dtype=bool)
    label_map = np.zeros((size, size), dtype=np.uint8)
    for part_id, sdf in sdfs.items():  # id order: later parts overwrite earlier ones
        np.less(sdf, 0.0, out=masks[part_id - 1])
        label_map[masks[part_id - 1]] = part_id
    return masks, label_map


def render_labels(geometry: Geometry, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Label map uint8 (S, S) in [0, 19) and part masks bool (18, S, S); ignores the style."""
    _check_size(size)
    sdfs = _part_sdfs(_layout(geometry, size))
    masks, label_map = _masks_and_labels(sdfs, size)
    return label_map, masks


def render_parts(geometry: Geometry, style: Style, size: int) -> Rendered:
    """Renders image, label map and part masks of one face at size x size pixels."""
    _check_size(size)
    lay = _layout(geometry, size)
    sdfs = _part_sdfs(lay)
    image = _background(lay, style).astype(np.float32)
    inv_px = np.float32(1.0 / lay.px)
    for part_id, sdf in sdfs.items():
        coverage = np.clip(0.5 - sdf * inv_px, 0.0, 1.0)
        rows = np.flatnonzero(coverage.any(axis=1))
        if rows.size == 0:
            continue
        cols = np.flatnonzero(coverage.any(axis=0))
        crop = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        below = image[crop]
        colour = _COLOURS[part_id](lay, crop, style, below)
        below += coverage[crop][..., None] * (colour - below)  # writes through the view
    masks, label_map = _masks_and_labels(sdfs, size)
    image_u8 = np.clip(image * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8)
    return Rendered(image=image_u8, labels=label_map, masks=masks)


def render(geometry: Geometry, style: Style, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pure renderer: (image uint8 (S, S, 3) RGB, label map uint8 (S, S) in [0, 19))."""
    rendered = render_parts(geometry, style, size)
    return rendered.image, rendered.labels
