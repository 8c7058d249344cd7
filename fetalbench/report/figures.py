"""Leaderboard figures (matplotlib, Agg, no pyplot state): deterministic bytes for equal inputs.

Every plotting function takes one table's rows (with an ``entry`` column naming the row: method,
or ``method (protocol, validation)``) or its evidence (:mod:`fetalbench.report.comparisons`),
and writes one PNG atomically. PNGs carry no software or date
metadata, and ``svg.hashsalt`` is fixed so the same figures saved as SVG are stable too.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import scikit_posthocs
from matplotlib.figure import Figure

from fetalbench.report import label_efficiency
from fetalbench.report.comparisons import REFERENCE, TableEvidence, unread
from fetalbench.report.plotting import save_png

STYLE = {"svg.hashsalt": "fetalbench", "font.size": 9}


def label_efficiency_name(dataset: str, task: str) -> str:
    """File name of the macro-F1-vs-label-fraction figure of one table."""
    return f"{dataset}_{task}_label_efficiency.png"


def per_class_name(dataset: str, task: str) -> str:
    """File name of the per-class sensitivity and precision figure of one table."""
    return f"{dataset}_{task}_per_class.png"


def critical_difference_name(dataset: str) -> str:
    """File name of the critical-difference diagram of one dataset."""
    return f"{dataset}_critical_difference.png"


def _colours(entries: list[str]) -> dict[str, tuple]:
    """A distinct colour per entry: tab10, then tab20b and tab20c (50 colours, none repeated
    below that)."""
    palette = [*matplotlib.colormaps["tab10"].colors, *matplotlib.colormaps["tab20b"].colors,
               *matplotlib.colormaps["tab20c"].colors]
    return {entry: palette[index % len(palette)] for index, entry in enumerate(entries)}


METHOD_COLOUR = "#0072B2"
REFERENCE_COLOUR = "#555555"
CROWDED = 1.4
"""Ticks of labels consumed closer than this factor have their labels staggered."""
"""Every panel draws its method in one blue and the reference in grey (Okabe-Ito blue and a
neutral grey: distinguishable in colour-vision deficiency and in greyscale by line style)."""


def panels(evidence: TableEvidence, entries: list[str]) -> list[tuple[str, str | None]]:
    """The label-efficiency figure's panels: (entry, its reference) for each entry with a
    reference of its arm, and (entry, None) for a reference no entry is compared with and for an
    entry without a reference; in ``entries`` order."""
    references = {curve.reference for curve in evidence.curves.values() if curve.reference}
    return [(entry, evidence.curves[entry].reference) for entry in entries
            if entry not in references or evidence.curves[entry].reference is not None]


def _draw_curve(axes, cells: pd.DataFrame, colour, style: str, label: str) -> bool:
    """One entry's learned means over labels consumed with their 95% intervals (bars and band),
    a cross on each cell whose runs did not all learn (no line through it), and the monotone
    fit of the learned means where they do not rise; whether it drew a monotone fit."""
    cells = cells.sort_values("labels")
    learned = cells[cells["learned"].astype(bool)]
    axes.fill_between(learned["labels"], learned["low"], learned["high"], color=colour,
                      alpha=0.15, linewidth=0)
    axes.errorbar(learned["labels"], learned["mean"], yerr=[learned["mean"] - learned["low"],
                                                            learned["high"] - learned["mean"]],
                  marker="o", markersize=4, color=colour, linestyle=style, elinewidth=0.8,
                  capsize=2, label=label)
    unlearned = cells[~cells["learned"].astype(bool)]
    axes.plot(unlearned["labels"], unlearned["mean"], marker="x", color="black", markersize=8,
              linestyle="none")
    if len(learned) < 2 or label_efficiency.rises(learned["mean"].to_numpy()):
        return False
    axes.plot(learned["labels"], label_efficiency.monotone(learned["mean"].to_numpy()),
              color=colour, linestyle=":", linewidth=1.5)
    return True


def _tick_labels(amounts: pd.Series) -> list[str]:
    """"labels\nfraction" per tick of labels consumed; a tick within a factor
    :data:`CROWDED` of the one before it is set two lines lower, so that under ``fixed``
    validation (where 1% and 5% consume nearly the same labels) both stay legible."""
    labels, previous, lowered = [], None, False
    for amount, fractions in amounts.items():
        text = f"{amount:.0f}\n" + "/".join(f"{fraction * 100:g}%" for fraction in fractions)
        lowered = previous is not None and amount / previous < CROWDED and not lowered
        labels.append("\n\n" + text if lowered else text)
        previous = amount
    return labels


def plot_label_efficiency(evidence: TableEvidence, entries: list[str], title: str,
                          path: Path) -> None:
    """Small multiples of macro F1 over labels consumed (training + validation images, log
    axis): one panel per entry (:func:`panels`), the entry in blue beside its arm's reference
    in grey dashed, both with 95% bootstrap bands, on the same axes in every panel, so each
    panel is one comparison and panels compare by position. A cross marks a cell whose runs did
    not all learn, a dotted line the monotone (isotonic) fit of a curve whose means do not rise,
    and a diamond where the entry reaches the reference's fitted macro F1 at 100% labels (labels
    to match), drawn only where the reference's curve rises
    (:func:`fetalbench.report.comparisons.unread`)."""
    chosen = panels(evidence, entries)
    columns = min(3, max(1, len(chosen)))
    rows = max(1, math.ceil(len(chosen) / columns))
    amounts = evidence.cells.groupby("labels")["fraction"].unique()
    with matplotlib.rc_context(STYLE):
        figure = Figure(figsize=(3.3 * columns, 2.6 * rows + 0.8), layout="constrained")
        grid = figure.subplots(rows, columns, sharex=True, sharey=True, squeeze=False)
        legend: dict[str, object] = {}
        for axes, (entry, reference) in zip(grid.flat, chosen, strict=False):
            cells = evidence.cells[evidence.cells["entry"] == entry]
            fitted = False
            if reference is not None:
                fitted |= _draw_curve(axes, evidence.cells[evidence.cells["entry"] == reference],
                                      REFERENCE_COLOUR, "--", f"reference ({reference})")
            is_reference = evidence.curves[entry].method == REFERENCE
            fitted |= _draw_curve(axes, cells, REFERENCE_COLOUR if is_reference else
                                  METHOD_COLOUR, "--" if is_reference else "-",
                                  "reference" if is_reference else "method")
            curve = evidence.curves[entry]
            if reference is not None and curve.to_match is not None and not math.isinf(
                    curve.to_match.estimate) and unread(evidence, entry) is None:
                level = label_efficiency.monotone(
                    evidence.cells.loc[(evidence.cells["entry"] == reference)
                                       & evidence.cells["learned"].astype(bool)]
                    .sort_values("labels")["mean"].to_numpy())[-1]
                axes.plot([curve.to_match.estimate], [level], marker="D", color=METHOD_COLOUR,
                          markeredgecolor="black", linestyle="none",
                          label="reaches the reference at 100%")
            axes.set_title(entry, fontsize="medium")
            axes.grid(alpha=0.3)
            handles, labels = axes.get_legend_handles_labels()
            legend.update({label.split(" (")[0]: handle
                           for handle, label in zip(handles, labels, strict=True)})
            if fitted:
                legend["monotone fit (means do not rise)"] = axes.plot(
                    [], [], color="black", linestyle=":")[0]
            if (~cells["learned"].astype(bool)).any():
                legend["runs did not all learn (†)"] = axes.plot(
                    [], [], marker="x", color="black", linestyle="none")[0]
        for axes in list(grid.flat)[len(chosen):]:
            axes.set_visible(False)
        axes = grid[0, 0]
        axes.set_xscale("log")
        axes.set_xticks(list(amounts.index), _tick_labels(amounts))
        axes.minorticks_off()
        for axes in grid[-1, :]:
            axes.set_xlabel("labels consumed (train + val)")
        for axes in grid[:, 0]:
            axes.set_ylabel("macro F1 (test)")
        figure.suptitle(f"{title}: each method beside the reference")
        figure.legend(list(legend.values()), list(legend), loc="outside lower center",
                      ncols=min(len(legend), 3), fontsize="small")
    save_png(figure, path, STYLE)


def plot_per_class(rows: pd.DataFrame, title: str, path: Path) -> None:
    """Per-class sensitivity and precision at the largest fraction: bars per entry, mean ± std."""
    top = rows[rows["fraction"] == rows["fraction"].max()]
    classes = list(top["classes"].iloc[0])
    entries = sorted(top["entry"].unique())
    colours = _colours(entries)
    width = 0.8 / len(entries)
    positions = np.arange(len(classes))
    with matplotlib.rc_context(STYLE):
        figure = Figure(figsize=(max(6.4, 1.2 * len(classes) + 2), 5.6), layout="constrained")
        for index, metric in enumerate(("sensitivity", "precision")):
            axes = figure.add_subplot(2, 1, index + 1)
            for offset, entry in enumerate(entries):
                values = pd.DataFrame(list(top.loc[top["entry"] == entry, metric]))[classes]
                spread = values.std(ddof=1).fillna(0.0)
                axes.bar(positions + (offset - (len(entries) - 1) / 2) * width, values.mean(),
                         width, yerr=spread, capsize=2, color=colours[entry], label=entry)
            axes.set_xticks(positions, classes)
            axes.set_ylim(0, 1.05)
            axes.set_ylabel(metric)
            axes.grid(axis="y", alpha=0.3)
        axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncols=min(len(entries), 4),
                    fontsize="small")
        figure.suptitle(f"{title} at {top['fraction'].iloc[0] * 100:g}% labels")
    save_png(figure, path, STYLE)


def plot_critical_difference(mean_ranks: pd.Series, p_values: pd.DataFrame, title: str,
                             path: Path) -> None:
    """Critical-difference diagram (Demšar 2006): mean ranks on an axis, bars join the methods
    that the Nemenyi post-hoc test does not separate at alpha 0.05."""
    with matplotlib.rc_context(STYLE):
        figure = Figure(figsize=(7.0, 1.0 + 0.3 * len(mean_ranks)), layout="constrained")
        axes = figure.add_subplot()
        scikit_posthocs.critical_difference_diagram(
            mean_ranks, p_values, ax=axes, alpha=0.05,
            color_palette=_colours(sorted(mean_ranks.index)))
        axes.set_title(f"{title}: mean rank (1 = best)", pad=18)
    save_png(figure, path, STYLE)
