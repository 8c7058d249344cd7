"""The paper's claims answered on constructed records as tested families (planted advantages,
planted equivalence, too few seeds), and the Friedman gate of the ranking."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from test_leaderboard import (
    CLASSES,
    PHANTOM_TEST_PER_CLASS,
    make_record,
    scored_test_set,
    table_rows,
    write,
)

from fetalbench.errors import FetalbenchError
from fetalbench.report.claims import MARGIN, family, reading, shows, verdict
from fetalbench.report.comparisons import table_evidence, unread
from fetalbench.report.leaderboard import render_leaderboard, with_entries
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


def suite(root: Path, task: str, methods: dict[str, float], rise: float = 0.05) -> None:
    """Five seeds at each fraction; each method a fixed shift above a reference that gains
    ``rise`` macro F1 per fraction (0: flat, its seeds scattered alike at every fraction)."""
    for fraction_index, fraction in enumerate(FRACTIONS):
        for seed in range(5):
            for method, shift in methods.items():
                share = 0.55 + rise * fraction_index + shift
                flips = 10 + 7 * seed if rise else 10 + 7 * ((seed + fraction_index) % 5)
                predicted = perturbed(task, share, 100 * seed + fraction_index, flips=flips)
                write(root, *make_record(method, task, fraction, seed, predicted=predicted))


def planted(root: Path, task: str, shifts: dict[str, float], seeds: int, noise: float,
            **record: object) -> None:
    """Each method at 5%, 25% and 100% labels ``shifts[method]`` above a reference that rises
    0.1 per fraction, each run's macro F1 moved by its own ``noise`` (a normal draw per method,
    fraction and seed), on the phantom's test set (1000 images per class, 10 per patient)."""
    rng = np.random.default_rng(11)
    for index, fraction in enumerate(FRACTIONS):
        for seed in range(seeds):
            for method, shift in shifts.items():
                score = 0.5 + 0.1 * index + shift + rng.normal(0, noise)
                write(root, *make_record(method, task, fraction, seed, float(score), **record))


def test_reading_shows_and_verdict_follow_the_rule():
    assert reading(0.05, 0.001, 0.9, 0.01, 5) == "better"
    assert reading(-0.05, 0.001, 0.9, 0.01, 5) == "worse"
    assert reading(0.001, 0.9, 0.001, 0.01, 5) == "equivalent"
    assert reading(0.01, 0.001, 0.01, 0.01, 5) == "equivalent"  # real, but within the margin
    assert reading(0.01, 0.3, 0.3, MARGIN * 2, 5) == "underpowered"
    assert reading(0.01, float("nan"), float("nan"), float("nan"), 2) == "underpowered"
    assert reading(0.015, 0.3, 0.3, MARGIN / 2, 5) == "undetermined"
    assert shows(["better", "better", "underpowered"]) == "advantage"
    assert shows(["better", "better", "worse"]) == "unclear"
    assert shows(["equivalent", "worse", "undetermined"]) == "none"
    assert shows(["better", "equivalent", "underpowered"]) == "underpowered"
    assert verdict("advantage", ["none", "advantage"], complete=True) == "supported"
    assert verdict("advantage", ["none", "none"], complete=True) == "contradicted"
    assert verdict("advantage", ["none"], complete=False) == "inconclusive"
    assert verdict("no advantage", ["none", "none"], complete=True) == "supported"
    assert verdict("no advantage", ["none", "underpowered"], complete=True) == "underpowered"


def test_a_claims_p_values_are_corrected_together():
    """Holm over the family's difference and equivalence p-values at once (here 2 x 2)."""
    differences = pd.DataFrame({"p": [0.01, 0.04], "estimate": [0.0, 0.0],
                                "se": [0.005, 0.005], "df": [np.inf, np.inf]})
    tested = family(differences)
    equivalence = stats.norm.sf(MARGIN / 0.005)
    # sorted: 2 equivalence p-values (tiny), 0.01, 0.04 -> x4, x3, x2, x1 with running maxima
    assert tested["equivalence_p_family"].tolist() == pytest.approx([4 * equivalence] * 2)
    assert tested["p_family"].tolist() == pytest.approx([0.02, 0.04])


def claim_line(text: str, letter: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"**({letter})**"))


def test_a_planted_advantage_at_every_fraction_with_five_seeds_is_supported(tmp_path: Path):
    planted(tmp_path, "brain", {"supervised_imagenet": 0.0, "simclr_imagenet": 0.05}, seeds=5,
            noise=0.005)
    text = render_leaderboard(load_records(tmp_path), "fetalbench leaderboard", None)
    assert "Verdict: **supported**; equivalence margin ±0.02 macro F1." in claim_line(text, "b")
    evidence = text.split(claim_line(text, "b"), 1)[1].split("\n\n", 1)[0]
    assert evidence.count("*better*") == 3 and "Shows: **advantage**" in evidence
    assert re.search(r"5% \(50 \+ 200 labels\) \+0\.0[45]\d \[\+0\.\d{3}, \+0\.\d{3}\] "
                     r"\(n=5, MDD 0\.\d{3}, p [\d.e-]+, equivalence p 1\): \*better\*", evidence)
    assert ("Read from 30 runs: profile `quick` (content " in evidence
            and "pool `task`, finetune with `fixed` validation, seeds 0-4; learning checks: "
            "30 `learned` (each stage's final loss clearly below its chance level" in evidence)


def test_a_planted_zero_difference_with_enough_seeds_is_no_advantage_by_equivalence(
        tmp_path: Path):
    planted(tmp_path, "planes", {"supervised_imagenet": 0.0, "simclr": 0.0,
                                 "simclr_imagenet": 0.0}, seeds=10, noise=0.005)
    text = render_leaderboard(load_records(tmp_path), "fetalbench leaderboard", None)
    assert "Verdict: **supported**; equivalence margin ±0.02" in claim_line(text, "a")
    evidence = text.split(claim_line(text, "a"), 1)[1].split("\n\n", 1)[0]
    assert evidence.count("*equivalent*") == 6 and evidence.count("Shows: **none**") == 2


def test_too_few_seeds_read_underpowered_not_no_advantage(tmp_path: Path):
    # the same zero difference, but three noisy seeds: nothing could show a 0.02 difference
    planted(tmp_path / "three", "planes", {"supervised_imagenet": 0.0, "simclr": 0.0,
                                           "simclr_imagenet": 0.0}, seeds=3, noise=0.03)
    text = render_leaderboard(load_records(tmp_path / "three"), "fetalbench leaderboard", None)
    assert "Verdict: **underpowered**;" in claim_line(text, "a")
    evidence = text.split(claim_line(text, "a"), 1)[1].split("\n\n", 1)[0]
    assert "*underpowered*" in evidence and "*equivalent*" not in evidence
    mdd = [float(value) for value in re.findall(r"MDD (0\.\d+)", evidence)]
    assert mdd and min(mdd) > MARGIN
    # two seeds carry no test at all: underpowered too, even with an advantage planted
    planted(tmp_path / "two", "brain", {"supervised_imagenet": 0.0, "simclr_imagenet": 0.05},
            seeds=2, noise=0.005)
    text = render_leaderboard(load_records(tmp_path / "two"), "fetalbench leaderboard", None)
    assert "Verdict: **underpowered**;" in claim_line(text, "b")


def test_two_profiles_in_one_table_are_refused_with_one_line(tmp_path: Path):
    planted(tmp_path, "brain", {"supervised_imagenet": 0.0, "simclr_imagenet": 0.05}, seeds=3,
            noise=0.005)
    write(tmp_path, *make_record("simclr_imagenet", "brain", 0.5, 0, 0.7, profile="smoke"))
    records = load_records(tmp_path)  # every cell is of one profile
    with pytest.raises(FetalbenchError) as error:
        render_leaderboard(records, "fetalbench leaderboard", None)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("one table holds one setup, but the records of phantom/brain were "
                              "made under two profiles (profile `quick` (content ")
    assert "profile `smoke` (content " in message and "keep one setup per results folder" in message


def test_two_code_versions_of_one_method_in_one_table_are_refused(tmp_path: Path):
    write(tmp_path, *make_record("simclr", "brain", 1.0, 0, 0.7))
    write(tmp_path, *make_record("simclr", "brain", 1.0, 1, 0.7, code_version="beef" * 4))
    write(tmp_path, *make_record("supervised_imagenet", "brain", 1.0, 0, 0.6,
                                 code_version="cafe" * 4))  # another method may differ
    with pytest.raises(FetalbenchError, match="two code versions of simclr meet in the table "
                       "phantom/brain"):
        render_leaderboard(load_records(tmp_path), "fetalbench leaderboard", None)


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
    assert ("- `simclr_imagenet` vs `supervised_imagenet`, paired difference in macro F1 "
            "(Holm-corrected p-values): 5% (50 + 200 labels) +0.100 [") in claims
    assert "Shows: **advantage**" in claims
    assert text.index("The paper's claims, answered") < text.index("task `brain`")


def test_claims_without_the_reference_or_with_few_seeds_are_inconclusive_or_not_read(
        tmp_path: Path):
    write(tmp_path, *make_record("simclr_imagenet", "brain", 1.0, 0, 0.7))
    text = render_leaderboard(load_records(tmp_path), "fetalbench leaderboard", None)
    assert "Verdict: **inconclusive** (no records of supervised_imagenet)" in text
    assert "Verdict: **inconclusive** (no records of task `planes`)" in text
    write(tmp_path, *make_record("supervised_imagenet", "brain", 1.0, 0, 0.6))
    text = render_leaderboard(load_records(tmp_path), "fetalbench leaderboard", None)
    assert "Not read: the reference `supervised_imagenet` has no 5% cell." in text
    # Two seeds of a rising reference: read, but too few seeds for a verdict.
    two = tmp_path / "two"
    for seed in range(2):
        for fraction, score in ((0.05, 0.5), (1.0, 0.7)):
            write(two, *make_record("supervised_imagenet", "brain", fraction, seed,
                                    score + seed / 100))
            write(two, *make_record("simclr_imagenet", "brain", fraction, seed, score + 0.1))
    text = render_leaderboard(load_records(two), "fetalbench leaderboard", None)
    assert "Verdict: **underpowered**;" in text


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


def claim_lines(text: str) -> list[str]:
    claims = text.split("### The paper's claims, answered: SYNTHETIC (phantom)", 1)[1]
    return [line for line in claims.split("### SYNTHETIC (phantom): task", 1)[0].splitlines()
            if line.startswith("**(")]


def test_a_flat_reference_suppresses_label_efficiency_and_claims_a_rising_one_does_not(
        tmp_path: Path):
    # brain: the reference is flat (its seeds scatter alike at 5% and 100%), simclr_imagenet and
    # dual_task +0.10 above it: (b) and (c) would be supported, but nothing is read.
    suite(tmp_path, "brain", {"supervised_imagenet": 0.0, "simclr_imagenet": 0.10,
                              "dual_task": 0.10}, rise=0.0)
    # planes: the reference rises; both contrastive methods +0.10: (a) is read (contradicted).
    suite(tmp_path, "planes", {"supervised_imagenet": 0.0, "simclr_imagenet": 0.10,
                               "simclr": 0.10})
    records = load_records(tmp_path)
    rows = with_entries(records.ok)
    flat = table_evidence(rows[rows["task"] == "brain"], n_resamples=300)
    rise = flat.rises["supervised_imagenet"]
    assert rise.difference.low < 0 < rise.difference.high and rise.pairs == 5
    assert unread(flat, "simclr_imagenet") == unread(flat, "supervised_imagenet") == rise.reason
    rising = table_evidence(rows[rows["task"] == "planes"], n_resamples=300)
    assert rising.rises["supervised_imagenet"].difference.low > 0
    assert unread(rising, "simclr") is None

    text = render_leaderboard(records, "fetalbench leaderboard", None)
    claims = claim_lines(text)
    assert "Verdict: **contradicted**" in claims[0]
    reason = (r"the reference `supervised_imagenet`'s curve does not rise \(100% - 5% labels: "
              r"[+-]0\.\d{3} \[-0\.\d{3}, \+0\.\d{3}\], n=5\)")
    for line in claims[1:]:
        assert "Verdict:" not in line
        assert re.search(rf"Not read: {reason}\.$", line), line
    claims_text = text.split("### SYNTHETIC (phantom): task", 1)[0]
    assert "- `simclr_imagenet` vs `supervised_imagenet`, paired difference in macro F1" in \
        claims_text  # (a)'s evidence, on planes
    assert claims_text.count("- `") == 2  # (a)'s two methods only; (b) and (c) print none

    brain = text.split("### SYNTHETIC (phantom): task `brain`", 1)[1].split("### ", 1)[0]
    planes = text.split("### SYNTHETIC (phantom): task `planes`", 1)[1].split("### ", 1)[0]
    assert "Label efficiency:" not in brain and "labels to match" not in brain
    assert re.search(rf"Label efficiency and claims not read: {reason}\.", brain)
    assert "Difference to `supervised_imagenet`:" in brain  # differences are still shown
    assert "not read" not in planes
    efficiency = table_rows(planes, "Label efficiency:")
    assert list(efficiency) == ["supervised_imagenet", "simclr", "simclr_imagenet"]
    assert efficiency["simclr"][0].startswith("≤ 250 [")  # 5%: 50 + 200 labels consumed
    assert efficiency["simclr"][3].startswith("+0.100 [")
