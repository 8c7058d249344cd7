"""Training with PyTorch Lightning: the supervised (downstream) stage and batched prediction.

Images travel as uint8 tensors and become floats and augmented views on the device, after the
batch transfer, so the DataLoader does no per-image work. The best step is chosen on validation
macro F1 by Lightning's ``ModelCheckpoint``; the test set is never seen here.

One run may train on several devices or nodes with Lightning's DDP strategy (PyTorch Lightning
docs, "GPU training (Intermediate)": ``Trainer(devices=N, num_nodes=M, strategy="ddp")``; on CPU
it uses the gloo backend). Lightning starts the other processes by re-running the command (or
finds them started by ``srun`` or ``torchrun``), so every rank runs the whole run; see
:class:`Execution` for how the ranks share the work.
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from fetalbench.methods.augment import LIGHT, UltrasoundAugment
from fetalbench.methods.execution import SINGLE_PROCESS, Execution
from fetalbench.methods.objective import ChanceLevel
from fetalbench.methods.progress import StageProgress
from fetalbench.profiles import (
    Profile,
    finetune_schedule,
    learning_rate_factor,
    warmup_steps,
)
from fetalbench.runs.learning import SELF_SUPERVISED, SUPERVISED, checked, loss_curve
from fetalbench.runs.metrics import macro_f1

if TYPE_CHECKING:  # the method API imports the built-in methods, which import this module
    from fetalbench.methods.api import Classifier, MethodContext

for _name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning"):
    logging.getLogger(_name).setLevel(logging.ERROR)
warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*LeafSpec.*")
# validation macro F1 is computed on the gathered shards, so it is already the same on every rank
warnings.filterwarnings("ignore", ".*sync_dist=True.*")


_progress_bars = True


def show_progress_bars(enabled: bool) -> None:
    """Turn the per-stage progress (:class:`~fetalbench.methods.progress.StageProgress`) on or
    off (a grid shows its own overall bar; ``--quiet`` shows only results)."""
    global _progress_bars
    _progress_bars = enabled


@contextlib.contextmanager
def progress_bars_shown(enabled: bool) -> Iterator[None]:
    """Within: per-stage progress on or off as ``enabled`` says; then as it was before."""
    global _progress_bars
    previous, _progress_bars = _progress_bars, enabled
    try:
        yield
    finally:
        _progress_bars = previous


def to_float(images: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """uint8 ``[B, 1, H, W]`` to float in [0, 1], in the memory format the profile asks for."""
    images = images.float().div_(255.0)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


def training_device() -> torch.device:
    """The device Lightning's ``accelerator="auto"`` trains on: a CUDA GPU, else Apple's MPS,
    else the CPU. Test and explanation passes run there too (:func:`evaluating`)."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a Lightning precision setting: bfloat16 for ``bf16-mixed``,
    float16 for ``16-mixed``, None (no autocast) for full precision such as ``32-true``."""
    if precision.startswith("bf16"):
        return torch.bfloat16
    if precision.startswith("16"):
        return torch.float16
    return None


def trainable_weights(module: torch.nn.Module) -> torch.Tensor:
    """A detached copy of ``module``'s parameters (not its buffers: BatchNorm statistics move
    without any learning) as one float32 vector."""
    return torch.cat([p.detach().float().flatten().cpu() for p in module.parameters()])


def weight_change(start: torch.Tensor, module: torch.nn.Module) -> float:
    """The relative L2 distance of ``module``'s parameters from ``start``
    (:func:`trainable_weights`), rounded to six significant digits as records keep it."""
    change = float((trainable_weights(module) - start).norm() / start.norm().clamp_min(1e-12))
    return float(f"{change:.6g}")


@contextlib.contextmanager
def evaluating(
    module: torch.nn.Module, precision: str, device: torch.device | None = None
) -> Iterator[torch.device]:
    """Within: ``module`` in evaluation mode on ``device`` (default :func:`training_device`,
    where Lightning trained it), under autocast in the profile's ``precision`` as training ran;
    yields the device. Afterwards the module is back on the device and in the mode it was in
    (Lightning leaves a trained module on the CPU), so callers that save, reuse or go on
    training it see no change."""
    home, was_training = next(module.parameters()).device, module.training
    device = device or training_device()
    dtype = autocast_dtype(precision)
    module.to(device).eval()
    try:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            yield device
    finally:
        module.to(home).train(was_training)


class ProfiledModule(pl.LightningModule):
    """A LightningModule trained at a profile: its weights take the profile's memory format when
    training is set up (before any device move or DDP wrapping), whoever built the module, so
    the runner and the benchmark train the same thing.

    It keeps the history of the loss terms it trains (:meth:`record_terms`), from which the
    stage's learning check is read (:mod:`fetalbench.runs.learning`), and schedules its learning
    rate over ``total_steps`` (set before fitting) with the profile's warm-up
    (:func:`warmed_cosine`).
    """

    def __init__(self, profile: Profile):
        super().__init__()
        self.profile = profile
        self.total_steps = 1
        self.history: dict[str, list[float]] = {}

    def setup(self, stage: str) -> None:
        if self.profile.channels_last:
            self.to(memory_format=torch.channels_last)

    def record_terms(self, **terms: torch.Tensor) -> None:
        """Log the step's loss terms (the progress line shows them) and keep their history."""
        self.log_dict(terms, prog_bar=True)
        for name, value in terms.items():
            self.history.setdefault(name, []).append(float(value.detach()))

    def warmed_cosine(self, optimizer: torch.optim.Optimizer) -> dict:
        """Lightning's optimiser configuration of ``optimizer`` under the profile's schedule:
        linear warm-up, then cosine decay to zero at ``total_steps``, stepped every step."""
        warmup = warmup_steps(self.profile, self.total_steps)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: learning_rate_factor(step, self.total_steps, warmup)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def cross_entropy_chance(n_classes: int) -> ChanceLevel:
    """Cross-entropy's chance level: ``ln K`` for uniform predictions over K classes."""
    return ChanceLevel(math.log(n_classes), f"ln K, cross-entropy over K = {n_classes} classes")


class SupervisedModule(ProfiledModule):
    """Cross-entropy on augmented labelled images; validation macro F1 for model selection.

    A subclass that trains more than cross-entropy logs each term with :meth:`record_terms`
    and says which of them have a learning check in :meth:`checked_terms`.
    """

    def __init__(self, classifier: Classifier, profile: Profile):
        super().__init__(profile)
        self.classifier = classifier
        self.augment = UltrasoundAugment(LIGHT)
        self._predictions: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self._positions: list[torch.Tensor] = []
        self.validation_history: list[float] = []

    stage_name = "fine-tuning"
    """What the progress line and the learning check call this stage."""

    def checked_terms(self) -> dict[str, tuple[str, str, ChanceLevel | None]]:
        """The logged loss terms that get a learning check: name -> (the check's name, its kind,
        the term's chance level). Here the cross-entropy of the labelled batches."""
        chance = cross_entropy_chance(self.classifier.head.out_features)
        return {"ce": (self.stage_name, SUPERVISED, chance)}

    def supervised_loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy on an augmented view of a labelled batch."""
        images, labels = batch
        views = self.augment(to_float(images, self.profile.channels_last))
        return F.cross_entropy(self.classifier(views), labels)

    def training_step(self, batch: dict, _: int) -> torch.Tensor:
        loss = self.supervised_loss(batch["labelled"])
        self.record_terms(ce=loss)
        return loss

    def evaluated_classifier(self) -> Classifier:
        """The classifier validation selects and the test measures: the trained one here (a
        method that evaluates an average of its weights, as FixMatch, returns that)."""
        return self.classifier

    def validation_step(self, batch: tuple[torch.Tensor, ...], _: int) -> None:
        images, labels, positions = batch
        logits = self.evaluated_classifier()(to_float(images, self.profile.channels_last))
        self._predictions.append(logits.argmax(dim=1))
        self._labels.append(labels)
        self._positions.append(positions)

    def on_validation_epoch_end(self) -> None:
        """Macro F1 over the whole validation set, the same on every rank.

        Under DDP each rank validates a shard (Lightning's distributed sampler, which pads the
        shards with repeated images); the shards are gathered and each image counted once.
        """
        gathered = [self.all_gather(torch.cat(parts)).reshape(-1).cpu().numpy()
                    for parts in (self._predictions, self._labels, self._positions)]
        self._predictions.clear()
        self._labels.clear()
        self._positions.clear()
        predictions, labels, positions = gathered
        _, first = np.unique(positions, return_index=True)
        predictions, labels = predictions[first], labels[first]
        n_classes = self.classifier.head.out_features
        score = macro_f1(labels, predictions, n_classes)
        self.validation_history.append(round(float(score), 6))
        self.log("val_macro_f1", score, prog_bar=True)

    def configure_optimizers(self):
        # every trainable parameter of the module: a subclass's extra heads learn too
        parameters = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            parameters, lr=self.profile.learning_rate, weight_decay=self.profile.weight_decay
        )
        return self.warmed_cosine(optimizer)


def deterministic_setting(device: torch.device) -> bool | str:
    """Lightning's ``deterministic`` for a run on ``device``: True on the CPU (every kernel
    fetalbench uses has a deterministic version there, and records are bit-reproducible);
    ``"warn"`` on an accelerator, where deterministic kernels are used where they exist and a
    warning is given where none does. On CUDA there is none for the backward of
    ``AdaptiveAvgPool2d`` (timm's global pool), so ``True`` would raise in every run (PyTorch,
    ``torch.use_deterministic_algorithms``)."""
    return True if device.type == "cpu" else "warn"


def make_trainer(
    profile: Profile,
    max_steps: int,
    callbacks: list,
    execution: Execution = SINGLE_PROCESS,
    stage: str = "training",
    **options,
) -> pl.Trainer:
    """A Lightning trainer with fetalbench's defaults (no logger files, deterministic as far as
    the device allows: :func:`deterministic_setting`), on the devices, nodes and strategy of
    ``execution``, its progress shown as ``stage`` in optimiser steps (unless switched off by
    :func:`show_progress_bars`); Lightning's own epoch bars are off."""
    if _progress_bars:
        callbacks = [*callbacks, StageProgress(stage)]
    return pl.Trainer(
        accelerator="auto",
        devices=execution.devices,
        num_nodes=execution.num_nodes,
        strategy=execution.strategy,
        precision=profile.precision,
        max_steps=max_steps,
        logger=False,
        callbacks=callbacks,
        deterministic=deterministic_setting(training_device()),
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **{"enable_progress_bar": False, **options},
    )


class InMemoryDataset(TensorDataset):
    """Tensors in memory, fetched a whole batch at a time with one indexing operation.

    The DataLoader calls ``__getitems__`` with a batch of indices, so a batch costs one gather per
    tensor instead of one Python call per image and a collate.
    """

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(indices)
        return tuple(tensor[index] for tensor in self.tensors)


def _whole_batch(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return batch


def batches(dataset: TensorDataset, batch_size: int, world_size: int = 1) -> DataLoader:
    """Shuffled full batches of an in-memory dataset (one smaller batch if it is small).

    ``batch_size`` is the global batch: with ``world_size`` DDP processes, each process takes
    ``batch_size // world_size`` images of its shard per step (Lightning gives each process a
    shard through a distributed sampler), so the global batch is the same as on one device,
    rounded down to a multiple of the world size.
    """
    return DataLoader(
        InMemoryDataset(*dataset.tensors),
        batch_size=max(1, min(batch_size, len(dataset)) // world_size),
        shuffle=True,
        drop_last=True,
        collate_fn=_whole_batch,
    )


def fit_classifier(context: MethodContext, classifier: Classifier) -> dict:
    """Fine-tune ``classifier`` on the labelled images; keep the step best on validation macro
    F1. Returns notes for the record: the budget, the chosen step and its validation macro F1;
    the stage's learning check is added to ``context.checks``.
    """
    pl.seed_everything(context.seed, workers=True, verbose=False)
    module = SupervisedModule(classifier, context.profile)
    return fit_module(context, module, {})


def fit_module(
    context: MethodContext, module: SupervisedModule, extra_loaders: dict[str, DataLoader],
    probe: Callable[[], float] | None = None,
) -> dict:
    """Train a :class:`SupervisedModule` on the labelled batches plus ``extra_loaders``.

    The budget and the validation interval are the profile's rule for the labelled set
    (:func:`~fetalbench.profiles.finetune_schedule`); training stops early after
    ``patience`` validations without a better macro F1 (when the profile sets one). The weights
    of the step best on validation macro F1 are loaded back into the module's classifier. Under
    DDP (``context.execution``) only rank 0 saves and reloads the best step (it alone is
    tested); another rank keeps the last step's weights and reports ``best_step`` None.

    Each term of :meth:`SupervisedModule.checked_terms` gets a learning check in
    ``context.checks``; ``probe`` (the k-NN balanced accuracy of the backbone's features, called
    before training and at its last step, before the best step is loaded) and how far the
    backbone's weights moved by the last step are added to the self-supervised ones: they
    describe the run the loss curve describes, whichever step selection then picks.
    """
    profile, data, execution = context.profile, context.data, context.execution
    max_steps, interval = finetune_schedule(profile, len(data.labelled_labels))
    module.total_steps = max_steps
    loaders = {
        "labelled": batches(
            TensorDataset(data.labelled_images, data.labelled_labels), profile.batch_size,
            execution.world_size,
        ),
        **extra_loaders,
    }
    positions = torch.arange(len(data.validation_labels))
    validation_loader = DataLoader(
        TensorDataset(data.validation_images, data.validation_labels, positions), batch_size=256
    )
    probe_start = probe() if probe is not None else None
    classifier = module.classifier
    start = trainable_weights(classifier.backbone)
    with tempfile.TemporaryDirectory(prefix="fetalbench-ckpt-") as folder:
        checkpoint = ModelCheckpoint(
            dirpath=folder, monitor="val_macro_f1", mode="max", save_weights_only=True
        )
        callbacks: list = [checkpoint]
        if profile.patience > 0:
            callbacks.append(EarlyStopping(monitor="val_macro_f1", mode="max",
                                           patience=profile.patience))
        trainer = make_trainer(
            profile,
            max_steps,
            callbacks,
            execution,
            module.stage_name,
            max_epochs=-1,
            val_check_interval=interval,
            check_val_every_n_epoch=None,
        )
        trainer.fit(module, loaders, validation_loader)
        # the self-supervised check describes the training run: its loss curve ends at the
        # last step, so its probe and weight change are read there, not at the selected step
        probe_end = probe() if probe is not None else None
        moved = weight_change(start, classifier.backbone)
        best_f1 = float(checkpoint.best_model_score)
        best_step = None
        if trainer.is_global_zero:  # only rank 0 saves checkpoints, and only it is tested
            best = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)
            module.load_state_dict(best["state_dict"])
            best_step = int(best["global_step"])
    if module.evaluated_classifier() is not classifier:
        classifier.load_state_dict(module.evaluated_classifier().state_dict())
    classifier.cpu().eval()
    steps_run = int(trainer.global_step)
    for term, (name, kind, chance) in module.checked_terms().items():
        losses = module.history[term]
        self_supervised = kind == SELF_SUPERVISED
        context.checks.append(checked(
            name=name, kind=kind, steps=max_steps, steps_run=steps_run,
            loss_curve=loss_curve(losses), final_loss=loss_curve(losses)[-1],
            chance_loss=None if chance is None else round(chance.loss, 6),
            chance_rule=None if chance is None else chance.rule,
            best_step=None if self_supervised else best_step,
            validation_curve=None if self_supervised else tuple(module.validation_history),
            stopped_early=steps_run < max_steps,
            probe_start=probe_start if self_supervised else None,
            probe_end=probe_end if self_supervised else None,
            weight_change=moved if self_supervised else None,
        ))
    return {
        "best_validation_macro_f1": best_f1,
        "best_step": best_step,
        "steps": max_steps,
        "steps_run": steps_run,
        "validation_interval": interval,
        "final_train_loss": module.history["ce"][-1],
    }


@torch.inference_mode()
def predict(
    classifier: Classifier, images: torch.Tensor, channels_last: bool, batch_size: int = 256,
    precision: str = "32-true",
) -> np.ndarray:
    """Predicted class of every image (uint8 ``[N, 1, H, W]``), in evaluation mode on the
    training device in the profile's ``precision`` (:func:`evaluating`)."""
    with evaluating(classifier, precision) as device:
        predictions = [
            classifier(to_float(images[start : start + batch_size].to(device), channels_last))
            .argmax(dim=1).cpu()
            for start in range(0, len(images), batch_size)
        ]
    return torch.cat(predictions).numpy()
