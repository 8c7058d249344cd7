"""Where one run trains: devices, nodes and CPU threads, and which DDP rank this process is.

Not part of a run's spec (where a run executed does not change what it is), but recorded in its
``execution`` section: on a CPU the thread count moves the numbers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from fetalbench.checks import check_count


def default_threads() -> int:
    """The intra-op thread count of a run not told otherwise: 1 on a machine without a GPU.

    On the CPU the result of a run depends on the thread count (a convolution's backward sums in
    another order with 2 threads than with 1), so the default is one fixed value rather than
    whatever the machine has, and records made on any CPU with the default agree with the
    committed ones. On a GPU machine the CPU only feeds the device: the default is torch's.
    """
    return torch.get_num_threads() if torch.cuda.is_available() else 1


@dataclass(frozen=True)
class Execution:
    """Where one run trains: ``devices`` processes per node on ``num_nodes`` nodes, each with
    ``threads`` intra-op CPU threads (:func:`default_threads`; :meth:`apply_threads` sets it).

    One process (the default) uses Lightning's single-device strategy; more use DDP. The global
    batch stays the profile's: each of the ``world_size`` processes takes ``batch //
    world_size`` images per step (see :func:`batches`), and the step budget is unchanged, so a
    2-device run makes the same optimiser steps on batches of the same size as a 1-device run.
    Every rank trains; only global rank 0 holds the run's locks, writes caches and
    checkpoints, tests and writes the record (:func:`launched_rank` tells ranks apart before
    Lightning has set up, ``trainer.is_global_zero`` after). Not part of the spec hash: where a
    run executed does not change what it is, though on the CPU the thread count moves its
    numbers, which is why the record keeps it and ``fetalbench reproduce`` reruns with it.
    """

    devices: int = 1
    num_nodes: int = 1
    threads: int = field(default_factory=default_threads)

    def __post_init__(self) -> None:
        for name in ("devices", "num_nodes", "threads"):
            check_count(getattr(self, name), name)

    @property
    def world_size(self) -> int:
        """The number of training processes."""
        return self.devices * self.num_nodes

    @property
    def strategy(self) -> str:
        """The Lightning strategy: ``auto`` (one device) or ``ddp``."""
        return "auto" if self.world_size == 1 else "ddp"

    def as_record(self) -> dict:
        """The record's ``execution`` section."""
        return {"devices": self.devices, "num_nodes": self.num_nodes, "strategy": self.strategy,
                "threads": self.threads}

    def apply_threads(self) -> None:
        """Make this process compute with ``threads`` intra-op threads."""
        torch.set_num_threads(self.threads)


SINGLE_PROCESS = Execution()


def launched_rank(devices_per_node: int) -> int:
    """This process's global rank as set by whatever launched it; 0 when nothing did.

    Lightning's DDP launcher gives the processes it starts ``LOCAL_RANK`` and ``NODE_RANK``;
    ``torchrun`` sets ``RANK``; ``srun`` sets ``SLURM_PROCID`` (checked last, because it is also
    set, to 0, in a one-task Slurm job whose processes Lightning starts itself).
    """
    if "RANK" in os.environ:
        return int(os.environ["RANK"])
    if "LOCAL_RANK" in os.environ or "NODE_RANK" in os.environ:
        node_rank = int(os.environ.get("NODE_RANK", 0))
        return node_rank * devices_per_node + int(os.environ.get("LOCAL_RANK", 0))
    return int(os.environ.get("SLURM_PROCID", 0))
