"""One table's evidence against the reference: cell intervals, paired differences, probability
of improvement, minimal detectable differences, which column leaders are separated from their
runner-up, and label-efficiency numbers, all from one bootstrap over seeds crossed with test
patients (:mod:`fetalbench.report.bootstrap`, :mod:`fetalbench.report.replicates`).

A table is one (dataset, task) of one setup (:mod:`fetalbench.report.setup`); an *arm* is a
(protocol, validation setting) within it, and each entry is compared with the reference
``supervised_imagenet`` of its own arm. Pairs are by seed (a seed fixes the split and the label
subset for every method) and by test patient (one resample of the patients serves every record
of the table). Cells and curves share seeds, pre-trained stages and nested label subsets, so
intervals of different cells are not independent.

Seeds: a difference uses the seeds that the cell and the reference's cell share; a curve
statistic resamples the seeds that every cell of the entry's and the reference's curves share
(:mod:`fetalbench.report.curves`).

Only cells whose runs all learned are compared (:func:`~fetalbench.report.replicates.
comparable_cells`): a cell (entry, fraction) one of whose seeds' runs has a learning verdict
other than ``learned`` (:mod:`fetalbench.runs.learning`) keeps its row in ``cells`` (``learned``
False, its seeds' ``verdicts``) but has no difference to the reference, is no reference cell for
others, leads no column, and is no point of any curve.

Label-efficiency numbers and the claims are read against a reference only when its curve rises
(:func:`unread`, the one rule the tables and the claims call): the paired difference (by seed,
the same bootstrap as every difference) between its macro F1 at 100% and at 5% labels must have
its 95% interval above 0, both cells present and learned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from fetalbench.report.bootstrap import (
    N_RESAMPLES,
    Standard,
    expanded_percentile,
    minimal_detectable_difference,
    standard_interval,
)
from fetalbench.report.curves import Curve, curve_evidence
from fetalbench.report.formatting import percent, standard
from fetalbench.report.label_efficiency import labels_consumed
from fetalbench.report.replicates import REFERENCE, TableReplicates
from fetalbench.report.statistics import (
    ALPHA,
    MIN_TEST_PAIRS,
    holm,
    probability_of_improvement,
)
from fetalbench.runs.learning import LEARNED, NOT_CHECKED, VERDICTS

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

    ``cells``: one row per (entry, fraction): labels consumed there (training + validation,
    :func:`~fetalbench.report.label_efficiency.labels_consumed`), n, mean, std, the 95% interval
    of the mean (``low``, ``high``), whether every seed's run learned (``learned``) and the
    seeds' verdicts counted (``verdicts``, e.g. "3/3 did not learn"), and whether it leads its
    column separated from the runner-up (``separated``, :func:`separated_leaders`).
    ``differences``: one row per (entry, fraction) of a non-reference entry, both it and its
    arm's reference cell there learned: pairs (shared seeds), estimate, se, df, low, high, p
    (NaN with fewer than :data:`MIN_TEST_PAIRS` pairs), p_holm (over the table), mdd, poi,
    poi_low, poi_high.
    ``curves``: by entry, of the entries with a learned cell (their learned cells).
    ``test_set``: None when test patients were resampled, else why not. ``references``: each
    entry's arm's reference entry (None without one); ``rises``: by reference entry.
    """

    cells: pd.DataFrame
    differences: pd.DataFrame
    curves: dict[str, Curve]
    test_set: str | None
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


def _cells(table: TableReplicates) -> pd.DataFrame:
    cells = []
    consumed = {entry: labels_consumed(table.arm_rows(entry)) for entry in table.reference_of}
    for (entry, fraction), group in table.rows.groupby(["entry", "fraction"], sort=True):
        seeds = sorted(group["seed"])
        observed, replicates = table.values(entry, [fraction], seeds)
        interval = standard_interval(observed[:, 0], replicates[..., 0])
        verdicts = group["learning"] if "learning" in group else pd.Series(
            LEARNED, group.index)
        cells.append({"entry": entry, "fraction": fraction,
                      "labels": float(consumed[entry].loc[fraction]), "n": len(seeds),
                      "mean": interval.estimate,
                      "std": float(observed.std(ddof=1)) if len(seeds) > 1 else math.nan,
                      "low": interval.low, "high": interval.high,
                      "learned": (entry, fraction) in table.comparable,
                      "verdicts": verdict_counts(verdicts)})
    return pd.DataFrame(cells)


def _difference(table: TableReplicates, entry: str, reference: str, fraction: float
                ) -> dict | None:
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


def _differences(table: TableReplicates) -> pd.DataFrame:
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


def separated_leaders(table: TableReplicates, cells: pd.DataFrame) -> set[tuple[str, float]]:
    """The (entry, fraction) cells that lead their column (the best mean among learned cells)
    separated from the runner-up (the second best): the paired difference over the seeds both
    share (at least :data:`MIN_TEST_PAIRS`) has a two-sided p-value, Holm-corrected over the
    table's columns, below :data:`~fetalbench.report.statistics.ALPHA`. A column whose best is
    within noise of the next bolds nothing."""
    leaders, p_values = [], []
    learned = cells[cells["learned"].astype(bool)]
    for fraction, column in learned.groupby("fraction", sort=True):
        if len(column) < 2:
            continue
        best, runner_up = column.nlargest(2, "mean")["entry"]
        seeds = sorted(table.seeds(best, fraction) & table.seeds(runner_up, fraction))
        if len(seeds) < MIN_TEST_PAIRS:
            continue
        first, first_replicates = table.values(best, [fraction], seeds)
        second, second_replicates = table.values(runner_up, [fraction], seeds)
        difference = standard_interval((first - second)[:, 0],
                                       (first_replicates - second_replicates)[..., 0])
        leaders.append((best, fraction))
        p_values.append(difference.p_value if difference.estimate > 0 else math.nan)
    adjusted = holm(p_values)
    return {leader for leader, p in zip(leaders, adjusted, strict=True) if p < ALPHA}


def _at(fractions: list[float], fraction: float) -> float | None:
    return next((f for f in fractions if math.isclose(f, fraction)), None)


def _rise(table: TableReplicates, reference: str) -> Rise:
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
    table = TableReplicates(rows, n_resamples)
    cells = _cells(table)
    leaders = separated_leaders(table, cells)
    cells["separated"] = [cell in leaders for cell in zip(cells["entry"], cells["fraction"],
                                                          strict=True)]
    curves = {entry: curve_evidence(table, cells, entry) for entry in sorted(table.reference_of)
              if table.fractions(entry)}
    rises = {reference: _rise(table, reference)
             for reference in sorted({r for r in table.reference_of.values() if r is not None})}
    return TableEvidence(cells, _differences(table), curves, table.test_set,
                         dict(table.reference_of), rises)
