"""Learning checks: the verdicts read from a stage's numbers, computed by the training code,
written into records and checked by ``validate``."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from test_methods import tiny_context

from conftest import TINY
from fetalbench.methods.api import Classifier
from fetalbench.methods.engine import fit_classifier
from fetalbench.methods.pretraining import pretrain_backbone
from fetalbench.methods.simclr import SimCLR, simclr_settings
from fetalbench.profiles import fixed_steps
from fetalbench.runs.learning import (
    DID_NOT_LEARN,
    LEARNED,
    NOT_CHECKED,
    SELF_SUPERVISED,
    STILL_IMPROVING,
    SUPERVISED,
    check_learning_section,
    checked,
    learning_section,
    loss_curve,
)

LN3 = math.log(3)


def supervised(**changes: object):
    numbers = {"name": "fine-tuning", "kind": SUPERVISED, "steps": 100, "steps_run": 100,
               "loss_curve": (1.1, 0.8, 0.5, 0.4, 0.35, 0.3, 0.3, 0.3, 0.3, 0.3),
               "final_loss": 0.3, "chance_loss": LN3, "chance_rule": "ln K", "best_step": 50}
    return checked(**{**numbers, **changes})


def pretraining(**changes: object):
    numbers = {"name": "pre-training simclr", "kind": SELF_SUPERVISED, "steps": 200,
               "steps_run": 200,
               "loss_curve": (4.8, 4.3, 4.0, 3.8, 3.7, 3.65, 3.6, 3.6, 3.58, 3.58),
               "final_loss": 3.58, "chance_loss": math.log(127), "chance_rule": "ln(2N-1)",
               "probe_start": 0.48, "probe_end": 0.55}
    return checked(**{**numbers, **changes})


def test_a_converged_stage_learned() -> None:
    assert supervised().verdict == LEARNED and supervised().reasons == ()
    assert pretraining().verdict == LEARNED


def test_a_loss_at_chance_did_not_learn() -> None:
    flat = supervised(loss_curve=(1.1,) * 10, final_loss=1.1)
    assert flat.verdict == DID_NOT_LEARN
    assert "not clearly below its chance level" in flat.reasons[0]
    # just below chance is not clearly below it
    assert pretraining(final_loss=math.log(127) - 0.1).verdict == DID_NOT_LEARN


def test_weights_that_did_not_move_did_not_learn() -> None:
    assert pretraining(weight_change=0.0).verdict == DID_NOT_LEARN
    assert pretraining(weight_change=0.01).verdict == LEARNED


def test_a_probe_not_above_its_start_did_not_learn() -> None:
    stale = pretraining(probe_end=0.48)
    assert stale.verdict == DID_NOT_LEARN and "k-NN probe" in stale.reasons[0]


def test_a_run_cut_short_is_still_improving() -> None:
    cut = pretraining(loss_curve=(4.8, 4.7, 4.6, 4.5, 4.4, 4.3, 4.2, 4.1, 4.0, 3.9),
                      final_loss=3.9)
    assert cut.verdict == STILL_IMPROVING
    at_the_end = supervised(best_step=100)
    assert at_the_end.verdict == STILL_IMPROVING
    rising = (0.3, 0.4, 0.5, 0.55, 0.6, 0.62, 0.64, 0.7, 0.75, 0.8)
    assert supervised(best_step=100, validation_curve=rising).verdict == STILL_IMPROVING
    # a best step at the end of a plateau is a tie, not progress
    plateau = (0.5, 0.7, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.81)
    assert supervised(best_step=100, validation_curve=plateau).verdict == LEARNED
    # stopped early: the best step is the last validation before patience ran out, not the end
    assert supervised(best_step=60, steps_run=60, stopped_early=True).verdict == LEARNED
    # a supervised stage is judged by validation, not by a training loss that keeps falling
    falling = supervised(loss_curve=(1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1),
                         final_loss=0.1)
    assert falling.verdict == LEARNED
    # the dual task's contrastive term in a run that model selection stopped early did not run
    # out of budget: its falling loss is not a budget cut short
    beside = pretraining(loss_curve=cut.loss_curve, final_loss=3.9, steps_run=120,
                         stopped_early=True)
    assert beside.verdict == LEARNED


def test_run_verdict_is_the_worst_and_validate_recomputes_it() -> None:
    section = learning_section([pretraining(), supervised(best_step=100)])
    assert section["verdict"] == STILL_IMPROVING
    assert check_learning_section(section) is None
    assert learning_section([])["verdict"] == NOT_CHECKED
    forged = dict(section, verdict=LEARNED)
    assert "worst of its stages" in check_learning_section(forged)
    tampered = {**section, "stages": [dict(section["stages"][0], final_loss=4.84)]}
    assert "numbers give" in check_learning_section(tampered)
    assert check_learning_section(None) is not None
    # a stage recorded before weights were measured reads as not measured; unknown keys do not pass
    earlier = {**section, "stages": [{k: v for k, v in stage.items() if k != "weight_change"}
                                     for stage in section["stages"]]}
    assert check_learning_section(earlier) is None
    extra = {**section, "stages": [dict(section["stages"][0], grade="A")]}
    assert "malformed stage" in check_learning_section(extra)


def test_loss_curve_is_the_mean_of_each_tenth() -> None:
    assert loss_curve(list(range(100))) == tuple(4.5 + 10 * i for i in range(10))
    assert loss_curve([2.0, 4.0]) == (2.0, 4.0)
    with pytest.raises(ValueError):
        loss_curve([])


def test_stages_trained_at_learning_rate_zero_did_not_learn(tmp_path: Path) -> None:
    """Trained for real, with a learning rate of zero: the fine-tuning's loss stays at chance,
    and so does SimCLR's; both say so in the checks the run collects."""
    frozen = fixed_steps(TINY, finetune=6, pretrain=6, name="lr0", validations=2,
                         learning_rate=0.0, pretrain_learning_rate=0.0, batch_size=4,
                         pretrain_batch_size=8)
    context = tiny_context("simclr", tmp_path, frozen)
    backbone, _ = pretrain_backbone(context, "simclr", SimCLR, simclr_settings(frozen), "random")
    notes = fit_classifier(context, Classifier(backbone, 3))
    stage, tuning = context.checks
    assert stage.name == "pre-training simclr" and stage.verdict == DID_NOT_LEARN
    assert stage.weight_change == 0 and "weights did not change" in " ".join(stage.reasons)
    assert stage.probe_start is not None and stage.probe_end is not None
    assert stage.chance_loss == pytest.approx(math.log(2 * 8 - 1), abs=1e-6)
    assert tuning.name == "fine-tuning" and tuning.verdict == DID_NOT_LEARN
    assert tuning.chance_loss == pytest.approx(LN3, abs=1e-6)
    assert notes["steps"] == tuning.steps == 6

