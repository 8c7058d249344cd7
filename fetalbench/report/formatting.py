"""How the leaderboard writes numbers: fractions, signed differences, intervals, censored values,
and GitHub Markdown tables (tabulate)."""

from __future__ import annotations

import math

from tabulate import tabulate

from fetalbench.report.bootstrap import Percentile, Standard

MISSING = "—"


def percent(fraction: float) -> str:
    """0.25 -> "25%"."""
    return f"{fraction * 100:.3g}%"


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


def reached(fraction: float, smallest: float) -> str:
    """A fraction needed to reach a level: "not reached" (infinite), "≤ 5%" (already at the
    smallest measured fraction), or the fraction."""
    if math.isinf(fraction):
        return "not reached"
    if fraction <= smallest * (1 + 1e-9):
        return f"≤ {percent(smallest)}"
    return percent(fraction)


def labels_needed(value: Percentile | None, smallest: float) -> str:
    """Labels needed to match, with its interval: "25% [10%, not reached]"."""
    if value is None:
        return MISSING
    text = reached(value.estimate, smallest)
    if math.isnan(value.low):
        return text
    return f"{text} [{reached(value.low, smallest)}, {reached(value.high, smallest)}]"


def factor(value: float, at: float, smallest: float, largest: float) -> str:
    """A label-saving factor g/f at fraction ``at``: "2.2x", "≤ 1x" (the reference reaches the
    method's F1 at its smallest fraction), "> 20x" (the reference never reaches it)."""
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
