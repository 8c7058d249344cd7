"""FixMatch (Sohn et al., NeurIPS 2020): the masked loss, the threshold-1 identity with
supervised training, and the reuse of simclr_imagenet's cached stage."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from test_methods import tiny_context

from conftest import TINY
from fetalbench.methods import METHODS
from fetalbench.methods.api import MethodContext
from fetalbench.methods.fixmatch import fixmatch_loss, fixmatch_settings, train_fixmatch
from fetalbench.methods.supervised import train_supervised
from fetalbench.profiles import Profile, fixed_steps

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


def _weights(result) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in result.classifier.state_dict().items()}


def test_threshold_one_is_exactly_supervised_training(tmp_path: Path) -> None:
    """No pseudo-label reaches 1.0, so FixMatch trains exactly what supervised fine-tuning does:
    the same weights and batch-norm statistics, the same selected step. With the threshold at 0
    every pseudo-label counts and the weights differ, so the identity is not vacuous."""
    run = context(tmp_path)
    strict = dataclasses.replace(fixmatch_settings(SHORT, 24), threshold=1.0)
    pl.seed_everything(0, verbose=False)
    supervised = train_supervised(run, "random")
    pl.seed_everything(0, verbose=False)
    fixmatch = train_fixmatch(run, "random", strict)
    assert fixmatch.notes["pseudo_label_rate"] == 0.0
    for note in ("best_step", "best_validation_macro_f1", "final_train_loss"):
        assert fixmatch.notes[note] == supervised.notes[note], note
    expected, got = _weights(supervised), _weights(fixmatch)
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[name], got[name]) for name in expected)

    pl.seed_everything(0, verbose=False)
    loose = train_fixmatch(run, "random", dataclasses.replace(strict, threshold=0.0))
    assert loose.notes["pseudo_label_rate"] == 1.0
    assert not all(torch.equal(expected[name], value) for name, value in _weights(loose).items())


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
