"""How the leaderboard writes numbers: fractions, signed differences, intervals, labels and
savings (censored where a curve is read beyond its measured range), and GitHub Markdown tables
(tabulate)."""

from __future__ import annotations

import math

from tabulate import tabulate

from fetalbench.report.bootstrap import Percentile, Standard
from fetalbench.report.record_table import FRACTION, PATIENTS

MISSING = "—"


def percent(fraction: float) -> str:
    """0.25 -> "25%"."""
    return f"{fraction * 100:.3g}%"


def budget_amount(value: float, budget: str = FRACTION) -> str:
    """A label budget: a fraction as :func:`percent`, k patients per class as "k=4"."""
    return f"k={value:g}" if budget == PATIENTS else percent(value)


def budget_column(value: float, budget: str = FRACTION) -> str:
    """A table's column of a label budget: "25% labels", or "k=4" (patients per class)."""
    return budget_amount(value, budget) if budget == PATIENTS else f"{percent(value)} labels"


def signed(value: float) -> str:
    """A difference with its sign: "+0.031", "-0.004"."""
    return f"{value:+.3f}"


def standard(interval: Standard | None, sign: bool = False) -> str:
    """"0.812 [0.790, 0.834]", or the estimate alone where there is no interval."""
    if interval is None or math.isnan(interval.estimate):
        return MISSING
    number = signed if sign else (lambda value: f"{value:.3f}")
    if math.isnan(interval.low):
        return number(interval.estimate)
    return f"{number(interval.estimate)} [{number(interval.low)}, {number(interval.high)}]"


def count(value: float) -> str:
    """A number of labelled images: 96.4 -> "96"."""
    return f"{value:.0f}"


def reached(amount: float, smallest: float) -> str:
    """Labels needed to reach a level: "not reached" (infinite), "≤ 96" (already at the
    smallest measured amount), or the number."""
    if math.isinf(amount):
        return "not reached"
    if amount <= smallest * (1 + 1e-9):
        return f"≤ {count(smallest)}"
    return count(amount)


def labels_needed(value: Percentile | None, smallest: float) -> str:
    """Labels needed, with its interval: "250 [96, not reached]"."""
    if value is None:
        return MISSING
    text = reached(value.estimate, smallest)
    if math.isnan(value.low):
        return text
    return f"{text} [{reached(value.low, smallest)}, {reached(value.high, smallest)}]"


def times(value: float, below: float) -> str:
    """A saving factor: "2.2x"; for 0 (the method never reached the level), "< {below}x"."""
    return f"< {below:.2g}x" if value == 0 else f"{value:.2g}x"


def match_saving(value: Percentile | None, needs: float, smallest: float, below: float) -> str:
    """The saving at the level to match (the reference's labels over the method's), with its
    interval: "≥ 4x" where the method is there at its ``smallest`` amount (``needs``, its
    labels needed, is then an upper bound), "< {below}x" where it never gets there."""
    if value is None:
        return MISSING
    text = times(value.estimate, below)
    text = f"≥ {text}" if needs <= smallest * (1 + 1e-9) else text
    if math.isnan(value.low):
        return text
    return f"{text} [{times(value.low, below)}, {times(value.high, below)}]"


def factor(value: float, at: float, smallest: float, largest: float) -> str:
    """A label-saving factor at a method's ``at`` labels: "2.2x", "≤ 1x" (the reference reaches
    the method's F1 at its ``smallest`` amount), "> 20x" (never, up to its ``largest``)."""
    if math.isinf(value):
        return f"> {largest / at:.2g}x"
    if value * at <= smallest * (1 + 1e-9):
        return f"≤ {smallest / at:.2g}x"
    return f"{value:.2g}x"


def saving(value: Percentile, at: float, smallest: float, largest: float) -> str:
    """A label-saving factor with its interval."""
    text = factor(value.estimate, at, smallest, largest)
    if math.isnan(value.low):
        return text
    return (f"{text} [{factor(value.low, at, smallest, largest)}, "
            f"{factor(value.high, at, smallest, largest)}]")


def markdown_table(headers: list[str], body: list[list[str]]) -> str:
    """A GitHub Markdown table, every cell as text."""
    return tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)
