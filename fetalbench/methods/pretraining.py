"""The two-stage protocol: self-supervised pre-training on the unlabelled pool, then downstream.

Pre-training never sees labels, so it does not depend on the label fraction or the downstream
protocol (fine-tuning, or the linear evaluation of the frozen stage). Its backbone is cached by
(method, init, task, dataset fingerprint, seed, unlabelled
pool, objective settings, the profile's backbone, resolution and pre-training budget) and reused
by every run that differs only in fraction or protocol. Checkpoints are safetensors files (no
pickled code), written atomically beside a JSON sidecar holding the key and the checkpoint's
sha256; a sidecar whose key does not match, a checkpoint whose bytes do not match the sha256, or
a checkpoint that does not load, means the stage is run again rather than trusted. A lock per
stage (:mod:`fetalbench.storage.locks`) makes concurrent processes train a stage once: the others
wait and reuse it.

Under DDP (several devices or nodes, :class:`~fetalbench.methods.engine.Execution`) every rank
trains the stage together and only global rank 0 takes the lock and saves the checkpoint; each
rank decides from the cache on its own, which agrees as long as no other process is training the
same stage at that moment.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING

import pytorch_lightning as pl
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch.utils.data import DataLoader, TensorDataset

from fetalbench.methods.api import Classifier, FrozenEncoder, MethodContext, MethodResult
from fetalbench.methods.augment import STRONG, UltrasoundAugment
from fetalbench.methods.backbones import EncoderWeights, GrayscaleBackbone, create_backbone
from fetalbench.methods.engine import (
    ProfiledModule,
    autocast_dtype,
    batches,
    fit_classifier,
    make_trainer,
    to_float,
    trainable_weights,
    training_device,
    weight_change,
)
from fetalbench.methods.execution import launched_rank
from fetalbench.methods.objective import Objective
from fetalbench.methods.probe import PROBE, probe_backbone
from fetalbench.methods.registry import register_init_pair, register_method
from fetalbench.profiles import Profile, pretrain_steps
from fetalbench.runs.learning import SELF_SUPERVISED, StageCheck, checked, loss_curve
from fetalbench.storage.artifacts import SHA256_FIELD, Artifact, Refusal, Refused
from fetalbench.storage.digests import sha256_hex
from fetalbench.storage.locks import LockedElsewhere, acquire, describe_holder, lock_path

if TYPE_CHECKING:
    from fetalbench.runs.spec import RunRequest

STAGE_WEIGHTS = "pre-training stage"
CACHE_NAME = "fetalbench cache"
"""How an encoder's ``weights`` name a cached stage: source, and repository (the file is the
checkpoint's path in the cache)."""
PRETRAINING_AUGMENT = STRONG
"""The views every pre-training stage learns from; part of the stage's key."""


class PretrainModule(ProfiledModule):
    """Two strongly augmented views of each unlabelled batch, fed to an objective."""

    def __init__(self, objective: Objective, profile: Profile):
        super().__init__(profile)
        self.objective = objective
        self.augment = UltrasoundAugment(PRETRAINING_AUGMENT)

    def progress(self) -> float:
        """How far pre-training is, in [0, 1): the share of its steps already taken."""
        return self.global_step / max(1, self.trainer.max_steps)

    def training_step(self, batch: tuple[torch.Tensor], _: int) -> torch.Tensor:
        (images,) = batch
        images = to_float(images, self.profile.channels_last)
        loss = self.objective.loss(self.augment(images), self.augment(images), self.progress())
        self.record_terms(ssl_loss=loss)
        return loss

    def on_after_backward(self) -> None:
        self.objective.after_backward(self.progress())

    def configure_optimizers(self):
        parameters = [p for p in self.objective.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            parameters, lr=self.profile.pretrain_learning_rate,
            weight_decay=self.profile.weight_decay,
        )
        return self.warmed_cosine(optimizer)


FINE_TUNING_ONLY = frozenset({"name", "batch_size", "finetune_passes", "finetune_min_steps",
                              "finetune_max_steps", "validations", "patience", "learning_rate"})
"""Profile fields that a pre-training stage does not read; every other field is in its key."""

DOWNSTREAM_ONLY = frozenset({"fraction", "patients_per_class", "protocol", "validation"})
"""Fields of a run request that its pre-training stage does not depend on (the label fraction,
the protocol and the validation setting decide only what is labelled): every other field
enters the stage's key (:func:`pretraining_key`): the method as its objective and init, the
dataset and its root as the data's fingerprint, the profile by :data:`FINE_TUNING_ONLY`."""


def stage_group(request: RunRequest) -> tuple[tuple[str, object], ...]:
    """What of ``request`` its pre-training stage depends on: its fields but
    :data:`DOWNSTREAM_ONLY`, as ``(name, value)`` pairs. Requests of one group share one stage,
    which the first of them trains and the others reuse (a Slurm job runs one group; a method
    without pre-training is grouped the same way)."""
    return tuple((field.name, getattr(request, field.name)) for field in fields(request)
                 if field.name not in DOWNSTREAM_ONLY)


def pretraining_key(context: MethodContext, objective_name: str, init: str,
                    settings: object, objective_version: int,
                    pool_passes_scale: float = 1.0) -> dict:
    """Everything the pre-trained backbone depends on (not :data:`DOWNSTREAM_ONLY`: fraction,
    protocol, validation setting).

    The profile enters by exclusion: every field but :data:`FINE_TUNING_ONLY`, so a setting
    added to :class:`~fetalbench.profiles.Profile` later (as ``channels_last`` once was missed,
    whose other convolution kernels round differently) separates stages by default instead of
    reusing a stage trained otherwise. The augmentation settings and the objective's
    ``version`` are in the key, so editing the views or an objective's code trains anew, and so
    is the intra-op thread count, on which a stage trained on the CPU depends. So is the k-NN
    probe's definition, whose numbers the sidecar's learning check keeps.
    """
    profile = {k: v for k, v in asdict(context.profile).items() if k not in FINE_TUNING_ONLY}
    key = {
        "objective": objective_name,
        "objective_version": objective_version,
        "pool_passes_scale": pool_passes_scale,
        "augment": asdict(PRETRAINING_AUGMENT),
        "init": init,
        "task": context.task,
        "dataset_fingerprint": context.dataset_fingerprint,
        "seed": context.seed,
        "unlabelled_pool": context.pool,
        "threads": context.execution.threads,
        "settings": asdict(settings),
        "profile": profile,
        "probe": PROBE,
    }
    return json.loads(json.dumps(key))  # as its sidecar reads it back: tuples become lists


def checkpoint_paths(cache_root: Path, key: dict) -> tuple[Path, Path]:
    """The checkpoint (safetensors) and JSON sidecar of the stage ``key``, under
    ``<cache_root>/pretrain/``, named by the objective, the init and a digest of the key."""
    digest = sha256_hex(json.dumps(key, sort_keys=True).encode())[:20]
    stem = Path(cache_root) / "pretrain" / f"{key['objective']}-{key['init']}-{digest}"
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


_REFUSED = {
    Refusal.UNREADABLE: "pre-training checkpoint {data} or its sidecar cannot be read ({detail}); "
                        "training the stage again",
    Refusal.FOREIGN: "pre-training sidecar {sidecar} is not for this stage; training it again",
    Refusal.CORRUPT: "pre-training checkpoint {data} does not match the sha256 in its sidecar "
                     "(corrupt, or written before checksums); training the stage again",
}
"""The log line of each way a cached stage is refused (a missing one is simply trained)."""


def load_cached_backbone(
    backbone: GrayscaleBackbone, cache_root: Path, key: dict, log: Callable[[str], None]
) -> dict | None:
    """Load a cached pre-trained backbone into ``backbone``; its sidecar, or None if not usable.

    The checkpoint's bytes are hashed before they are parsed and must match the sha256 in the
    sidecar, which must hold this key (:meth:`~fetalbench.storage.artifacts.Artifact.verify`); a
    checkpoint that fails either check, or does not load, is logged and not used (the caller
    trains the stage again and overwrites it). A checkpoint is only ever replaced whole, under
    the stage's lock, and parsing safetensors runs no code.
    """
    artifact = Artifact(*checkpoint_paths(cache_root, key))
    verdict = artifact.verify({"key": key})
    if isinstance(verdict, Refused):
        if verdict.reason is not Refusal.MISSING:
            log(_REFUSED[verdict.reason].format(data=artifact.data, sidecar=artifact.sidecar,
                                                detail=verdict.detail))
        return None
    try:
        backbone.load_state_dict(load_safetensors(artifact.data.read_bytes()))
    except (OSError, ValueError, RuntimeError, SafetensorError) as error:
        log(f"pre-training checkpoint {artifact.data} does not load ({type(error).__name__}); "
            "training the stage again")
        return None
    return verdict.sidecar


def save_backbone(backbone: GrayscaleBackbone, cache_root: Path, key: dict, info: dict) -> str:
    """Write the pre-trained backbone (safetensors) and then its sidecar, both atomically; the
    checkpoint's sha256.

    The sidecar holds the key, ``info`` and the sha256 of the checkpoint's bytes, so a reader
    can tell the checkpoint is whole and is the one the sidecar describes.
    """
    artifact = Artifact(*checkpoint_paths(cache_root, key))
    state = {name: tensor.detach().cpu().contiguous()
             for name, tensor in backbone.state_dict().items()}
    return artifact.write(save_safetensors(state), {"key": key, **info})[SHA256_FIELD]


@contextlib.contextmanager
def stage_lock(weights_path: Path, log: Callable[[str], None]) -> Iterator[None]:
    """Hold the lock of one pre-training stage, waiting (with a log line) while another has it.

    Two processes that need the same stage then train it once: the second waits for the first
    and reuses its checkpoint; if the first dies, the second takes over and trains.
    """
    path = lock_path(weights_path)
    try:
        lock = acquire(path)
    except LockedElsewhere as busy:
        log(f"pre-training: waiting for {describe_holder(busy.holder)}, which is training this "
            f"stage ({weights_path})")
        lock = acquire(path, wait=True)
    try:
        yield
    finally:
        lock.release()


def pretrain_backbone(
    context: MethodContext, name: str, objective_class: type[Objective], settings: object,
    init: str,
) -> tuple[GrayscaleBackbone, dict]:
    """The pre-trained backbone of this run's group, from the cache or trained now, and notes
    naming its checkpoint in the cache and the checkpoint's sha256."""
    pl.seed_everything(context.seed, workers=True, verbose=False)
    backbone = create_backbone(context.profile.backbone, init)
    key = pretraining_key(context, name, init, settings, objective_class.version,
                          objective_class.pool_passes_scale)
    weights_path, _ = checkpoint_paths(context.cache_root, key)
    # DDP ranks other than 0 must not wait for the lock: rank 0 holds it while they train beside it
    lock = (stage_lock(weights_path, context.log)
            if launched_rank(context.execution.devices) == 0 else contextlib.nullcontext())
    with lock:
        return _cached_or_trained(context, backbone, key, weights_path, name, objective_class,
                                  settings, init)


def _cached_or_trained(
    context: MethodContext, backbone: GrayscaleBackbone, key: dict, weights_path: Path,
    name: str, objective_class: type[Objective], settings: object, init: str,
) -> tuple[GrayscaleBackbone, dict]:
    """The stage's backbone from a verified checkpoint, or trained now and saved (lock held)."""
    checkpoint = weights_path.relative_to(context.cache_root).as_posix()  # as records name it
    cached = load_cached_backbone(backbone, context.cache_root, key, context.log)
    if cached is not None:
        context.log(f"pre-training: reused checkpoint {weights_path} "
                    f"(saved {cached['seconds']:.0f}s of {name})")
        if cached["check"] is not None:  # a stage that optimises nothing has no check
            context.checks.append(StageCheck.from_record(cached["check"]))
        return backbone, {"reused": True, "checkpoint": checkpoint, "sha256": cached["sha256"],
                          **cached["result"]}
    data, profile, execution = context.data, context.profile, context.execution
    pool = data.unlabelled_images
    steps = pretrain_steps(profile, len(pool), objective_class.pool_passes_scale)
    context.log(f"pre-training {name} ({init} init) for {steps} steps on {len(pool)} "
                "unlabelled images")
    probe = stage_probe(context, backbone)
    probe_start = probe() if probe is not None else None
    objective = objective_class(backbone, settings)
    module = PretrainModule(objective, profile)
    module.total_steps = steps
    loader = batches(TensorDataset(pool), profile.pretrain_batch_size, execution.world_size)
    started = time.perf_counter()
    if not objective_class.optimised:
        pass_over_pool(module, loader, steps)
        seconds = time.perf_counter() - started
        backbone = objective.backbone.cpu()
        if probe is not None:
            context.log(f"{name}: k-NN probe {probe_start:.3f} before, {probe():.3f} after")
        result = {"steps": steps}
        sha256 = None
        if launched_rank(execution.devices) == 0:
            sha256 = save_backbone(backbone, context.cache_root, key,
                                   {"seconds": seconds, "result": result, "check": None})
        return backbone, {"reused": False, "checkpoint": checkpoint, "sha256": sha256,
                          "seconds": seconds, **result}
    trainer = make_trainer(profile, steps, [], execution, f"pre-training {name}", max_epochs=-1,
                           enable_checkpointing=False)
    start = trainable_weights(backbone)
    trainer.fit(module, loader)
    seconds = time.perf_counter() - started
    backbone = objective.backbone.cpu()
    chance = objective.chance_level(loader.batch_size * execution.world_size)
    curve = loss_curve(module.history["ssl_loss"])
    check = checked(
        name=f"pre-training {name}", kind=SELF_SUPERVISED, steps=steps,
        steps_run=int(trainer.global_step), loss_curve=curve, final_loss=curve[-1],
        chance_loss=None if chance is None else round(chance.loss, 6),
        chance_rule=None if chance is None else chance.rule,
        probe_start=probe_start, probe_end=probe() if probe is not None else None,
        weight_change=weight_change(start, backbone),
    )
    context.checks.append(check)
    result = {"final_loss": curve[-1], "steps": steps}
    sha256 = None
    if trainer.is_global_zero:
        sha256 = save_backbone(backbone, context.cache_root, key,
                               {"seconds": seconds, "result": result,
                                "check": check.as_record()})
    return backbone, {"reused": False, "checkpoint": checkpoint, "sha256": sha256,
                      "seconds": seconds, **result}


def pass_over_pool(module: PretrainModule, loader: DataLoader, steps: int) -> None:
    """Run a stage whose objective optimises nothing (``Objective.optimised`` False): ``steps``
    batches of two views through it in training mode, as a pre-training stage feeds its
    objective, without Lightning (whose step count is of optimiser steps, and there are none).
    Under DDP each process passes over its own shard and rank 0's statistics are kept."""
    profile = module.profile
    device, dtype = training_device(), autocast_dtype(profile.precision)
    module.setup("fit")
    module.to(device).train()
    step = 0
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        while step < steps:
            for (images,) in loader:
                if step == steps:
                    break
                images = to_float(images.to(device), profile.channels_last)
                module.objective.loss(module.augment(images), module.augment(images),
                                      step / steps)
                step += 1
    module.cpu()


def stage_probe(context: MethodContext,
                backbone: torch.nn.Module) -> Callable[[], float] | None:
    """The k-NN probe of ``backbone`` (:mod:`fetalbench.methods.probe`): the validation
    carve-out classified by the task's labelled training images, called before and after a
    stage trains it; None when the run's data has no probe bank."""
    data, profile = context.data, context.profile
    if data.probe_images is None or data.probe_labels is None:
        return None
    bank, bank_labels = data.probe_images, data.probe_labels

    def probe() -> float:
        return probe_backbone(backbone, data.validation_images, data.validation_labels,
                              bank, bank_labels, len(data.classes),
                              profile.channels_last, profile.precision)

    return probe


SettingsRule = Callable[[Profile, int], object]
"""Settings of an objective for a profile and an unlabelled pool of that many images."""


def settings_rule(settings: Mapping[str, object] | SettingsRule) -> SettingsRule:
    """``settings`` as a rule: a callable is one; a mapping from profile names to settings
    (``"quick"`` required, the fallback for profiles it does not list) ignores the pool."""
    if callable(settings):
        return settings
    by_profile = dict(settings)
    return lambda profile, _pool: by_profile.get(profile.name, by_profile["quick"])


def register_two_stage(
    name: str,
    objective_class: type[Objective],
    settings: Mapping[str, object] | SettingsRule,
    summary: str | None = None,
) -> None:
    """Register ``name`` (random init) and ``name_imagenet`` (ImageNet init) for an objective.

    Both pre-train with the objective on the unlabelled pool, then run the downstream protocol
    (fine-tune, or linear probe on the frozen backbone) on the labelled fraction. ``settings``
    is a rule ``(profile, pool_size) -> settings`` (sizes such as a support set or a number of
    prototypes depend on the pool), or a mapping from profile names to settings. ``summary``
    describes the method (``"<summary>; <init> init"``); a built-in declared in
    :mod:`fetalbench.methods` leaves it out.
    """
    rule = settings_rule(settings)
    train, encoder = _two_stage_trainer(name, objective_class, rule)
    train.__module__ = objective_class.__module__
    register_init_pair(name, train, summary=summary, pretrains=True, encoder=encoder)


def register_single_two_stage(
    method: str, objective_name: str, objective_class: type[Objective], settings: object,
    init: str, summary: str | None = None,
) -> None:
    """Register ``method``: the two-stage protocol of ``objective_class`` (its stage cached
    under ``objective_name``) from ``init`` weights only, for an objective that means something
    from one initialisation alone (the control of :mod:`fetalbench.methods.pool_statistics`)."""
    train, encoder = _two_stage_trainer(objective_name, objective_class,
                                        lambda _profile, _pool: settings)

    def train_method(context: MethodContext) -> MethodResult:
        return train(context, init)

    def encoder_method(context: MethodContext) -> FrozenEncoder:
        return encoder(context, init)

    train_method.__module__ = objective_class.__module__
    register_method(method, summary, pretrains=True, encoder=encoder_method)(train_method)


def _two_stage_trainer(
    name: str, objective_class: type[Objective], rule: SettingsRule,
) -> tuple[Callable[[MethodContext, str], MethodResult],
           Callable[[MethodContext, str], FrozenEncoder]]:
    """``train(context, init)``, the stage then fine-tuning, and ``encoder(context, init)``,
    the stage's backbone frozen for the linear evaluation; both reuse the cached stage."""

    def stage(context: MethodContext, init: str) -> tuple[GrayscaleBackbone, dict]:
        settings = rule(context.profile, len(context.data.unlabelled_images))
        backbone, pretraining = pretrain_backbone(
            context, name, objective_class, settings, init
        )
        notes = {"init": init, "objective": name, "objective_paper": objective_class.paper,
                 "objective_settings": asdict(settings), "pretraining": pretraining}
        return backbone, notes

    def train(context: MethodContext, init: str) -> MethodResult:
        backbone, notes = stage(context, init)
        # the head starts from the seed alone, not from whatever pre-training (or loading it
        # from the cache instead) left in the random generator
        pl.seed_everything(context.seed, workers=True, verbose=False)
        classifier = Classifier(backbone, len(context.data.classes))
        downstream = fit_classifier(context, classifier)
        return MethodResult(classifier, {**notes, "weights": backbone.weights.source,
                                         **downstream})

    def encoder(context: MethodContext, init: str) -> FrozenEncoder:
        backbone, notes = stage(context, init)
        pretraining = notes["pretraining"]
        backbone.weights = EncoderWeights(STAGE_WEIGHTS, CACHE_NAME, pretraining["checkpoint"],
                                          pretraining["sha256"])
        return FrozenEncoder(backbone, notes)

    return train, encoder
