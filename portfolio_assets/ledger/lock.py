"""File locking: appends are serialized with `fcntl.flock` on a sidecar `<name>.lock` (directory fsync is
`lakehouse._fsync_dir`, re-exported here for the chain)."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from portfolio_assets.lakehouse import _fsync_dir as _fsync_dir  # noqa: PLC0414 (re-export)
from portfolio_assets.ledger.schema import LedgerError

READ_LOCK_WAIT_S = 60.0
"""How long a reader waits for a writer's append (milliseconds in practice) before it reports the
writer as stuck instead of waiting without end (a run stopped or hung inside an append)."""
WRITE_LOCK_WAIT_S = 60.0
"""How long a writer waits for another writer's append before its own append fails (the step
then fails naming the cause) instead of hanging behind a stopped run."""


class LedgerLocked(LedgerError):
    """A writer has held the ledger's lock for longer than the wait (`READ_LOCK_WAIT_S`, `WRITE_LOCK_WAIT_S`)."""


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _flock_within(fd: int, mode: int, wait_s: float, path: Path) -> None:
    """`flock(fd, mode)`, polling; `LedgerLocked` once a writer has kept the lock for `wait_s`."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise LedgerLocked(
                    f"{path}: a writer has held the ledger's lock for over {wait_s:g} s "
                    "(a run writing it is stopped or hung; `portfolio-assets status` lists the runs)"
                ) from None
            time.sleep(0.05)


@contextmanager
def _shared_read_lock(path: Path) -> Iterator[None]:
    """Hold a shared lock on the sidecar (if it exists) so a reader never sees a half-written line;
    `LedgerLocked` when a writer keeps it for more than `READ_LOCK_WAIT_S`."""
    try:
        fd = os.open(_lock_path(path), os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        _flock_within(fd, fcntl.LOCK_SH, READ_LOCK_WAIT_S, path)
        yield
    finally:
        os.close(fd)


@contextmanager
def _exclusive_write_lock(path: Path) -> Iterator[None]:
    """Hold the sidecar's exclusive lock for one append; `LedgerLocked` when another writer keeps
    it for more than `WRITE_LOCK_WAIT_S`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(_lock_path(path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _flock_within(fd, fcntl.LOCK_EX, WRITE_LOCK_WAIT_S, path)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
