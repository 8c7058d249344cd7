"""Label-efficiency numbers on curves and constructed records whose answers are known."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from test_leaderboard import make_record, table_rows, write

from fetalbench.report.comparisons import table_evidence
from fetalbench.report.label_efficiency import (
    area_under_curve,
    labels_to_match,
    saving_factor,
)
from fetalbench.report.leaderboard import render_leaderboard, with_entries
from fetalbench.report.record_table import load_records

FRACTIONS = np.array([0.05, 0.25, 1.0])


def test_labels_to_match_reads_the_first_crossing_in_log_fraction():
    assert labels_to_match(FRACTIONS, np.array([0.5, 0.8, 0.9]), 0.8) == pytest.approx(0.25)
    # 0.8 halfway between 0.7 at 25% and 0.9 at 100%: the geometric mean of 25% and 100%.
    assert labels_to_match(FRACTIONS, np.array([0.5, 0.7, 0.9]), 0.8) == pytest.approx(0.5)
    assert math.isinf(labels_to_match(FRACTIONS, np.array([0.5, 0.7, 0.75]), 0.8))
    assert labels_to_match(FRACTIONS, np.array([0.85, 0.6, 0.95]), 0.8) == 0.05


def test_labels_to_match_is_vectorised_over_resamples():
    curves = np.array([[0.5, 0.8, 0.9], [0.5, 0.7, 0.75], [0.9, 0.9, 0.9]])
    result = labels_to_match(FRACTIONS, curves, np.array([0.8, 0.8, 0.8]))
    assert result[0] == pytest.approx(0.25) and math.isinf(result[1]) and result[2] == 0.05


def test_saving_factor_and_its_censoring():
    reference = np.array([0.5, 0.7, 0.8])
    factors = saving_factor(FRACTIONS, np.array([0.6, 0.8, 0.9]), FRACTIONS, reference)
    # 0.6 at 5%: the reference gets there halfway (in log) from 5% to 25%, sqrt(0.05 * 0.25).
    assert factors[0] == pytest.approx(math.sqrt(0.05 * 0.25) / 0.05)
    assert factors[1] == pytest.approx(1.0 / 0.25)  # the reference needs 100% for 0.8
    assert math.isinf(factors[2])  # the reference never reaches 0.9
    low = saving_factor(FRACTIONS, np.array([0.4, 0.4, 0.4]), FRACTIONS, reference)
    assert low.tolist() == pytest.approx([1.0, 0.2, 0.05])  # "≤": reference already there at 5%


def test_area_under_curve_is_the_mean_over_log_fraction():
    assert area_under_curve(FRACTIONS, np.array([0.5, 0.5, 0.5])) == pytest.approx(0.5)
    logs = np.log(FRACTIONS)
    curve = np.array([0.2, 0.6, 0.8])
    expected = ((0.2 + 0.6) / 2 * (logs[1] - logs[0]) + (0.6 + 0.8) / 2 * (logs[2] - logs[1]))
    assert area_under_curve(FRACTIONS, curve) == pytest.approx(expected / (logs[2] - logs[0]))
    assert math.isnan(area_under_curve(np.array([1.0]), np.array([0.7])))


def curve_records(root: Path, scores: dict[str, list[float]], seeds: int = 3) -> None:
    """Per method, macro F1 at 5%, 25% and 100% on every seed (the phantom test set)."""
    for method, curve in scores.items():
        for fraction, score in zip(FRACTIONS, curve, strict=True):
            for seed in range(seeds):
                write(root, *make_record(method, "brain", float(fraction), seed, score,
                                         with_predictions=True))


def test_constructed_records_need_25_percent_not_reached_and_at_most_5_percent(tmp_path: Path):
    curve_records(tmp_path, {"supervised_imagenet": [0.5, 0.6, 0.8],
                             "simclr": [0.6, 0.8, 0.9],
                             "supervised_scratch": [0.4, 0.5, 0.7],
                             "dual_task": [0.85, 0.9, 0.9]})
    rows = with_entries(load_records(tmp_path).ok)
    curves = table_evidence(rows, n_resamples=200).curves
    assert curves["simclr"].labels_to_match.estimate == pytest.approx(0.25)
    assert math.isinf(curves["supervised_scratch"].labels_to_match.estimate)
    assert curves["dual_task"].labels_to_match.estimate == 0.05
    assert curves["supervised_imagenet"].labels_to_match is None
    text = render_leaderboard(load_records(tmp_path), "fetalbench leaderboard", None)
    efficiency = table_rows(text, "Label efficiency:")
    assert efficiency["simclr"][0].startswith("25% [")
    assert efficiency["supervised_scratch"][0].startswith("not reached")
    assert efficiency["dual_task"][0].startswith("≤ 5%")
    # simclr at 5% (0.6) is the reference at 25%: 5x; at 100% (0.9) beyond the reference: > 1x.
    assert efficiency["simclr"][3].startswith("5x") and efficiency["simclr"][5].startswith("> 1x")
    assert "Labelled images per run, training + validation" in text
    assert "5%: 50 + 200, 25%: 250 + 200, 100%: 1000 + 200" in text
    machines = table_rows(text, "Macro F1 per ultrasound machine at 100% labels")
    assert machines["simclr"] == ["0.900", "0.900"]
    assert "Aloka (n=1500)" in text and "Voluson E6 (n=1500)" in text
