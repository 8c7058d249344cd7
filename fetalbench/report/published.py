"""Published FETAL_PLANES_DB results, shown beside the board and never mixed with it.

The rows are data (``fetalbench/data/published_results.json``), each naming its source, whose
citation, dataset, split and protocol are stated once per source (a row may name its own
protocol). They are printed under their
own heading: another split, protocol, resolution and model, so no statistic of this benchmark
is computed from them and no table of its runs holds them.
"""

from __future__ import annotations

import json
from importlib import resources

from fetalbench.report.formatting import markdown_table

TITLE = "## Published results on FETAL_PLANES_DB (not this benchmark's runs)"


def published_results() -> dict:
    """The committed published results (``fetalbench/data/published_results.json``)."""
    text = resources.files("fetalbench.data").joinpath("published_results.json").read_text(
        encoding="utf-8")
    return json.loads(text)


def published_section(published: dict | None = None) -> str:
    """The leaderboard's section of published results: one row per number, with its source's
    citation, dataset, split and protocol."""
    published = published_results() if published is None else published
    sources = published["sources"]
    body = []
    for row in published["rows"]:
        source = sources[row["source"]]
        value = f"{row['value']:.2f}" if row["metric"].endswith("(%)") else f"{row['value']:.4f}"
        protocol = row.get("protocol") or source["protocol"]
        body.append([row["model"], row["task"], f"{row['metric']} {value}", protocol,
                     source["split"], source["dataset"], source["citation"]])
    table = markdown_table(["model", "task (the source's)", "metric", "protocol", "split",
                            "dataset", "source"], body)
    return "\n\n".join([TITLE, published["about"], table, published["left_out"]])
