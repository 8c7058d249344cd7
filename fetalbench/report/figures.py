"""Leaderboard figures (matplotlib, Agg, no pyplot state): deterministic bytes for equal inputs.

Every plotting function takes the rows of one table, with an ``entry`` column naming the row
(method, or ``method (protocol)``), and writes one PNG atomically. PNGs carry no software or date
metadata, and ``svg.hashsalt`` is fixed so the same figures saved as SVG are stable too.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import scikit_posthocs
from matplotlib.figure import Figure

from fetalbench.report.plotting import save_png
from fetalbench.report.statistics import mean_ci

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


def plot_label_efficiency(rows: pd.DataFrame, title: str, path: Path) -> None:
    """Macro F1 vs label fraction (log axis): one line per entry, mean and 95% CI over seeds."""
    with matplotlib.rc_context(STYLE):
        figure = Figure(figsize=(6.4, 4.0), layout="constrained")
        axes = figure.add_subplot()
        entries = sorted(rows["entry"].unique())
        colours = _colours(entries)
        for entry in entries:
            cells = rows[rows["entry"] == entry].groupby("fraction")["macro_f1"]
            summary = pd.DataFrame([mean_ci(values) for _, values in cells],
                                   index=[fraction for fraction, _ in cells])
            axes.plot(summary.index, summary["mean"], marker="o", color=colours[entry],
                      label=entry)
            axes.fill_between(summary.index, summary["low"], summary["high"],
                              color=colours[entry], alpha=0.15, linewidth=0)
        fractions = sorted(rows["fraction"].unique())
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
