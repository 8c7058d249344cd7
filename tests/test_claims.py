"""The paper's claims answered on constructed records, and the Friedman gate of the ranking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from test_leaderboard import CLASSES, PHANTOM_TEST_PER_CLASS, make_record, scored_test_set, write

from fetalbench.report.claims import reading, shows
from fetalbench.report.leaderboard import render_leaderboard
from fetalbench.report.record_table import load_records

FRACTIONS = (0.05, 0.25, 1.0)


def perturbed(task: str, share: float, seed: int, flips: int) -> np.ndarray:
    """Predictions of macro F1 about ``share``, with ``flips`` seeded images set right: runs
    of one cell then differ a little from seed to seed."""
    n_classes = len(CLASSES[task])
    labels, predicted = scored_test_set(n_classes, share, PHANTOM_TEST_PER_CLASS * n_classes)
    wrong = np.flatnonzero(predicted != labels)
    chosen = np.random.default_rng(seed).choice(wrong, size=flips, replace=False)
    predicted = predicted.copy()
    predicted[chosen] = labels[chosen]
    return predicted


def suite(root: Path, task: str, methods: dict[str, float]) -> None:
    """Five seeds at each fraction; each method a fixed shift above a rising reference."""
    for fraction_index, fraction in enumerate(FRACTIONS):
        for seed in range(5):
            for method, shift in methods.items():
                share = 0.55 + 0.05 * fraction_index + shift
                predicted = perturbed(task, share, 100 * seed + fraction_index,
                                      flips=10 + 7 * seed)
                write(root, *make_record(method, task, fraction, seed, predicted=predicted))


def test_reading_and_the_majority_rule():
    assert [reading(0.01, 0.05), reading(-0.05, -0.01), reading(-0.03, 0.015),
            reading(-0.03, 0.05)] == ["above", "below", "ruled out", "undetermined"]
    assert shows(["above", "above", "undetermined"]) == "advantage"
    assert shows(["above", "above", "below"]) == "unclear"
    assert shows(["ruled out", "below", "undetermined"]) == "none"
    assert shows(["ruled out", "above", "ruled out"]) == "unclear"


def test_claims_supported_contradicted_and_inconclusive_on_constructed_records(tmp_path: Path):
    # brain: simclr_imagenet +0.10 everywhere -> (b) supported; no dual task -> (c) inconclusive.
    suite(tmp_path, "brain", {"supervised_imagenet": 0.0, "simclr_imagenet": 0.10})
    # planes: both contrastive methods +0.10 -> "no advantage" (a) contradicted.
    suite(tmp_path, "planes", {"supervised_imagenet": 0.0, "simclr_imagenet": 0.10,
                               "simclr": 0.10})
    text = render_leaderboard(load_records(tmp_path), "fetalbench leaderboard", None)
    claims = text.split("### The paper's claims, answered: SYNTHETIC (phantom)", 1)[1]
    claims = claims.split("### SYNTHETIC (phantom): task", 1)[0]
    assert "> Synthetic data: these verdicts are about phantom images" in claims
    assert "How the verdicts are reached:" in claims
    verdicts = [line for line in claims.splitlines() if line.startswith("**(")]
    assert "Verdict: **contradicted**" in verdicts[0]
    assert "Verdict: **supported**" in verdicts[1]
    assert "Verdict: **inconclusive** (no records of dual_task_imagenet, dual_task)" \
        in verdicts[2]
    assert "- `simclr_imagenet` vs `supervised_imagenet`, difference in macro F1: 5% +0.100 [" \
        in claims
    assert "Shows: **advantage**" in claims
    assert text.index("The paper's claims, answered") < text.index("task `brain`")


def test_claims_without_the_reference_or_with_one_seed_are_inconclusive(tmp_path: Path):
    write(tmp_path, *make_record("simclr_imagenet", "brain", 1.0, 0, 0.7))
    text = render_leaderboard(load_records(tmp_path), "fetalbench leaderboard", None)
    assert "Verdict: **inconclusive** (no records of supervised_imagenet)" in text
    assert "Verdict: **inconclusive** (no records of task `planes`)" in text
    write(tmp_path, *make_record("supervised_imagenet", "brain", 1.0, 0, 0.6))
    text = render_leaderboard(load_records(tmp_path), "fetalbench leaderboard", None)
    assert ("Verdict: **inconclusive** (fewer than 3 seeds shared with the reference at every "
            "fraction)") in text


def test_nemenyi_and_the_diagram_only_when_friedman_rejects(tmp_path: Path):
    tied = tmp_path / "tied"
    for method, offsets in {"supervised_imagenet": (0.0, 0.02, 0.0, 0.01),
                            "simclr": (0.01, 0.0, 0.02, 0.0),
                            "supervised_scratch": (0.02, 0.01, 0.01, 0.02)}.items():
        for task in ("brain", "planes"):
            for index, fraction in enumerate((0.25, 1.0)):
                write(tied, *make_record(method, task, fraction, 0,
                                         0.6 + offsets[2 * (task == "planes") + index]))
    text = render_leaderboard(load_records(tied), "fetalbench leaderboard", Path("figs"))
    assert "does not reject equal ranks at alpha 0.05" in text
    assert "no critical-difference diagram is drawn" in text
    assert "Nemenyi post-hoc test" not in text
    assert "critical_difference.png" not in text
    assert "self-supervised stage (pre-trained once per task and seed" in text
