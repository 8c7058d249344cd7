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
    palette = matplotlib.colormaps["tab10"]
    return {entry: palette(index % 10) for index, entry in enumerate(entries)}


def plot_label_efficiency(evidence: TableEvidence, entries: list[str], title: str,
                          path: Path) -> None:
    """Macro F1 vs label fraction (log axis): one line per entry (the reference dashed), its
    95% bootstrap band, a cross on each cell whose runs did not all learn, and a diamond where
    it reaches the reference's macro F1 at 100% labels (labels needed to match; at the smallest
    fraction when it is already there), drawn only where the reference's curve rises
    (:func:`fetalbench.report.comparisons.unread`)."""
    cells = evidence.cells.set_index(["entry", "fraction"]).sort_index()
    with matplotlib.rc_context(STYLE):
        figure = Figure(figsize=(6.4, 4.0), layout="constrained")
        axes = figure.add_subplot()
        colours = _colours(sorted(entries))
        marked = crossed = False
        for entry in entries:
            summary, curve = cells.loc[entry], evidence.curves[entry]
            is_reference = curve.method == REFERENCE
            axes.plot(summary.index, summary["mean"], marker="o", color=colours[entry],
                      linestyle="--" if is_reference else "-", label=entry)
            axes.fill_between(summary.index, summary["low"], summary["high"],
                              color=colours[entry], alpha=0.15, linewidth=0)
            unlearned = summary[~summary["learned"].astype(bool)]
            if not unlearned.empty:
                axes.plot(unlearned.index, unlearned["mean"], marker="x", color="black",
                          markersize=8, linestyle="none")
                crossed = True
            if curve.labels_to_match is not None and not math.isinf(
                    curve.labels_to_match.estimate) and unread(evidence, entry) is None:
                target = cells.loc[(curve.reference, 1.0), "mean"]
                axes.plot([curve.labels_to_match.estimate], [target], marker="D",
                          color=colours[entry], markeredgecolor="black", linestyle="none")
                marked = True
        if marked:
            axes.plot([], [], marker="D", color="white", markeredgecolor="black",
                      linestyle="none", label="reaches the reference at 100%")
        if crossed:
            axes.plot([], [], marker="x", color="black", linestyle="none",
                      label="runs did not all learn (†)")
        fractions = sorted(evidence.cells["fraction"].unique())
        axes.set_xscale("log")
        axes.set_xticks(fractions, [f"{fraction * 100:g}%" for fraction in fractions])
        axes.minorticks_off()
        axes.set_xlabel("labelled fraction of the training set")
        axes.set_ylabel("macro F1 (test)")
        axes.set_title(title)
        axes.grid(alpha=0.3)
        axes.legend(loc="lower right", fontsize="small")
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
