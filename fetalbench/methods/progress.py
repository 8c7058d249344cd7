"""Progress a person can read: one line or bar per training stage, counted in optimiser steps.

A stage (pre-training, fine-tuning) shows its step out of its budget, the latest training loss,
the last validation macro F1 and an ETA. On a terminal that is one tqdm bar on stderr; elsewhere
(CI and Slurm logs) one plain line every tenth of the stage, so a log holds a few lines per stage
instead of carriage-return debris. Grids and ``--quiet`` switch stage progress off
(:func:`fetalbench.methods.engine.show_progress_bars`) and print only their result lines. The
loss is read from the device only when a line or bar is drawn, so a GPU is not synchronised
every step.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

import pytorch_lightning as pl
from tqdm import tqdm

LINES_PER_STAGE = 10
BAR_REFRESH_S = 0.5

def duration(value: float) -> str:
    """Seconds as a person reads them: ``42s``, ``3m05s``, ``1h20m``."""
    seconds = round(value)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def time_left(started: float, done: int, total: int) -> float:
    """Seconds left if the remaining ``total - done`` items take as long as the done ones
    (``started`` a :func:`time.perf_counter` reading)."""
    return (time.perf_counter() - started) / max(1, done) * (total - done)


class StageProgress(pl.Callback):
    """One bar (a terminal) or a line every tenth of the stage (a log) for a training stage."""

    def __init__(self, stage: str, stream: TextIO | None = None):
        self.stage = stage
        self.stream = stream if stream is not None else sys.stderr
        self.bar: tqdm | None = None
        self.started = 0.0
        self.drawn = 0.0
        self.validation_f1: float | None = None

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.started = time.perf_counter()
        if trainer.is_global_zero and self.stream.isatty():
            self.bar = tqdm(total=trainer.max_steps, desc=self.stage, unit="step",
                            file=self.stream, dynamic_ncols=True, leave=False)

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs,
                           batch, batch_idx: int) -> None:
        if not trainer.is_global_zero:
            return
        step, total = trainer.global_step, trainer.max_steps
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            now = time.perf_counter()
            if now - self.drawn >= BAR_REFRESH_S or step == total:
                self.drawn = now
                self.bar.set_postfix_str(self._status(outputs), refresh=True)
        elif step % max(1, total // LINES_PER_STAGE) == 0 or step == total:
            elapsed = time.perf_counter() - self.started
            print(f"{self.stage}: step {step}/{total}, {self._status(outputs)}, "
                  f"{duration(elapsed)} elapsed, ETA "
                  f"{duration(time_left(self.started, step, total))}", file=self.stream,
                  flush=True)

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        f1 = trainer.callback_metrics.get("val_macro_f1")
        if f1 is not None:
            self.validation_f1 = float(f1)

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
            print(f"{self.stage}: {trainer.global_step} steps in "
                  f"{duration(time.perf_counter() - self.started)}", file=self.stream)

    def _status(self, outputs) -> str:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        parts = [f"loss {float(loss):.3f}"]
        if self.validation_f1 is not None:
            parts.append(f"val macro F1 {self.validation_f1:.3f}")
        return ", ".join(parts)
