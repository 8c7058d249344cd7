"""The three claims of Migliorelli et al. (2024), answered from the records of one dataset.

(a) On the high inter-class variability task (``planes``), contrastive learning (``simclr``,
``simclr_imagenet``) brings no significant advantage over transfer learning
(``supervised_imagenet``). (b) On the low-variability task (``brain``) it does, specifically from
ImageNet weights (``simclr_imagenet``). (c) The dual task (``dual_task_imagenet``, ``dual_task``)
helps on ``brain``.

The rule (:data:`RULE`, printed above the verdicts) reads each comparison at every label fraction
where the method and the reference share at least :data:`MIN_TEST_PAIRS` seeds, from the 95%
interval of the paired difference in macro F1 (bootstrap over seeds and test images,
:mod:`fetalbench.report.comparisons`): *above* 0, *below* 0, or not; and whether it rules out an
advantage of :data:`NEGLIGIBLE` or more (its upper end is below that). A majority of fractions
decides, so one lucky fraction does not carry a claim, and the fractions are not corrected for
multiplicity. Only fine-tuning with the fixed validation carve-out, the paper's setting, counts,
and only cells every seed's run of which learned (:data:`~fetalbench.report.comparisons.
LEARNED_RULE`). A claim's verdict is given only when the reference's curve rises on its task
(:func:`fetalbench.report.comparisons.unread`); otherwise it is *not read*, and one line says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import pandas as pd

from fetalbench.report.comparisons import REFERENCE, RISE, TableEvidence, unread
from fetalbench.report.formatting import MISSING, labels_needed, percent, signed, standard
from fetalbench.report.statistics import MIN_TEST_PAIRS

NEGLIGIBLE = 0.02
"""An advantage in macro F1 below this is negligible: two points of F1, about the spread between
seeds of one method on the paper's benchmark, and less than a clinician would act on."""
PROTOCOL, VALIDATION = "finetune", "fixed"
Verdict = Literal["supported", "contradicted", "inconclusive", "not read"]


@dataclass(frozen=True)
class Claim:
    """One claim: ``kind`` "advantage" (the methods beat the reference; with several, any one
    suffices) or "no advantage" (none of them does)."""

    letter: str
    task: str
    text: str
    methods: tuple[str, ...]
    kind: Literal["advantage", "no advantage"]


CLAIMS = (
    Claim("a", "planes", "On the high inter-class variability task (`planes`), contrastive "
          "learning brings no significant advantage over transfer learning.",
          ("simclr", "simclr_imagenet"), "no advantage"),
    Claim("b", "brain", "On the low inter-class variability task (`brain`), contrastive "
          "learning does bring an advantage, specifically from ImageNet weights.",
          ("simclr_imagenet",), "advantage"),
    Claim("c", "brain", "The dual task (contrastive and supervised, end to end) helps on the "
          "low-variability task (`brain`).", ("dual_task_imagenet", "dual_task"), "advantage"),
)

RULE = (
    f"How the verdicts are reached: each method is compared with `{REFERENCE}` (fine-tuning, "
    f"fixed validation carve-out) at every label fraction where both share at least "
    f"{MIN_TEST_PAIRS} seeds and both cells' runs all learned (cells marked † are left out). "
    f"A claim is read only where the reference's curve rises on its task: its paired "
    f"difference in macro F1 between {percent(RISE[1])} and {percent(RISE[0])} labels has its "
    "95% interval above 0; otherwise it is **not read**, and the line says why. At a "
    "fraction the 95% interval of the paired difference in macro F1 (bootstrap over seeds and "
    "test images) is *above* 0, *below* 0, or neither; it *rules "
    f"out an advantage* when its upper end is below +{NEGLIGIBLE}. A method shows an advantage "
    "when its interval is above 0 at more than half of the fractions and below 0 at none, and "
    "shows none when it rules out an advantage at more than half of the fractions and is above "
    "0 at none. **Supported**: for an advantage claim, some named method shows an advantage; for "
    "the no-advantage claim (a), every named method shows none. **Contradicted**: for an "
    "advantage claim, every named method shows none; for (a), some named method shows an "
    "advantage. A named method without records counts for neither. Otherwise, or without "
    "enough seeds, **inconclusive**."
)


@dataclass(frozen=True)
class MethodEvidence:
    """One method's reading: per fraction (fraction, estimate, low, high, seeds shared, reading),
    its area-under-curve difference and labels needed, what it shows ("advantage", "none",
    or "unclear"), and the fractions left out because their runs did not all learn."""

    method: str
    entry: str
    fractions: tuple[tuple[float, float, float, float, int, str], ...]
    area_difference: str
    labels_to_match: str
    shows: str
    unlearned: tuple[float, ...] = ()


@dataclass(frozen=True)
class Answer:
    """A claim's verdict, why (when inconclusive for want of records), and the evidence."""

    claim: Claim
    verdict: Verdict
    reason: str
    evidence: tuple[MethodEvidence, ...]
    missing: tuple[str, ...] = ()


def reading(low: float, high: float) -> str:
    """"above", "below", "ruled out" (no advantage of :data:`NEGLIGIBLE` or more, not below 0),
    or "undetermined" for one fraction's 95% interval."""
    if low > 0:
        return "above"
    if high < 0:
        return "below"
    return "ruled out" if high < NEGLIGIBLE else "undetermined"


def shows(readings: list[str]) -> str:
    """"advantage", "none" or "unclear" from the readings of the counted fractions."""
    above = readings.count("above")
    ruled_out = readings.count("ruled out") + readings.count("below")
    if above > len(readings) / 2 and "below" not in readings:
        return "advantage"
    if ruled_out > len(readings) / 2 and above == 0:
        return "none"
    return "unclear"


def _method_evidence(method: str, entry: str, evidence: TableEvidence) -> MethodEvidence:
    rows = evidence.differences[evidence.differences["entry"] == entry]
    fractions = []
    for row in rows.itertuples():
        counted = row.pairs >= MIN_TEST_PAIRS and not math.isnan(row.low)
        fractions.append((row.fraction, row.estimate, row.low, row.high, int(row.pairs),
                          reading(row.low, row.high) if counted else "too few seeds"))
    counted = [item[5] for item in fractions if item[5] != "too few seeds"]
    curve = evidence.curves.get(entry)
    cells = evidence.cells[evidence.cells["entry"] == entry]
    unlearned = tuple(sorted(cells.loc[~cells["learned"].astype(bool), "fraction"]))
    return MethodEvidence(
        method, entry, tuple(fractions),
        standard(curve.area_difference if curve else None, sign=True),
        labels_needed(curve.labels_to_match, curve.fractions[0]) if curve else MISSING,
        shows(counted) if counted else "unclear", unlearned)


def _entry(rows: pd.DataFrame, method: str) -> str | None:
    match = rows[(rows["method"] == method) & (rows["protocol"] == PROTOCOL)
                 & (rows["validation"] == VALIDATION)]
    return None if match.empty else str(match["entry"].iloc[0])


def answer(claim: Claim, rows: pd.DataFrame, evidence: TableEvidence | None) -> Answer:
    """The verdict on ``claim`` from the rows of its task (with ``entry``) and their evidence."""
    if evidence is None or rows.empty:
        return Answer(claim, "inconclusive", f"no records of task `{claim.task}`", ())
    reference = _entry(rows, REFERENCE)
    if reference is None:
        return Answer(claim, "inconclusive", f"no records of {REFERENCE}", ())
    why = unread(evidence, reference)
    if why is not None:
        return Answer(claim, "not read", why, ())
    entries = {method: _entry(rows, method) for method in claim.methods}
    missing = tuple(method for method, entry in entries.items() if entry is None)
    found = tuple(_method_evidence(method, entry, evidence)
                  for method, entry in entries.items() if entry is not None)
    reasons = [f"no records of {', '.join(missing)}"] if missing else []
    if not found:
        return Answer(claim, "inconclusive", reasons[0], ())
    if not any(read != "too few seeds" for item in found for *_, read in item.fractions):
        if all(item.unlearned and not item.fractions for item in found):
            reasons.append("no cell of theirs compared: their runs did not all learn (†)")
        else:
            reasons.append(f"fewer than {MIN_TEST_PAIRS} seeds shared with the reference at "
                           "every fraction")
    reason = "; ".join(reasons)
    outcomes = [item.shows for item in found]
    every_none = not missing and all(outcome == "none" for outcome in outcomes)
    verdict: Verdict = "inconclusive"
    if "advantage" in outcomes:
        verdict = "supported" if claim.kind == "advantage" else "contradicted"
    elif every_none:
        verdict = "contradicted" if claim.kind == "advantage" else "supported"
    return Answer(claim, verdict, reason if verdict == "inconclusive" else "", found, missing)


def _evidence_line(item: MethodEvidence) -> str:
    cells = "; ".join(
        f"{percent(fraction)} {signed(estimate)}"
        + ("" if math.isnan(low) else f" [{signed(low)}, {signed(high)}]")
        + f" (n={pairs}, {read})"
        for fraction, estimate, low, high, pairs, read in item.fractions)
    left_out = (f" Left out, their runs did not all learn (†): "
                f"{', '.join(percent(f) for f in item.unlearned)}." if item.unlearned else "")
    return (f"- `{item.entry}` vs `{REFERENCE}`, difference in macro F1: "
            f"{cells or 'no shared learned fraction'}.{left_out} "
            f"Area under the curve {item.area_difference}; labels to match "
            f"{item.labels_to_match}. Shows: **{item.shows}**.")


def claims_section(answers: list[Answer], title: str, synthetic: bool) -> str:
    """The Markdown that opens a dataset's section: the rule, then each claim's verdict."""
    lines = [f"### The paper's claims, answered: {title}", ""]
    if synthetic:
        lines += ["> Synthetic data: these verdicts are about phantom images, not fetal "
                  "ultrasound. They show what the pipeline would conclude, not whether the "
                  "paper's claims hold on patients.", ""]
    lines += [RULE, ""]
    for item in answers:
        if item.verdict == "not read":
            lines += [f"**({item.claim.letter})** {item.claim.text} Not read: {item.reason}.",
                      ""]
            continue
        why = f" ({item.reason})" if item.reason else ""
        lines.append(f"**({item.claim.letter})** {item.claim.text} Verdict: "
                     f"**{item.verdict}**{why}.")
        lines += [_evidence_line(evidence) for evidence in item.evidence]
        lines += [f"- `{method}`: no records." for method in item.missing]
        lines.append("")
    return "\n".join(lines).rstrip()
