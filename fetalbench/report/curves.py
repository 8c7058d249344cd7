"""One entry's label-efficiency numbers against its arm's reference, with their intervals
(:mod:`fetalbench.report.label_efficiency` for the arithmetic, :mod:`fetalbench.report.bootstrap`
for the resamples).

The label axis is labels consumed (training + validation images) under the arm's validation
setting, the median over the arm's runs at each fraction. Labels to match, the reference's own
labels to reach its level and savings are read from monotone fits of the cell means that the
score table shows (all their seeds); their intervals resample the seeds that every cell of the
entry's and the reference's curves shares, crossed with the table's resamples of the test
patients, fitting each resampled curve anew. Areas under the curve are means over the shared
seeds of per-seed areas (paired with the reference's). Only learned cells are points of a curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fetalbench.report import label_efficiency
from fetalbench.report.bootstrap import (
    Percentile,
    Standard,
    expanded_percentile,
    seed_mean,
    standard_interval,
)
from fetalbench.report.replicates import TableReplicates


@dataclass(frozen=True)
class Curve:
    """An entry's label-efficiency numbers against its arm's reference entry ``reference``
    (None: no reference, or the entry is the reference).

    ``amounts`` are the labels consumed at each of ``fractions`` (``reference_amounts`` the
    reference's); ``rises`` and ``reference_rises`` whether each curve's means rise at every
    step (else numbers read off it rest on its monotone fit, and are marked). ``to_match``: the
    labels at which the entry reaches the reference's fitted macro F1 at 100% labels; for the
    reference itself, where its own curve gets there. ``reference_reach``: where the reference
    gets there; ``match_saving``: ``reference_reach`` over ``to_match``. ``saving``: per measured
    fraction f, the labels the reference needs for the entry's fitted macro F1 at f over the
    entry's labels at f. Each None where it is not read (no reference run at 100% labels, or
    labels consumed unknown).
    """

    entry: str
    method: str
    reference: str | None
    fractions: tuple[float, ...]
    amounts: tuple[float, ...]
    reference_fractions: tuple[float, ...]
    reference_amounts: tuple[float, ...]
    seeds: int
    rises: bool
    reference_rises: bool
    to_match: Percentile | None
    reference_reach: Percentile | None
    match_saving: Percentile | None
    saving: dict[float, Percentile] | None
    area: Standard
    area_difference: Standard | None

    @property
    def fitted(self) -> bool:
        """Whether a number read against the reference is read off a curve that does not rise
        at every step (a dip its monotone fit removed, or a plateau): such a number is marked."""
        return not (self.rises and self.reference_rises)


def _no_interval(estimate: float) -> Standard:
    return Standard(estimate, math.nan, math.nan, math.nan, math.nan, math.nan)


class _Points:
    """The learned points of one entry's curve: fractions, labels consumed, mean macro F1 over
    all its seeds, and mean macro F1 over ``seeds`` under each resample (those seeds drawn with
    ``counts``, crossed with the table's patient resamples)."""

    def __init__(self, table: TableReplicates, means: pd.Series, entry: str, seeds: list[int],
                 counts: np.ndarray | None) -> None:
        self.fractions = table.fractions(entry)
        consumed = label_efficiency.labels_consumed(table.arm_rows(entry))
        self.amounts = consumed.loc[self.fractions].to_numpy(float)
        self.observed = means.loc[entry].loc[self.fractions].to_numpy(float)
        if counts is None:
            self.replicates = np.broadcast_to(self.observed,
                                              (table.n_resamples, len(self.fractions)))
        else:
            self.replicates = seed_mean(counts, table.values(entry, self.fractions, seeds)[1])
        self.fitted = label_efficiency.monotone(self.observed)
        self.fitted_replicates = label_efficiency.monotone(self.replicates)
        self.rises = bool(label_efficiency.rises(self.observed))

    @property
    def known(self) -> bool:
        return bool(np.isfinite(self.amounts).all())


def _areas(table: TableReplicates, entry: str, common: list[float], amounts: np.ndarray,
           seeds: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per-seed areas over the ``common`` fractions: observed (seeds,), replicates (B, seeds)."""
    observed, replicates = table.values(entry, common, seeds)
    return (label_efficiency.area_under_curve(amounts, observed),
            label_efficiency.area_under_curve(amounts, replicates))


def curve_evidence(table: TableReplicates, cells: pd.DataFrame, entry: str) -> Curve:
    """The label-efficiency numbers of ``entry`` (one with a learned cell) in ``table``, whose
    cell means are ``cells`` (``entry``, ``fraction``, ``mean``)."""
    reference = table.reference_of[entry]
    has_reference = reference is not None and bool(table.fractions(reference))
    compared = has_reference and reference != entry
    names = {entry, reference} if has_reference else {entry}
    seeds = sorted(set.intersection(*(table.seeds(name, f) for name in names
                                      for f in table.fractions(name))))
    counts = table.counts(len(seeds), f"{entry}/curve") if seeds else None
    means = cells.set_index(["entry", "fraction"])["mean"]
    own = _Points(table, means, entry, seeds, counts)
    base = _Points(table, means, reference, seeds, counts) if compared else (
        own if has_reference else None)
    varies = bool(seeds) and table.varies(len(seeds))

    def interval(point: np.ndarray, replicates: np.ndarray) -> Percentile:
        return expanded_percentile(float(point), replicates, len(seeds), varies)

    common = [f for f in own.fractions if base is None or f in base.fractions]
    at_common = [own.fractions.index(f) for f in common]
    area, difference = _no_interval(float(label_efficiency.area_under_curve(
        own.amounts[at_common], own.observed[at_common]))), None
    if seeds and own.known:
        mine = _areas(table, entry, common, own.amounts[at_common], seeds)
        area = standard_interval(*mine)
        if compared:
            theirs = _areas(table, reference, common, own.amounts[at_common], seeds)
            difference = standard_interval(mine[0] - theirs[0], mine[1] - theirs[1])

    to_match = reference_reach = match_saving = saving = None
    known = base is not None and own.known and base.known
    if compared and known:
        point = label_efficiency.savings_at(own.amounts, own.fitted, base.amounts, base.fitted)
        replicates = label_efficiency.savings_at(own.amounts, own.fitted_replicates,
                                                 base.amounts, base.fitted_replicates)
        saving = {f: interval(point[i], replicates[:, i]) for i, f in enumerate(own.fractions)}
    if known and 1.0 in base.fractions:
        level = label_efficiency.target(base.fitted)
        levels = label_efficiency.target(base.fitted_replicates)
        reach = (label_efficiency.labels_to_reach(base.amounts, base.fitted, level),
                 label_efficiency.labels_to_reach(base.amounts, base.fitted_replicates, levels))
        reference_reach = to_match = interval(*reach)
        if compared:
            needs = (label_efficiency.labels_to_reach(own.amounts, own.fitted, level),
                     label_efficiency.labels_to_reach(own.amounts, own.fitted_replicates,
                                                      levels))
            to_match = interval(*needs)
            match_saving = interval(reach[0] / needs[0], reach[1] / needs[1])
    return Curve(
        entry, entry.split(" (")[0], reference if compared else None, tuple(own.fractions),
        tuple(own.amounts), tuple(base.fractions) if compared else (),
        tuple(base.amounts) if compared else (), len(seeds), own.rises,
        base.rises if base is not None else True, to_match,
        reference_reach if compared else None, match_saving, saving, area, difference)
