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
    labels_to_reach,
    monotone,
    rises,
    savings_at,
)
from fetalbench.report.leaderboard import render_leaderboard, with_entries
from fetalbench.report.record_table import load_records

FRACTIONS = np.array([0.05, 0.25, 1.0])
LABELS = np.array([250.0, 450.0, 1200.0])
"""Labels consumed by the constructed records at those fractions: 50, 250, 1000 labelled
training images plus the 200 validation images that chose the checkpoint."""


def test_monotone_is_the_isotonic_fit_and_leaves_rising_curves_alone():
    assert monotone(np.array([0.5, 0.8, 0.7])) == pytest.approx([0.5, 0.75, 0.75])
    assert monotone(np.array([0.9, 0.6, 0.6])) == pytest.approx([0.7, 0.7, 0.7])
    curves = np.array([[0.5, 0.6, 0.9], [0.6, 0.5, 0.9]])
    assert monotone(curves) == pytest.approx(np.array([[0.5, 0.6, 0.9], [0.55, 0.55, 0.9]]))
    assert rises(curves).tolist() == [True, False]
    assert not rises(np.array([0.5, 0.5, 0.9]))  # flat is not rising


def test_labels_to_reach_reads_the_crossing_in_log_labels():
    assert labels_to_reach(LABELS, np.array([0.5, 0.8, 0.9]), 0.8) == pytest.approx(450)
    # 0.8 halfway between 0.7 at 450 and 0.9 at 1200: their geometric mean
    assert labels_to_reach(LABELS, np.array([0.5, 0.7, 0.9]), 0.8) == pytest.approx(
        math.sqrt(450 * 1200))
    assert math.isinf(labels_to_reach(LABELS, np.array([0.5, 0.7, 0.75]), 0.8))
    assert labels_to_reach(LABELS, np.array([0.85, 0.9, 0.95]), 0.8) == 250
    curves = np.array([[0.5, 0.8, 0.9], [0.5, 0.7, 0.75], [0.9, 0.9, 0.9]])
    result = labels_to_reach(LABELS, curves, np.array([0.8, 0.8, 0.8]))
    assert result[0] == pytest.approx(450) and math.isinf(result[1]) and result[2] == 250


def test_savings_at_each_point_and_their_censoring():
    reference = np.array([0.5, 0.7, 0.8])
    factors = savings_at(LABELS, np.array([0.6, 0.8, 0.9]), LABELS, reference)
    # 0.6 at 250: the reference gets there halfway (in log) from 250 to 450
    assert factors[0] == pytest.approx(math.sqrt(250 * 450) / 250)
    assert factors[1] == pytest.approx(1200 / 450)  # the reference needs all 1200 for 0.8
    assert math.isinf(factors[2])  # the reference never reaches 0.9
    low = savings_at(LABELS, np.array([0.4, 0.4, 0.4]), LABELS, reference)
    assert low.tolist() == pytest.approx([1.0, 250 / 450, 250 / 1200])  # "≤": there at 250


def test_area_under_curve_is_the_mean_over_log_labels():
    assert area_under_curve(LABELS, np.array([0.5, 0.5, 0.5])) == pytest.approx(0.5)
    logs = np.log(LABELS)
    curve = np.array([0.2, 0.6, 0.8])
    expected = ((0.2 + 0.6) / 2 * (logs[1] - logs[0]) + (0.6 + 0.8) / 2 * (logs[2] - logs[1]))
    assert area_under_curve(LABELS, curve) == pytest.approx(expected / (logs[2] - logs[0]))
    assert math.isnan(area_under_curve(np.array([1.0]), np.array([0.7])))


def curve_records(root: Path, scores: dict[str, list[float]], seeds: int = 3) -> None:
    """Per method, macro F1 at 5%, 25% and 100% on every seed (the phantom test set)."""
    for method, curve in scores.items():
        for fraction, score in zip(FRACTIONS, curve, strict=True):
            for seed in range(seeds):
                write(root, *make_record(method, "brain", float(fraction), seed, score,
                                         with_predictions=True))


def test_constructed_records_read_labels_consumed_to_match_and_the_saving(tmp_path: Path):
    curve_records(tmp_path, {"supervised_imagenet": [0.5, 0.6, 0.8],
                             "simclr": [0.6, 0.8, 0.9],
                             "supervised_scratch": [0.4, 0.5, 0.7],
                             "dual_task": [0.85, 0.9, 0.9]})
    rows = with_entries(load_records(tmp_path).ok)
    curves = table_evidence(rows, n_resamples=200).curves
    assert curves["simclr"].amounts == tuple(LABELS)
    assert curves["simclr"].to_match.estimate == pytest.approx(450)
    assert curves["simclr"].reference_reach.estimate == pytest.approx(1200)
    assert curves["simclr"].match_saving.estimate == pytest.approx(1200 / 450)
    assert math.isinf(curves["supervised_scratch"].to_match.estimate)
    assert curves["supervised_scratch"].match_saving.estimate == 0
    assert curves["dual_task"].to_match.estimate == 250
    assert curves["supervised_imagenet"].to_match.estimate == pytest.approx(1200)  # its own
    assert curves["supervised_imagenet"].match_saving is None
    text = render_leaderboard(load_records(tmp_path), "fetalbench leaderboard", None)
    efficiency = table_rows(text, "Label efficiency:")
    assert efficiency["supervised_imagenet"][:2] == ["1200 [1200, 1200]", "—"]
    assert efficiency["simclr"][0].startswith("450 [")
    assert efficiency["simclr"][1].startswith("2.7x [")
    assert efficiency["supervised_scratch"][0].startswith("not reached")
    assert efficiency["supervised_scratch"][1].startswith("< 1x")
    assert efficiency["dual_task"][0].startswith("≤ 250")
    assert efficiency["dual_task"][1].startswith("≥ 4.8x")
    # simclr at 5% (0.6, 250 labels) is the reference at 450: 1.8x; at 25% (0.8, 450) the
    # reference at 1200: 2.7x; at 100% (0.9) beyond the reference: > 1x.
    assert [cell.split(" [")[0] for cell in efficiency["simclr"][4:]] == ["1.8x", "2.7x", "> 1x"]
    # only dual_task's curve does not rise at every step (a plateau at 0.9): its numbers marked
    assert [entry for entry, row in efficiency.items() if any("‡" in cell for cell in row)] == [
        "dual_task"]
    assert "in **labels consumed**" in text and "5%: 250, 25%: 450, 100%: 1200" in text
    assert "Labelled images per run, training + validation" in text
    assert "5%: 50 + 200, 25%: 250 + 200, 100%: 1000 + 200" in text
    machines = table_rows(text, "Macro F1 per ultrasound machine at 100% labels")
    assert machines["simclr"] == ["0.900", "0.900"]
    assert "Aloka (n=1500)" in text and "Voluson E6 (n=1500)" in text


def test_a_reference_that_dips_is_fitted_monotone_and_its_numbers_are_marked(tmp_path: Path):
    """The reference peaks at 25% (0.8) and dips at 100% (0.7). Reading the raw curve, the
    method (0.6, 0.8, 0.9) would match the 100% value 0.7 at 5%-25% and save a lot; fitted
    monotone, the reference's level is 0.75 (25% and 100% pooled), which the reference itself
    reaches at 450 labels, the method at 250·(450/250)^0.75."""
    curve_records(tmp_path, {"supervised_imagenet": [0.5, 0.8, 0.7], "simclr": [0.6, 0.8, 0.9]})
    rows = with_entries(load_records(tmp_path).ok)
    evidence = table_evidence(rows, n_resamples=200)
    simclr, reference = evidence.curves["simclr"], evidence.curves["supervised_imagenet"]
    assert not simclr.reference_rises and simclr.rises and simclr.fitted
    assert reference.to_match.estimate == pytest.approx(450)
    assert simclr.reference_reach.estimate == pytest.approx(450)
    method_needs = 250 * (450 / 250) ** 0.75
    assert simclr.to_match.estimate == pytest.approx(method_needs, rel=1e-3)
    assert simclr.match_saving.estimate == pytest.approx(450 / method_needs, rel=1e-3)
    text = render_leaderboard(load_records(tmp_path), "fetalbench leaderboard", None)
    efficiency = table_rows(text, "Label efficiency:")
    assert efficiency["supervised_imagenet"][0] == "450 [450, 450] ‡"
    assert efficiency["simclr"][0].startswith("389 [") and efficiency["simclr"][0].endswith(" ‡")
    assert efficiency["simclr"][1].startswith("1.2x [") and efficiency["simclr"][1].endswith(" ‡")
    assert all(cell.endswith(" ‡") for cell in efficiency["simclr"][4:])
