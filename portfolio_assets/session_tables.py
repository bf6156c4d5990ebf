"""Exchange session tables: the sessions and close moments of an exchange calendar, cached on disk.

Building an `exchange_calendars` calendar evaluates its holiday rules over the whole span: 0.8 s
for XNYS 1990..2030, in every process that imports the asset graph (the CLI, each Dagster run,
the code server, each step process of the multiprocess executor) before any work starts. What
the package reads from a calendar is two arrays: the sessions and their closes. A
`SessionTable` holds those, and is stored once per (exchange_calendars version, calendar, span)
as a small `.npz` file under the cache folder, which later processes read in milliseconds.

The cache folder is `PA_CACHE_DIR`, else `$XDG_CACHE_HOME/portfolio_assets`, else
`~/.cache/portfolio_assets`. A cache file is only a copy: it is written atomically, its name
carries the exchange_calendars version (an upgrade that changes a holiday rule builds new tables),
and one that does not read back as a valid table of its key is rebuilt and replaced. A folder that
cannot be written is reported once in the log and the tables are built in memory.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.metadata
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger("portfolio_assets.session_tables")

CACHE_ENV = "PA_CACHE_DIR"
FORMAT = 1  # bump when the file layout changes


@dataclass(frozen=True)
class SessionTable:
    """One calendar's sessions (tz-naive midnights, ascending) and their UTC close moments."""

    name: str
    sessions: pd.DatetimeIndex
    closes: pd.DatetimeIndex

    def __post_init__(self) -> None:
        if len(self.sessions) != len(self.closes):
            raise ValueError(f"{self.name}: {len(self.sessions)} sessions but {len(self.closes)} closes")
        if self.sessions.tz is not None or str(self.closes.tz) != "UTC":
            raise ValueError(f"{self.name}: sessions must be tz-naive and closes UTC")
        if len(self.sessions) > 1 and not (np.diff(self.sessions.asi8) > 0).all():
            raise ValueError(f"{self.name}: sessions are not strictly increasing")

    def sessions_in_range(self, start: pd.Timestamp | dt.date | str, end: pd.Timestamp | dt.date | str) -> pd.DatetimeIndex:
        """Sessions in [start, end] (both inclusive), tz-naive."""
        lo = self.sessions.searchsorted(pd.Timestamp(start), side="left")
        hi = self.sessions.searchsorted(pd.Timestamp(end), side="right")
        return self.sessions[lo:hi]

    def is_session(self, day: pd.Timestamp | dt.date | str) -> bool:
        """Whether `day` is one of the table's sessions."""
        return bool(self.sessions.get_indexer([pd.Timestamp(day)])[0] >= 0)

    def session_close(self, day: pd.Timestamp | dt.date | str) -> pd.Timestamp:
        """The UTC close of session `day`; a day that is not a session is refused."""
        pos = self.sessions.get_indexer([pd.Timestamp(day)])[0]
        if pos < 0:
            raise ValueError(f"{pd.Timestamp(day).date()} is not a {self.name} session")
        return self.closes[pos]

    def close_series(self) -> pd.Series:
        """The closes as a Series indexed by session."""
        return pd.Series(self.closes, index=self.sessions)


def cache_dir() -> Path:
    """Where session tables are stored (see the module docstring)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "portfolio_assets"


def build(name: str, start: dt.date, end: dt.date) -> SessionTable:
    """Evaluate the calendar with exchange_calendars (the slow path, and the reference)."""
    import exchange_calendars as xcals

    try:
        cal = xcals.get_calendar(name, start=pd.Timestamp(start), end=pd.Timestamp(end))
    except ValueError:
        # Some exchanges' rules start later than the span (XTKS can be evaluated from 1997): those
        # calendars begin at their own first evaluable date, `bound_min`. Any other refusal (e.g.
        # XSHG, whose holidays are recorded only to 2026) is raised as exchange_calendars words it.
        bound = type(xcals.get_calendar(name, end=pd.Timestamp(end))).bound_min()
        if bound is None or bound <= pd.Timestamp(start):
            raise
        cal = xcals.get_calendar(name, start=bound, end=pd.Timestamp(end))
    sessions = pd.DatetimeIndex(cal.sessions)
    if sessions.tz is not None:
        sessions = sessions.tz_localize(None)
    closes = pd.DatetimeIndex(cal.closes.to_numpy())
    closes = closes.tz_localize("UTC") if closes.tz is None else closes.tz_convert("UTC")
    return SessionTable(name, pd.DatetimeIndex(sessions.as_unit("ns"), name=None), closes.as_unit("ns"))


def _cache_file(name: str, start: dt.date, end: dt.date) -> Path:
    version = importlib.metadata.version("exchange_calendars")  # not the package: its import costs 0.1 s
    safe = "".join(c if c.isalnum() else "_" for c in name)
    return cache_dir() / "calendars" / f"xcals-{version}-f{FORMAT}" / f"{safe}_{start}_{end}.npz"


def _read(path: Path, name: str, key: str) -> SessionTable | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != key:
                return None
            return SessionTable(name, pd.DatetimeIndex(data["sessions"].astype("datetime64[ns]")),
                                pd.DatetimeIndex(data["closes"].astype("datetime64[ns]")).tz_localize("UTC"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:  # a truncated or foreign file: rebuilt below
        log.warning("session table %s unreadable (%s): rebuilding it", path, exc)
        return None


def _write(path: Path, table: SessionTable, key: str) -> None:
    from portfolio_assets.lakehouse import atomic_write

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, key=np.array(key), sessions=table.sessions.asi8, closes=table.closes.asi8)

    try:
        atomic_write(path, write)
    except OSError as exc:
        log.warning("session tables are not cached (%s: %s); each process builds them", path.parent, exc)


@functools.lru_cache(maxsize=16)
def session_table(name: str, start: dt.date, end: dt.date) -> SessionTable:
    """The sessions and closes of calendar `name` over [start, end]: from the disk cache, or built
    with exchange_calendars and stored there (once per process either way)."""
    path = _cache_file(name, start, end)
    key = f"{name}|{start}|{end}"
    table = _read(path, name, key)
    if table is None:
        table = build(name, start, end)
        _write(path, table, key)
    return table
