"""How many labels a method saves: arithmetic on label-efficiency curves (macro F1 over label
fraction), as plain functions over arrays whose last axis is the measured fractions, so one call
serves a point estimate and every bootstrap resample at once.

Between measured fractions a curve is linear in log fraction. A crossing is the *first* measured
segment on which the curve reaches a level, so a curve that rises, dips and rises again is read
where it first gets there. Values outside the measured range are censored, not extrapolated:

- :func:`fraction_to_reach` returns the smallest measured fraction when the curve is already at
  the level there (read "≤ f") and ``inf`` when it never gets there ("not reached");
- :func:`labels_to_match` is the fraction at which a method reaches the reference's macro F1 at
  100% labels;
- the label-saving factor at a fraction f (:func:`saving_factor`) is g / f, where g is the
  fraction the reference needs to reach the method's macro F1 at f: 4 means the reference needs
  four times the labels. (Issue 18 words it as f over g, the share of the reference's labels the
  method needs: the reciprocal; the leaderboard prints g / f, which reads as "4x fewer labels".)
  It inherits g's censoring: "≤ r₁/f" when the method's F1 at f is no more than the reference's
  at its smallest fraction r₁, "> r_k/f" when the reference never reaches it;
- :func:`area_under_curve` is the trapezoidal area under macro F1 over log fraction divided by
  the log range, the mean macro F1 over the measured range on a log scale (the label-efficiency
  summary of e.g. "area under the learning curve" in active learning benchmarks).
"""

from __future__ import annotations

import numpy as np

MATCH_TOLERANCE = 1e-12
"""A curve "reaches" a level within this (means of identical scores are equal to the last bit,
means of equal scores in another order may not be)."""


def fraction_to_reach(fractions: np.ndarray, curve: np.ndarray, level: np.ndarray) -> np.ndarray:
    """The fraction at which ``curve`` (..., k) over ascending ``fractions`` (k,) first reaches
    ``level`` (...): interpolated linearly in log fraction on the first segment that crosses it;
    ``fractions[0]`` when the curve starts at or above it; ``inf`` when it never gets there."""
    fractions = np.asarray(fractions, dtype=float)
    curve = np.asarray(curve, dtype=float)
    level = np.asarray(level, dtype=float)[..., None]
    reached = curve >= level - MATCH_TOLERANCE
    first = np.argmax(reached, axis=-1)
    before = np.maximum(first - 1, 0)
    low = np.take_along_axis(curve, before[..., None], axis=-1)[..., 0]
    high = np.take_along_axis(curve, first[..., None], axis=-1)[..., 0]
    logs = np.log(fractions)
    rise = high - low
    share = np.divide(level[..., 0] - low, rise, out=np.ones_like(rise), where=rise > 0)
    crossing = np.exp(logs[before] + np.clip(share, 0.0, 1.0) * (logs[first] - logs[before]))
    crossing = np.where(first == 0, fractions[0], crossing)
    return np.where(reached.any(axis=-1), crossing, np.inf)


def labels_to_match(fractions: np.ndarray, curve: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The smallest fraction at which a method's mean macro F1 ``curve`` reaches ``target``,
    the reference's mean macro F1 at 100% labels (:func:`fraction_to_reach`)."""
    return fraction_to_reach(fractions, curve, target)


def saving_factor(fractions: np.ndarray, curve: np.ndarray, reference_fractions: np.ndarray,
                  reference_curve: np.ndarray) -> np.ndarray:
    """Label-saving factor g / f at each of the method's ``fractions`` (..., k): g is the
    fraction at which ``reference_curve`` (..., k_r) first reaches the method's macro F1 there.
    Censored like g: ``reference_fractions[0] / f`` stands for "≤", ``inf`` for "> r_k / f"."""
    levels = np.moveaxis(np.asarray(curve, dtype=float), -1, 0)
    needed = np.stack([fraction_to_reach(reference_fractions, reference_curve, level)
                       for level in levels], axis=-1)
    return needed / np.asarray(fractions, dtype=float)


def area_under_curve(fractions: np.ndarray, curve: np.ndarray) -> np.ndarray:
    """Trapezoidal area under ``curve`` (..., k) over log ``fractions``, divided by the log
    range: the mean macro F1 over the measured range; NaN with fewer than two fractions."""
    logs = np.log(np.asarray(fractions, dtype=float))
    curve = np.asarray(curve, dtype=float)
    if logs.size < 2:
        return np.full(curve.shape[:-1], np.nan)
    return np.trapezoid(curve, logs, axis=-1) / (logs[-1] - logs[0])
