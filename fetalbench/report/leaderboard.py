"""The leaderboard: run records -> aggregated tables, evidence, ranks -> ``leaderboard.md``.

Each registered dataset (:data:`fetalbench.data.sources.DATASETS`, in registration order: the
phantom, FETAL_PLANES_DB, then plugins) is a section under its title, said to be synthetic or
real by its ``synthetic`` flag; datasets never share a table. A section opens with the three
claims of Migliorelli et al. (2024) and their verdicts (:mod:`fetalbench.report.claims`). Per
(dataset, task), cross-machine tasks included, it then shows:

- macro F1 by method and label fraction: mean ± std [95% interval over seeds and test patients]
  (n seeds), the best mean per column in bold only where it is separated from the runner-up,
  and ▲/▼ where a method differs from the transfer-learning reference ``supervised_imagenet`` of
  its protocol and validation setting (the bootstrap's test of the paired difference, at least
  three seeds shared, Holm-corrected within the table); and how many labelled images training
  and model selection used;
- the paired differences to the reference, their probability of improvement, and the table's
  minimal detectable difference; the label-efficiency numbers (labels needed to match,
  label-saving factors, area under the curve): :mod:`fetalbench.report.comparisons`;
- macro F1 per ultrasound machine where the test images come from several;
- per method with a self-supervised stage (pre-training, the dual task's NT-Xent term), its final
  loss against its chance level, its k-NN probe before and after, and its verdicts.

The tables above are the board's: fine-tuning, label fractions, each profile's own backbone.
Records of another protocol (the linear evaluation), another backbone (``--backbone``) or label
budgets in patients (``--patients K``) are never mixed into them: each such setup gets tables of
its own after the dataset's ranking (:func:`setup_label`; columns k patients per class for a
patient budget), with the same scores, tests against its own ``supervised_imagenet`` and
differences, and label efficiency for fraction budgets; the claims, the ranking and the figures
read the board's tables only.

A table holds one setup (:mod:`fetalbench.report.setup`): records of one table made under two
profiles (by content), pools or dataset versions, or of one method under two code versions, are
refused with one line.

The board refuses to read noise (:mod:`fetalbench.runs.learning`): a cell whose runs did not
all learn is marked † with its seeds' verdicts and kept out of every comparison (bold, ▲/▼,
differences, label efficiency, claims, ranking): :data:`~fetalbench.report.comparisons.
LEARNED_RULE`. Label-efficiency numbers and claim verdicts are printed only against a reference
whose curve rises (:func:`fetalbench.report.comparisons.unread`); otherwise one line says why.

Per dataset, a ranking across its complete cells (Friedman test; Nemenyi pairs and the
critical-difference diagram only when Friedman rejects; Demšar 2006, JMLR 7:1-30). The text
holds no timestamps and every resample is seeded: the same records give the same bytes, so CI can
check that the committed file is current.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fetalbench.data.sources import DATASETS
from fetalbench.profiles import PROFILES
from fetalbench.report import evidence_tables, figures
from fetalbench.report.claims import CLAIMS, PROTOCOL, VALIDATION, answer, claims_section
from fetalbench.report.comparisons import (
    LEARNED_RULE,
    REFERENCE,
    RISE_RULE,
    TableEvidence,
    table_evidence,
    unread,
    verdict_counts,
)
from fetalbench.report.formatting import (
    MISSING,
    budget_amount,
    budget_column,
    markdown_table,
    percent,
)
from fetalbench.report.published import published_section
from fetalbench.report.record_table import (
    EXTRA_METRICS,
    FRACTION,
    PATIENTS,
    RecordSet,
    load_records,
)
from fetalbench.report.setup import refuse_mixed_setups
from fetalbench.report.statistics import (
    ALPHA,
    MIN_TEST_PAIRS,
    FriedmanResult,
    cell_ranks,
    friedman,
    posthoc,
)
from fetalbench.runs.learning import CHANCE_MARGIN, CHANCE_MARGIN_MIN
from fetalbench.storage.atomic import write_bytes_atomic
from fetalbench.storage.digests import sha256_hex

COMMAND = "fetalbench leaderboard"
EXTRA_TITLES = {"silhouette": "silhouette", "knn_accuracy": "k-NN accuracy",
                "pointing_game": "pointing game"}
QUALIFIERS = {"validation": "{} validation"}
"""Run settings that name a row when the records of a dataset's setup (:func:`setup_label`) use
more than one value of them."""
BOARD = ""
"""The setup label of the board's tables: fine-tuning, label fractions, the profile's backbone."""
PROTOCOL_WORDS = {"linear": "linear evaluation of the frozen encoder"}
MARK = "†"
"""The mark of a cell whose runs did not all learn."""


@dataclass(frozen=True)
class Ranking:
    """Ranks of one dataset's entries over the cells (task, fraction) where all have results."""

    scores: pd.DataFrame
    mean_ranks: pd.Series
    friedman: FriedmanResult
    p_values: pd.DataFrame


def setup_label(protocol: str, budget: str, backbone: str, profile: str) -> str:
    """What sets a record's tables apart from the board's (:data:`BOARD`, empty): a protocol
    other than ``finetune``, a backbone other than its profile's own (``--backbone``; a profile
    this version does not know keeps its backbone), a label budget in patients per class."""
    parts = []
    if protocol != "finetune":
        parts.append(PROTOCOL_WORDS.get(protocol, f"protocol `{protocol}`"))
    own = PROFILES[profile].backbone if profile in PROFILES else backbone
    if backbone != own:
        parts.append(f"backbone `{backbone}`")
    if budget == PATIENTS:
        parts.append("label budgets in k patients per class")
    return ", ".join(parts)


def with_entries(ok: pd.DataFrame) -> pd.DataFrame:
    """``ok`` plus a ``setup`` column (:func:`setup_label`) and an ``entry`` column naming a
    table row: the method, and in parentheses its validation setting where the records of its
    dataset and setup use more than one."""
    rows = ok.copy()
    rows["setup"] = [setup_label(*values) for values in zip(
        rows["protocol"], rows["budget"], rows["backbone"], rows["profile"], strict=True)]
    parts = []
    for column, template in QUALIFIERS.items():
        several = rows.groupby(["dataset", "setup"])[column].transform("nunique") > 1
        parts.append(rows[column].map(template.format).where(several, ""))
    qualifiers = [", ".join(part for part in row if part) for row in zip(*parts, strict=True)]
    rows["entry"] = [f"{method} ({qualifier})" if qualifier else method
                     for method, qualifier in zip(rows["method"], qualifiers, strict=True)]
    return rows


def _tables(ok: pd.DataFrame) -> Iterator[tuple[str, str, str, pd.DataFrame]]:
    """(dataset, task, setup, rows) for each table: datasets in registration order, the board's
    tables first, then the other setups by label, tasks by name. A table of patient budgets
    holds its k in ``fraction``, the column its comparisons are made along."""
    for dataset in DATASETS.names():
        rows = ok[ok["dataset"] == dataset]
        for setup in sorted(rows["setup"].unique()):
            for task in sorted(rows.loc[rows["setup"] == setup, "task"].unique()):
                table = rows[(rows["setup"] == setup) & (rows["task"] == task)]
                if table["budget"].eq(PATIENTS).all():
                    table = table.assign(fraction=table["patients"])
                yield dataset, task, setup, table


def board_evidence(ok: pd.DataFrame) -> dict[tuple[str, str, str], TableEvidence]:
    """The evidence of every table of ``ok`` (with entries), by (dataset, task, setup); a
    table that mixes setups is refused (:func:`~fetalbench.report.setup.refuse_mixed_setups`)."""
    evidence = {}
    for dataset, task, setup, rows in _tables(ok):
        refuse_mixed_setups(rows)
        evidence[dataset, task, setup] = table_evidence(rows)
    return evidence



def _entry_order(entries: list[str]) -> list[str]:
    def is_reference(entry: str) -> bool:
        return entry == REFERENCE or entry.startswith(f"{REFERENCE} (")

    return sorted(entries, key=lambda entry: (not is_reference(entry), entry))


def learned_rows(rows: pd.DataFrame) -> pd.Series:
    """Whether each row's cell (task, entry, fraction) has every seed's run learned."""
    if rows.empty:
        return pd.Series(dtype=bool, index=rows.index)
    return rows["learned"].astype(bool).groupby(
        [rows["task"], rows["entry"], rows["fraction"]]).transform("all")


def summarise_table(evidence: TableEvidence) -> pd.DataFrame:
    """One row per (entry, fraction): n, mean, std, interval, whether its runs all learned and
    their verdicts, and the comparison with the reference of the same arm (seeds shared with
    it, Holm-adjusted p of the paired difference, its sign); ``pairs`` and ``p_holm`` are NaN
    for the reference and uncompared cells (those that did not learn among them)."""
    compared = evidence.differences[["entry", "fraction", "pairs", "p_holm", "estimate"]]
    summary = evidence.cells.merge(compared, on=["entry", "fraction"], how="left")
    summary["higher"] = summary["estimate"] > 0
    return summary


def _cell_text(cell: pd.Series) -> str:
    mean = f"**{cell['mean']:.3f}**" if cell["separated"] else f"{cell['mean']:.3f}"
    if not math.isnan(cell["std"]):
        mean += f" ± {cell['std']:.3f}"
    if not math.isnan(cell["low"]):
        mean += f" [{cell['low']:.3f}, {cell['high']:.3f}]"
    text = mean + f" (n={cell['n']})"
    if cell["p_holm"] < ALPHA:
        text += " ▲" if cell["higher"] else " ▼"
    return text if cell["learned"] else f"{text} {MARK}"


def _score_table(summary: pd.DataFrame, budget: str = FRACTION) -> str:
    fractions = sorted(summary["fraction"].unique())
    cells = summary.set_index(["entry", "fraction"])
    body = [
        [entry, *(_cell_text(cells.loc[(entry, fraction)])
                  if (entry, fraction) in cells.index else MISSING for fraction in fractions)]
        for entry in _entry_order(list(summary["entry"].unique()))
    ]
    return markdown_table(["method", *(budget_column(f, budget) for f in fractions)], body)


def marked_note(rows: pd.DataFrame, summary: pd.DataFrame) -> str | None:
    """Which cells are marked †, their seeds' verdicts and the stages that did not learn; None
    when every cell learned."""
    marked = summary[~summary["learned"].astype(bool)]
    if marked.empty:
        return None
    order = {entry: index for index, entry in enumerate(_entry_order(list(summary["entry"])))}
    marked = marked.assign(order=marked["entry"].map(order)).sort_values(["order", "fraction"])
    parts = []
    for cell in marked.itertuples():
        runs = rows[(rows["entry"] == cell.entry) & (rows["fraction"] == cell.fraction)]
        stages = sorted({stage for names in runs["unlearned_stages"] for stage in names})
        amount = budget_amount(cell.fraction, evidence_tables.budget_of(rows))
        parts.append(f"`{cell.entry}` at {amount}: {cell.verdicts}"
                     + (f" ({', '.join(stages)})" if stages else " (no stage checked)"
                        if (runs["learning"] == "not checked").any() else ""))
    return (f"{MARK} Runs that did not all learn, kept out of every comparison (verdict, seeds; "
            f"stages that did not learn): {'; '.join(parts)}.")


def _score_notes(rows: pd.DataFrame, summary: pd.DataFrame, evidence: TableEvidence) -> str:
    tests = int(summary["p_holm"].notna().sum())
    if not (rows["method"] == REFERENCE).any():
        significance = f"No `{REFERENCE}` runs here, so no test against it."
    elif tests == 0:
        significance = (f"No test against `{REFERENCE}` is possible here: it needs "
                        f"{MIN_TEST_PAIRS} or more seeds shared with it, with differences that "
                        "vary.")
    else:
        significance = (
            f"▲/▼: significantly higher/lower than `{REFERENCE}` (same protocol and validation "
            "setting) by the two-sided test of the paired difference below (bootstrap standard "
            "error, t with Welch-Satterthwaite degrees of freedom), Holm-corrected over the "
            f"{tests} comparisons in this table, alpha {ALPHA}."
        )
        note = evidence_tables.enough_seeds_note(evidence)
        significance += f" {note}" if note else ""
    setup = "; ".join(
        f"{label} " + ", ".join(f"`{value}`" for value in sorted(rows[column].unique()))
        for label, column in (("profile", "profile"), ("profile content", "profile_digest"),
                              ("unlabelled pool", "pool"), ("validation", "validation"),
                              ("dataset fingerprint", "dataset_fingerprint"))
    )
    versions = rows.groupby("code_version")["method"].unique()
    setup += "; code versions " + ", ".join(
        f"`{version}` ({', '.join(sorted(methods))})" for version, methods in versions.items())
    labelled = evidence_tables.labelled_images_note(rows)
    marked = marked_note(rows, summary)
    return " ".join([
        "Macro F1 on the official test split: mean ± std over seeds [95% interval], n = seeds.",
        evidence_tables.images_note(evidence),
        "**Bold**: the best mean in the column among cells whose runs all learned, only where "
        "it is separated from the runner-up (the paired difference to the second-best mean, "
        f"at least {MIN_TEST_PAIRS} seeds shared, two-sided test Holm-corrected over the "
        f"table's columns at alpha {ALPHA}); a column whose best is within noise of the next "
        f"bolds nothing. {significance}",
        *([marked] if marked else []),
        *([labelled] if labelled else []),
        f"Setup: {setup}.",
    ])


def _extras_table(rows: pd.DataFrame) -> str | None:
    """Silhouette, k-NN accuracy and pointing game (means over seeds) at the largest fraction
    that has any of them (an entry marked † where its runs there did not all learn); None when
    no record has them."""
    present = [key for key in EXTRA_METRICS if rows[key].notna().any()]
    if not present:
        return None
    measured = rows[rows[present].notna().any(axis=1)]
    top = measured[measured["fraction"] == measured["fraction"].max()]
    means = top.groupby("entry")[present].mean()
    body = [[evidence_tables.marked(top, entry),
             *(MISSING if math.isnan(value) else f"{value:.3f}" for value in means.loc[entry])]
            for entry in _entry_order(list(means.index))]
    table = markdown_table(["method", *(EXTRA_TITLES[key] for key in present)], body)
    at = budget_column(top["fraction"].iloc[0], evidence_tables.budget_of(rows))
    return f"Representation and localisation at {at} (mean over seeds):\n\n{table}"


def unread_lines(rows: pd.DataFrame, evidence: TableEvidence) -> list[str]:
    """One line per reference of the table whose label efficiency (and, in the claims' setting,
    claims) is not read, saying why (:func:`fetalbench.report.comparisons.unread`)."""
    claimed = set(rows.loc[(rows["protocol"] == PROTOCOL) & (rows["validation"] == VALIDATION),
                           "entry"])
    why = {reference: unread(evidence, reference) for reference in sorted(evidence.rises)}
    return [f"Label efficiency{' and claims' if reference in claimed else ''} not read: {reason}."
            for reference, reason in why.items() if reason is not None]


def _evidence_parts(rows: pd.DataFrame, evidence: TableEvidence) -> list[str]:
    """The differences to the reference and the label-efficiency numbers of one table (only
    against references whose curve rises; a line says why for the others)."""
    order = _entry_order(list(evidence.curves))
    parts = []
    differences = evidence_tables.difference_table(evidence, order)
    if differences:
        parts += [f"Difference to `{REFERENCE}`:", differences,
                  evidence_tables.difference_notes(evidence)]
    readable = [entry for entry in order if unread(evidence, entry) is None]
    if any(evidence.curves[entry].saving is not None for entry in readable):
        parts += ["Label efficiency:", evidence_tables.label_efficiency_table(evidence, readable),
                  evidence_tables.label_efficiency_notes(evidence, readable)]
    parts += unread_lines(rows, evidence)
    pretraining = pretraining_table(rows)
    parts += [pretraining] if pretraining else []
    machines = evidence_tables.per_machine_table(rows, _entry_order(list(rows["entry"].unique())))
    return parts + ([machines] if machines else [])


def pretraining_table(rows: pd.DataFrame) -> str | None:
    """"Pre-training loss against chance": per entry with a self-supervised stage, the mean
    final loss over its distinct stage runs, its chance level, the k-NN probe start -> end and
    the verdicts counted; None when no run of the table has such a stage."""
    stages = rows[rows["pretraining_stage"].notna()]
    if stages.empty:
        return None
    numbers = ["pretraining_loss", "pretraining_chance", "pretraining_probe_start",
               "pretraining_probe_end"]
    # A pre-training stage is shared by every fraction of a seed: count it once per seed; the
    # dual task's term is trained by each run.
    shared = stages["pretraining_stage"].str.startswith("pre-training")
    distinct = stages.assign(run=stages["fraction"].where(~shared, -1.0)).drop_duplicates(
        ["entry", "pretraining_stage", "seed", "run", *numbers, "pretraining_verdict"])
    order = _entry_order(list(distinct["entry"].unique()))
    groups = sorted(distinct.groupby(["entry", "pretraining_stage"]),
                    key=lambda item: (order.index(item[0][0]), item[0][1]))
    body = []
    for (entry, stage), group in groups:
        means = group[numbers].mean()
        rules = sorted(group["pretraining_chance_rule"].dropna().unique())
        chance = MISSING if math.isnan(means["pretraining_chance"]) else (
            f"{means['pretraining_chance']:.3f}" + (f" ({', '.join(rules)})" if rules else ""))
        probe = MISSING if math.isnan(means["pretraining_probe_start"]) else (
            f"{means['pretraining_probe_start']:.3f} → {means['pretraining_probe_end']:.3f}")
        body.append([entry, stage, str(len(group)), f"{means['pretraining_loss']:.3f}", chance,
                     probe, verdict_counts(group["pretraining_verdict"])])
    table = markdown_table(["method", "stage", "runs", "final loss", "chance level",
                            "k-NN probe start → end", "verdicts"], body)
    return (
        "Pre-training loss against chance:\n\n" + table + "\n\n"
        "Per method with a self-supervised stage (a pre-training stage, or the dual task's "
        "NT-Xent term): its final loss (the mean loss over the last tenth of its steps), mean "
        "over its runs (a pre-training stage is shared by every label fraction of a seed and "
        "counts once), against its chance level (the loss of outputs that carry no "
        "information; the rule in parentheses); the k-NN accuracy of its features on the "
        "validation carve-out before and after it (mean); and its runs' learning verdicts. A "
        f"stage learned when its final loss is at most chance - max({CHANCE_MARGIN:g} · "
        f"|chance|, {CHANCE_MARGIN_MIN:g}), its probe ended above its start, its weights moved, "
        "and its loss had stopped falling by the end of its budget (a dual task stopped early "
        "by model selection did not run out of budget)."
    )


def rank_dataset(rows: pd.DataFrame) -> Ranking | None:
    """Ranking of one dataset's entries over the (task, fraction) cells where every entry has
    results whose runs all learned (cell score = mean macro F1 over seeds); an entry none of
    whose cells learned is never ranked. None with fewer than 3 ranked entries or 2 cells."""
    learned = rows[learned_rows(rows)]
    scores = learned.groupby(["task", "fraction", "entry"])["macro_f1"].mean().unstack("entry")
    scores = scores.dropna()
    if scores.shape[1] < 3 or scores.shape[0] < 2:
        return None
    mean_ranks = cell_ranks(scores).mean().sort_values(kind="stable")
    return Ranking(scores, mean_ranks, friedman(scores), posthoc(scores))


def draws_diagram(ranking: Ranking | None) -> bool:
    """Whether the critical-difference diagram is drawn: only when Friedman rejects."""
    return ranking is not None and ranking.friedman.p_value < ALPHA


def _ranking_section(rows: pd.DataFrame, ranking: Ranking | None, link: str | None) -> str:
    title = DATASETS.get(rows["dataset"].iloc[0]).title
    learned = rows[learned_rows(rows)]
    entries = learned["entry"].nunique()
    never = sorted(set(rows["entry"]) - set(learned["entry"]))
    lines = [f"### Ranking across cells: {title}", ""]
    if never:
        lines += [f"Never ranked, no cell of theirs has runs that all learned ({MARK}): "
                  + ", ".join(f"`{entry}`" for entry in _entry_order(never)) + ".", ""]
    if ranking is None:
        complete = learned.groupby(["task", "fraction"])["entry"].nunique().eq(entries).sum()
        lines.append(f"A ranking needs at least 3 methods and 2 cells (task x label fraction) "
                     f"where every method has results whose runs all learned; there are "
                     f"{entries} such methods and {complete} such cells.")
        return "\n".join(lines)
    cells, entries = ranking.scores.shape
    body = [[entry, f"{rank:.2f}", f"{ranking.scores[entry].mean():.3f}"]
            for entry, rank in ranking.mean_ranks.items()]
    lines += [
        f"Mean rank (1 = best) over the {cells} cells (task x label fraction) where all "
        f"{entries} ranked methods have results whose runs all learned (cells marked "
        f"{MARK} are left out); a cell's score is the mean macro F1 over seeds.",
        "",
        markdown_table(["method", "mean rank", "mean macro F1"], body),
        "",
        f"Friedman test: χ² = {ranking.friedman.statistic:.3f}, "
        f"p = {ranking.friedman.p_value:.3g} (Demšar 2006). The test treats cells as "
        "independent, and they are not: the cells of one method share its seeds, its "
        "self-supervised stage (pre-trained once per task and seed, reused by every fraction) "
        "and nested label subsets (the 5% subset is inside the 25% one), and the tasks share "
        "images; so its p-value is optimistic: read the ranking as a summary rather than as "
        "independent evidence.",
        "",
    ]
    if ranking.friedman.p_value < ALPHA:
        pairs = [
            f"- {first} vs {second}: p = {ranking.p_values.loc[first, second]:.3g}"
            for i, first in enumerate(ranking.mean_ranks.index)
            for second in ranking.mean_ranks.index[i + 1:]
            if ranking.p_values.loc[first, second] < ALPHA
        ]
        if pairs:
            lines += [f"Nemenyi post-hoc test, pairs that differ at alpha {ALPHA} (the first "
                      "ranks better):", "", *pairs]
        else:
            lines.append(f"The Nemenyi post-hoc test separates no pair at alpha {ALPHA}.")
        if link is not None:
            lines += ["", f"![Critical-difference diagram, {title}]({link})"]
    else:
        lines.append(f"The Friedman test does not reject equal ranks at alpha {ALPHA}, so no "
                     "pairwise (Nemenyi) difference is claimed and no critical-difference "
                     "diagram is drawn.")
    return "\n".join(lines)


def explained_runs(rows: pd.DataFrame) -> list[pd.Series]:
    """The runs whose Grad-CAM and t-SNE figures the leaderboard shows for one table: the
    reference and the best mean entry at the largest label fraction, each by its lowest seed."""
    largest = rows[rows["fraction"] == rows["fraction"].max()]
    means = largest.groupby("entry")["macro_f1"].mean()
    chosen = [entry for entry in _entry_order(list(means.index))[:1]
              if entry.split(" (")[0] == REFERENCE]
    learned = largest[learned_rows(largest)].groupby("entry")["macro_f1"].mean()
    best = None if learned.empty else str(learned.idxmax())
    chosen += [best] if best is not None and best not in chosen else []
    return [largest[largest["entry"] == entry].sort_values("seed").iloc[0] for entry in chosen]


def explain_folder(run: pd.Series) -> str:
    """The folder ``fetalbench explain`` writes a run's figures to, under ``figures/explain``."""
    name = f"{run['dataset']}_{run['task']}_{run['method']}_f{run['fraction']:g}_s{run['seed']}"
    return name if run["protocol"] == "finetune" else f"{name}_{run['protocol']}"


def _explain_section(rows: pd.DataFrame, link) -> str:
    lines = ["Class activation maps (Grad-CAM) and t-SNE of the test embeddings, made from the "
             "runs' checkpoints by `fetalbench explain` (the command under each):"]
    for run in explained_runs(rows):
        folder = f"explain/{explain_folder(run)}"
        role = "reference" if run["method"] == REFERENCE else "best at the largest fraction"
        lines.append(
            f"- `{run['entry']}` ({role}, {percent(run['fraction'])} labels, seed {run['seed']}):"
            f" [Grad-CAM]({link(folder + '/gradcam.png')}), [t-SNE]({link(folder + '/tsne.png')})"
            f"; `fetalbench explain --method {run['method']} --task {run['task']} --fraction "
            f"{run['fraction']:g} --seed {run['seed']} --protocol {run['protocol']}"
            f"{' --data-root DIR' if DATASETS.get(run['dataset']).needs_data_root else ''}`"
        )
    return "\n".join(lines)


def _no_real_data_section() -> str:
    """What to do while no record is on real data (a dataset not flagged synthetic)."""
    return "\n".join([
        "## FETAL_PLANES_DB: no records yet",
        "",
        "There are no run records on the real FETAL_PLANES_DB yet: nothing in this leaderboard "
        "is a result on fetal ultrasound. To produce and contribute them:",
        "",
        "1. `fetalbench data download --root DIR` fetches the dataset.",
        "2. `fetalbench grid --suite paper --data-root DIR` runs the paper's grid (on a GPU).",
        "3. Open a pull request adding the new records under `results/`; CI regenerates the "
        "leaderboard from them.",
    ])


def _setup_sections(rows: pd.DataFrame, title: str,
                    evidence: dict[tuple[str, str, str], TableEvidence]) -> list[str]:
    """The tables of a dataset's records outside the board (:func:`setup_label`), one per setup
    and task: scores, tests and differences against the setup's own reference, label
    efficiency for fraction budgets (for patient budgets the curve's rise is defined on
    fractions, so none), representation metrics."""
    if rows.empty:
        return []
    parts = [f"### {title}: other setups\n\nRecords of another protocol, backbone or kind of "
             "label budget than the board's (fine-tuning, label fractions, the profile's own "
             "backbone), each setup in tables of its own and compared only within them; the "
             "claims, the ranking and the figures above do not read them."]
    for dataset, task, setup, table_rows in _tables(rows):
        table = evidence[(dataset, task, setup)]
        summary = summarise_table(table)
        budget = evidence_tables.budget_of(table_rows)
        parts += [
            f"### {title}: task `{task}`, {setup}",
            f"Classes: {', '.join(table_rows['classes'].iloc[0])}.",
            _score_table(summary, budget),
            _score_notes(table_rows, summary, table),
        ]
        if budget == FRACTION:
            parts += _evidence_parts(table_rows, table)
        else:
            order = _entry_order(list(table.curves))
            differences = evidence_tables.difference_table(table, order, budget)
            if differences:
                parts += [f"Difference to `{REFERENCE}`:", differences,
                          evidence_tables.difference_notes(table)]
        extras = _extras_table(table_rows)
        parts += [extras] if extras else []
    return parts


def _failed_section(failed: pd.DataFrame) -> str:
    if failed.empty:
        return "## Failed runs\n\nNone."
    body = [
        [row.dataset, row.task, row.method, row.protocol,
         budget_amount(row.patients if row.budget == PATIENTS else row.fraction, row.budget),
         str(row.seed),
         " ".join(row.error.split())[:120].replace("|", "\\|"), f"`{row.path}`"]
        for row in failed.itertuples()
    ]
    table = markdown_table(["dataset", "task", "method", "protocol", "labels", "seed", "error",
                             "record"], body)
    count = "1 run" if len(failed) == 1 else f"{len(failed)} runs"
    return (f"## Failed runs\n\n{count} failed; left out of every table above, and run again "
            f"by the next `fetalbench grid`.\n\n{table}")


def _record_set_hash(records: RecordSet) -> str:
    hashes = sorted([*records.ok["spec_hash"], *records.failed["spec_hash"]])
    return sha256_hex("\n".join(hashes).encode())[:12]


def render_leaderboard(records: RecordSet, command: str, figures_dir: Path | None,
                       evidence: dict[tuple[str, str, str], TableEvidence] | None = None) -> str:
    """The leaderboard's Markdown for ``records``.

    ``command`` is the command that regenerates it (named in the header); ``figures_dir`` is the
    figures folder as a path relative to the leaderboard file, or None for no figure links;
    ``evidence`` the :func:`board_evidence` of the records, when already computed.
    """
    ok = with_entries(records.ok)
    evidence = board_evidence(ok) if evidence is None else evidence
    total = len(records.ok) + len(records.failed)
    parts = [
        "# fetalbench leaderboard",
        f"Generated by `{command}` from {total} run records ({len(records.ok)} ok, "
        f"{len(records.failed)} failed; sha256 of the sorted spec hashes "
        f"`{_record_set_hash(records)}`). Do not edit it by hand: change the records and rerun "
        f"the command; CI fails when this file is stale.",
        "Label-efficient fetal ultrasound standard-plane classification, after Migliorelli et "
        "al., Computers in Biology and Medicine 174:108430 (2024): macro F1 on the official test "
        "split by method (rows) and labelled fraction of the training set (columns).",
        f"{LEARNED_RULE} {RISE_RULE}",
    ]

    def link(name: str) -> str | None:
        return None if figures_dir is None else f"{Path(figures_dir).as_posix()}/{name}"

    for dataset in DATASETS.names():
        rows = ok[ok["dataset"] == dataset]
        if rows.empty:
            continue
        registered = DATASETS.get(dataset)
        title = registered.title
        if registered.synthetic:
            parts.append(f"## {title}: synthetic images, not fetal ultrasound\n\n"
                         f"{registered.description} These tables check the pipeline and compare "
                         "methods on synthetic data only.")
        else:
            parts.append(f"## {title} (real data)\n\n{registered.description}")
        board = rows[rows["setup"] == BOARD]
        answers = [answer(claim, board[board["task"] == claim.task],
                          evidence.get((dataset, claim.task, BOARD))) for claim in CLAIMS]
        parts.append(claims_section(answers, title, registered.synthetic))
        for _, task, _, table_rows in _tables(board):
            table = evidence[(dataset, task, BOARD)]
            summary = summarise_table(table)
            parts += [
                f"### {title}: task `{task}`",
                f"Classes: {', '.join(table_rows['classes'].iloc[0])}.",
                _score_table(summary),
                _score_notes(table_rows, summary, table),
                *_evidence_parts(table_rows, table),
            ]
            extras = _extras_table(table_rows)
            parts += [extras] if extras else []
            if figures_dir is not None:
                parts.append(
                    f"![Macro F1 vs label fraction, {title} {task}]"
                    f"({link(figures.label_efficiency_name(dataset, task))}) "
                    f"![Per-class sensitivity and precision, {title} {task}]"
                    f"({link(figures.per_class_name(dataset, task))})"
                )
                parts.append(_explain_section(table_rows, link))
        if not board.empty:
            ranking = rank_dataset(board)
            cd_link = link(figures.critical_difference_name(dataset)) \
                if draws_diagram(ranking) else None
            parts.append(_ranking_section(board, ranking, cd_link))
        parts += _setup_sections(rows[rows["setup"] != BOARD], title, evidence)
    if not ok["synthetic"].eq(False).any():
        parts.append(_no_real_data_section())
    parts.append(published_section())
    parts.append(_failed_section(records.failed))
    return "\n\n".join(parts) + "\n"


def write_figures(records: RecordSet, figures_dir: Path,
                  evidence: dict[tuple[str, str, str], TableEvidence] | None = None) -> None:
    """Write every figure the leaderboard links to into ``figures_dir``."""
    ok = with_entries(records.ok)
    evidence = board_evidence(ok) if evidence is None else evidence
    for dataset, task, _, rows in _tables(ok[ok["setup"] == BOARD]):
        title = f"{DATASETS.get(dataset).title}, task {task}"
        table = evidence[(dataset, task, BOARD)]
        figures.plot_label_efficiency(
            table, _entry_order(list(table.curves)),
            title, figures_dir / figures.label_efficiency_name(dataset, task))
        figures.plot_per_class(rows, title, figures_dir / figures.per_class_name(dataset, task))
    for dataset in DATASETS.names():
        board = ok[(ok["dataset"] == dataset) & (ok["setup"] == BOARD)]
        ranking = None if board.empty else rank_dataset(board)
        if draws_diagram(ranking):
            figures.plot_critical_difference(
                ranking.mean_ranks, ranking.p_values, DATASETS.get(dataset).title,
                figures_dir / figures.critical_difference_name(dataset))


def _relative_figures(output: Path, figures_dir: Path) -> Path:
    return Path(os.path.relpath(Path(figures_dir).resolve(), Path(output).resolve().parent))


def write_leaderboard(results_dir: Path, output: Path, figures_dir: Path) -> None:
    """Load the records under ``results_dir``, write the figures into ``figures_dir`` and the
    leaderboard (linking to them) to ``output``."""
    records = load_records(results_dir)
    evidence = board_evidence(with_entries(records.ok))
    write_figures(records, Path(figures_dir), evidence)
    text = render_leaderboard(records, COMMAND, _relative_figures(output, figures_dir), evidence)
    write_bytes_atomic(Path(output), text.encode())


def check_leaderboard(results_dir: Path, output: Path, figures_dir: Path | None = None) -> bool:
    """True when ``output`` is exactly what :func:`write_leaderboard` would write (figures are
    not compared); ``figures_dir`` defaults to ``results_dir/figures``, as the CLI writes it."""
    figures_dir = Path(results_dir) / "figures" if figures_dir is None else figures_dir
    records = load_records(results_dir)
    expected = render_leaderboard(records, COMMAND, _relative_figures(output, figures_dir))
    try:
        return Path(output).read_bytes() == expected.encode()
    except FileNotFoundError:
        return False
