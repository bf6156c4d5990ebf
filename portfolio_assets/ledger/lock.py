"""File locking: appends are serialized with `fcntl.flock` on a sidecar `<name>.lock` (directory fsync is
`lakehouse._fsync_dir`, re-exported here for the chain)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from portfolio_assets.lakehouse import _fsync_dir as _fsync_dir  # noqa: PLC0414 (re-export)


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


@contextmanager
def _shared_read_lock(path: Path) -> Iterator[None]:
    """Hold a shared lock on the sidecar (if it exists) so a reader never sees a half-written line."""
    try:
        fd = os.open(_lock_path(path), os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)
