"""The Markdown of one table's evidence (:mod:`fetalbench.report.comparisons`): differences to
the reference, label efficiency, labelled images per run, and macro F1 per ultrasound machine."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from fetalbench.report.bootstrap import N_RESAMPLES, Percentile, Standard
from fetalbench.report.comparisons import REFERENCE, TableEvidence
from fetalbench.report.formatting import (
    MISSING,
    labels_needed,
    markdown_table,
    percent,
    saving,
    standard,
)
from fetalbench.report.statistics import MIN_TEST_PAIRS


def images_note(evidence: TableEvidence) -> str:
    """How the intervals of a table were made."""
    if evidence.images is None:
        return (f"Intervals: 95%, from {N_RESAMPLES} bootstrap resamples of the seeds and, "
                "crossed with them, of the test images (every record of the table on the same "
                "resample: pairs by seed and by image).")
    return (f"Intervals: 95%, from {N_RESAMPLES} bootstrap resamples of the seeds only, since "
            f"{evidence.images}: they leave out the test set's sampling error, and a cell of one "
            "seed has none.")


def _difference_text(row: pd.Series) -> str:
    if math.isnan(row["estimate"]):
        return MISSING
    text = standard(Standard(row["estimate"], row["se"], row["df"], row["low"], row["high"],
                             row["p"]), sign=True)
    if not math.isnan(row["poi_low"]):
        text += f"; P(>) {row['poi']:.2f} [{row['poi_low']:.2f}, {row['poi_high']:.2f}]"
    elif not math.isnan(row["poi"]):
        text += f"; P(>) {row['poi']:.2f}"
    return f"{text} (n={int(row['pairs'])})"


def difference_table(evidence: TableEvidence, order: list[str]) -> str | None:
    """Rows: non-reference entries; columns: fractions; cells: paired difference in macro F1
    to the arm's reference [95% interval] and the probability of improvement; None when there is
    nothing to compare."""
    differences = evidence.differences
    if differences.empty:
        return None
    fractions = sorted(differences["fraction"].unique())
    cells = differences.set_index(["entry", "fraction"])
    body = [[entry, *(_difference_text(cells.loc[(entry, f)]) if (entry, f) in cells.index
                      else MISSING for f in fractions)]
            for entry in order if entry in set(differences["entry"])]
    return markdown_table(["method", *(f"{percent(f)} labels" for f in fractions)], body)


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
            "(t_{n-1, 0.975} + t_{n-1, 0.8}) · se, se the bootstrap standard error of the "
            "cell's difference (normal quantiles for one seed).")


def difference_notes(evidence: TableEvidence) -> str:
    """What the difference table's cells are."""
    notes = [
        f"Difference to `{REFERENCE}` of the same protocol and validation setting: mean paired "
        "difference in macro F1 over the seeds both have [95% interval, Student t with n-1 "
        "degrees of freedom on the bootstrap standard error]; P(>): probability of improvement, "
        "the chance that a seed of the method scores above a seed of the reference (Agarwal et "
        "al., NeurIPS 2021), with its expanded percentile interval (Hesterberg 2015); n: seeds "
        "shared.",
        images_note(evidence),
    ]
    mdd = minimal_detectable(evidence)
    return " ".join(notes + ([mdd] if mdd else []))


def label_efficiency_table(evidence: TableEvidence, order: list[str]) -> str:
    """Rows: entries; columns: labels needed to match, area under the curve and its difference
    to the reference, and the label-saving factor at each fraction."""
    fractions = sorted({f for curve in evidence.curves.values() for f in curve.fractions})
    body = []
    for entry in order:
        curve = evidence.curves[entry]
        smallest = curve.fractions[0]
        factors = []
        for f in fractions:
            value: Percentile | None = (curve.saving or {}).get(f)
            factors.append(MISSING if value is None else saving(
                value, f, curve.reference_fractions[0], curve.reference_fractions[-1]))
        body.append([entry, labels_needed(curve.labels_to_match, smallest), standard(curve.area),
                     standard(curve.area_difference, sign=True), *factors])
    headers = ["method", "labels to match", "area under curve", "area vs reference",
               *(f"saving at {percent(f)}" for f in fractions)]
    return markdown_table(headers, body)


def label_efficiency_notes() -> str:
    """What the label-efficiency table's columns are."""
    return (
        f"Label efficiency against `{REFERENCE}` (same protocol and validation setting), from "
        "the mean macro F1 at each measured fraction, linear in log fraction in between. "
        f"**Labels to match**: the smallest fraction at which the method reaches the reference's "
        "macro F1 at 100% labels (\"≤\": already at the smallest fraction measured; \"not "
        "reached\": not within the measured fractions). **Area under curve**: mean macro F1 over "
        "the log-fraction range the method and the reference share (trapezoids), and its paired "
        "difference to the reference's. **Saving at f**: the fraction of labels the reference "
        "needs to reach the method's macro F1 at f, divided by f (4x: the reference needs four "
        "times the labels; \"≤\"/\">\": beyond the reference's measured fractions). Intervals: "
        "95%, the area's as the differences', the others expanded percentile intervals over the "
        "seeds every fraction of both curves shares."
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
        listed = ", ".join(f"{percent(f)}: {row.labelled:.0f} + {row.validation_labelled:.0f}"
                           for f, row in counts.iterrows())
        parts.append(f"`{validation}` validation: {listed}")
    return ("Labelled images per run, training + validation (the validation images choose the "
            "checkpoint, so model selection used them too; median over seeds): "
            + "; ".join(parts) + ".")


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
    return (f"Macro F1 per ultrasound machine at {percent(top['fraction'].iloc[0])} labels "
            f"(mean over seeds; n: test images of the machine):\n\n{table}")


def enough_seeds_note(evidence: TableEvidence) -> str | None:
    """Said when some compared cell has fewer seeds than a marker needs."""
    pairs = evidence.differences["pairs"] if not evidence.differences.empty else None
    if pairs is None or not (pairs < MIN_TEST_PAIRS).any():
        return None
    return (f"Cells with fewer than {MIN_TEST_PAIRS} seeds shared with the reference carry no "
            "test.")
