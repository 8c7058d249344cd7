"""FixMatch (Sohn et al., NeurIPS 2020): the masked loss, the threshold-1 identity with
supervised training, the evaluated moving average of the weights, and the reuse of
simclr_imagenet's cached stage."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from test_methods import TrainingAudit, tiny_context

from conftest import TINY
from fetalbench.methods import METHODS
from fetalbench.methods.api import MethodContext
from fetalbench.methods.engine import to_float
from fetalbench.methods.fixmatch import (
    FixMatchModule,
    fixmatch_loss,
    fixmatch_settings,
    train_fixmatch,
)
from fetalbench.methods.supervised import train_supervised
from fetalbench.profiles import Profile, fixed_steps
from fetalbench.runs.metrics import macro_f1

SHORT = fixed_steps(TINY, finetune=6, pretrain=1, name="fixmatch-test", batch_size=2,
                    validations=2, pretrain_batch_size=8)
"""Six steps of batches of 2 from 8 labelled images: the labelled loader starts a second
epoch, and validation (model selection) runs twice."""


def context(cache_root: Path, method: str = "fixmatch", profile: Profile = SHORT,
            logs: list[str] | None = None) -> MethodContext:
    return tiny_context(method, cache_root, profile,
                        log=logs.append if logs is not None else lambda _: None)


def test_pseudo_labels_below_the_threshold_contribute_no_loss() -> None:
    weak = torch.tensor([[4.0, 0.0, 0.0],    # softmax max 0.965: confident, pseudo-label 0
                         [1.0, 0.9, 0.8],    # 0.37: below 0.95
                         [0.0, 0.0, 5.0]])   # 0.987: confident, pseudo-label 2
    strong = torch.randn(3, 3, generator=torch.Generator().manual_seed(1), requires_grad=True)
    loss, mask = fixmatch_loss(weak, strong, 0.95)
    assert mask.tolist() == [1.0, 0.0, 1.0]
    expected = (F.cross_entropy(strong[0:1], torch.tensor([0]))
                + F.cross_entropy(strong[2:3], torch.tensor([2]))) / 3  # mean over the batch
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert torch.equal(strong.grad[1], torch.zeros(3))
    assert strong.grad[0].abs().sum() > 0 and strong.grad[2].abs().sum() > 0
    # whatever the strong view of the unconfident image says, the loss is the same
    moved = strong.detach().clone()
    moved[1] = torch.tensor([9.0, -9.0, 3.0])
    assert torch.equal(fixmatch_loss(weak, moved, 0.95)[0], loss.detach())
    nothing, none = fixmatch_loss(weak, strong, 1.0)
    assert nothing.item() == 0.0 and none.sum().item() == 0.0


def test_settings_are_the_papers_with_mu_capped_by_the_pool() -> None:
    quick = dataclasses.replace(TINY, batch_size=32)
    paper = fixmatch_settings(quick, 10_000)
    assert (paper.threshold, paper.unlabelled_weight, paper.ratio) == (0.95, 1.0, 7)
    assert paper.unlabelled_batch_size == 7 * 32
    small = fixmatch_settings(quick, 180)
    assert small.ratio == 5 and small.unlabelled_batch_size == 160
    assert fixmatch_settings(quick, 20).unlabelled_batch_size == 20


@pytest.fixture
def fits(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Every trainer built during the test gets a :class:`TrainingAudit` (the state of the
    whole module, trained weights and average, at the start and the end of each fit)."""
    audits: list[dict] = []
    original = pl.Trainer.__init__

    def audited(self, *args, callbacks=None, **kwargs):
        original(self, *args, callbacks=[*(callbacks or []), TrainingAudit(audits)], **kwargs)

    monkeypatch.setattr(pl.Trainer, "__init__", audited)
    return audits


def _weights(result) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in result.classifier.state_dict().items()}


def _part(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of a module's ``state`` under ``prefix`` (``"classifier."``: the trained
    weights; ``"average."``: FixMatch's moving average), without the prefix."""
    return {name.removeprefix(prefix): value for name, value in state.items()
            if name.startswith(prefix)}


def _same(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> bool:
    assert first and first.keys() == second.keys()
    return all(torch.equal(first[name], second[name]) for name in first)


def test_threshold_one_trains_exactly_what_supervised_training_trains(
        tmp_path: Path, fits: list[dict]) -> None:
    """No pseudo-label reaches 1.0, so FixMatch trains exactly what supervised fine-tuning does:
    the same losses, and at the last step the same weights and batch-norm statistics. (What it
    evaluates, and so the step it selects and the classifier it returns, is the moving average
    of those weights: see the next test.) With the threshold at 0 every pseudo-label counts and
    the trained weights differ, so the identity is not vacuous."""
    run = context(tmp_path)
    strict = dataclasses.replace(fixmatch_settings(SHORT, 24), threshold=1.0)
    pl.seed_everything(0, verbose=False)
    supervised = train_supervised(run, "random")
    pl.seed_everything(0, verbose=False)
    fixmatch = train_fixmatch(run, "random", strict)
    assert fixmatch.notes["pseudo_label_rate"] == 0.0
    for note in ("steps", "steps_run", "final_train_loss"):
        assert fixmatch.notes[note] == supervised.notes[note], note
    assert fixmatch.notes["steps_run"] == 6
    plain, strict_fit = fits
    assert plain["module"].history["ce"] == strict_fit["module"].history["ce"]
    assert len(plain["module"].history["ce"]) == 6
    assert set(strict_fit["module"].history["unlabelled"]) == {0.0}
    assert _same(_part(plain["before"], "classifier."), _part(strict_fit["before"], "classifier."))
    expected = _part(plain["after"], "classifier.")
    assert _same(expected, _part(strict_fit["after"], "classifier."))
    # the returned classifier is the average, not the trained weights
    assert not _same(_part(strict_fit["after"], "classifier."), _weights(fixmatch))

    pl.seed_everything(0, verbose=False)
    loose = train_fixmatch(run, "random", dataclasses.replace(strict, threshold=0.0))
    assert loose.notes["pseudo_label_rate"] == 1.0
    loose_fit = fits[-1]
    assert len(fits) == 3
    assert _same(_part(plain["before"], "classifier."), _part(loose_fit["before"], "classifier."))
    assert not _same(expected, _part(loose_fit["after"], "classifier."))
    assert loose_fit["module"].history["ce"] != plain["module"].history["ce"]


def test_the_moving_average_of_the_weights_is_what_is_evaluated(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fits: list[dict]) -> None:
    """After every step the average moves towards the trained weights with the decay
    ``min(0.999, (1 + t) / (10 + t))`` at step ``t``; validation selects among the averages and
    the returned classifier is the average at the selected step, which differs from the trained
    weights of that step and of the last one."""
    steps: list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]] = []
    original = FixMatchModule.on_train_batch_end

    def recording(self, outputs, batch, batch_idx) -> None:
        original(self, outputs, batch, batch_idx)
        steps.append(({k: v.detach().clone() for k, v in self.classifier.state_dict().items()},
                      {k: v.detach().clone() for k, v in self.average.state_dict().items()}))

    monkeypatch.setattr(FixMatchModule, "on_train_batch_end", recording)
    run = context(tmp_path)
    pl.seed_everything(0, verbose=False)
    result = train_fixmatch(run, "random")
    assert len(steps) == result.notes["steps_run"] == 6
    (fit,) = fits
    # the average starts from the initial weights and follows the trained ones
    average = _part(fit["before"], "classifier.")
    assert _same(average, _part(fit["before"], "average."))
    for t, (trained, recorded) in enumerate(steps, start=1):
        decay = min(0.999, (1 + t) / (10 + t))
        average = {name: (value * decay + trained[name] * (1 - decay)
                          if value.dtype.is_floating_point else trained[name])
                   for name, value in average.items()}
        assert average.keys() == recorded.keys()
        for name in average:
            torch.testing.assert_close(recorded[name], average[name], msg=f"step {t}: {name}")
        assert not _same(trained, recorded), t
    assert _same(steps[-1][0], _part(fit["after"], "classifier."))
    assert _same(steps[-1][1], _part(fit["after"], "average."))
    # the returned classifier is the average at the selected step, not the trained weights
    best_step = result.notes["best_step"]
    assert best_step in (3, 6)
    returned = _weights(result)
    assert _same(steps[best_step - 1][1], returned)
    assert not _same(steps[best_step - 1][0], returned)
    assert not _same(steps[-1][0], returned)
    # and the validation score the selection recorded is the returned classifier's
    classifier = result.classifier.eval()
    with torch.no_grad():
        logits = classifier(to_float(run.data.validation_images, SHORT.channels_last))
    score = macro_f1(run.data.validation_labels.numpy(), logits.argmax(dim=1).numpy(), 3)
    assert abs(score - result.notes["best_validation_macro_f1"]) < 1e-6


def test_fixmatch_records_its_settings(tmp_path: Path) -> None:
    result = METHODS.get("fixmatch_imagenet").train(context(tmp_path, "fixmatch_imagenet"))
    settings = result.notes["fixmatch_settings"]
    assert settings["threshold"] == 0.95 and settings["ratio"] == 7
    assert settings["unlabelled_batch_size"] == 14
    assert result.notes["fixmatch_paper"] == "Sohn et al., NeurIPS 2020"
    assert result.notes["init"] == "imagenet"
    assert 0.0 <= result.notes["pseudo_label_rate"] <= 1.0


def test_simclr_imagenet_fixmatch_reuses_the_stage_of_simclr_imagenet(tmp_path: Path) -> None:
    logs: list[str] = []
    cache = tmp_path / "cache"
    first = METHODS.get("simclr_imagenet").train(context(cache, "simclr_imagenet", logs=logs))
    second = METHODS.get("simclr_imagenet_fixmatch").train(
        context(cache, "simclr_imagenet_fixmatch", logs=logs))
    assert first.notes["pretraining"]["reused"] is False
    assert second.notes["pretraining"]["reused"] is True
    assert second.notes["pretraining"]["checkpoint"] == first.notes["pretraining"]["checkpoint"]
    assert sum("reused checkpoint" in line for line in logs) == 1
    assert second.notes["objective_settings"] == first.notes["objective_settings"]
    assert "fixmatch_settings" in second.notes
