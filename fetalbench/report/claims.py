"""The three claims of Migliorelli et al. (2024), each answered as one tested family.

(a) On the high inter-class variability task (``planes``), contrastive learning (``simclr``,
``simclr_imagenet``) brings no significant advantage over transfer learning
(``supervised_imagenet``). (b) On the low-variability task (``brain``) it does, specifically from
ImageNet weights (``simclr_imagenet``). (c) The dual task (``dual_task_imagenet``, ``dual_task``)
helps on ``brain``.

A claim's *family* is every comparison it names: each named method against the reference at
every label fraction where both cells' runs all learned (fine-tuning with the fixed validation
carve-out, the paper's setting; one setup per table, :mod:`fetalbench.report.setup`). Each
comparison's paired difference in macro F1 (:mod:`fetalbench.report.comparisons`: bootstrap over
seeds crossed with test patients, t with Welch-Satterthwaite degrees of freedom) gets two
p-values: the two-sided test of no difference, and Schuirmann's two one-sided tests of a
difference of :data:`MARGIN` or more either way (TOST, :func:`~fetalbench.report.statistics.
equivalence_p_value`; Schuirmann 1987). Holm's correction runs over all the family's p-values
together (Holm 1979), so the verdict's family-wise error rate is at most
:data:`~fetalbench.report.statistics.ALPHA`, and a verdict reads only corrected results
(:func:`reading`). A comparison neither separated nor shown equivalent whose minimal detectable
difference exceeds the margin (or with fewer than :data:`~fetalbench.report.statistics.
MIN_TEST_PAIRS` seeds) is *underpowered*: its seeds and test patients could not have shown a
difference of the margin, so it is no evidence of "no advantage". A majority of a method's
fractions decides what it shows (:func:`shows`), and the claim's verdict follows
(:func:`verdict`). A claim is read only when the reference's curve rises on its task
(:func:`fetalbench.report.comparisons.unread`). Each verdict names the setup, seeds and learning
checks of the runs it read (:func:`provenance`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from fetalbench.report.comparisons import REFERENCE, RISE, TableEvidence, unread
from fetalbench.report.formatting import (
    labels_needed,
    match_saving,
    percent,
    signed,
    standard,
)
from fetalbench.report.statistics import ALPHA, MIN_TEST_PAIRS, equivalence_p_value, holm
from fetalbench.runs.learning import LEARNED

MARGIN = 0.02
"""The equivalence margin in macro F1: a difference within ±0.02 is no advantage. Pre-specified
here, not fitted to any records (an equivalence margin chosen after seeing the data would decide
its own test; Lakens 2017, "Equivalence tests", Soc. Psychol. Personal. Sci. 8(4):355-362): two
points of macro F1, the smallest difference the benchmark treats as worth labels (below it the
ranking of two methods changes with the seed), and less than a clinician would act on."""
PROTOCOL, VALIDATION = "finetune", "fixed"
Verdict = Literal["supported", "contradicted", "underpowered", "inconclusive", "not read"]
Reading = Literal["better", "worse", "equivalent", "underpowered", "undetermined"]
Shows = Literal["advantage", "none", "underpowered", "unclear"]


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
    f"How the verdicts are reached: a claim is one family of comparisons, every method it "
    f"names against `{REFERENCE}` (fine-tuning, fixed validation carve-out, one profile and "
    "pool) at every label fraction where both cells' runs all learned (cells marked † are left "
    "out). A claim is read only where the reference's curve rises on its task: its paired "
    f"difference in macro F1 between {percent(RISE[1])} and {percent(RISE[0])} labels has its "
    "95% interval above 0; otherwise it is **not read**, and the line says why. Each "
    "comparison's paired difference in macro F1 (bootstrap over seeds crossed with test "
    "patients, t with Welch-Satterthwaite degrees of freedom) gets two p-values: the two-sided "
    "test of no difference, and the equivalence test (two one-sided tests, Schuirmann 1987) of "
    f"a difference within ±{MARGIN} macro F1, the margin fixed in advance "
    "(`fetalbench.report.claims.MARGIN`: two points of macro F1, the smallest difference the "
    "benchmark treats as worth labels; not fitted to these records). Holm's correction runs "
    f"over all the claim's p-values together (family-wise error at most {ALPHA}), and only "
    "corrected p-values are read. A comparison reads *equivalent* when its equivalence test "
    "rejects, else *better* or *worse* when its difference test rejects, else *underpowered* "
    "when its minimal detectable difference exceeds the margin or it has fewer than "
    f"{MIN_TEST_PAIRS} seeds (it could not have shown a difference of the margin), else "
    "*undetermined*. A method shows an *advantage* when it is better at more than half of its "
    "fractions and worse at none, and *none* when it is equivalent or worse at more than half "
    "and better at none; otherwise it is *underpowered* when any of its comparisons is, else "
    "*unclear*. **Supported**: for an advantage claim, some named method shows an advantage; "
    "for the no-advantage claim (a), every named method shows none. **Contradicted**: the "
    "reverse (every named method shows none; some shows an advantage). Otherwise "
    "**underpowered** when some named method is (more seeds could decide), else "
    "**inconclusive**. A named method without records counts for neither."
)


@dataclass(frozen=True)
class Comparison:
    """One comparison of a claim's family: a method's paired difference to the reference at one
    fraction (labels consumed: ``labels`` training + ``validation`` images), its seeds shared,
    minimal detectable difference, Holm-corrected p-values and reading."""

    fraction: float
    labels: float
    validation: float
    estimate: float
    low: float
    high: float
    pairs: int
    mdd: float
    p_holm: float
    equivalence_p_holm: float
    reading: Reading


@dataclass(frozen=True)
class MethodEvidence:
    """One method's comparisons, label efficiency and what it shows; ``unlearned``: its
    fractions left out because their runs did not all learn."""

    method: str
    entry: str
    comparisons: tuple[Comparison, ...]
    area_difference: str
    labels_to_match: str
    shows: Shows
    unlearned: tuple[float, ...] = ()


@dataclass(frozen=True)
class Answer:
    """A claim's verdict, why (when not reached from its family), the evidence, and the runs
    read (:func:`provenance`)."""

    claim: Claim
    verdict: Verdict
    reason: str
    evidence: tuple[MethodEvidence, ...]
    missing: tuple[str, ...] = ()
    provenance: str = ""


def reading(estimate: float, p_holm: float, equivalence_p_holm: float, mdd: float,
            pairs: int) -> Reading:
    """What one comparison reads from its corrected p-values (see :data:`RULE`)."""
    if equivalence_p_holm < ALPHA:
        return "equivalent"
    if p_holm < ALPHA:
        return "better" if estimate > 0 else "worse"
    if pairs < MIN_TEST_PAIRS or not mdd <= MARGIN:
        return "underpowered"
    return "undetermined"


def shows(readings: list[Reading]) -> Shows:
    """What a method shows from the readings of its comparisons (see :data:`RULE`)."""
    better = readings.count("better")
    none = readings.count("equivalent") + readings.count("worse")
    if better > len(readings) / 2 and "worse" not in readings:
        return "advantage"
    if none > len(readings) / 2 and better == 0:
        return "none"
    return "underpowered" if "underpowered" in readings else "unclear"


def verdict(kind: str, outcomes: list[Shows], complete: bool) -> Verdict:
    """A claim's verdict from what its named methods show (``complete``: every named method has
    comparisons)."""
    every_none = complete and bool(outcomes) and all(item == "none" for item in outcomes)
    if "advantage" in outcomes:
        return "supported" if kind == "advantage" else "contradicted"
    if every_none:
        return "contradicted" if kind == "advantage" else "supported"
    return "underpowered" if "underpowered" in outcomes else "inconclusive"


def family(differences: pd.DataFrame) -> pd.DataFrame:
    """``differences`` (the claim's comparisons) with ``p_family`` and ``equivalence_p_family``,
    Holm-corrected over both columns together; comparisons without a test stay NaN."""
    p = differences["p"].to_numpy(float)
    equivalence = equivalence_p_value(differences["estimate"], differences["se"],
                                      differences["df"], MARGIN)
    equivalence = np.where(np.isnan(p), np.nan, equivalence)
    adjusted = holm(np.concatenate([p, equivalence]))
    return differences.assign(p_family=adjusted[:len(p)], equivalence_p_family=adjusted[len(p):])


def _method_evidence(method: str, entry: str, evidence: TableEvidence, tested: pd.DataFrame,
                     consumed: pd.DataFrame) -> MethodEvidence:
    comparisons = []
    for row in tested[tested["entry"] == entry].itertuples():
        counted = not math.isnan(row.p)
        p_holm = row.p_family if counted else math.nan
        equivalence = row.equivalence_p_family if counted else math.nan
        comparisons.append(Comparison(
            row.fraction, consumed.loc[row.fraction, "labelled"],
            consumed.loc[row.fraction, "validation_labelled"], row.estimate, row.low, row.high,
            int(row.pairs), row.mdd, p_holm, equivalence,
            reading(row.estimate, p_holm, equivalence, row.mdd, int(row.pairs))))
    curve = evidence.curves.get(entry)
    cells = evidence.cells[evidence.cells["entry"] == entry]
    unlearned = tuple(sorted(cells.loc[~cells["learned"].astype(bool), "fraction"]))
    matched = "—"
    if curve is not None and curve.match_saving is not None:
        matched = (f"{labels_needed(curve.to_match, curve.amounts[0])} labels, the reference "
                   f"{labels_needed(curve.reference_reach, curve.reference_amounts[0])}: saving "
                   + match_saving(curve.match_saving, curve.to_match.estimate, curve.amounts[0],
                                  curve.reference_reach.estimate / curve.amounts[-1])
                   + (" ‡" if curve.fitted else ""))
    return MethodEvidence(
        method, entry, tuple(comparisons),
        standard(curve.area_difference if curve else None, sign=True), matched,
        shows([item.reading for item in comparisons]) if comparisons else "unclear", unlearned)


def _entry(rows: pd.DataFrame, method: str) -> str | None:
    match = rows[(rows["method"] == method) & (rows["protocol"] == PROTOCOL)
                 & (rows["validation"] == VALIDATION)]
    return None if match.empty else str(match["entry"].iloc[0])


def _seeds(seeds: list[int]) -> str:
    ordered = sorted(set(seeds))
    if len(ordered) > 2 and ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{ordered[0]}-{ordered[-1]}"
    return ", ".join(map(str, ordered))


def provenance(rows: pd.DataFrame, cells: set[tuple[str, float]]) -> str:
    """The runs of the (entry, fraction) ``cells`` a verdict read: their setup (profile by
    name and content, pool, validation), their seeds, and their learning checks."""
    read = rows[[cell in cells for cell in zip(rows["entry"], rows["fraction"], strict=True)]]
    if read.empty:
        return ""
    verdicts = read["learning"].value_counts()
    checks = ", ".join(f"{count} `{name}`" for name, count in verdicts.items())
    learned = ("each stage's final loss clearly below its chance level, its k-NN probe above "
               "its start, its loss levelled off" if set(verdicts.index) == {LEARNED} else
               "not all learned")
    profiles = ", ".join(f"`{name}` (content {digest})" for name, digest in
                         read[["profile", "profile_digest"]].drop_duplicates().itertuples(
                             index=False))
    return (f"Read from {len(read)} runs: profile {profiles}, pool "
            f"`{'`, `'.join(sorted(read['pool'].unique()))}`, {PROTOCOL} with `{VALIDATION}` "
            f"validation, seeds {_seeds(read['seed'].tolist())}; learning checks: {checks} "
            f"({learned}).")


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
    present = {method: entry for method, entry in entries.items() if entry is not None}
    if not present:
        return Answer(claim, "inconclusive", f"no records of {', '.join(missing)}", ())
    tested = family(evidence.differences[evidence.differences["entry"].isin(present.values())])
    arm = rows[rows["entry"] == reference]
    consumed = arm.groupby("fraction")[["labelled", "validation_labelled"]].median()
    found = tuple(_method_evidence(method, entry, evidence, tested, consumed)
                  for method, entry in present.items())
    compared = [item for item in found if item.comparisons]
    reasons = [f"no records of {', '.join(missing)}"] if missing else []
    if not compared:
        reasons.append("no cell of theirs compared: their runs did not all learn (†)")
    result = verdict(claim.kind, [item.shows for item in compared],
                     complete=not missing and len(compared) == len(found))
    cells = {(method.entry, item.fraction) for method in found for item in method.comparisons}
    read_from = provenance(rows, cells | {(reference, fraction) for _, fraction in cells})
    return Answer(claim, result, "; ".join(reasons) if result == "inconclusive" else "", found,
                  missing, read_from)


def _comparison_text(item: Comparison) -> str:
    interval = "" if math.isnan(item.low) else f" [{signed(item.low)}, {signed(item.high)}]"
    tests = ("" if math.isnan(item.p_holm) else
             f", p {item.p_holm:.2g}, equivalence p {item.equivalence_p_holm:.2g}")
    mdd = "" if math.isnan(item.mdd) else f", MDD {item.mdd:.3f}"
    return (f"{percent(item.fraction)} ({item.labels:.0f} + {item.validation:.0f} labels) "
            f"{signed(item.estimate)}{interval} (n={item.pairs}{mdd}{tests}): *{item.reading}*")


def _evidence_line(item: MethodEvidence) -> str:
    cells = "; ".join(_comparison_text(comparison) for comparison in item.comparisons)
    left_out = (f" Left out, their runs did not all learn (†): "
                f"{', '.join(percent(f) for f in item.unlearned)}." if item.unlearned else "")
    return (f"- `{item.entry}` vs `{REFERENCE}`, paired difference in macro F1 (Holm-corrected "
            f"p-values): {cells or 'no shared learned fraction'}.{left_out} Area under the "
            f"curve {item.area_difference}; labels to match {item.labels_to_match}. Shows: "
            f"**{item.shows}**.")


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
                     f"**{item.verdict}**{why}; equivalence margin ±{MARGIN} macro F1.")
        lines += [_evidence_line(evidence) for evidence in item.evidence]
        lines += [f"- `{method}`: no records." for method in item.missing]
        lines += [f"- {item.provenance}"] if item.provenance else []
        lines.append("")
    return "\n".join(lines).rstrip()
