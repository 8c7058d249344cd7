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

Only cells whose runs all learned are compared (:func:`comparable_cells`): a cell (entry,
fraction) one of whose seeds' runs has a learning verdict other than ``learned``
(:mod:`fetalbench.runs.learning`) keeps its row in ``cells`` (``learned`` False, its seeds'
``verdicts``) but has no difference to the reference, is no reference cell for others, and is no
point of any curve.

Label-efficiency numbers and the claims are read against a reference only when its curve rises
(:func:`unread`, the one rule the tables and the claims call): the paired difference (by seed,
the same bootstrap as every difference) between its macro F1 at 100% and at 5% labels must have
its 95% interval above 0, both cells present and learned.
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
from fetalbench.report.formatting import percent, standard
from fetalbench.report.statistics import MIN_TEST_PAIRS, holm, probability_of_improvement
from fetalbench.runs.learning import LEARNED, NOT_CHECKED, VERDICTS
from fetalbench.runs.metrics import decode_classes

REFERENCE = "supervised_imagenet"
ARM = ("protocol", "validation")
RISE = (0.05, 1.0)
"""The label fractions whose paired difference (the second's macro F1 minus the first's) tells
whether the reference's curve rises (:func:`unread`)."""
LEARNED_RULE = (
    "A cell (method, protocol, validation setting, label fraction) enters comparisons only when "
    "every seed's run learned: its learning verdict is `learned` (each training stage ended "
    "clearly below its loss's chance level, its k-NN probe rose above its start, and its loss "
    "had stopped falling; `fetalbench validate` recomputes the verdicts from the records). A "
    "cell marked † did not: its mean is shown, but it is never bolded, tested against the "
    "reference, ranked, or read for label efficiency or the claims, and a method none of whose "
    "cells learned is listed but never ranked."
)
RISE_RULE = (
    f"Label efficiency and the claims are read against `{REFERENCE}` only where its curve "
    f"rises: its paired difference in macro F1 between {percent(RISE[1])} and {percent(RISE[0])} "
    "labels (by seed, the bootstrap of the differences) has its 95% interval above 0, both "
    "cells learned; otherwise one line says why instead."
)


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
class Rise:
    """Whether a reference entry's curve rises: its paired difference in macro F1 between the
    :data:`RISE` fractions over the ``pairs`` seeds both cells share (None when it could not be
    computed), and why its label efficiency and claims are not read (None when they are)."""

    reference: str
    difference: Standard | None
    pairs: int
    reason: str | None


@dataclass(frozen=True)
class TableEvidence:
    """What the leaderboard says of one table beyond its means.

    ``cells``: one row per (entry, fraction): n, mean, std, the 95% interval of the mean
    (``low``, ``high``), whether every seed's run learned (``learned``) and the seeds' verdicts
    counted (``verdicts``, e.g. "3/3 did not learn"). ``differences``: one row per (entry,
    fraction) of a non-reference entry, both it and its arm's reference cell there learned:
    pairs (shared seeds), estimate, se, df, low, high, p (NaN
    with fewer than :data:`MIN_TEST_PAIRS` pairs), p_holm (over the table), mdd, poi, poi_low,
    poi_high. ``curves``: by entry, of the entries with a learned cell (their learned cells).
    ``images``: None when test images were resampled, else why they were not. ``references``:
    each entry's arm's reference entry (None without one); ``rises``: by reference entry.
    """

    cells: pd.DataFrame
    differences: pd.DataFrame
    curves: dict[str, Curve]
    images: str | None
    references: dict[str, str | None]
    rises: dict[str, Rise]


def unread(evidence: TableEvidence, entry: str) -> str | None:
    """Why ``entry``'s label-efficiency numbers, and a claim read against its reference, are not
    read: its arm has no reference, or the reference's curve does not rise (:data:`RISE_RULE`);
    None when they are read. The tables and the claims both ask this."""
    reference = evidence.references.get(entry)
    if reference is None:
        return f"no `{REFERENCE}` runs of the same protocol and validation setting"
    return evidence.rises[reference].reason


def verdict_counts(verdicts: pd.Series) -> str:
    """The seeds' learning verdicts counted, worst first: "2/3 did not learn, 1/3 learned"."""
    counts = verdicts.value_counts()
    order = [NOT_CHECKED, *reversed(VERDICTS)]
    return ", ".join(f"{counts[verdict]}/{len(verdicts)} {verdict}" for verdict in order
                     if verdict in counts)


def comparable_cells(rows: pd.DataFrame) -> set[tuple[str, float]]:
    """The (entry, fraction) cells every seed's run of which learned (a ``learned`` column;
    rows without one count as learned)."""
    learned = rows["learned"].astype(bool) if "learned" in rows else pd.Series(True, rows.index)
    every = learned.groupby([rows["entry"], rows["fraction"]]).all()
    return {cell for cell, ok in every.items() if ok}


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
        self.comparable = comparable_cells(self.rows)
        self.reference_of = {}
        references = self.rows[self.rows["method"] == REFERENCE]
        arms = self.rows.drop_duplicates("entry")
        for entry, *arm in arms[["entry", *ARM]].itertuples(index=False):
            match = references[(references[list(ARM)] == arm).all(axis=1)]["entry"]
            self.reference_of[entry] = None if match.empty else match.iloc[0]

    def seeds(self, entry: str, fraction: float) -> set[int]:
        return set(self.position.loc[(entry, fraction)].index)

    def all_fractions(self, entry: str) -> list[float]:
        """Every fraction of ``entry``, learned or not."""
        return sorted(self.rows.loc[self.rows["entry"] == entry, "fraction"].unique())

    def fractions(self, entry: str) -> list[float]:
        """The fractions of ``entry``'s cells that learned: the ones compared."""
        return [f for f in self.all_fractions(entry) if (entry, f) in self.comparable]

    def values(self, entry: str, fractions: list[float], seeds: list[int]
               ) -> tuple[np.ndarray, np.ndarray]:
        """Observed (seeds, fractions) and replicate (resamples, seeds, fractions) macro F1."""
        positions = np.array([[self.position[(entry, f, s)] for f in fractions] for s in seeds],
                             dtype=int).reshape(len(seeds), len(fractions))
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
        verdicts = group["learning"] if "learning" in group else pd.Series(
            LEARNED, group.index)
        cells.append({"entry": entry, "fraction": fraction, "n": len(seeds),
                      "mean": interval.estimate,
                      "std": float(observed.std(ddof=1)) if len(seeds) > 1 else math.nan,
                      "low": interval.low, "high": interval.high,
                      "learned": (entry, fraction) in table.comparable,
                      "verdicts": verdict_counts(verdicts)})
    return pd.DataFrame(cells)


def _difference(table: _Table, entry: str, reference: str, fraction: float) -> dict | None:
    if (reference, fraction) not in table.comparable:
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
    compared = reference is not None and reference != entry and bool(table.fractions(reference))
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


def _at(fractions: list[float], fraction: float) -> float | None:
    return next((f for f in fractions if math.isclose(f, fraction)), None)


def _rise(table: _Table, reference: str) -> Rise:
    """Whether ``reference``'s curve rises (:data:`RISE_RULE`)."""
    low, high = (_at(table.all_fractions(reference), f) for f in RISE)
    missing = [percent(f) for f, found in zip(RISE, (low, high), strict=True) if found is None]
    if missing:
        return Rise(reference, None, 0, f"the reference `{reference}` has no "
                                        f"{' or '.join(missing)} cell")
    unlearned = [percent(f) for f in (low, high) if (reference, f) not in table.comparable]
    if unlearned:
        cells = " and ".join(unlearned) + (" cells" if len(unlearned) > 1 else " cell")
        return Rise(reference, None, 0, f"the reference `{reference}`'s {cells} did not all "
                                        "learn (†)")
    seeds = sorted(table.seeds(reference, low) & table.seeds(reference, high))
    if not seeds:
        return Rise(reference, None, 0, f"the reference `{reference}`'s {percent(low)} and "
                                        f"{percent(high)} cells share no seed")
    observed, replicates = table.values(reference, [low, high], seeds)
    difference = standard_interval(observed[:, 1] - observed[:, 0],
                                   replicates[..., 1] - replicates[..., 0])
    if difference.low > 0:
        return Rise(reference, difference, len(seeds), None)
    interval = standard(difference, sign=True)
    interval += ", no interval" if math.isnan(difference.low) else ""
    return Rise(reference, difference, len(seeds),
                f"the reference `{reference}`'s curve does not rise ({percent(high)} - "
                f"{percent(low)} labels: {interval}, n={len(seeds)})")


def table_evidence(rows: pd.DataFrame, n_resamples: int = N_RESAMPLES) -> TableEvidence:
    """The evidence of one table's rows (one dataset and task, with an ``entry`` column and,
    optionally, ``learned`` and ``learning``: rows without them count as learned)."""
    table = _Table(rows, n_resamples)
    cells = _cells(table)
    curves = {entry: _curve(table, cells, entry) for entry in sorted(table.reference_of)
              if table.fractions(entry)}
    rises = {reference: _rise(table, reference)
             for reference in sorted({r for r in table.reference_of.values() if r is not None})}
    return TableEvidence(cells, _differences(table), curves, table.images,
                         dict(table.reference_of), rises)
