"""How many labels a method saves: arithmetic on label-efficiency curves, macro F1 over the
labelled images a run consumed, as plain functions over arrays whose last axis is the measured
points, so one call serves a point estimate and every bootstrap resample at once.

**Labels consumed** (:func:`labels_consumed`) count every labelled image a run used: its
labelled training images and the validation images that chose its checkpoint (under the ``fixed``
validation setting the carve-out is the same at every fraction, so a 5% run of ``brain`` uses
17 + 79 labels, a quarter of what a 100% run uses, not a twentieth).

**Curves are fitted monotone before they are inverted** (:func:`monotone`): the least-squares
non-decreasing fit of the means (isotonic regression, pool-adjacent-violators; Barlow, Bartholomew,
Bremner & Brunk 1972, *Statistical Inference under Order Restrictions*; computed by
``scipy.optimize.isotonic_regression``), since more labels cannot make a method worse in
expectation and a dip is sampling noise; reading the first crossing of a raw curve that rises,
dips and rises again would read noise. Between measured points a fitted curve is linear in log
labels. A number read off a curve whose means do not rise at every step (:func:`rises`) rests on
the fit, and the tables mark it.

Values outside the measured range are censored, not extrapolated: :func:`labels_to_reach`
returns the smallest measured amount when the fitted curve is already at the level there (read
"≤") and ``inf`` when it never gets there ("not reached"). From it:

- **labels to match**: the labels at which a method's fitted curve reaches the *target*, the
  reference's fitted macro F1 at its largest measured amount (:func:`target`); the reference's
  own labels to reach that target are printed beside it (its fitted curve may get there before
  its largest amount), and the **saving** is their ratio, reference over method: 4 means the
  reference needs four times the labels (0 when the method never gets there: "less than" the
  reference's labels over the method's largest amount);
- the **saving at f**: the labels the reference's fitted curve needs to reach the method's
  fitted macro F1 at the method's f, over the labels the method consumed there;
- :func:`area_under_curve`: the trapezoidal area under the (raw) curve over log labels divided by
  the log range, the mean macro F1 over the measured range on a log scale (the "area under the
  learning curve" of active-learning benchmarks).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import isotonic_regression

MATCH_TOLERANCE = 1e-12
"""A curve "reaches" a level within this (means of identical scores are equal to the last bit,
means of equal scores in another order may not be)."""


def labels_consumed(rows: pd.DataFrame) -> pd.Series:
    """Labelled images a run used by fraction: labelled training plus validation images, the
    median over ``rows`` (runs of one validation setting) at each fraction; NaN where a record
    does not say."""
    used = rows["labelled"] + rows["validation_labelled"]
    return used.groupby(rows["fraction"]).median().sort_index()


def monotone(curve: np.ndarray) -> np.ndarray:
    """The non-decreasing least-squares fit of ``curve`` (..., k), equal weights."""
    curve = np.asarray(curve, dtype=float)
    fitted = curve.reshape(-1, curve.shape[-1]).copy()
    for row in np.flatnonzero(np.any(np.diff(fitted, axis=-1) < 0, axis=-1)):
        fitted[row] = isotonic_regression(fitted[row]).x
    return fitted.reshape(curve.shape)


def rises(curve: np.ndarray) -> np.ndarray:
    """Whether ``curve`` (..., k) rises at every step (so its monotone fit is itself)."""
    return np.all(np.diff(np.asarray(curve, dtype=float), axis=-1) > 0, axis=-1)


def labels_to_reach(amounts: np.ndarray, fitted: np.ndarray, level: np.ndarray) -> np.ndarray:
    """The labels at which a monotone ``fitted`` curve (..., k) over ascending ``amounts`` (k,)
    reaches ``level`` (...): linear in log labels on the segment that crosses it;
    ``amounts[0]`` when the curve starts at or above it; ``inf`` when it never gets there."""
    amounts = np.asarray(amounts, dtype=float)
    fitted = np.asarray(fitted, dtype=float)
    level = np.asarray(level, dtype=float)[..., None]
    reached = fitted >= level - MATCH_TOLERANCE
    first = np.argmax(reached, axis=-1)
    before = np.maximum(first - 1, 0)
    low = np.take_along_axis(fitted, before[..., None], axis=-1)[..., 0]
    high = np.take_along_axis(fitted, first[..., None], axis=-1)[..., 0]
    logs = np.log(amounts)
    rise = high - low
    share = np.divide(level[..., 0] - low, rise, out=np.ones_like(rise), where=rise > 0)
    crossing = np.exp(logs[before] + np.clip(share, 0.0, 1.0) * (logs[first] - logs[before]))
    crossing = np.where(first == 0, amounts[0], crossing)
    return np.where(reached.any(axis=-1), crossing, np.inf)


def target(reference_fitted: np.ndarray) -> np.ndarray:
    """The level to match: the reference's fitted macro F1 at its largest measured amount."""
    return np.asarray(reference_fitted, dtype=float)[..., -1]


def savings_at(amounts: np.ndarray, fitted: np.ndarray, reference_amounts: np.ndarray,
               reference_fitted: np.ndarray) -> np.ndarray:
    """Per measured point of a method (..., k): the labels the reference's fitted curve (...,
    k_r) needs to reach the method's fitted macro F1 there, over the labels the method consumed
    there. Censored like :func:`labels_to_reach`: ``reference_amounts[0] / a`` stands for "≤",
    ``inf`` for "> reference_amounts[-1] / a"."""
    levels = np.moveaxis(np.asarray(fitted, dtype=float), -1, 0)
    needed = np.stack([labels_to_reach(reference_amounts, reference_fitted, level)
                       for level in levels], axis=-1)
    return needed / np.asarray(amounts, dtype=float)


def area_under_curve(amounts: np.ndarray, curve: np.ndarray) -> np.ndarray:
    """Trapezoidal area under ``curve`` (..., k) over log ``amounts``, divided by the log
    range: the mean macro F1 over the measured range; NaN with fewer than two points."""
    logs = np.log(np.asarray(amounts, dtype=float))
    curve = np.asarray(curve, dtype=float)
    if logs.size < 2:
        return np.full(curve.shape[:-1], np.nan)
    return np.trapezoid(curve, logs, axis=-1) / (logs[-1] - logs[0])
