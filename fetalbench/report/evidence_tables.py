"""The Markdown of one table's evidence (:mod:`fetalbench.report.comparisons`): differences to
the reference, label efficiency, labelled images per run, and macro F1 per ultrasound machine.

Wording follows the code: intervals and tests use t with Welch-Satterthwaite degrees of freedom
(:func:`fetalbench.report.bootstrap.standard_interval`); the probability of improvement is
printed only where its interval excludes 0.5 (at three seeds it spans [0, 1] unless every seed of
one beats every seed of the other); a label-efficiency number read off a curve that does not rise
at every step is marked ‡ (:mod:`fetalbench.report.label_efficiency`)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from fetalbench.report.bootstrap import N_RESAMPLES, Percentile, Standard
from fetalbench.report.comparisons import REFERENCE, TableEvidence
from fetalbench.report.formatting import (
    MISSING,
    budget_amount,
    budget_column,
    count,
    labels_needed,
    markdown_table,
    match_saving,
    percent,
    saving,
    standard,
)
from fetalbench.report.record_table import FRACTION, PATIENTS
from fetalbench.report.statistics import MIN_TEST_PAIRS

FITTED = "‡"
"""The mark of a label-efficiency number read off a curve that does not rise at every step."""


def images_note(evidence: TableEvidence) -> str:
    """How the intervals of a table were made."""
    if evidence.test_set is None:
        return (f"Intervals: 95%, from {N_RESAMPLES} bootstrap resamples of the seeds and, "
                "crossed with them, of the test patients, each with all its images (every "
                "record of the table on the same resample: pairs by seed and by patient).")
    return (f"Intervals: 95%, from {N_RESAMPLES} bootstrap resamples of the seeds only, since "
            f"{evidence.test_set}: they leave out the test set's sampling error, and a cell of "
            "one seed has none.")


def _difference_text(row: pd.Series) -> str:
    if math.isnan(row["estimate"]):
        return MISSING
    text = standard(Standard(row["estimate"], row["se"], row["df"], row["low"], row["high"],
                             row["p"]), sign=True)
    if row["poi_low"] > 0.5 or row["poi_high"] < 0.5:
        text += f"; P(>) {row['poi']:.2f} [{row['poi_low']:.2f}, {row['poi_high']:.2f}]"
    return f"{text} (n={int(row['pairs'])})"


def difference_table(evidence: TableEvidence, order: list[str],
                     budget: str = FRACTION) -> str | None:
    """Rows: non-reference entries; columns: label budgets (fractions, or k patients per class
    for ``budget`` ``patients``); cells: paired difference in macro F1 to the arm's reference
    [95% interval] and the probability of improvement; None when there is nothing to
    compare."""
    differences = evidence.differences
    if differences.empty:
        return None
    fractions = sorted(differences["fraction"].unique())
    cells = differences.set_index(["entry", "fraction"])
    body = [[entry, *(_difference_text(cells.loc[(entry, f)]) if (entry, f) in cells.index
                      else MISSING for f in fractions)]
            for entry in order if entry in set(differences["entry"])]
    return markdown_table(["method", *(budget_column(f, budget) for f in fractions)], body)


def minimal_detectable(evidence: TableEvidence) -> str | None:
    """The table's minimal detectable difference: median and range over its compared cells."""
    mdd = evidence.differences["mdd"].dropna() if not evidence.differences.empty else None
    if mdd is None or mdd.empty:
        return None
    seeds = evidence.differences.loc[mdd.index, "pairs"]
    counts = ", ".join(str(n) for n in sorted(seeds.unique()))
    return (f"Minimal detectable difference at this suite's seeds ({counts} shared with the "
            f"reference): median {np.median(mdd):.3f} macro F1 over the {len(mdd)} cells (range "
            f"{mdd.min():.3f} to {mdd.max():.3f}), the true difference that a two-sided test at "
            "alpha 0.05 with this standard error would detect 80% of the time: "
            "(t_{df, 0.975} + t_{df, 0.8}) · se, se the bootstrap standard error of the cell's "
            "difference and df its Welch-Satterthwaite degrees of freedom.")


def difference_notes(evidence: TableEvidence) -> str:
    """What the difference table's cells are."""
    notes = [
        f"Difference to `{REFERENCE}` of the same protocol and validation setting: mean paired "
        "difference in macro F1 over the seeds both have [95% interval: t on the bootstrap "
        "standard error, with Welch-Satterthwaite degrees of freedom (the seeds' variance on "
        "n-1, the test set's shared variance on infinitely many)]; P(>): probability of "
        "improvement, the chance that a seed of the method scores above a seed of the reference "
        "(Agarwal et al., NeurIPS 2021), with its expanded percentile interval (Hesterberg "
        "2015), printed only where that interval excludes 0.5; n: seeds shared.",
        images_note(evidence),
    ]
    mdd = minimal_detectable(evidence)
    return " ".join(notes + ([mdd] if mdd else []))


def _marked(text: str, fitted: bool) -> str:
    return f"{text} {FITTED}" if fitted and text != MISSING else text


def label_efficiency_table(evidence: TableEvidence, order: list[str]) -> str:
    """Rows: entries; columns: labels to match (the reference's row: where its own curve gets
    there), the saving there, area under the curve and its difference to the reference, and
    the label-saving factor at each fraction."""
    fractions = sorted({f for curve in evidence.curves.values() for f in curve.fractions})
    body = []
    for entry in order:
        curve = evidence.curves[entry]
        factors = []
        for f in fractions:
            value: Percentile | None = (curve.saving or {}).get(f)
            at = curve.amounts[curve.fractions.index(f)] if f in curve.fractions else math.nan
            factors.append(MISSING if value is None else _marked(saving(
                value, at, curve.reference_amounts[0], curve.reference_amounts[-1]),
                curve.fitted))
        matched = MISSING
        if curve.match_saving is not None:
            matched = match_saving(curve.match_saving, curve.to_match.estimate,
                                   curve.amounts[0],
                                   curve.reference_reach.estimate / curve.amounts[-1])
        body.append([entry, _marked(labels_needed(curve.to_match, curve.amounts[0]),
                                    curve.fitted),
                     _marked(matched, curve.fitted), standard(curve.area),
                     standard(curve.area_difference, sign=True), *factors])
    headers = ["method", "labels to match", "saving there", "area under curve",
               "area vs reference", *(f"saving at {percent(f)}" for f in fractions)]
    return markdown_table(headers, body)


def label_efficiency_notes(evidence: TableEvidence, order: list[str]) -> str:
    """What the label-efficiency table's columns are, on which labels."""
    amounts = {f: amount for entry in order for f, amount in zip(
        evidence.curves[entry].fractions, evidence.curves[entry].amounts, strict=True)}
    axis = ", ".join(f"{percent(f)}: {count(amount)}" for f, amount in sorted(amounts.items()))
    return (
        f"Label efficiency against `{REFERENCE}` (same protocol and validation setting) in "
        f"**labels consumed**, the labelled training images plus the validation images that "
        f"chose the checkpoint (median over runs; {axis}), from the mean macro F1 at each "
        "measured fraction, fitted non-decreasing (isotonic regression) before it is read, "
        "linear in log labels in between. **Labels to match**: the labels at which the method's "
        "fitted curve reaches the reference's fitted macro F1 at 100% labels (the reference's "
        "row: where its own fitted curve gets there, which may be before 100%; \"≤\": already at "
        "the smallest amount measured; \"not reached\": not within the measured amounts). "
        "**Saving there**: the reference's labels to get there over the method's (\"≥\": the "
        "method is there at its smallest amount; \"<\": it never gets there). **Area under "
        "curve**: mean macro F1 over the log-labels range the method and the reference share "
        "(trapezoids on the means), and its paired difference to the reference's. **Saving at "
        "f**: the labels the reference needs to reach the method's fitted macro F1 at f, over "
        "the method's labels at f (\"≤\"/\">\": beyond the reference's measured amounts). "
        f"{FITTED}: read off a curve (the method's or the reference's) whose means do not rise "
        "at every step (a dip, read off its monotone fit, or a plateau), where the labels at "
        "which it reaches a level are poorly determined. Intervals: 95%, the area's as "
        "the differences', the others expanded percentile intervals over the seeds every "
        "fraction of both curves shares, each resampled curve fitted anew."
    )


def labelled_images_note(rows: pd.DataFrame) -> str | None:
    """How many labelled images each run's training and model selection used, by fraction
    (median over seeds), per validation setting; None when no record says."""
    known = rows.dropna(subset=["labelled", "validation_labelled"])
    if known.empty:
        return None
    parts = []
    for validation, group in known.groupby("validation", sort=True):
        counts = group.groupby("fraction")[["labelled", "validation_labelled"]].median()
        listed = ", ".join(f"{budget_amount(f, budget_of(rows))}: {row.labelled:.0f} + "
                           f"{row.validation_labelled:.0f}" for f, row in counts.iterrows())
        parts.append(f"`{validation}` validation: {listed}")
    return ("Labelled images per run, training + validation (the validation images choose the "
            "checkpoint, so model selection used them too; median over seeds): "
            + "; ".join(parts) + ".")


def budget_of(rows: pd.DataFrame) -> str:
    """The kind of label budget of a table's rows: ``patients`` when every row's is (its k in
    ``fraction``), else ``fraction``."""
    patients = "budget" in rows and len(rows) > 0 and rows["budget"].eq(PATIENTS).all()
    return PATIENTS if patients else FRACTION


def marked(rows: pd.DataFrame, entry: str) -> str:
    """``entry``, with † when some run of it among ``rows`` (one fraction's) did not learn."""
    if "learned" in rows and not rows.loc[rows["entry"] == entry, "learned"].astype(bool).all():
        return f"{entry} †"
    return entry


def per_machine_table(rows: pd.DataFrame, order: list[str]) -> str | None:
    """Mean macro F1 per ultrasound machine at the largest fraction that has per-machine scores
    (an entry marked † where its runs there did not all learn); None when no record has them,
    or the test images come from one machine (a cross-machine task: its table's macro F1 is
    that machine's)."""
    measured = rows[rows["per_machine"].notna()]
    if measured.empty:
        return None
    top = measured[measured["fraction"] == measured["fraction"].max()]
    machines = sorted({machine for scores in top["per_machine"] for machine in scores})
    if len(machines) < 2:
        return None
    sizes = {machine: next(scores[machine][1] for scores in top["per_machine"]
                           if machine in scores) for machine in machines}
    body = []
    for entry in [entry for entry in order if entry in set(top["entry"])]:
        scores = top.loc[top["entry"] == entry, "per_machine"]
        means = [np.mean([s[machine][0] for s in scores if machine in s] or [math.nan])
                 for machine in machines]
        body.append([marked(top, entry),
                     *(MISSING if math.isnan(v) else f"{v:.3f}" for v in means)])
    table = markdown_table(
        ["method", *(f"{machine} (n={sizes[machine]})" for machine in machines)], body)
    return (f"Macro F1 per ultrasound machine at "
            f"{budget_column(top['fraction'].iloc[0], budget_of(rows))} "
            f"(mean over seeds; n: test images of the machine):\n\n{table}")


def enough_seeds_note(evidence: TableEvidence) -> str | None:
    """Said when some compared cell has fewer seeds than a marker needs."""
    pairs = evidence.differences["pairs"] if not evidence.differences.empty else None
    if pairs is None or not (pairs < MIN_TEST_PAIRS).any():
        return None
    return (f"Cells with fewer than {MIN_TEST_PAIRS} seeds shared with the reference carry no "
            "test.")
