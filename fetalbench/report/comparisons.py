"""One table's evidence against the reference: cell intervals, paired differences, probability
of improvement, minimal detectable differences and label-efficiency numbers, all from one
crossed bootstrap over seeds and test images (:mod:`fetalbench.report.bootstrap`).

A table is one (dataset, task); an *arm* is a (protocol, validation setting) within it, and each
entry is compared with the reference ``supervised_imagenet`` of its own arm. Pairs are by seed (a
seed fixes the split and the label subset for every method) and by test image (one resample of
the test images serves every record of the table). Cells and curves share seeds, pre-trained
stages and nested label subsets, so intervals of different cells are not independent.

Seeds: a difference uses the seeds that the cell and the reference's cell share; a curve
statistic resamples the seeds that every cell of the entry's and the reference's curves share.
Labels to match and saving factors are read from the cell means that the score table shows (all
their seeds); areas under the curve are means over the shared seeds; where a curve misses a seed,
intervals rest on the shared seeds only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fetalbench.report import label_efficiency
from fetalbench.report.bootstrap import (
    N_RESAMPLES,
    Percentile,
    Standard,
    expanded_percentile,
    generator,
    image_weights,
    minimal_detectable_difference,
    resampled_macro_f1,
    seed_counts,
    seed_mean,
    standard_interval,
)
from fetalbench.report.statistics import MIN_TEST_PAIRS, holm, probability_of_improvement
from fetalbench.runs.metrics import decode_classes

REFERENCE = "supervised_imagenet"
ARM = ("protocol", "validation")


@dataclass(frozen=True)
class Curve:
    """An entry's label-efficiency numbers against its arm's reference entry ``reference``
    (None: no reference, the entry is the reference, or, for ``labels_to_match``, no reference
    run at 100% labels). ``saving`` holds, per measured
    fraction f, the fraction g the reference needs for the entry's F1 at f, over f."""

    entry: str
    method: str
    reference: str | None
    fractions: tuple[float, ...]
    reference_fractions: tuple[float, ...]
    seeds: int
    labels_to_match: Percentile | None
    saving: dict[float, Percentile] | None
    area: Standard
    area_difference: Standard | None


@dataclass(frozen=True)
class TableEvidence:
    """What the leaderboard says of one table beyond its means.

    ``cells``: one row per (entry, fraction): n, mean, std, and the 95% interval of the mean
    (``low``, ``high``). ``differences``: one row per (entry, fraction) of a non-reference entry
    whose arm has a reference cell there: pairs (shared seeds), estimate, se, df, low, high, p (NaN
    with fewer than :data:`MIN_TEST_PAIRS` pairs), p_holm (over the table), mdd, poi, poi_low,
    poi_high. ``curves``: by entry. ``images``: None when test images were resampled, else why
    they were not.
    """

    cells: pd.DataFrame
    differences: pd.DataFrame
    curves: dict[str, Curve]
    images: str | None


def _decoded(texts: pd.Series) -> np.ndarray:
    return np.stack([decode_classes(text) for text in texts])


def record_replicates(rows: pd.DataFrame, n_resamples: int, key: str
                      ) -> tuple[np.ndarray, str | None]:
    """(resamples, rows) macro F1 of each record under each resample of the test images, and
    None; or the records' own macro F1 repeated, and why the images could not be resampled."""
    observed = rows["macro_f1"].to_numpy(float)
    unchanged = np.broadcast_to(observed, (n_resamples, len(rows)))
    missing = int(rows["test_order"].isna().sum())
    if missing:
        return unchanged, (f"{missing} of its {len(rows)} records have no per-image test "
                           "predictions (made before records kept them)")
    if rows["test_order"].nunique() > 1 or rows["test_labels"].nunique() > 1:
        return unchanged, "its records were tested on different test sets (test orders differ)"
    labels = decode_classes(rows["test_labels"].iloc[0])
    weights = image_weights(labels.size, n_resamples, generator(f"{key}/images"))
    scores = resampled_macro_f1(labels, _decoded(rows["test_predicted"]), weights,
                                len(rows["classes"].iloc[0]))
    return scores, None


class _Table:
    """The rows of one table, their bootstrap replicates and lookups by (entry, fraction, seed)."""

    def __init__(self, rows: pd.DataFrame, n_resamples: int) -> None:
        self.rows = rows.reset_index(drop=True)
        self.key = f"{self.rows['dataset'].iloc[0]}/{self.rows['task'].iloc[0]}"
        self.n_resamples = n_resamples
        self.scores, self.images = record_replicates(self.rows, n_resamples, self.key)
        self.position = pd.Series(self.rows.index, index=pd.MultiIndex.from_frame(
            self.rows[["entry", "fraction", "seed"]])).sort_index()
        self.reference_of = {}
        references = self.rows[self.rows["method"] == REFERENCE]
        arms = self.rows.drop_duplicates("entry")
        for entry, *arm in arms[["entry", *ARM]].itertuples(index=False):
            match = references[(references[list(ARM)] == arm).all(axis=1)]["entry"]
            self.reference_of[entry] = None if match.empty else match.iloc[0]

    def seeds(self, entry: str, fraction: float) -> set[int]:
        return set(self.position.loc[(entry, fraction)].index)

    def fractions(self, entry: str) -> list[float]:
        return sorted(self.rows.loc[self.rows["entry"] == entry, "fraction"].unique())

    def values(self, entry: str, fractions: list[float], seeds: list[int]
               ) -> tuple[np.ndarray, np.ndarray]:
        """Observed (seeds, fractions) and replicate (resamples, seeds, fractions) macro F1."""
        positions = np.array([[self.position[(entry, f, s)] for f in fractions] for s in seeds])
        observed = self.rows["macro_f1"].to_numpy(float)[positions]
        return observed, self.scores[:, positions]

    def counts(self, n_seeds: int, what: str) -> np.ndarray:
        return seed_counts(n_seeds, self.n_resamples, generator(f"{self.key}/{what}"))

    def varies(self, n_seeds: int) -> bool:
        return n_seeds >= 2 or self.images is None


def _no_interval(estimate: float) -> Standard:
    return Standard(estimate, math.nan, math.nan, math.nan, math.nan, math.nan)


def _cells(table: _Table) -> pd.DataFrame:
    cells = []
    for (entry, fraction), group in table.rows.groupby(["entry", "fraction"], sort=True):
        seeds = sorted(group["seed"])
        observed, replicates = table.values(entry, [fraction], seeds)
        interval = standard_interval(observed[:, 0], replicates[..., 0])
        cells.append({"entry": entry, "fraction": fraction, "n": len(seeds),
                      "mean": interval.estimate,
                      "std": float(observed.std(ddof=1)) if len(seeds) > 1 else math.nan,
                      "low": interval.low, "high": interval.high})
    return pd.DataFrame(cells)


def _difference(table: _Table, entry: str, reference: str, fraction: float) -> dict | None:
    if (reference, fraction) not in table.position.index.droplevel("seed"):
        return None
    seeds = sorted(table.seeds(entry, fraction) & table.seeds(reference, fraction))
    row = {"entry": entry, "fraction": fraction, "pairs": len(seeds)}
    if not seeds:
        return row | {"estimate": math.nan}
    method_observed, method = table.values(entry, [fraction], seeds)
    reference_observed, base = table.values(reference, [fraction], seeds)
    counts = table.counts(len(seeds), f"{entry}/{fraction:g}/difference")
    interval = standard_interval((method_observed - reference_observed)[:, 0],
                                 (method - base)[..., 0])
    poi = expanded_percentile(
        float(probability_of_improvement(method_observed[:, 0], reference_observed[:, 0])),
        probability_of_improvement(method[..., 0], base[..., 0], counts, counts),
        len(seeds), table.varies(len(seeds)))
    return row | {
        "estimate": interval.estimate, "se": interval.se, "df": interval.df, "low": interval.low,
        "high": interval.high,
        "p": interval.p_value if len(seeds) >= MIN_TEST_PAIRS else math.nan,
        "mdd": minimal_detectable_difference(interval),
        "poi": poi.estimate, "poi_low": poi.low, "poi_high": poi.high,
    }


def _differences(table: _Table) -> pd.DataFrame:
    rows = []
    for entry, reference in table.reference_of.items():
        if reference is None or entry == reference:
            continue
        for fraction in table.fractions(entry):
            difference = _difference(table, entry, reference, fraction)
            rows += [difference] if difference else []
    columns = ["entry", "fraction", "pairs", "estimate", "se", "df", "low", "high", "p", "mdd",
               "poi", "poi_low", "poi_high"]
    frame = pd.DataFrame(rows, columns=columns).astype({"pairs": int})
    frame["p_holm"] = holm(frame["p"])
    return frame


def _curve(table: _Table, cells: pd.DataFrame, entry: str) -> Curve:
    reference = table.reference_of[entry]
    fractions = table.fractions(entry)
    compared = reference is not None and reference != entry
    reference_fractions = table.fractions(reference) if compared else []
    means = cells.set_index(["entry", "fraction"])["mean"]
    observed = means.loc[entry].loc[fractions].to_numpy()
    involved = [(entry, f) for f in fractions] + [(reference, f) for f in reference_fractions]
    seeds = sorted(set.intersection(*(table.seeds(*cell) for cell in involved)))
    counts = table.counts(len(seeds), f"{entry}/curve") if seeds else None

    def replicate(name: str, at: list[float], point: np.ndarray) -> np.ndarray:
        if counts is None:
            return np.broadcast_to(point, (table.n_resamples, len(at)))
        return seed_mean(counts, table.values(name, at, seeds)[1])

    common = [f for f in fractions if f in reference_fractions] if compared else fractions
    curve = replicate(entry, fractions, observed)

    def areas(name: str) -> tuple[np.ndarray, np.ndarray]:
        """Per-seed areas over the shared fractions: observed (seeds,), replicates (B, seeds)."""
        cells_observed, replicates = table.values(name, common, seeds)
        return (label_efficiency.area_under_curve(common, cells_observed),
                label_efficiency.area_under_curve(common, replicates))

    if seeds:
        own = areas(entry)
        area = standard_interval(*own)
    else:
        at_common = [fractions.index(f) for f in common]
        area = _no_interval(float(label_efficiency.area_under_curve(common,
                                                                    observed[at_common])))
    if not compared:
        return Curve(entry, entry.split(" (")[0], None, tuple(fractions), (), len(seeds), None,
                     None, area, None)
    reference_observed = means.loc[reference].loc[reference_fractions].to_numpy()
    reference_curve = replicate(reference, reference_fractions, reference_observed)
    difference = None
    if seeds:
        base = areas(reference)
        difference = standard_interval(own[0] - base[0], own[1] - base[1])
    varies = bool(seeds) and table.varies(len(seeds))
    to_match = None
    if 1.0 in reference_fractions:
        top = reference_fractions.index(1.0)
        to_match = expanded_percentile(
            float(label_efficiency.labels_to_match(fractions, observed,
                                                   reference_observed[top])),
            label_efficiency.labels_to_match(fractions, curve, reference_curve[:, top]),
            len(seeds), varies)
    factor_point = label_efficiency.saving_factor(fractions, observed, reference_fractions,
                                                  reference_observed)
    factor_replicates = label_efficiency.saving_factor(fractions, curve, reference_fractions,
                                                       reference_curve)
    saving = {f: expanded_percentile(float(factor_point[i]), factor_replicates[:, i],
                                     len(seeds), varies) for i, f in enumerate(fractions)}
    return Curve(entry, entry.split(" (")[0], reference, tuple(fractions),
                 tuple(reference_fractions), len(seeds), to_match, saving, area, difference)


def table_evidence(rows: pd.DataFrame, n_resamples: int = N_RESAMPLES) -> TableEvidence:
    """The evidence of one table's rows (one dataset and task, with an ``entry`` column)."""
    table = _Table(rows, n_resamples)
    cells = _cells(table)
    curves = {entry: _curve(table, cells, entry) for entry in sorted(table.reference_of)}
    return TableEvidence(cells, _differences(table), curves, table.images)
