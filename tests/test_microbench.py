"""pytest-benchmark micro-benchmarks of the per-batch data path, beside ``fetalbench bench``, and
of how fast the help and the listings start (a fresh interpreter each: the target is under half a
second, best of rounds, on the 2-core development machine).

The normal test run executes each benchmarked function once, as a test of its output
(``--benchmark-disable`` in pyproject.toml). To time them:
``python -m pytest tests/test_microbench.py --benchmark-enable``; compare rows of one group
from one run, never numbers across runs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from conftest import REAL_IMAGES, TINY
from fetalbench.data import image_cache
from fetalbench.methods.augment import LIGHT, STRONG, UltrasoundAugment
from fetalbench.methods.engine import InMemoryDataset, batches, to_float

IMAGES, BATCH, SIDE = 512, 64, 64


@pytest.fixture(scope="module")
def uint8_images() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (IMAGES, 1, SIDE, SIDE), dtype=torch.uint8, generator=generator)


def _epoch(loader: DataLoader) -> list[tuple[torch.Tensor, ...]]:
    """Every batch of one pass, so per-batch costs, not the iterator's start-up, dominate."""
    return list(loader)


@pytest.mark.benchmark(group="batch fetch")
def test_batch_fetch_one_gather(benchmark, uint8_images) -> None:
    """fetalbench's loader: one gather per tensor per batch (``InMemoryDataset.__getitems__``)."""
    indices = torch.arange(IMAGES)
    epoch = benchmark(_epoch, batches(TensorDataset(uint8_images, indices), BATCH))
    assert len(epoch) == IMAGES // BATCH
    images, batch_indices = epoch[0]
    assert images.shape == (BATCH, 1, SIDE, SIDE) and images.dtype == torch.uint8
    assert torch.equal(images, uint8_images[batch_indices])


@pytest.mark.benchmark(group="batch fetch")
def test_batch_fetch_per_image_collate(benchmark, uint8_images) -> None:
    """The PyTorch default it replaces: one ``__getitem__`` per image, then ``default_collate``."""
    loader = DataLoader(TensorDataset(uint8_images, torch.arange(IMAGES) % 3), batch_size=BATCH,
                        shuffle=True, drop_last=True)
    epoch = benchmark(_epoch, loader)
    images, _ = epoch[0]
    assert len(epoch) == IMAGES // BATCH and images.shape == (BATCH, 1, SIDE, SIDE)


def _as_fetched(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return batch


@pytest.mark.benchmark(group="batch fetch")
@pytest.mark.parametrize("workers", [1, 2])
def test_batch_fetch_in_worker_processes(benchmark, uint8_images, workers) -> None:
    """fetalbench's loader with DataLoader worker processes instead of none: persistent, and
    warmed up by one pass, so only their per-batch cost (a batch pickled across processes)
    counts, not their start-up."""
    indices = torch.arange(IMAGES)
    loader = DataLoader(InMemoryDataset(uint8_images, indices), batch_size=BATCH, shuffle=True,
                        drop_last=True, collate_fn=_as_fetched, num_workers=workers,
                        persistent_workers=True)
    epoch = benchmark.pedantic(_epoch, (loader,), rounds=20, warmup_rounds=1)
    images, batch_indices = epoch[0]
    assert len(epoch) == IMAGES // BATCH
    assert torch.equal(images, uint8_images[batch_indices])


@pytest.mark.benchmark(group="augmentation")
@pytest.mark.parametrize("settings", [STRONG, LIGHT], ids=["strong", "light"])
def test_augmentation_of_a_batch(benchmark, uint8_images, settings) -> None:
    """One view of a batch: uint8 to float in the profile's memory format, then the transforms."""
    augment = UltrasoundAugment(settings)
    torch.manual_seed(0)
    views = benchmark(lambda: augment(to_float(uint8_images[:BATCH], TINY.channels_last)))
    assert views.shape == (BATCH, 1, SIDE, SIDE) and views.dtype == torch.float32
    assert not torch.allclose(views, to_float(uint8_images[:BATCH], False), atol=0.05)


@pytest.mark.benchmark(group="decode")
def test_png_decode_and_resize(benchmark) -> None:
    """One real FETAL_PLANES_DB PNG to a 64 x 64 uint8 array: the cache build's unit of work."""
    path = str(min(REAL_IMAGES.glob("*.png")))
    array = benchmark(image_cache.decode_image, path, SIDE)
    assert array.shape == (SIDE, SIDE) and array.dtype.name == "uint8"


@pytest.mark.benchmark(group="cli start")
@pytest.mark.parametrize("argv", (["--help"], ["methods"], ["tasks"]))
def test_cli_start(benchmark, argv: list[str]) -> None:
    """``fetalbench --help``, ``methods`` and ``tasks`` in a fresh interpreter."""
    repository = Path(__file__).resolve().parents[1]
    done = benchmark(subprocess.run, [sys.executable, "-m", "fetalbench", *argv],
                     cwd=repository, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip()
