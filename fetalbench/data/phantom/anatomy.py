"""Anatomy of the phantom: what each standard plane shows, drawn as acoustic property maps.

A :class:`Scene` lives on the display pixel grid and holds four maps: diffuse backscatter
(echogenicity, linear intensity), specular-reflector amplitude (bone surfaces, membranes),
one-way attenuation per pixel (bone casts shadows, fluid lets more through) and a label map of
the structures drawn (the mask written beside each image). Shapes are soft-edged ellipses, rings,
boxes and capsules in oriented local frames; each is evaluated only inside its bounding window, so
a scene costs a few milliseconds. :mod:`fetalbench.data.phantom.bmode` turns the maps into a
B-mode image.

The planes follow the FETAL_PLANES_DB classes (Burgos-Artizzu et al., Sci. Rep. 10:10200, 2020).
The six main planes differ grossly (head, abdomen, femur, thorax, maternal cervix, other fetal
parts). The three axial brain planes share the same skull and differ only in small internal
structures, as in the clinical definitions: thalami and cavum septi pellucidi (trans-thalamic),
cerebellum and cisterna magna (trans-cerebellum), atrium of the lateral ventricle with the
choroid plexus (trans-ventricular).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

STRUCTURES: tuple[str, ...] = (
    "skull",
    "brain",
    "midline",
    "thalami",
    "csp",
    "cerebellum",
    "cisterna_magna",
    "ventricle",
    "choroid_plexus",
    "abdomen",
    "stomach",
    "umbilical_vein",
    "spine",
    "thorax",
    "heart",
    "ribs",
    "thigh",
    "femur",
    "cervix",
    "cervix_canal",
    "bladder",
    "amniotic_fluid",
    "placenta",
    "limb",
    "face",
    "kidney",
    "umbilical_cord",
)
"""Structure names; the label id of a structure is its position here plus one (0 = background)."""

LABEL_IDS: dict[str, int] = {name: index for index, name in enumerate(STRUCTURES, start=1)}

Window = tuple[slice, slice]
Patch = tuple[Window, np.ndarray]


@dataclass(frozen=True)
class Tissue:
    """Acoustic properties: diffuse backscatter and specular amplitude in dB, attenuation in Np/px.

    0 dB is the brightest display level at zero gain; ``spec_db=None`` means no specular echo.
    """

    echo_db: float
    spec_db: float | None = None
    atten: float = 0.0

    @property
    def log_echo(self) -> float:
        """Natural logarithm of the mean backscattered intensity."""
        return self.echo_db * math.log(10.0) / 10.0

    @property
    def spec(self) -> float:
        """Specular (coherent) echo amplitude (linear)."""
        return 0.0 if self.spec_db is None else 10.0 ** (self.spec_db / 20.0)


MATERNAL = Tissue(-31.0)
WALL_BAND = Tissue(-22.0)
PLACENTA = Tissue(-28.0)
FLUID = Tissue(-55.0, atten=-0.006)
SOFT = Tissue(-34.0)
BRAIN = Tissue(-37.0)
SULCUS = Tissue(-30.0, spec_db=-24.0)
MEMBRANE = Tissue(-28.0, spec_db=-15.0)
SKULL = Tissue(-33.0, spec_db=-4.0, atten=0.04)
BONE = Tissue(-22.0, spec_db=0.0, atten=0.35)
RIB = Tissue(-24.0, spec_db=-5.0, atten=0.2)
THALAMUS = Tissue(-50.0)
CEREBELLUM = Tissue(-26.0)
VERMIS = Tissue(-26.0, spec_db=-20.0)
CHOROID = Tissue(-23.0)
LIVER = Tissue(-34.0)
SKIN = Tissue(-27.0, spec_db=-18.0)
LUNG = Tissue(-29.0)
MYOCARDIUM = Tissue(-33.0)
CARTILAGE = Tissue(-46.0)
STROMA = Tissue(-28.0)
GLAND = Tissue(-39.0)
KIDNEY = Tissue(-38.0)
JELLY = Tissue(-37.0)


def _upsample_weights(n: int, cell: int) -> tuple[np.ndarray, np.ndarray]:
    """Lower coarse index and fraction of each of ``n`` fine samples, ``cell`` per coarse step."""
    position = np.arange(n, dtype=np.float64) / cell
    lower = position.astype(np.intp)
    return lower, position - lower


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: int) -> np.ndarray:
    """Zero-mean, roughly unit-variance Gaussian noise correlated over about ``cell`` pixels.

    Coarse white noise, lightly smoothed, then linearly interpolated up (separably).
    """
    coarse = rng.standard_normal((shape[0] // cell + 2, shape[1] // cell + 2))
    coarse = ndimage.gaussian_filter(coarse, 0.7, mode="nearest") * 2.2
    r0, fr = _upsample_weights(shape[0], cell)
    c0, fc = _upsample_weights(shape[1], cell)
    rows = coarse[r0] * (1.0 - fr)[:, None] + coarse[r0 + 1] * fr[:, None]
    return rows[:, c0] * (1.0 - fc) + rows[:, c0 + 1] * fc


@dataclass(frozen=True)
class Frame:
    """An oriented local frame: centre and rotation in pixels/radians, unit lengths in pixels.

    ``su`` (along u) may be negative to mirror the frame; ``v`` points distal (down) at angle 0.
    """

    cx: float
    cy: float
    angle: float
    su: float
    sv: float

    def point(self, u: float, v: float) -> tuple[float, float]:
        """Pixel (x, y) of local point (u, v)."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        du, dv = u * self.su, v * self.sv
        return self.cx + du * c - dv * s, self.cy + du * s + dv * c

    def local(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Local (u, v) coordinates of every pixel in ``window`` (broadcast arrays)."""
        ys = np.arange(window[0].start, window[0].stop, dtype=np.float64)[:, None] - self.cy
        xs = np.arange(window[1].start, window[1].stop, dtype=np.float64)[None, :] - self.cx
        c, s = math.cos(self.angle), math.sin(self.angle)
        return (xs * c + ys * s) / self.su, (ys * c - xs * s) / self.sv

    def child(self, u: float, v: float, angle: float, su: float, sv: float) -> Frame:
        """A frame centred at local (u, v), turned ``angle`` further, with new unit lengths."""
        cx, cy = self.point(u, v)
        return Frame(cx, cy, self.angle + angle, su, sv)


class Scene:
    """The acoustic maps of one image and the label map of the structures drawn in it.

    Echogenicity is kept as a log intensity, so blending a structure at partial opacity moves it
    a fraction of the way in dB, as a faint structure looks on a log-compressed display.
    """

    def __init__(self, height: int, width: int, rng: np.random.Generator) -> None:
        self.shape = (height, width)
        self.rng = rng
        self.texture = 0.6 * smooth_noise(rng, self.shape, 12)
        self.log_echo = MATERNAL.log_echo + self.texture
        self.spec = np.zeros(self.shape)
        self.atten = np.zeros(self.shape)
        self.label = np.zeros(self.shape, dtype=np.uint8)
        self._spec_drawn = self._atten_drawn = False

    def window(self, x: float, y: float, rx: float, ry: float) -> Window | None:
        """Pixel window of a box of half-sizes (rx, ry) at (x, y), clipped; ``None`` if off-grid."""
        h, w = self.shape
        x0, x1 = max(int(x - rx) - 1, 0), min(int(x + rx) + 2, w)
        y0, y1 = max(int(y - ry) - 1, 0), min(int(y + ry) + 2, h)
        if x0 >= x1 or y0 >= y1:
            return None
        return slice(y0, y1), slice(x0, x1)

    def paint(
        self,
        patch: Patch | None,
        tissue: Tissue,
        name: str | None,
        opacity: float = 1.0,
        textured: bool = True,
    ) -> None:
        """Blend ``tissue`` over the maps with the patch's coverage times ``opacity``.

        ``textured`` modulates echogenicity and specular strength with the scene's smooth texture.
        Pixels at least half covered get the structure's label, however faint it is drawn.
        """
        if patch is None:
            return
        window, coverage = patch
        weight = coverage * opacity
        texture = self.texture[window] if textured else 0.0
        log_echo = tissue.log_echo + texture
        view = self.log_echo[window]
        view += weight * (log_echo - view)
        self._spec_drawn |= tissue.spec != 0.0
        self._atten_drawn |= tissue.atten != 0.0
        for target, value, drawn in (
            (self.spec, tissue.spec * np.exp(0.5 * texture), self._spec_drawn),
            (self.atten, tissue.atten, self._atten_drawn),
        ):
            if drawn:
                view = target[window]
                view += weight * (value - view)
        if name is not None:
            self.label[window][coverage >= 0.5] = LABEL_IDS[name]


def _extent(angle: float, ru: float, rv: float) -> tuple[float, float]:
    """Half-width and half-height of the bounding box of an ellipse rotated by ``angle``."""
    c, s = math.cos(angle), math.sin(angle)
    return math.hypot(ru * c, rv * s), math.hypot(ru * s, rv * c)


def _soft(distance_inside: np.ndarray) -> np.ndarray:
    """Coverage from a signed distance in pixels (positive inside), with a one-pixel soft edge."""
    return np.clip(distance_inside + 0.5, 0.0, 1.0)


def ellipse(scene: Scene, f: Frame, u: float, v: float, au: float, av: float) -> Patch | None:
    """Ellipse centred at local (u, v) with semi-axes (au, av) in local units."""
    ru, rv = abs(au * f.su), abs(av * f.sv)
    window = scene.window(*f.point(u, v), *_extent(f.angle, ru, rv))
    if window is None:
        return None
    lu, lv = f.local(window)
    radius = np.sqrt(((lu - u) / au) ** 2 + ((lv - v) / av) ** 2)
    return window, _soft((1.0 - radius) * min(ru, rv))


def ring(scene: Scene, f: Frame, au: float, av: float, width_px: float) -> Patch | None:
    """Elliptic ring of semi-axes (au, av) about the frame centre, ``width_px`` thick."""
    ru, rv = abs(au * f.su), abs(av * f.sv)
    window = scene.window(f.cx, f.cy, *_extent(f.angle, ru + width_px, rv + width_px))
    if window is None:
        return None
    lu, lv = f.local(window)
    radius = np.sqrt((lu / au) ** 2 + (lv / av) ** 2)
    return window, _soft(width_px / 2.0 - np.abs(radius - 1.0) * math.sqrt(ru * rv))


def box(scene: Scene, f: Frame, u: float, v: float, hu: float, hv: float) -> Patch | None:
    """Axis-aligned (in the frame) box centred at (u, v) with half-sizes (hu, hv)."""
    ru, rv = abs(hu * f.su), abs(hv * f.sv)
    window = scene.window(*f.point(u, v), math.hypot(ru, rv), math.hypot(ru, rv))
    if window is None:
        return None
    lu, lv = f.local(window)
    inside = np.minimum((hu - np.abs(lu - u)) * abs(f.su), (hv - np.abs(lv - v)) * abs(f.sv))
    return window, _soft(inside)


def capsule(
    scene: Scene, p0: tuple[float, float], p1: tuple[float, float], width_px: float
) -> Patch | None:
    """Line segment from pixel ``p0`` to ``p1`` with rounded ends, ``width_px`` thick."""
    (x0, y0), (x1, y1) = p0, p1
    window = scene.window(
        (x0 + x1) / 2.0,
        (y0 + y1) / 2.0,
        abs(x1 - x0) / 2.0 + width_px,
        abs(y1 - y0) / 2.0 + width_px,
    )
    if window is None:
        return None
    ys = np.arange(window[0].start, window[0].stop, dtype=np.float64)[:, None] - y0
    xs = np.arange(window[1].start, window[1].stop, dtype=np.float64)[None, :] - x0
    dx, dy = x1 - x0, y1 - y0
    t = np.clip((xs * dx + ys * dy) / max(dx * dx + dy * dy, 1e-9), 0.0, 1.0)
    distance = np.hypot(xs - t * dx, ys - t * dy)
    return window, _soft(width_px / 2.0 - distance)


def arc(
    scene: Scene, f: Frame, centre: float, half: float, width_px: float, radius: float = 1.0
) -> list[Patch | None]:
    """A stretch of the frame's unit ellipse (scaled by ``radius``) as a polyline of capsules.

    ``centre`` and ``half`` are the parametric angle of its middle and its half-length (radians).
    """
    angles = np.linspace(centre - half, centre + half, max(2, int(half * 6) + 2))
    points = [f.point(radius * math.cos(t), radius * math.sin(t)) for t in angles]
    return [capsule(scene, p0, p1, width_px) for p0, p1 in itertools.pairwise(points)]


# --- surroundings -------------------------------------------------------------------------------


def _maternal_wall(scene: Scene, depth: np.ndarray) -> None:
    """Layered bright bands of the maternal abdominal wall just below the probe face."""
    rng = scene.rng
    thickness = rng.uniform(12.0, 35.0)
    period = rng.uniform(5.0, 10.0)
    phase = rng.uniform(0.0, 2.0 * math.pi)
    rows = np.nonzero((depth < thickness).any(axis=1))[0]
    if rows.size == 0:
        return
    top = depth[: rows[-1] + 1]
    bands = (0.5 + 0.5 * np.sin(2.0 * math.pi * top / period + phase)) ** 4
    weight = np.clip((thickness - top) / 4.0, 0.0, 1.0)
    view = scene.log_echo[: rows[-1] + 1]
    view[:] = np.logaddexp(view, np.log(weight * bands + 1e-12) + WALL_BAND.log_echo)


def _surroundings(
    scene: Scene, cx: float, cy: float, a: float, pocket: tuple[float, float]
) -> None:
    """Placenta, an irregular pocket of amniotic fluid around the part, other fetal parts nearby."""
    rng = scene.rng
    if rng.random() < 0.45:
        side = rng.choice([-1.0, 1.0])
        f = Frame(cx, cy + side * a * rng.uniform(1.5, 2.0), rng.uniform(-0.4, 0.4), 1, 1)
        scene.paint(ellipse(scene, f, 0, 0, a * 2.5, a * 0.8), PLACENTA, "placenta")
    radius = a * rng.uniform(*pocket)
    window = scene.window(cx, cy, radius * 1.25, radius * 1.25)
    if window is not None:
        f = Frame(cx, cy, rng.uniform(0.0, math.pi), 1.0, rng.uniform(0.75, 1.0))
        lu, lv = f.local(window)
        distance = np.hypot(lu, lv)
        cos1, sin1 = lu / (distance + 1e-9), lv / (distance + 1e-9)
        cos2, sin2 = cos1 * cos1 - sin1 * sin1, 2.0 * cos1 * sin1
        cos3, sin3 = cos2 * cos1 - sin2 * sin1, sin2 * cos1 + cos2 * sin1
        (a2, b2), (a3, b3) = rng.uniform(-0.07, 0.07, size=(2, 2))
        wobble = a2 * cos2 + b2 * sin2 + a3 * cos3 + b3 * sin3
        scene.paint(
            (window, _soft(radius * (1.0 + wobble) - distance)),
            FLUID,
            "amniotic_fluid",
            textured=False,
        )
    for _ in range(rng.integers(0, 3)):
        angle = rng.uniform(-math.pi, math.pi)
        distance = a * rng.uniform(1.1, 1.6)
        f = Frame(
            cx + distance * math.cos(angle),
            cy + distance * math.sin(angle),
            rng.uniform(-math.pi, math.pi),
            a * rng.uniform(0.3, 0.7),
            a * rng.uniform(0.25, 0.5),
        )
        scene.paint(ellipse(scene, f, 0, 0, 1.0, 1.0), SOFT, None)
        scene.paint(ring(scene, f, 1.0, 1.0, 1.5), SKIN, None, textured=False)


# --- fetal head and the three axial brain planes ------------------------------------------------


def _head(scene: Scene, cx: float, cy: float, a: float) -> Frame:
    """Fetal head: soft tissue, brain, bright skull ring, falx (midline) and sulcal echoes."""
    rng = scene.rng
    mirror = rng.choice([-1.0, 1.0])
    f = Frame(cx, cy, rng.uniform(-0.35, 0.35), mirror * a, a * rng.uniform(0.76, 0.86))
    scene.paint(ellipse(scene, f, 0, 0, 1.08, 1.1), SOFT, None)
    scene.paint(ellipse(scene, f, 0, 0, 1.0, 1.0), BRAIN, "brain")
    skull = max(2.5, rng.uniform(0.05, 0.075) * a)
    scene.paint(ring(scene, f, 1.0, 1.0, skull), SKULL, "skull")
    scene.paint(ellipse(scene, f, 0, -0.62, 0.75, 0.3), SOFT, None, opacity=rng.uniform(0.2, 0.6))
    for _ in range(rng.integers(6, 14)):
        u, v = rng.uniform(-0.75, 0.75), rng.uniform(-0.65, 0.65)
        du, dv = rng.uniform(0.08, 0.3) * rng.choice([-1.0, 1.0]), rng.uniform(-0.08, 0.08)
        patch = capsule(scene, f.point(u, v), f.point(u + du, v + dv), rng.uniform(1.0, 2.0))
        scene.paint(patch, SULCUS, None, opacity=rng.uniform(0.3, 1.0))
    midline = max(1.2, 0.012 * a)
    shift = rng.normal(0.0, 0.02)
    scene.paint(
        capsule(scene, f.point(-0.93, shift), f.point(0.93, -shift), midline),
        MEMBRANE,
        "midline",
        opacity=rng.uniform(0.6, 1.0),
    )
    return f


def _csp(scene: Scene, f: Frame, opacity: float) -> None:
    """Cavum septi pellucidi: small anechoic box on the midline, anterior third, bright walls."""
    rng = scene.rng
    u, hu, hv = rng.normal(0.36, 0.03), rng.uniform(0.06, 0.09), rng.uniform(0.035, 0.05)
    scene.paint(box(scene, f, u, 0, hu + 0.02, hv + 0.02), MEMBRANE, "csp", opacity)
    scene.paint(box(scene, f, u, 0, hu, hv), FLUID, "csp", opacity, textured=False)


def _thalami(scene: Scene, f: Frame, opacity: float) -> None:
    """Thalami: two hypoechoic ovals either side of the midline, centrally."""
    rng = scene.rng
    u, offset = rng.normal(-0.04, 0.03), rng.uniform(0.1, 0.14)
    au, av = rng.uniform(0.14, 0.19), rng.uniform(0.09, 0.12)
    for side in (-1.0, 1.0):
        scene.paint(ellipse(scene, f, u, side * offset, au, av), THALAMUS, "thalami", opacity)


def _cerebellum(scene: Scene, f: Frame, opacity: float) -> None:
    """Cerebellum: two round hemispheres joined by the bright vermis (a dumbbell), posterior."""
    rng = scene.rng
    u, offset, radius = rng.normal(-0.55, 0.03), rng.uniform(0.1, 0.13), rng.uniform(0.09, 0.12)
    squash = abs(f.su / f.sv)
    for side in (-1.0, 1.0):
        r_px = radius * abs(f.su)
        hemisphere = f.child(u, side * offset * squash, 0.0, r_px, r_px)
        scene.paint(ellipse(scene, hemisphere, 0, 0, 1, 1), CEREBELLUM, "cerebellum", opacity)
        scene.paint(ring(scene, hemisphere, 1, 1, 1.5), VERMIS, "cerebellum", opacity)
    vermis = ellipse(scene, f, u, 0, radius * 0.55, radius * squash * 0.7)
    scene.paint(vermis, VERMIS, "cerebellum", opacity)


def _cisterna_magna(scene: Scene, f: Frame, opacity: float) -> None:
    """Cisterna magna: anechoic space behind the cerebellum, against the occipital skull."""
    rng = scene.rng
    au, av = rng.uniform(0.08, 0.12), rng.uniform(0.13, 0.18)
    cisterna = ellipse(scene, f, rng.normal(-0.78, 0.02), 0, au, av)
    scene.paint(cisterna, FLUID, "cisterna_magna", opacity, textured=False)


def _ventricle(scene: Scene, f: Frame, opacity: float) -> None:
    """Atrium of the distal lateral ventricle: an anechoic band in the posterior, distal half."""
    rng = scene.rng
    u, v = rng.normal(-0.4, 0.04), rng.uniform(0.36, 0.46)
    atrium = ellipse(scene, f, u, v, rng.uniform(0.22, 0.28), rng.uniform(0.07, 0.09))
    scene.paint(atrium, FLUID, "ventricle", opacity, textured=False)


def _choroid_plexus(scene: Scene, f: Frame, opacity: float) -> None:
    """Choroid plexus: echogenic oval filling part of the atrium."""
    rng = scene.rng
    u, v = rng.normal(-0.44, 0.03), rng.uniform(0.37, 0.45)
    plexus = ellipse(scene, f, u, v, rng.uniform(0.12, 0.16), rng.uniform(0.045, 0.06))
    scene.paint(plexus, CHOROID, "choroid_plexus", opacity)


BrainStructure = Callable[[Scene, Frame, float], None]
_BRAIN_PLANE_STRUCTURES: dict[str, tuple[BrainStructure, ...]] = {
    "Trans-thalamic": (_thalami, _csp),
    "Trans-cerebellum": (_cerebellum, _cisterna_magna),
    "Trans-ventricular": (_ventricle, _choroid_plexus),
}


def _brain(scene: Scene, cx: float, cy: float, a: float, brain_plane: str) -> None:
    """A fetal head in one of the axial planes (``Other``: none or a random few structures)."""
    rng = scene.rng
    f = _head(scene, cx, cy, a)
    if brain_plane in _BRAIN_PLANE_STRUCTURES:
        drawers = list(_BRAIN_PLANE_STRUCTURES[brain_plane])
        if brain_plane != "Trans-thalamic" and rng.random() < 0.6:
            drawers.append(_csp)
    else:
        pool = [d for pair in _BRAIN_PLANE_STRUCTURES.values() for d in pair]
        count = rng.choice([0, 1, 2], p=[0.4, 0.4, 0.2])
        drawers = [pool[i] for i in rng.choice(len(pool), size=count, replace=False)]
    visibility = rng.uniform(0.8, 1.0)
    for draw in drawers:
        draw(scene, f, visibility * rng.uniform(0.7, 1.0))


# --- trunk: abdomen and thorax ------------------------------------------------------------------


def _spine(scene: Scene, f: Frame) -> None:
    """Vertebra in cross-section: three bright ossification centres, posterior (large v)."""
    rng = scene.rng
    r = rng.uniform(0.05, 0.07)
    squash = abs(f.su / f.sv)
    for du, v in ((0.0, 0.82), (-0.13, 0.64), (0.13, 0.64)):
        scene.paint(ellipse(scene, f, du, v, r, r * squash), BONE, "spine", textured=False)


def _ribs(scene: Scene, f: Frame, count: int, sector: tuple[float, float]) -> None:
    """Short bright arcs on the body wall (rib cross-sections) at random angles in ``sector``."""
    rng = scene.rng
    width = max(1.8, 0.025 * abs(f.su))
    for centre in rng.uniform(*sector, size=count):
        for patch in arc(scene, f, centre, rng.uniform(0.1, 0.2), width, radius=0.95):
            scene.paint(patch, RIB, "ribs", textured=False)


def _trunk(scene: Scene, cx: float, cy: float, a: float, tissue: Tissue, name: str) -> Frame:
    """Round body cross-section with a bright skin line; spine at large v."""
    rng = scene.rng
    mirror = rng.choice([-1.0, 1.0])
    f = Frame(cx, cy, rng.uniform(-math.pi, math.pi), mirror * a, a * rng.uniform(0.86, 1.0))
    scene.paint(ellipse(scene, f, 0, 0, 1.0, 1.0), tissue, name)
    scene.paint(ring(scene, f, 1.0, 1.0, max(1.5, 0.02 * a)), SKIN, name, textured=False)
    return f


def _abdomen(scene: Scene, cx: float, cy: float, a: float, _: str) -> None:
    """Abdominal circumference plane: stomach bubble, umbilical vein, spine, a few ribs."""
    rng = scene.rng
    f = _trunk(scene, cx, cy, a, LIVER, "abdomen")
    stomach = f.child(
        rng.uniform(0.1, 0.3),
        rng.uniform(-0.4, -0.2),
        rng.uniform(-0.5, 0.5),
        a * rng.uniform(0.2, 0.3),
        a * rng.uniform(0.14, 0.2),
    )
    scene.paint(ellipse(scene, stomach, 0, 0, 1, 1), FLUID, "stomach", textured=False)
    vein = capsule(
        scene, f.point(rng.uniform(0.45, 0.6), 0.1), f.point(0.05, 0.02), max(2.0, 0.07 * a)
    )
    scene.paint(vein, FLUID, "umbilical_vein", opacity=rng.uniform(0.6, 1.0), textured=False)
    _spine(scene, f)
    if rng.random() < 0.6:
        _ribs(scene, f, int(rng.integers(1, 4)), (-math.pi, math.pi))


def _thorax(scene: Scene, cx: float, cy: float, a: float, _: str) -> None:
    """Four-chamber view: heart with four anechoic chambers, lungs, ribs all round, spine."""
    rng = scene.rng
    f = _trunk(scene, cx, cy, a, LUNG, "thorax")
    heart = f.child(
        rng.uniform(-0.05, 0.15),
        rng.uniform(-0.3, -0.15),
        rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.0),
        a * rng.uniform(0.38, 0.46),
        a * rng.uniform(0.32, 0.4),
    )
    scene.paint(ellipse(scene, heart, 0, 0, 1, 1), MYOCARDIUM, "heart")
    for du, dv, size in (
        (-0.44, -0.45, 0.3),
        (0.44, -0.45, 0.3),
        (-0.42, 0.38, 0.38),
        (0.42, 0.38, 0.38),
    ):
        au, av = size * rng.uniform(0.85, 1.15), size * rng.uniform(0.85, 1.15)
        chamber = ellipse(scene, heart, du, dv, au, av)
        scene.paint(chamber, FLUID, "heart", opacity=rng.uniform(0.8, 1.0), textured=False)
    scene.paint(ellipse(scene, heart, 0, -0.05, 0.12, 0.1), MEMBRANE, "heart")
    aorta = ellipse(scene, f, rng.uniform(-0.2, 0.2), 0.5, 0.07, 0.07)
    scene.paint(aorta, FLUID, None, textured=False)
    _spine(scene, f)
    _ribs(scene, f, int(rng.integers(5, 10)), (-math.pi, math.pi))


# --- femur, maternal cervix and other parts -----------------------------------------------------


def _long_bone(scene: Scene, f: Frame, half_length: float, width: float, name: str) -> None:
    """A bright, slightly bent long bone along u with hypoechoic cartilage ends."""
    rng = scene.rng
    bend = rng.uniform(-0.08, 0.08)
    points = [f.point(-half_length, 0.0), f.point(0.0, bend), f.point(half_length, 0.0)]
    for p0, p1 in itertools.pairwise(points):
        scene.paint(capsule(scene, p0, p1, width), BONE, name, textured=False)
    for end in (-1.0, 1.0):
        cartilage = ellipse(scene, f, end * (half_length + 0.07), 0.0, 0.06, 0.35)
        scene.paint(cartilage, CARTILAGE, name)


def _femur(scene: Scene, cx: float, cy: float, a: float, _: str) -> None:
    """Femur length plane: a bright bar casting a strong shadow, in the soft tissue of the thigh."""
    rng = scene.rng
    f = Frame(
        cx, cy, rng.uniform(-0.4, 0.4), a * rng.choice([-1.0, 1.0]), a * rng.uniform(0.22, 0.32)
    )
    scene.paint(ellipse(scene, f, 0, 0, 1.0, 1.0), SOFT, "thigh")
    _long_bone(scene, f, rng.uniform(0.62, 0.75), max(2.5, rng.uniform(0.03, 0.045) * a), "femur")
    if rng.random() < 0.5:
        _limb(scene, rng.uniform(0.2, 0.8) * scene.shape[1], cy + rng.uniform(0.3, 0.5) * a, a)


def _cervix(scene: Scene, cx: float, cy: float, a: float, _: str) -> None:
    """Transvaginal cervix: elongated stroma, hypoechoic glandular zone, bright canal line."""
    rng = scene.rng
    h, w = scene.shape
    f = Frame(
        cx, cy, rng.uniform(-0.6, 0.6), a * rng.choice([-1.0, 1.0]), a * rng.uniform(0.28, 0.4)
    )
    if rng.random() < 0.5:
        bladder = Frame(
            rng.uniform(0.2, 0.8) * w, rng.uniform(0.1, 0.25) * h, rng.uniform(-0.3, 0.3), 1, 1
        )
        scene.paint(
            ellipse(scene, bladder, 0, 0, 0.22 * w, 0.08 * h), FLUID, "bladder", textured=False
        )
    scene.paint(ellipse(scene, f, 0, 0, 1.0, 1.0), STROMA, "cervix")
    scene.paint(ellipse(scene, f, 0, 0, 0.85, rng.uniform(0.25, 0.4)), GLAND, "cervix_canal")
    points = [f.point(t, rng.normal(0.0, 0.03)) for t in (-0.85, -0.3, 0.3, 0.85)]
    for p0, p1 in itertools.pairwise(points):
        scene.paint(capsule(scene, p0, p1, 1.6), MEMBRANE, "cervix_canal", textured=False)
    if rng.random() < 0.3:
        funnel = ellipse(scene, f, 0.85, 0.0, rng.uniform(0.1, 0.2), rng.uniform(0.2, 0.35))
        scene.paint(funnel, FLUID, "cervix_canal", textured=False)


def _limb(scene: Scene, cx: float, cy: float, a: float) -> None:
    """A limb in long axis: soft tissue with one or two thin bones."""
    rng = scene.rng
    f = Frame(
        cx,
        cy,
        rng.uniform(-math.pi, math.pi),
        a * rng.uniform(0.5, 0.8),
        a * rng.uniform(0.15, 0.22),
    )
    scene.paint(ellipse(scene, f, 0, 0, 1.0, 1.0), SOFT, "limb")
    offsets = (0.0,) if rng.random() < 0.5 else (-0.3, 0.3)
    for offset in offsets:
        g = f.child(0.0, offset, 0.0, f.su, f.sv)
        _long_bone(scene, g, rng.uniform(0.5, 0.7), max(1.8, 0.02 * a), "limb")


def _face(scene: Scene, cx: float, cy: float, a: float) -> None:
    """Facial profile: soft-tissue oval with a bright outline, nose and lip bumps, an orbit."""
    rng = scene.rng
    f = Frame(
        cx,
        cy,
        rng.uniform(-math.pi, math.pi),
        a * rng.uniform(0.5, 0.7),
        a * rng.uniform(0.45, 0.6),
    )
    scene.paint(ellipse(scene, f, 0, 0, 1.0, 1.0), SOFT, "face")
    for patch in arc(scene, f, 0.0, 1.4, 2.0):
        scene.paint(patch, SKULL, "face", textured=False)
    for du, dv, r in ((1.02, -0.15, 0.14), (1.0, 0.3, 0.07), (0.98, 0.5, 0.07)):
        scene.paint(ellipse(scene, f, du, dv, r, r * 1.2), SOFT, "face")
    scene.paint(ellipse(scene, f, 0.45, -0.35, 0.16, 0.18), FLUID, "face", opacity=0.7)


def _kidney(scene: Scene, cx: float, cy: float, a: float) -> None:
    """Kidney: hypoechoic oval with a bright capsule and an anechoic pelvis."""
    rng = scene.rng
    f = Frame(
        cx,
        cy,
        rng.uniform(-math.pi, math.pi),
        a * rng.uniform(0.3, 0.45),
        a * rng.uniform(0.18, 0.26),
    )
    scene.paint(ellipse(scene, f, 0, 0, 1.0, 1.0), KIDNEY, "kidney")
    scene.paint(ring(scene, f, 1.0, 1.0, 1.6), SKIN, "kidney", textured=False)
    scene.paint(ellipse(scene, f, 0, 0.15, 0.35, 0.25), FLUID, "kidney", textured=False)


def _cord(scene: Scene, cx: float, cy: float, a: float) -> None:
    """Umbilical cord loops: a few cross-sections with one vein and two arteries each."""
    rng = scene.rng
    r = a * rng.uniform(0.09, 0.13)
    for _ in range(rng.integers(2, 5)):
        f = Frame(
            cx + rng.uniform(-2, 2) * r,
            cy + rng.uniform(-2, 2) * r,
            rng.uniform(-math.pi, math.pi),
            r,
            r,
        )
        scene.paint(ellipse(scene, f, 0, 0, 1.0, 1.0), JELLY, "umbilical_cord")
        for du, dv, rr in ((-0.3, 0.0, 0.38), (0.4, -0.3, 0.22), (0.4, 0.35, 0.22)):
            scene.paint(ellipse(scene, f, du, dv, rr, rr), FLUID, "umbilical_cord", textured=False)


def _other(scene: Scene, cx: float, cy: float, a: float, _: str) -> None:
    """Other planes: one to three of limbs, profile, kidney, cord, around the centre."""
    rng = scene.rng
    parts = (_limb, _face, _kidney, _cord)
    chosen = rng.choice(len(parts), size=rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]), replace=False)
    for index in chosen:
        x = cx + rng.uniform(-0.6, 0.6) * a
        y = cy + rng.uniform(-0.4, 0.4) * a
        parts[index](scene, x, y, a)


PlaneDrawer = Callable[[Scene, float, float, float, str], None]
_PLANE_DRAWERS: dict[str, tuple[PlaneDrawer, float, tuple[float, float] | None]] = {
    "Fetal brain": (_brain, 0.35, (1.08, 1.3)),
    "Fetal abdomen": (_abdomen, 0.28, (1.1, 1.35)),
    "Fetal thorax": (_thorax, 0.3, (1.1, 1.35)),
    "Fetal femur": (_femur, 0.36, (0.45, 0.7)),
    "Maternal cervix": (_cervix, 0.38, None),
    "Other": (_other, 0.3, (0.5, 0.9)),
}
"""Per plane: drawer, radius of the part (fraction of the width at size 1), range of the radius
of the amniotic fluid pocket around it (multiple of the part's radius; none for the cervix)."""


def draw_scene(
    plane: str,
    brain_plane: str,
    rng: np.random.Generator,
    depth: np.ndarray,
    size: float,
) -> Scene:
    """Draw one image's anatomy.

    ``depth`` is each display pixel's distance from the probe face (pixels), ``size`` the scale of
    the fetal part (gestational age times zoom, about 0.7-1.3).
    """
    h, w = depth.shape
    scene = Scene(h, w, rng)
    _maternal_wall(scene, depth)
    draw, radius, pocket = _PLANE_DRAWERS[plane]
    cx, cy, a = w * rng.uniform(0.4, 0.6), h * rng.uniform(0.45, 0.6), radius * w * size
    if pocket is not None:
        _surroundings(scene, cx, cy, a, pocket)
    draw(scene, cx, cy, a, brain_plane)
    return scene
