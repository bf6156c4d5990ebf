"""File locking: appends are serialized with `fcntl.flock` on a sidecar `<name>.lock` (directory fsync is
`lakehouse._fsync_dir`, re-exported here for the chain)."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from portfolio_assets.lake_mirror import mirror_of
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


def pull_ledger(path: Path) -> None:
    """On an object-store lakehouse, bring the ledger's folder (chain, anchor, archives) up to date
    under its lease, so they are as one writer left them (`lake_mirror`); nothing on a local one.
    Never called by a writer holding the lease (it is not re-entrant)."""
    mirrored = mirror_of(path)
    if mirrored is not None:
        with _leased(mirrored[0].critical(path, hold_s=WRITE_LOCK_WAIT_S, write=False), path):
            pass


@contextmanager
def _shared_read_lock(path: Path) -> Iterator[None]:
    """Hold a shared lock on the sidecar (if it exists) so a reader never sees a half-written line;
    `LedgerLocked` when a writer keeps it for more than `READ_LOCK_WAIT_S`. On an object-store
    lakehouse the ledger's folder is first pulled under its lease (`lake_mirror`): the chain and
    its anchor as one writer left them."""
    pull_ledger(path)
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
        mirrored = mirror_of(path)
        if mirrored is None:
            yield
        else:  # across hosts too: the folder's lease, pulled exactly on entry, pushed on exit
            with _leased(mirrored[0].critical(path, hold_s=WRITE_LOCK_WAIT_S), path):
                yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@contextmanager
def _leased(section: AbstractContextManager[None], path: Path) -> Iterator[None]:
    """`section` (a lease of an object-store lakehouse), its `LeaseBusy` reported as `LedgerLocked`."""
    from portfolio_assets.lake_mirror import LeaseBusy

    try:
        with section:
            yield
    except LeaseBusy as exc:
        raise LedgerLocked(f"{path}: {exc} (another host is writing the ledger, or stopped while it did)") from None
