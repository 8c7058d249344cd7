"""Learning checks: whether each training stage of a run learned, stated in its record.

A number is only as good as the training that made it. Every stage a run trains (fine-tuning, a
self-supervised pre-training stage, each term of the dual task) leaves a :class:`StageCheck`,
computed while it trains and written into the record's ``learning`` section
(:func:`learning_section`); ``fetalbench validate`` recomputes every verdict from the numbers
beside it (:func:`check_learning_section`) and the leaderboard keeps cells whose runs did not
learn out of every comparison. This module imports no torch: the numbers come from the training
code (:mod:`fetalbench.methods.engine`, :mod:`fetalbench.methods.pretraining`), the rules live
here.

The checks, each with its own reason in the record:

- **Loss against chance.** A stage whose objective has a chance level (the loss when the network's
  outputs carry no information: ``ln K`` for cross-entropy over K classes, ``ln(2N-1)`` for
  NT-Xent over N pairs, ...; :meth:`fetalbench.methods.objective.Objective.chance_level`) must end
  clearly below it: its final loss (the mean over the last tenth of its steps) at most
  ``chance - max(CHANCE_MARGIN * |chance|, CHANCE_MARGIN_MIN)``. Otherwise it *did not learn*.
- **A k-NN probe against the starting weights.** A stage that trains a backbone without labels
  (pre-training, the dual task's contrastive term) is probed before and after: the k-NN
  balanced accuracy of its features on the validation carve-out, neighbours drawn from the
  task's labelled training images (:mod:`fetalbench.methods.probe`). Not above the start: *did
  not learn*.
- **Weights that moved.** A self-supervised stage's backbone parameters (not its BatchNorm
  statistics) must have changed (``weight_change``, their relative L2 distance from the start,
  above 0). A stage whose weights did not move (learning rate 0, frozen parameters) *did not
  learn*, whatever its loss: an untrained network's loss wanders about its chance level, and
  its probe moves with the BatchNorm statistics a training pass re-estimates.
- **Still improving.** The loss curve is the mean loss over each tenth of the steps taken. A
  self-supervised stage whose loss fell by more than ``LATE_DROP`` of its whole fall over its
  last three tenths had not converged when its budget ended; a term trained beside a supervised
  one (the dual task's NT-Xent) whose run was stopped early by model selection did not run out
  of budget: the run stopped because validation stopped improving, and more steps of that term
  are not what its method would take. A supervised stage is judged by validation, which
  selects its model, not by its training loss (which keeps falling as it memorises its labelled
  set): it had not converged when its best validation step is in the last tenth of a budget it
  ran to the end (no early stop) and that best is more than ``LATE_GAIN`` above the best of the
  first 70% of its validations (a best step at the end of a plateau is a tie, not progress).
  Either: *still improving*.

A run's verdict is its worst stage's: *did not learn* over *still improving* over *learned*
(*not checked* when no stage was checked).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields

LEARNED = "learned"
STILL_IMPROVING = "still improving"
DID_NOT_LEARN = "did not learn"
VERDICTS = (LEARNED, STILL_IMPROVING, DID_NOT_LEARN)
"""From best to worst; a run's verdict is the worst of its stages'."""
NOT_CHECKED = "not checked"
"""The verdict of a run with no checked stage (a plugin that trains outside the engine's
helpers): the leaderboard treats it as a run that did not show it learned."""

SUPERVISED = "supervised"
SELF_SUPERVISED = "self-supervised"
"""The kinds of stage: trained with labels (selected on validation) or without."""

CURVE_POINTS = 10
"""The loss curve's resolution: the mean loss over each tenth of a stage's steps."""
CHANCE_MARGIN = 0.10
"""How far below its chance level a final loss must be, as a share of the chance level ..."""
CHANCE_MARGIN_MIN = 0.05
"""... and at least this much (a chance level of 0, as a cosine objective's)."""
LATE_DROP = 0.15
"""The share of a curve's whole fall that may still happen in its last three tenths."""
LATE_BEST = 0.9
"""A best validation step at or past this share of a budget run to the end is at its end."""
LATE_GAIN = 0.02
"""How much better (validation macro F1) the end of a budget must be than its first 70% for a
best step at the end to mean the stage was still improving, not a tie at a plateau."""


@dataclass(frozen=True)
class StageCheck:
    """What one training stage did, and the verdict read from it (:func:`stage_verdict`).

    ``kind`` is ``supervised`` (labels: fine-tuning, a linear head, the dual task's
    cross-entropy) or ``self-supervised``. ``loss_curve`` is the mean loss over each tenth of the
    ``steps_run`` steps taken of a ``steps`` budget (fewer when it stopped early). ``best_step``
    is the step kept by validation and ``validation_curve`` the validation macro F1 at each
    validation (supervised stages); ``probe_start`` and ``probe_end`` the k-NN
    balanced accuracy of the backbone on the validation carve-out before and after
    (self-supervised; :mod:`fetalbench.methods.probe`); ``weight_change`` the relative L2
    distance of the backbone's parameters from their start (self-supervised).
    """

    name: str
    kind: str
    steps: int
    steps_run: int
    loss_curve: tuple[float, ...]
    final_loss: float
    chance_loss: float | None = None
    chance_rule: str | None = None
    best_step: int | None = None
    validation_curve: tuple[float, ...] | None = None
    stopped_early: bool = False
    probe_start: float | None = None
    probe_end: float | None = None
    weight_change: float | None = None
    verdict: str = LEARNED
    reasons: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_record(cls, record: dict) -> StageCheck:
        """The check a record (or a cached stage's sidecar) keeps."""
        curve = record["validation_curve"]
        return cls(**{"weight_change": None, **record, "loss_curve": tuple(record["loss_curve"]),
                      "validation_curve": None if curve is None else tuple(curve),
                      "reasons": tuple(record["reasons"])})

    def as_record(self) -> dict:
        """The check as the record keeps it (lists for tuples)."""
        record = asdict(self)
        record["loss_curve"] = list(self.loss_curve)
        if self.validation_curve is not None:
            record["validation_curve"] = list(self.validation_curve)
        record["reasons"] = list(self.reasons)
        return record


def loss_curve(losses: Sequence[float], points: int = CURVE_POINTS) -> tuple[float, ...]:
    """The mean of ``losses`` over each of ``points`` consecutive, near-equal slices (fewer
    points when there are fewer losses)."""
    if not losses:
        raise ValueError("a stage with no training step has no loss curve")
    n = min(points, len(losses))
    bounds = [round(i * len(losses) / n) for i in range(n + 1)]
    return tuple(round(sum(losses[a:b]) / (b - a), 6) for a, b in itertools.pairwise(bounds))


def chance_threshold(chance: float) -> float:
    """The loss a stage must end at or below to count as clearly below ``chance``."""
    return chance - max(CHANCE_MARGIN * abs(chance), CHANCE_MARGIN_MIN)


def still_falling(curve: Sequence[float]) -> bool:
    """Whether the loss fell by more than :data:`LATE_DROP` of its whole fall over its last
    three tenths (a curve of fewer than four points cannot say, and says no)."""
    if len(curve) < 4:
        return False
    fall = curve[0] - min(curve)
    late = curve[-4] - curve[-1]
    return fall > 0 and late > LATE_DROP * fall


def late_gain(curve: Sequence[float] | None) -> float:
    """How far the best of a validation curve is above the best of its first 70% (infinite
    when the curve is unknown or too short to tell: a best step at the end then counts)."""
    if curve is None or len(curve) < 2:
        return math.inf
    early = curve[: max(1, math.ceil(0.7 * len(curve)))]
    return max(curve) - max(early)


def stage_verdict(check: StageCheck) -> tuple[str, tuple[str, ...]]:
    """The verdict of a stage and its reasons, from its numbers alone (see the module doc)."""
    failed, improving = [], []
    chance = check.chance_loss
    if chance is not None and check.final_loss > chance_threshold(chance):
        failed.append(f"final loss {check.final_loss:.3f} not clearly below its chance level "
                      f"{chance:.3f} (needs <= {chance_threshold(chance):.3f})")
    if check.probe_start is not None and check.probe_end is not None \
            and check.probe_end <= check.probe_start:
        failed.append(f"k-NN probe {check.probe_end:.3f} not above its start "
                      f"{check.probe_start:.3f}")
    if check.weight_change is not None and check.weight_change <= 0:
        failed.append("its backbone's weights did not change")
    if check.kind == SELF_SUPERVISED and not check.stopped_early \
            and still_falling(check.loss_curve):
        improving.append("loss still falling over the last three tenths of the budget")
    if (check.best_step is not None and not check.stopped_early
            and check.best_step >= LATE_BEST * check.steps
            and late_gain(check.validation_curve) > LATE_GAIN):
        improving.append(f"best validation step {check.best_step} in the last tenth of the "
                         f"{check.steps}-step budget, {late_gain(check.validation_curve):.3f} "
                         "above the best of its first 70%")
    if failed:
        return DID_NOT_LEARN, tuple(failed)
    if improving:
        return STILL_IMPROVING, tuple(improving)
    return LEARNED, ()


def checked(**numbers: object) -> StageCheck:
    """A :class:`StageCheck` of ``numbers`` with its verdict and reasons filled in."""
    check = StageCheck(**numbers)
    verdict, reasons = stage_verdict(check)
    return StageCheck(**{**asdict(check), "verdict": verdict, "reasons": reasons})


def run_verdict(checks: Sequence[StageCheck]) -> str:
    """The worst verdict of a run's stages (:data:`VERDICTS` order); :data:`NOT_CHECKED` when
    it has none."""
    return max((check.verdict for check in checks), key=VERDICTS.index, default=NOT_CHECKED)


def learning_section(checks: Sequence[StageCheck]) -> dict:
    """The record's ``learning`` section: the run's verdict and every stage's check."""
    return {"verdict": run_verdict(checks), "stages": [check.as_record() for check in checks]}


_NUMBERS = {f.name for f in fields(StageCheck)}
_LATER_NUMBERS = {"weight_change"}
"""Numbers a stage of a schema-3 record made before they were measured lacks (read as None)."""


def check_learning_section(section: object) -> str | None:
    """Why a record's ``learning`` section is malformed or inconsistent (None when it is
    sound): every stage's verdict and reasons must be what :func:`stage_verdict` gives for its
    numbers, and the run's verdict the worst of them."""
    if not isinstance(section, dict) or not isinstance(section.get("stages"), list):
        return "has no learning section with a list of stages"
    checks = []
    for stage in section["stages"]:
        if not isinstance(stage, dict) or not _NUMBERS - _LATER_NUMBERS <= set(stage) <= _NUMBERS:
            return "learning section has a malformed stage"
        try:
            check = StageCheck.from_record(stage)
            verdict, reasons = stage_verdict(check)
        except (TypeError, ValueError, IndexError):
            return f"learning stage {stage.get('name')!r} has malformed numbers"
        if (verdict, reasons) != (check.verdict, check.reasons):
            return (f"learning stage {check.name!r} says {check.verdict!r} but its numbers give "
                    f"{verdict!r}")
        checks.append(check)
    if section.get("verdict") != run_verdict(checks):
        return (f"learning verdict {section.get('verdict')!r} is not the worst of its stages' "
                f"({run_verdict(checks)!r})")
    return None
