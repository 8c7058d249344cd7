"""``fetalbench bench``: the data pipeline and training loop against the bare-PyTorch limit.

Everything is measured in one process, one after the other, on the machine at hand, so the
ratios (fetalbench's loop over a bare loop written here with the same model, batch, resolution
and precision; data pipeline over what a SimCLR step consumes) are comparable even when absolute
numbers move with the machine's load.
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

from fetalbench.atomic import write_bytes_atomic
from fetalbench.augment import LIGHT, STRONG, UltrasoundAugment
from fetalbench.backbones import create_backbone
from fetalbench.benchmark.suites import Suite
from fetalbench.datasets import image_cache
from fetalbench.datasets.sources import open_source
from fetalbench.engine import SupervisedModule, batches, make_trainer, to_float
from fetalbench.methods import METHODS
from fetalbench.methods.api import Classifier
from fetalbench.methods.pretraining import PretrainModule
from fetalbench.methods.simclr import SimCLR, SimCLRSettings
from fetalbench.profiles import Profile


@dataclass(frozen=True)
class Measurement:
    """One row of the benchmark table."""

    name: str
    images_per_second: float
    reference: str = ""
    ratio: float | None = None
    ratio_range: tuple[float, float] | None = None


class StepTimer(pl.Callback):
    """The wall time of each step from step ``warmup`` on: from the start of one step to the
    start of the next (so the loop's work between steps counts), the last to its end."""

    def __init__(self, warmup: int):
        self.warmup = warmup
        self.starts: list[float] = []
        self.finished = 0.0

    def on_train_batch_start(self, trainer, module, batch, batch_index) -> None:
        if trainer.global_step >= self.warmup:
            self.starts.append(time.perf_counter())

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_index) -> None:
        self.finished = time.perf_counter()

    def step_seconds(self) -> list[float]:
        """Seconds of each timed step."""
        return np.diff([*self.starts, self.finished]).tolist()


def bare_loop_step_seconds(
    model: torch.nn.Module,
    loss_of: Callable[[slice], torch.Tensor],
    learning_rate: float,
    profile: Profile,
    batch_size: int,
    n_images: int,
    warmup: int,
    steps: int,
) -> list[float]:
    """Seconds of each of ``steps`` plain PyTorch steps (AdamW, the profile's precision and
    memory format, contiguous batches), after ``warmup`` untimed ones: the limit fetalbench's
    loop is compared with."""
    if profile.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate,
                                  weight_decay=profile.weight_decay)
    model.train()
    starts = []
    for index in range(warmup + steps):
        if index >= warmup:
            starts.append(time.perf_counter())
        start = (index * batch_size) % (n_images - batch_size + 1)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled="bf16" in profile.precision):
            loss = loss_of(slice(start, start + batch_size))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return np.diff([*starts, time.perf_counter()]).tolist()


def _lightning_step_seconds(module: pl.LightningModule, loader, profile: Profile, warmup: int,
                            steps: int) -> list[float]:
    timer = StepTimer(warmup)
    trainer = make_trainer(profile, warmup + steps, [timer], max_epochs=-1,
                           enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(module, loader)
    return timer.step_seconds()


def compare_loops(ours: Callable[[], list[float]], bare: Callable[[], list[float]],
                  units_per_step: int, repeats: int) -> tuple[float, float, list[float]]:
    """Median rates of fetalbench's loop and the bare loop, and one ratio per repeat.

    Each call of a loop returns the seconds of each of its steps; its rate is ``units_per_step``
    over the median step, so a neighbour's burst that stalls a few steps does not move it. The
    two loops alternate, and which goes first alternates too, so drift in the machine's speed
    (a shared VM's neighbours, frequency scaling) falls on both sides of every pair instead of
    on one loop.
    """
    def rate(loop: Callable[[], list[float]]) -> float:
        return units_per_step / float(np.median(loop()))

    ours_rates, bare_rates = [], []
    for repeat in range(repeats):
        if repeat % 2:
            bare_rates.append(rate(bare))
            ours_rates.append(rate(ours))
        else:
            ours_rates.append(rate(ours))
            bare_rates.append(rate(bare))
    ratios = [o / b for o, b in zip(ours_rates, bare_rates, strict=True)]
    return float(np.median(ours_rates)), float(np.median(bare_rates)), ratios


def _step_rows(label: str, ours: Callable[[], list[float]], bare: Callable[[], list[float]],
               units_per_step: int, repeats: int) -> tuple[Measurement, Measurement]:
    rate_ours, rate_bare, ratios = compare_loops(ours, bare, units_per_step, repeats)
    return (Measurement(f"{label}, fetalbench (Lightning)", rate_ours, "bare PyTorch loop",
                        float(np.median(ratios)), (min(ratios), max(ratios))),
            Measurement(f"{label}, bare PyTorch loop", rate_bare))


def supervised_step(profile: Profile, images: torch.Tensor, labels: torch.Tensor, warmup: int,
                    steps: int, repeats: int) -> tuple[Measurement, Measurement]:
    """fetalbench's supervised step (Lightning) and the same step in a bare loop."""
    n = profile.batch_size
    classes = int(labels.max()) + 1

    def ours() -> list[float]:
        pl.seed_everything(0, verbose=False)
        classifier = Classifier(create_backbone(profile.backbone, "imagenet"), classes)
        module = SupervisedModule(classifier, profile, freeze_backbone=False)
        loader = {"labelled": batches(TensorDataset(images, labels), n)}
        return _lightning_step_seconds(module, loader, profile, warmup, steps)

    bare = bare_supervised(profile, images, labels, warmup, steps)
    return _step_rows("supervised step (img/s)", ours, bare, n, repeats)


def bare_supervised(profile: Profile, images: torch.Tensor, labels: torch.Tensor, warmup: int,
                    steps: int) -> Callable[[], list[float]]:
    """The bare-loop supervised steps' seconds at ``profile``'s settings, from a fresh model."""
    classes = int(labels.max()) + 1

    def seconds() -> list[float]:
        pl.seed_everything(0, verbose=False)
        model = Classifier(create_backbone(profile.backbone, "imagenet"), classes)
        augment = UltrasoundAugment(LIGHT)

        def loss(index: slice) -> torch.Tensor:
            batch = to_float(images[index], profile.channels_last)
            return F.cross_entropy(model(augment(batch)), labels[index])

        return bare_loop_step_seconds(model, loss, profile.learning_rate, profile,
                                      profile.batch_size, len(images), warmup, steps)

    return seconds


def noise_floor(profile: Profile, images: torch.Tensor, labels: torch.Tensor, warmup: int,
                steps: int, repeats: int) -> Measurement:
    """The bare supervised loop compared with itself, paired as the loop comparisons are: the
    spread of ratios that the machine's noise alone produces, to read the other ratios by."""
    bare = bare_supervised(profile, images, labels, warmup, steps)
    rate, _, ratios = compare_loops(bare, bare, profile.batch_size, repeats)
    return Measurement("supervised step (img/s), bare loop against itself (noise floor)", rate,
                       "bare PyTorch loop", float(np.median(ratios)),
                       (min(ratios), max(ratios)))


def simclr_step(profile: Profile, images: torch.Tensor, warmup: int, steps: int,
                repeats: int) -> tuple[Measurement, Measurement]:
    """fetalbench's SimCLR pre-training step and the same step in a bare loop (two views)."""
    n = profile.pretrain_batch_size

    def ours() -> list[float]:
        pl.seed_everything(0, verbose=False)
        objective = SimCLR(create_backbone(profile.backbone, "imagenet"), SimCLRSettings())
        module = PretrainModule(objective, profile)
        return _lightning_step_seconds(module, batches(TensorDataset(images), n), profile,
                                       warmup, steps)

    bare = bare_simclr(profile, images, warmup, steps)
    return _step_rows("SimCLR step (views/s)", ours, bare, 2 * n, repeats)


def bare_simclr(profile: Profile, images: torch.Tensor, warmup: int,
                steps: int) -> Callable[[], list[float]]:
    """The bare-loop SimCLR steps' seconds at ``profile``'s settings, from a fresh model."""

    def seconds() -> list[float]:
        pl.seed_everything(0, verbose=False)
        model = SimCLR(create_backbone(profile.backbone, "imagenet"), SimCLRSettings())
        augment = UltrasoundAugment(STRONG)

        def loss(index: slice) -> torch.Tensor:
            batch = to_float(images[index], profile.channels_last)
            return model.loss(augment(batch), augment(batch), 0.0)

        return bare_loop_step_seconds(model, loss, profile.pretrain_learning_rate, profile,
                                      profile.pretrain_batch_size, len(images), warmup, steps)

    return seconds


def setting_gain(profile: Profile, setting: str, value: object, images: torch.Tensor,
                 warmup: int, steps: int, repeats: int) -> Measurement:
    """The bare SimCLR step with one profile setting changed to ``value``, against the profile
    as it is: the evidence for the profile's choice of ``channels_last`` or ``precision`` on the
    machine at hand."""
    changed = replace(profile, **{setting: value})
    rate, _, ratios = compare_loops(bare_simclr(changed, images, warmup, steps),
                                    bare_simclr(profile, images, warmup, steps),
                                    2 * profile.pretrain_batch_size, repeats)
    return Measurement(f"SimCLR step (views/s), bare loop, {setting} {value}", rate,
                       f"{setting} {getattr(profile, setting)}", float(np.median(ratios)),
                       (min(ratios), max(ratios)))


def data_pipeline(profile: Profile, images: torch.Tensor, batches_to_time: int) -> Measurement:
    """Uint8 batches from the DataLoader to two float augmented views, as pre-training sees them."""
    loader = batches(TensorDataset(images), profile.pretrain_batch_size)
    augment = UltrasoundAugment(STRONG)
    started, delivered = time.perf_counter(), 0
    while delivered < batches_to_time:
        for (batch,) in loader:
            floats = to_float(batch, profile.channels_last)
            augment(floats), augment(floats)
            delivered += 1
            if delivered == batches_to_time:
                break
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
    groups = {(r.method, r.task, r.seed, r.pool) for r in runs}
    naive = len(runs)
    return Measurement(f"grid '{suite.name}': pre-training stages run (naive: {naive})",
                       float(len(groups)), "naive count", len(groups) / naive if naive else None)


def run_benchmarks(profile: Profile, cache_root: Path, steps: int = 10, warmup: int = 3,
                   repeats: int = 5) -> list[Measurement]:
    """Every measurement, in one process; each training-step comparison ``repeats`` times."""
    from fetalbench.benchmark.suites import load_suite

    torch.manual_seed(0)
    source = open_source("phantom", None, cache_root)
    cached = image_cache.load_images(source.catalog, source.identity.fingerprint,
                                     profile.resolution, cache_root)
    images = torch.from_numpy(np.array(cached[:512])).unsqueeze(1)
    labels = torch.arange(len(images)) % 3
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
              f"{profile.precision}, channels_last {profile.channels_last}, "
              f"{torch.get_num_threads()} threads")
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
