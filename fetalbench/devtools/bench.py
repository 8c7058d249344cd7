"""``fetalbench bench``: the data pipeline and training loop against the bare-PyTorch limit.

Everything is measured in one process on the machine at hand, so the ratios (fetalbench's loop
over a bare loop written here with the same model, batch, resolution and precision; data
pipeline over what a SimCLR step consumes) are comparable even when absolute numbers move with
the machine's load. Two training loops are compared step by step: their steps alternate, and
each pair of neighbouring steps gives one ratio (:func:`compare_interleaved`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from tabulate import tabulate
from torch.utils.data import TensorDataset

from fetalbench.data import image_cache
from fetalbench.data.prepare import prepare_run_data
from fetalbench.data.sources import open_source
from fetalbench.data.tasks import TASKS
from fetalbench.methods import METHODS
from fetalbench.methods.api import Classifier
from fetalbench.methods.augment import LIGHT, STRONG, UltrasoundAugment
from fetalbench.methods.backbones import create_backbone
from fetalbench.methods.engine import (
    SupervisedModule,
    batches,
    make_trainer,
    to_float,
    training_device,
)
from fetalbench.methods.pretraining import PretrainModule, stage_group
from fetalbench.methods.simclr import SimCLR, SimCLRSettings
from fetalbench.orchestrate.suites import Suite
from fetalbench.profiles import Profile
from fetalbench.storage.atomic import write_bytes_atomic

BENCH_TASK = "planes"
BENCH_IMAGES = 512
"""The training loops step through the first 512 labelled images of a phantom run of
``planes`` at the profile's resolution (:func:`~fetalbench.data.prepare.prepare_run_data`)."""


@dataclass(frozen=True)
class Measurement:
    """One row of the benchmark table."""

    name: str
    images_per_second: float
    reference: str = ""
    ratio: float | None = None
    ratio_range: tuple[float, float] | None = None


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (a no-op on the CPU), so a clock read after it
    times the work, not its queueing."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


class BareLoop:
    """A plain PyTorch training loop (AdamW, the profile's precision and memory format,
    contiguous batches of ``tensors`` moved to ``device`` each step): the limit fetalbench's loop
    is compared with. :meth:`step` makes one step; ``loss_of`` takes the batch's tensors."""

    def __init__(self, model: torch.nn.Module, loss_of: Callable[..., torch.Tensor],
                 tensors: tuple[torch.Tensor, ...], learning_rate: float, profile: Profile,
                 batch_size: int, device: torch.device):
        model.to(device).train()
        if profile.channels_last:
            model.to(memory_format=torch.channels_last)
        self.loss_of, self.tensors = loss_of, tensors
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate,
                                           weight_decay=profile.weight_decay)
        self.bf16 = "bf16" in profile.precision
        self.batch_size, self.device = batch_size, device
        self.made = 0

    def step(self) -> None:
        start = (self.made * self.batch_size) % (len(self.tensors[0]) - self.batch_size + 1)
        self.made += 1
        batch = [t[start : start + self.batch_size].to(self.device, non_blocking=True)
                 for t in self.tensors]
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            loss = self.loss_of(*batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def _seconds(loop: BareLoop) -> float:
    started = time.perf_counter()
    loop.step()
    synchronize(loop.device)
    return time.perf_counter() - started


def interleaved_bare_steps(first: BareLoop, second: BareLoop, warmup: int,
                           steps: int) -> list[tuple[float, float]]:
    """Seconds of ``steps`` pairs of steps, one step of ``first`` then one of ``second``,
    after ``warmup`` untimed pairs."""
    pairs = [(_seconds(first), _seconds(second)) for _ in range(warmup + steps)]
    return pairs[warmup:]


class InterleavedBareLoop(pl.Callback):
    """Makes one step of a bare loop after each of fetalbench's steps, and times both.

    fetalbench's step runs from the start of its batch to the start of the next one, less the
    bare step made in between, so the loop's work between steps (the next batch's fetch, the
    hooks) counts. A pair is complete when the next step starts: the trainer makes one step
    more than the ``warmup`` untimed and the timed pairs.
    """

    def __init__(self, bare: BareLoop, warmup: int):
        self.bare, self.warmup = bare, warmup
        self.pairs: list[tuple[float, float]] = []
        self._made = 0
        self._started = self._bare_finished = 0.0
        self._open: tuple[float, float] | None = None  # the last step's (ours so far, bare)

    def on_train_batch_start(self, trainer, module, batch, batch_index) -> None:
        synchronize(self.bare.device)
        now = time.perf_counter()
        if self._open is not None:
            ours, bare = self._open
            self.pairs.append((ours + now - self._bare_finished, bare))
            self._open = None
        self._started = now

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_index) -> None:
        synchronize(self.bare.device)
        ended = time.perf_counter()
        self.bare.step()
        synchronize(self.bare.device)
        self._bare_finished = time.perf_counter()
        self._made += 1
        if self._made > self.warmup:
            self._open = (ended - self._started, self._bare_finished - ended)


def lightning_beside_bare(module: pl.LightningModule, loader, bare: BareLoop, profile: Profile,
                          warmup: int, steps: int) -> list[tuple[float, float]]:
    """Seconds of ``steps`` pairs of fetalbench's Lightning step and a bare step, interleaved
    (:class:`InterleavedBareLoop`), after ``warmup`` untimed pairs."""
    interleaved = InterleavedBareLoop(bare, warmup)
    trainer = make_trainer(profile, warmup + steps + 1, [interleaved], max_epochs=-1,
                           enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(module, loader)
    return interleaved.pairs


def compare_interleaved(repeat: Callable[[], list[tuple[float, float]]], units_per_step: int,
                        repeats: int) -> tuple[float, float, float, list[float]]:
    """Two loops' rates and the first's speed over the second's, from interleaved step pairs.

    ``repeat`` builds both loops afresh, interleaves their steps and returns the seconds of
    each pair. The two steps of a pair run back to back, so drift in the machine's speed (a
    shared VM's neighbours, frequency scaling), which slows whole seconds of work at once,
    divides out of the pair's ratio; medians keep a step stalled by a burst from moving the
    result. Returns the median rate of each loop over all its steps, the median ratio over all
    pairs, and the median ratio of each repeat (whose range shows how far one repeat strays).
    """
    chunks = [np.asarray(repeat(), dtype=float) for _ in range(repeats)]
    per_repeat = [float(np.median(chunk[:, 1] / chunk[:, 0])) for chunk in chunks]
    pairs = np.concatenate(chunks)
    return (units_per_step / float(np.median(pairs[:, 0])),
            units_per_step / float(np.median(pairs[:, 1])),
            float(np.median(pairs[:, 1] / pairs[:, 0])), per_repeat)


def _ratio_row(name: str, rate: float, reference: str, ratio: float,
               per_repeat: list[float]) -> Measurement:
    return Measurement(name, rate, reference, ratio, (min(per_repeat), max(per_repeat)))


def _step_rows(label: str, repeat: Callable[[], list[tuple[float, float]]],
               units_per_step: int, repeats: int) -> tuple[Measurement, Measurement]:
    rate_ours, rate_bare, ratio, per_repeat = compare_interleaved(repeat, units_per_step,
                                                                  repeats)
    return (_ratio_row(f"{label}, fetalbench (Lightning)", rate_ours, "bare PyTorch loop",
                       ratio, per_repeat),
            Measurement(f"{label}, bare PyTorch loop", rate_bare))


def supervised_step(profile: Profile, images: torch.Tensor, labels: torch.Tensor, warmup: int,
                    steps: int, repeats: int) -> tuple[Measurement, Measurement]:
    """fetalbench's supervised step (Lightning) against the same step in a bare loop."""
    n = profile.batch_size
    new_bare = bare_supervised(profile, images, labels)

    def repeat() -> list[tuple[float, float]]:
        pl.seed_everything(0, verbose=False)
        classifier = Classifier(create_backbone(profile.backbone, "imagenet"),
                                int(labels.max()) + 1)
        module = SupervisedModule(classifier, profile)
        loader = {"labelled": batches(TensorDataset(images, labels), n)}
        return lightning_beside_bare(module, loader, new_bare(), profile, warmup, steps)

    return _step_rows("supervised step (img/s)", repeat, n, repeats)


def bare_supervised(profile: Profile, images: torch.Tensor,
                    labels: torch.Tensor) -> Callable[[], BareLoop]:
    """A maker of fresh bare loops of the supervised step at ``profile``'s settings."""
    classes = int(labels.max()) + 1

    def new() -> BareLoop:
        model = Classifier(create_backbone(profile.backbone, "imagenet"), classes)
        augment = UltrasoundAugment(LIGHT)

        def loss(batch: torch.Tensor, batch_labels: torch.Tensor) -> torch.Tensor:
            views = augment(to_float(batch, profile.channels_last))
            return F.cross_entropy(model(views), batch_labels)

        return BareLoop(model, loss, (images, labels), profile.learning_rate, profile,
                        profile.batch_size, training_device())

    return new


def _bare_pairs(first: Callable[[], BareLoop], second: Callable[[], BareLoop], warmup: int,
                steps: int) -> Callable[[], list[tuple[float, float]]]:
    def repeat() -> list[tuple[float, float]]:
        pl.seed_everything(0, verbose=False)
        return interleaved_bare_steps(first(), second(), warmup, steps)

    return repeat


def noise_floor(profile: Profile, images: torch.Tensor, labels: torch.Tensor, warmup: int,
                steps: int, repeats: int) -> Measurement:
    """The bare supervised loop against a second copy of itself, interleaved as the loop
    comparisons are: the ratio that the machine's noise alone produces, to read them by."""
    new_bare = bare_supervised(profile, images, labels)
    rate, _, ratio, per_repeat = compare_interleaved(
        _bare_pairs(new_bare, new_bare, warmup, steps), profile.batch_size, repeats)
    return _ratio_row("supervised step (img/s), bare loop against itself (noise floor)", rate,
                      "bare PyTorch loop", ratio, per_repeat)


def simclr_step(profile: Profile, images: torch.Tensor, warmup: int, steps: int,
                repeats: int) -> tuple[Measurement, Measurement]:
    """fetalbench's SimCLR pre-training step against the same step in a bare loop (two views)."""
    n = profile.pretrain_batch_size
    new_bare = bare_simclr(profile, images)

    def repeat() -> list[tuple[float, float]]:
        pl.seed_everything(0, verbose=False)
        objective = SimCLR(create_backbone(profile.backbone, "imagenet"), SimCLRSettings())
        module = PretrainModule(objective, profile)
        return lightning_beside_bare(module, batches(TensorDataset(images), n), new_bare(),
                                     profile, warmup, steps)

    return _step_rows("SimCLR step (views/s)", repeat, 2 * n, repeats)


def bare_simclr(profile: Profile, images: torch.Tensor) -> Callable[[], BareLoop]:
    """A maker of fresh bare loops of the SimCLR step at ``profile``'s settings."""

    def new() -> BareLoop:
        model = SimCLR(create_backbone(profile.backbone, "imagenet"), SimCLRSettings())
        augment = UltrasoundAugment(STRONG)

        def loss(batch: torch.Tensor) -> torch.Tensor:
            floats = to_float(batch, profile.channels_last)
            return model.loss(augment(floats), augment(floats), 0.0)

        return BareLoop(model, loss, (images,), profile.pretrain_learning_rate, profile,
                        profile.pretrain_batch_size, training_device())

    return new


def setting_gain(profile: Profile, setting: str, value: object, images: torch.Tensor,
                 warmup: int, steps: int, repeats: int) -> Measurement:
    """The bare SimCLR step with one profile setting changed to ``value``, interleaved with the
    step of the profile as it is: the evidence for the profile's choice of ``channels_last`` or
    ``precision`` on the machine at hand."""
    changed = replace(profile, **{setting: value})
    rate, _, ratio, per_repeat = compare_interleaved(
        _bare_pairs(bare_simclr(changed, images), bare_simclr(profile, images), warmup, steps),
        2 * profile.pretrain_batch_size, repeats)
    return _ratio_row(f"SimCLR step (views/s), bare loop, {setting} {value}", rate,
                      f"{setting} {getattr(profile, setting)}", ratio, per_repeat)


def data_pipeline(profile: Profile, images: torch.Tensor, batches_to_time: int) -> Measurement:
    """Uint8 batches from the DataLoader to two float augmented views on the training device,
    as pre-training sees them."""
    loader = batches(TensorDataset(images), profile.pretrain_batch_size)
    augment, device = UltrasoundAugment(STRONG), training_device()
    started, delivered = time.perf_counter(), 0
    while delivered < batches_to_time:
        for (batch,) in loader:
            floats = to_float(batch.to(device, non_blocking=True), profile.channels_last)
            augment(floats), augment(floats)
            delivered += 1
            if delivered == batches_to_time:
                break
    synchronize(device)
    seconds = time.perf_counter() - started
    return Measurement("data pipeline: loader + two strong views (views/s)",
                       2 * profile.pretrain_batch_size * batches_to_time / seconds)


def cache_rates(cache_root: Path, resolution: int, limit: int) -> tuple[Measurement, Measurement]:
    """PNG decode + resize into the cache, and reading the cache back, in images per second."""
    source = open_source("phantom", None, cache_root)
    catalog = source.catalog.head(limit)
    started = time.perf_counter()
    image_cache._decode_all(catalog, resolution, None)
    decode = len(catalog) / (time.perf_counter() - started)
    images = image_cache.load_images(source.catalog, source.identity.fingerprint, resolution,
                                     cache_root)
    started = time.perf_counter()
    reread = image_cache.load_images(source.catalog, source.identity.fingerprint, resolution,
                                     cache_root)
    np.ascontiguousarray(reread)
    read = len(images) / (time.perf_counter() - started)
    return (Measurement("image cache build: PNG decode + resize (img/s)", decode),
            Measurement("image cache read (img/s)", read))


def pretraining_counts(suite: Suite) -> Measurement:
    """Pre-training stages a grid executes against the naive count (one per run)."""
    runs = [r for r in suite.requests(None) if METHODS.get(r.method).pretrains]
    groups = {stage_group(r) for r in runs}
    naive = len(runs)
    return Measurement(f"grid '{suite.name}': pre-training stages run (naive: {naive})",
                       float(len(groups)), "naive count", len(groups) / naive if naive else None)


def run_benchmarks(profile: Profile, cache_root: Path, steps: int = 10, warmup: int = 3,
                   repeats: int = 5) -> list[Measurement]:
    """Every measurement, in one process; each training-step comparison ``repeats`` times."""
    from fetalbench.orchestrate.suites import load_suite

    torch.manual_seed(0)
    source = open_source("phantom", None, cache_root)
    data = prepare_run_data(source, TASKS.get(BENCH_TASK), 1.0, 0, profile.validation_fraction,
                            "task", profile.resolution, cache_root).task_data()
    images, labels = data.labelled_images[:BENCH_IMAGES], data.labelled_labels[:BENCH_IMAGES]
    rows = list(cache_rates(cache_root, profile.resolution, 256))
    pipeline = data_pipeline(profile, images, 20)
    rows += [pipeline]
    rows += supervised_step(profile, images, labels, warmup, steps, repeats)
    rows.append(noise_floor(profile, images, labels, warmup, steps, repeats))
    simclr = simclr_step(profile, images, warmup, steps, repeats)
    rows += simclr
    rows.append(Measurement("data pipeline over SimCLR step", pipeline.images_per_second,
                            "SimCLR step (fetalbench)",
                            pipeline.images_per_second / simclr[0].images_per_second))
    other_precision = "32-true" if "bf16" in profile.precision else "bf16-mixed"
    for setting, value in (("channels_last", not profile.channels_last),
                           ("precision", other_precision)):
        rows.append(setting_gain(profile, setting, value, images, warmup, steps, repeats))
    rows.append(pretraining_counts(load_suite("phantom")))
    return rows


def format_measurements(rows: list[Measurement], profile: Profile) -> str:
    """The benchmark table."""
    header = (f"profile {profile.name}: {profile.backbone} at {profile.resolution}px, batch "
              f"{profile.batch_size} (SSL {profile.pretrain_batch_size}), precision "
              f"{profile.precision}, channels_last {profile.channels_last}, on "
              f"{training_device().type} with {torch.get_num_threads()} CPU threads")
    table = tabulate(
        [(r.name, f"{r.images_per_second:,.1f}", r.reference,
          "" if r.ratio is None else f"{r.ratio:.3f}",
          "" if r.ratio_range is None else "{:.3f}-{:.3f}".format(*r.ratio_range))
         for r in rows],
        headers=("measurement", "rate", "relative to", "ratio", "ratio range over repeats"),
    )
    return header + "\n" + table


def save_measurements(rows: list[Measurement], profile: Profile, path: Path) -> None:
    """The measurements as JSON (for docs and comparisons across machines)."""
    text = json.dumps({"profile": asdict(profile), "rows": [asdict(r) for r in rows]}, indent=2)
    write_bytes_atomic(path, (text + "\n").encode())
