"""B-mode image formation for the phantom: probe geometry, speckle, attenuation, burnt-in text.

The pipeline (vectorised numpy and scipy.ndimage, float64 throughout):

1. The scene maps of :mod:`fetalbench.data.phantom.anatomy` (diffuse backscatter, specular
   amplitude, attenuation) are resampled onto the beam grid (depth x beam) of a convex sector or
   a linear probe.
2. Attenuation accumulates along each beam, round trip: bone leaves an acoustic shadow distal to
   it, fluid a mild enhancement; a time-gain curve compensates most of the tissue loss.
3. The RF signal is an axial x lateral Gaussian point-spread function applied to complex Gaussian
   scattering whose variance is the local backscatter, plus a coherent term for specular
   reflectors whose strength falls off as the surface turns parallel to the beam. The envelope is
   then Rayleigh distributed where scattering is diffuse (fully developed speckle) and Rician
   where a specular reflector adds a coherent component (Wagner et al., "Statistics of speckle
   in ultrasound B-scans", IEEE Trans. Sonics Ultrason. 30(3):156-163, 1983).
4. The envelope is log-compressed to the display dynamic range, lightly smoothed (the machines'
   speckle reduction), scan-converted to the display grid (black outside the field of view),
   mapped to 8 bits through a gamma grey map and overlaid with what real machines burn in:
   machine name, settings, a grey bar, depth ticks, a focus marker and sometimes calipers. Text
   uses a hand-made 3x5 bitmap font, so it is identical on every machine (Pillow's default font
   is a FreeType font whose rendering may vary between FreeType versions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

_GREY_LEVELS = 4096


@dataclass(frozen=True)
class SectorProbe:
    """Convex (or transvaginal) probe: beams fan out from a virtual apex above the face.

    Beam coordinates are (depth below the face in pixels, angle from vertical in radians).
    """

    apex_x: float
    apex_y: float
    radius: float
    half_angle: float
    max_depth: float

    def to_beam(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Beam coordinates of display points."""
        dx, dy = x - self.apex_x, y - self.apex_y
        return np.hypot(dx, dy) - self.radius, np.arctan2(dx, dy)

    def to_display(self, depth: np.ndarray, lateral: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Display (x, y) of beam coordinates."""
        r = depth + self.radius
        return self.apex_x + r * np.sin(lateral), self.apex_y + r * np.cos(lateral)

    def inside(self, depth: np.ndarray, lateral: np.ndarray) -> np.ndarray:
        """Whether beam coordinates fall in the field of view."""
        return (depth >= 0) & (depth <= self.max_depth) & (np.abs(lateral) <= self.half_angle)


@dataclass(frozen=True)
class LinearProbe:
    """Linear probe: parallel vertical beams, a rectangular field of view.

    Beam coordinates are (depth below the face in pixels, x in pixels).
    """

    left: float
    right: float
    top: float
    max_depth: float

    def to_beam(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Beam coordinates of display points."""
        return y - self.top, x

    def to_display(self, depth: np.ndarray, lateral: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Display (x, y) of beam coordinates."""
        return lateral, depth + self.top

    def inside(self, depth: np.ndarray, lateral: np.ndarray) -> np.ndarray:
        """Whether beam coordinates fall in the field of view."""
        return (
            (depth >= 0)
            & (depth <= self.max_depth)
            & (lateral >= self.left)
            & (lateral <= self.right)
        )


Probe = SectorProbe | LinearProbe


class Bilinear:
    """Bilinear resampling of arrays of one shape at fixed fractional (row, col) positions.

    Positions are computed once and reused for every map; those outside are clamped to the edge.
    """

    def __init__(self, rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> None:
        n_rows, n_cols = shape
        rows = np.clip(rows, 0.0, n_rows - 1.000001).ravel()
        cols = np.clip(cols, 0.0, n_cols - 1.000001).ravel()
        r0, c0 = rows.astype(np.intp), cols.astype(np.intp)
        self._row_frac, self._col_frac = rows - r0, cols - c0
        self._index = r0 * n_cols + c0
        self._stride = n_cols

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """Resample ``values`` of the source shape, optionally with a trailing channel axis.

        Returns a flat array (one row per position, channels last).
        """
        flat = values.reshape(values.shape[0] * values.shape[1], -1)
        i, n = self._index, self._stride
        col_frac, row_frac = self._col_frac[:, None], self._row_frac[:, None]
        top = np.take(flat, i, axis=0)
        top += col_frac * (np.take(flat, i + 1, axis=0) - top)
        bottom = np.take(flat, i + n, axis=0)
        bottom += col_frac * (np.take(flat, i + n + 1, axis=0) - bottom)
        top += row_frac * (bottom - top)
        return top


class BeamGeometry:
    """The display grid in beam coordinates and the beam grid covering its field of view.

    The beam grid has 0.85 depth samples per display row and 0.75 beams per display column (the
    point-spread function is wider than the spacing).
    """

    def __init__(self, probe: Probe, height: int, width: int) -> None:
        ys, xs = np.indices((height, width), dtype=np.float64)
        depth, lateral = np.broadcast_arrays(*probe.to_beam(xs, ys))
        self.depth = depth
        self.inside = probe.inside(depth, lateral)
        d0, d1 = float(depth[self.inside].min()), float(depth[self.inside].max())
        l0, l1 = float(lateral[self.inside].min()), float(lateral[self.inside].max())
        n_depth = max(math.ceil(0.85 * height), 2)
        n_beams = max(int(0.75 * width), 2)
        self.shape = (n_depth, n_beams)
        self.step = (d1 - d0) / (n_depth - 1)
        self.beam_depth = d0 + self.step * np.arange(n_depth)
        beam_lateral = np.linspace(l0, l1, n_beams)
        bx, by = np.broadcast_arrays(
            *probe.to_display(self.beam_depth[:, None], beam_lateral[None, :])
        )
        self._to_beams = Bilinear(by, bx, (height, width))
        lateral_step = max(l1 - l0, 1e-9) / (n_beams - 1)
        self._to_display = Bilinear(
            (depth - d0) / self.step, (lateral - l0) / lateral_step, (n_depth, n_beams)
        )

    def to_beams(self, *maps: np.ndarray) -> list[np.ndarray]:
        """Resample display-grid maps onto the beam grid."""
        stacked = self._to_beams(np.stack(maps, axis=-1))
        return [stacked[:, k].reshape(self.shape) for k in range(len(maps))]

    def to_display(self, values: np.ndarray) -> np.ndarray:
        """Scan-convert a beam-grid map to the display grid (0 outside the field of view)."""
        return self._to_display(values).reshape(self.inside.shape) * self.inside


@dataclass(frozen=True)
class Acquisition:
    """Machine settings and tissue conditions of one image.

    Gain and dynamic range in dB; point-spread-function sigmas and speckle-reduction smoothing in
    beam-grid samples; tissue attenuation in nepers per pixel, ``tgc`` the fraction of it the
    time-gain curve compensates; ``noise`` the electronic noise floor (intensity).
    """

    probe: Probe
    gain_db: float
    dynamic_range_db: float
    gamma: float
    psf_axial: float
    psf_lateral: float
    attenuation: float
    tgc: float
    noise: float
    smoothing: float
    px_per_cm: float


@dataclass(frozen=True)
class MachineStyle:
    """What one scanner does to every image it makes: the ranges its images' settings are drawn
    from. Real machines differ here, whoever holds the probe: the grey map (dynamic range in dB,
    gamma), the time-gain curve (the share of tissue loss compensated, less leaving the far field
    darker), the speckle size (point-spread-function sigmas in beam-grid samples, set by the
    probe's frequency and aperture) and the speckle reduction (smoothing, e.g. GE's SRI)."""

    dynamic_range_db: tuple[float, float]
    gamma: tuple[float, float]
    tgc: tuple[float, float]
    psf_axial: tuple[float, float]
    psf_lateral: tuple[float, float]
    smoothing: tuple[float, float]


_VOLUSON = MachineStyle(dynamic_range_db=(52.0, 60.0), gamma=(1.15, 1.4), tgc=(0.9, 1.0),
                        psf_axial=(0.6, 0.85), psf_lateral=(0.9, 1.25), smoothing=(0.8, 1.2))
MACHINE_STYLES: dict[str, MachineStyle] = {
    # GE Voluson E6 and S10: one vendor's processing; finer speckle, strong speckle reduction,
    # a wide dynamic range under a contrasty grey map, the far field fully compensated
    "Voluson E6": _VOLUSON,
    "Voluson S10": _VOLUSON,
    # Aloka: coarser speckle, little smoothing, a narrow dynamic range under a flatter grey map,
    # a far field left darker by the time-gain curve
    "Aloka": MachineStyle(dynamic_range_db=(42.0, 50.0), gamma=(0.9, 1.1), tgc=(0.75, 0.9),
                          psf_axial=(0.95, 1.25), psf_lateral=(1.5, 2.0), smoothing=(0.3, 0.55)),
    # the other machines: the ranges every machine shared in generator version 1
    "Other": MachineStyle(dynamic_range_db=(45.0, 58.0), gamma=(1.0, 1.35), tgc=(0.85, 1.0),
                          psf_axial=(0.7, 1.0), psf_lateral=(1.0, 1.5), smoothing=(0.4, 1.0)),
}
"""Each machine's :class:`MachineStyle` (generator version 2; in version 1 every machine drew
from the ``Other`` ranges, and a model trained on the Voluson E6 lost nothing on the Aloka)."""


def sample_acquisition(
    rng: np.random.Generator,
    machine: str,
    transvaginal: bool,
    shape: tuple[int, int],
    gain_offset_db: float,
    zoom: float,
) -> Acquisition:
    """Draw probe geometry and settings for one image.

    Voluson and Aloka images use a convex sector (Aloka narrower), the ``Other`` machine a linear
    probe, and the maternal cervix a wide transvaginal sector whatever the machine; grey map,
    time-gain curve, speckle size and speckle reduction come from the machine's
    :data:`MACHINE_STYLES`.
    """
    h, w = shape
    px_per_cm = w * zoom / 12.0
    if transvaginal:
        face = rng.uniform(0.0, 0.05) * h
        radius = rng.uniform(0.6, 1.0) * px_per_cm
        probe: Probe = SectorProbe(
            w / 2 + rng.uniform(-0.05, 0.05) * w,
            face - radius,
            radius,
            rng.uniform(1.0, 1.2),
            rng.uniform(0.85, 0.98) * (h - face),
        )
    elif machine == "Other":
        margin = rng.uniform(0.08, 0.18) * w
        top = rng.uniform(0.03, 0.08) * h
        probe = LinearProbe(margin, w - margin, top, h)
    else:
        half_angle = (
            rng.uniform(0.55, 0.66) if machine.startswith("Voluson") else rng.uniform(0.45, 0.55)
        )
        radius = rng.uniform(3.5, 5.0) * px_per_cm
        face = rng.uniform(-0.45, 0.06) * h
        probe = SectorProbe(
            w / 2 + rng.uniform(-0.06, 0.06) * w, face - radius, radius, half_angle, 2.0 * h
        )
    style = MACHINE_STYLES[machine]
    return Acquisition(
        probe=probe,
        gain_db=gain_offset_db + rng.uniform(-3.0, 3.0),
        dynamic_range_db=rng.uniform(*style.dynamic_range_db),
        gamma=rng.uniform(*style.gamma),
        psf_axial=rng.uniform(*style.psf_axial),
        psf_lateral=rng.uniform(*style.psf_lateral),
        attenuation=rng.uniform(0.15, 0.25) / px_per_cm,
        tgc=rng.uniform(*style.tgc),
        noise=rng.uniform(1e-6, 4e-6),
        smoothing=rng.uniform(*style.smoothing),
        px_per_cm=px_per_cm,
    )


def _noise_gain(sigma: float) -> float:
    """Sum of squared weights of scipy's 1-D Gaussian kernel: the variance it leaves white noise."""
    radius = int(4.0 * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    return float(np.sum(kernel**2))


def _specular_weight(spec: np.ndarray) -> np.ndarray:
    """Fraction of specular echo returned: high where the surface faces the beam.

    The surface orientation comes from the smoothed gradient structure of the specular map: an
    axial gradient means a surface across the beam. Computed only where there are reflectors.
    """
    weight = np.zeros_like(spec)
    rows, cols = np.nonzero(np.any(spec > 0, axis=1))[0], np.nonzero(np.any(spec > 0, axis=0))[0]
    if rows.size == 0:
        return weight
    window = (slice(max(rows[0] - 4, 0), rows[-1] + 5), slice(max(cols[0] - 4, 0), cols[-1] + 5))
    smooth = ndimage.gaussian_filter(spec[window], 1.0)
    axial = ndimage.gaussian_filter(np.diff(smooth, axis=0, append=smooth[-1:]) ** 2, 1.5)
    lateral = ndimage.gaussian_filter(np.diff(smooth, axis=1, append=smooth[:, -1:]) ** 2, 1.5)
    weight[window] = 0.03 + 0.97 * (axial / (axial + lateral + 1e-12)) ** 2
    return weight


def form_bmode(
    log_echo: np.ndarray,
    spec: np.ndarray,
    atten: np.ndarray,
    geometry: BeamGeometry,
    acq: Acquisition,
    rng: np.random.Generator,
) -> np.ndarray:
    """8-bit B-mode image on the display grid (0 outside the field of view).

    ``log_echo`` is the natural log of the diffuse backscatter, ``spec`` the specular amplitude,
    ``atten`` the one-way attenuation in nepers per pixel, all on the display grid.
    """
    log_echo_b, spec_b, atten_b = geometry.to_beams(log_echo, spec, atten)
    echo_b = np.exp(log_echo_b)
    depth = geometry.beam_depth[:, None]
    one_way = (np.cumsum(atten_b, axis=0) - 0.5 * atten_b) * geometry.step
    gain = np.exp(-2.0 * (one_way + acq.attenuation * (1.0 - acq.tgc) * depth))
    sigma = (acq.psf_axial, acq.psf_lateral)
    spread = math.sqrt(2.0 * _noise_gain(sigma[0]) * _noise_gain(sigma[1]))
    scatter = np.sqrt(echo_b * gain + acq.noise) / spread
    coherent = spec_b * _specular_weight(spec_b) * np.sqrt(gain)
    noise = rng.standard_normal((2, *geometry.shape))
    real = ndimage.gaussian_filter(scatter * noise[0] + coherent, sigma)
    imag = ndimage.gaussian_filter(scatter * noise[1], sigma)
    envelope_db = 10.0 * np.log10(real**2 + imag**2 + 1e-12)
    display = np.clip(1.0 + (envelope_db + acq.gain_db) / acq.dynamic_range_db, 0.0, 1.0)
    display = ndimage.gaussian_filter(display, acq.smoothing)
    grey_map = np.round(np.linspace(0.0, 1.0, _GREY_LEVELS) ** acq.gamma * 255.0).astype(np.uint8)
    levels = geometry.to_display(display) * (_GREY_LEVELS - 1) + 0.5
    return grey_map[levels.astype(np.intp)]


# --- burnt-in annotations -----------------------------------------------------------------------

_GLYPHS = {
    "0": "111101101101111",
    "1": "010110010010111",
    "2": "111001111100111",
    "3": "111001111001111",
    "4": "101101111001001",
    "5": "111100111001111",
    "6": "111100111101111",
    "7": "111001010010010",
    "8": "111101111101111",
    "9": "111101111001111",
    "A": "010101111101101",
    "B": "110101110101110",
    "C": "011100100100011",
    "D": "110101101101110",
    "E": "111100110100111",
    "F": "111100110100100",
    "G": "011100101101011",
    "H": "101101111101101",
    "I": "111010010010111",
    "J": "001001001101010",
    "K": "101101110101101",
    "L": "100100100100111",
    "M": "101111111101101",
    "N": "110101101101101",
    "O": "010101101101010",
    "P": "110101110100100",
    "Q": "010101101110011",
    "R": "110101110101101",
    "S": "011100010001110",
    "T": "111010010010010",
    "U": "101101101101111",
    "V": "101101101010010",
    "W": "101101111111101",
    "X": "101101010101101",
    "Y": "101101010010010",
    "Z": "111001010100111",
    ".": "000000000000010",
    "-": "000000111000000",
    "/": "001001010100100",
    ":": "000010000010000",
    "+": "000010111010000",
    "%": "101001010100101",
    ">": "100110111110100",
    " ": "000000000000000",
}
_FONT = {
    c: np.array([int(b) for b in bits], dtype=bool).reshape(5, 3) for c, bits in _GLYPHS.items()
}


def draw_text(
    image: np.ndarray, x: int, y: int, text: str, value: int, scale: int = 1, right: bool = False
) -> None:
    """Burn ``text`` (upper-cased, 3x5 font) into ``image`` at top-left (x, y), or top-right."""
    glyphs = [_FONT[c] for c in text.upper()]
    bitmap = np.zeros((5, 4 * len(glyphs)), dtype=bool)
    for i, glyph in enumerate(glyphs):
        bitmap[:, 4 * i : 4 * i + 3] = glyph
    bitmap = np.kron(bitmap[:, :-1], np.ones((scale, scale), dtype=bool))
    if right:
        x -= bitmap.shape[1]
    h, w = image.shape
    y0, x0 = max(y, 0), max(x, 0)
    y1, x1 = min(y + bitmap.shape[0], h), min(x + bitmap.shape[1], w)
    if y0 < y1 and x0 < x1:
        region = image[y0:y1, x0:x1]
        region[bitmap[y0 - y : y1 - y, x0 - x : x1 - x]] = value


def _depth_ticks(
    image: np.ndarray, x: int, top: float, step: float, value: int, scale: int
) -> None:
    """Depth scale: a dot every centimetre, a longer tick every five."""
    h = image.shape[0]
    for k, y in enumerate(np.arange(top, h - scale, step)):
        length = 3 * scale if k % 5 == 0 else 2 * scale
        image[int(y) : int(y) + scale, x : x + length] = value


def _grey_bar(image: np.ndarray, x: int, y: int, width: int, height: int) -> None:
    """Vertical grey-scale bar, white at the top."""
    image[y : y + height, x : x + width] = np.linspace(255, 0, height).round()[:, None]


def _calipers(image: np.ndarray, rng: np.random.Generator, scale: int, px_per_cm: float) -> None:
    """Two '+' calipers joined by a dotted line and the measurement printed bottom-left."""
    h, w = image.shape
    p0 = np.array([rng.uniform(0.25, 0.5) * w, rng.uniform(0.3, 0.7) * h])
    p1 = np.array([rng.uniform(0.5, 0.75) * w, rng.uniform(0.3, 0.7) * h])
    length = float(np.hypot(*(p1 - p0)))
    for t in np.arange(0.0, 1.0, 4.0 / max(length, 1.0))[1:]:
        x, y = (p0 + t * (p1 - p0)).astype(int)
        image[y, x] = 220
    for x, y in (p0.astype(int), p1.astype(int)):
        draw_text(image, x - scale, y - 2 * scale, "+", 255, scale)
    mm = 10.0 * length / px_per_cm
    draw_text(image, 3 * scale, h - 7 * scale, f"+ D {mm:.1f}MM", 230, scale)


def burn_in(image: np.ndarray, machine: str, acq: Acquisition, rng: np.random.Generator) -> None:
    """Overlay the annotations of ``machine``'s screen layout onto the 8-bit ``image``."""
    h, w = image.shape
    s = max(1, round(h / 224))
    gain = round(acq.gain_db)
    if machine.startswith("Voluson"):
        model = "E6" if machine == "Voluson E6" else "S10"
        image[2 * s : 15 * s, 9 * s : 40 * s] = 0
        draw_text(image, 10 * s, 3 * s, "VOLUSON", 230, s)
        draw_text(image, 18 * s, 9 * s, model, 230, s)
        lines = [
            f"{rng.choice(['2.', '3.', '2+3.'])}TRIM.",
            f"HAR-{rng.choice(['MID', 'LOW', 'HIGH'])}",
            f"{rng.choice([97, 93, 100])}",
            f"GN {gain}",
            f"C{rng.integers(4, 7)} / M{rng.integers(5, 8)}",
            f"FF{rng.integers(1, 4)} / E{rng.integers(1, 4)}",
            f"SRI II {rng.integers(0, 5)} / CRI {rng.integers(0, 4)}",
        ]
        _grey_bar(image, 0, h // 22, 3 * s, int(0.29 * h))
        _depth_ticks(image, 10 * s, 3 * s, acq.px_per_cm, 235, s)
        text_x, right = w - 2 * s, True
    elif machine == "Aloka":
        lines = [
            "ALOKA",
            f"FR {rng.integers(18, 40)}",
            f"G {70 + gain}",
            f"DR {round(acq.dynamic_range_db)}",
            f"AP {rng.integers(40, 101)}%",
        ]
        _grey_bar(image, w - 4 * s, h // 5, 3 * s, int(0.25 * h))
        _depth_ticks(image, w - 12 * s, 3 * s, acq.px_per_cm, 235, s)
        text_x, right = 2 * s, False
    else:
        lines = [f"MI 0.{rng.integers(4, 10)}", f"TIS 0.{rng.integers(1, 9)}", f"GN {50 + gain}"]
        _depth_ticks(image, 2 * s, 3 * s, acq.px_per_cm, 235, s)
        text_x, right = w - 2 * s, True
    for i, line in enumerate(lines):
        draw_text(image, text_x, (2 + 6 * i) * s, line, 215, s, right=right)
    draw_text(image, 5 * s, int(rng.uniform(0.3, 0.6) * h), ">", 255, s)
    if rng.random() < 0.15:
        _calipers(image, rng, s, acq.px_per_cm)
