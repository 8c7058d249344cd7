"""Lock files that keep two processes from doing the same work at once (a run, a pre-training).

Design: a lock is an ``fcntl.flock`` on a file beside what it guards (``<record>.json.lock`` for
a run, ``<checkpoint>.safetensors.lock`` for a pre-training group). The kernel releases a flock
when its holder exits, however it exits (SIGKILL, out of memory, power cut of a client), so a
lock never outlives its holder and a *stale* lock is simply one nobody holds: the next process
takes it over without guessing whether a pid is still alive (pids are reused, and a pid means
nothing on another host). The holder writes its pid, host and start time into the file, for the
messages of those who find it taken. On Linux, flock on NFS is carried by NFS byte-range locks,
so grids on several hosts sharing one results folder exclude each other too.

The holder unlinks the file before it lets go, so a finished run leaves no lock behind. Because
of that, a process that wins the flock checks that the path still names the file it locked
(another holder may have unlinked it meanwhile) and starts again if not; this keeps exactly one
holder per path. A file left by a killed holder stays until the next process takes it over.

A forked child shares its parent's open file descriptions, flocks included: a decoding worker
that outlived a killed holder would keep the lock held, and a resumed grid would skip the run
as running elsewhere. So every forked child closes its copies of the held locks at once
(``os.register_at_fork``); closing a copy never unlocks the parent's.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fetalbench.errors import FetalbenchError

SUFFIX = ".lock"

_held: set[int] = set()  # the descriptors of the locks this process holds


def _close_held_in_child() -> None:
    for descriptor in _held:
        with contextlib.suppress(OSError):
            os.close(descriptor)
    _held.clear()


os.register_at_fork(after_in_child=_close_held_in_child)


class LockedElsewhere(FetalbenchError):
    """The lock is held by another live process; ``holder`` says which (it may be empty)."""

    def __init__(self, path: Path, holder: dict):
        self.path = Path(path)
        self.holder = holder
        super().__init__(
            f"{self.path} is held by {describe_holder(holder)}; wait for it to finish "
            "(a lock dies with its holder, so nothing needs deleting)"
        )


@dataclass
class Lock:
    """A held lock: its path, the open descriptor carrying the flock, and whom it replaced.

    ``took_over`` is the holder information left in the file by a process that died holding it,
    or None when the file was new.
    """

    path: Path
    descriptor: int
    took_over: dict | None

    def release(self) -> None:
        """Remove the lock file, then let go of the flock (so no one locks a removed file)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        _held.discard(self.descriptor)
        os.close(self.descriptor)


def lock_path(guarded: Path) -> Path:
    """The lock file of ``guarded``: the same path with ``.lock`` appended."""
    guarded = Path(guarded)
    return guarded.with_name(guarded.name + SUFFIX)


def describe_holder(holder: dict) -> str:
    """``pid 123 on host h since 2024-01-01T00:00:00+00:00``, or a vaguer phrase if unknown."""
    if not holder.get("pid"):
        return "another process"
    return f"pid {holder['pid']} on host {holder.get('host', '?')} since {holder.get('since', '?')}"


def holder_info() -> dict:
    """What this process writes into a lock it takes."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def _read_holder(descriptor: int) -> dict:
    try:
        text = os.pread(descriptor, 4096, 0).decode("utf-8", errors="replace")
        holder = json.loads(text) if text.strip() else {}
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def acquire(path: Path, wait: bool = False) -> Lock:
    """Take the lock file ``path``; raise :class:`LockedElsewhere` if it is held and not ``wait``.

    With ``wait`` the call blocks until the holder lets go (or dies).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = _read_holder(descriptor)
            os.close(descriptor)
            raise LockedElsewhere(path, holder) from None
        except BaseException:
            os.close(descriptor)
            raise
        try:
            same_file = os.path.samestat(os.fstat(descriptor), os.stat(path))
        except FileNotFoundError:
            same_file = False
        if not same_file:  # the previous holder removed it as we waited: lock the new one
            os.close(descriptor)
            continue
        previous = _read_holder(descriptor)
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, json.dumps(holder_info()).encode(), 0)
        _held.add(descriptor)
        return Lock(path, descriptor, previous or None)


@contextlib.contextmanager
def locked(path: Path, wait: bool = False) -> Iterator[Lock]:
    """:func:`acquire` as a context manager that releases the lock on the way out."""
    lock = acquire(path, wait)
    try:
        yield lock
    finally:
        lock.release()

