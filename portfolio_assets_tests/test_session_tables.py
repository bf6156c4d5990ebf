"""Session tables: exchange_calendars' sessions and closes, stored once and read back unchanged."""

from __future__ import annotations

import datetime as dt
import logging

import exchange_calendars as xcals
import numpy as np
import pandas as pd
import pytest

from portfolio_assets import session_tables
from portfolio_assets.session_tables import SessionTable, session_table

SPAN = (dt.date(1990, 1, 2), dt.date(2030, 12, 31))


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(session_tables.CACHE_ENV, str(tmp_path / "cache"))
    session_table.cache_clear()
    yield tmp_path / "cache"
    session_table.cache_clear()


def _reference(name: str, start: dt.date, end: dt.date) -> xcals.ExchangeCalendar:
    first = {"XTKS": dt.date(1997, 1, 1)}.get(name, start)  # XTKS's rules can be evaluated from 1997
    return xcals.get_calendar(name, start=pd.Timestamp(max(start, first)), end=pd.Timestamp(end))


@pytest.mark.parametrize("name", ["XNYS", "CMES", "XLON", "XTKS"])
def test_a_stored_table_read_back_equals_exchange_calendars(name, private_cache):
    ref = _reference(name, *SPAN)
    built = session_table(name, *SPAN)
    files = list(private_cache.rglob("*.npz"))
    assert [f.name for f in files] == [f"{name}_1990-01-02_2030-12-31.npz"]
    assert f"xcals-{xcals.__version__}-f{session_tables.FORMAT}" == files[0].parent.name
    session_table.cache_clear()
    read = session_table(name, *SPAN)  # from the file this time
    for table in (built, read):
        assert table.sessions.equals(pd.DatetimeIndex(ref.sessions))
        assert table.closes.equals(pd.DatetimeIndex(ref.closes.to_numpy()).tz_convert("UTC"))
    # Spot checks by hand: Thanksgiving 2026 is closed, the Friday after closes early (13:00 New York).
    if name == "XNYS":
        assert not read.is_session("2026-11-26") and read.is_session("2026-11-27")
        assert read.session_close("2026-11-27") == pd.Timestamp("2026-11-27 18:00", tz="UTC")
        assert read.session_close("2026-11-25") == pd.Timestamp("2026-11-25 21:00", tz="UTC")
        assert list(read.sessions_in_range("2026-11-25", "2026-11-30").date.astype(str)) == [
            "2026-11-25", "2026-11-27", "2026-11-30"]


def test_the_range_queries_agree_with_exchange_calendars_on_every_boundary():
    ref = _reference("XNYS", *SPAN)
    table = session_table("XNYS", *SPAN)
    rng = np.random.default_rng(7)
    days = pd.Timestamp("1990-01-02") + pd.to_timedelta(rng.integers(0, 14_900, 200), unit="D")
    for lo, hi in zip(days[:100], days[100:], strict=True):
        lo, hi = min(lo, hi), max(lo, hi)
        assert table.sessions_in_range(lo, hi).equals(pd.DatetimeIndex(ref.sessions_in_range(lo, hi)))
    for day in days:
        assert table.is_session(day) == ref.is_session(day)


def test_a_day_that_is_not_a_session_has_no_close():
    with pytest.raises(ValueError, match="^2026-11-26 is not a XNYS session$"):
        session_table("XNYS", *SPAN).session_close("2026-11-26")


def test_a_damaged_or_foreign_file_is_rebuilt_and_replaced(private_cache, caplog):
    session_table("XNYS", *SPAN)
    path = next(private_cache.rglob("*.npz"))
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])  # a truncated copy
    session_table.cache_clear()
    with caplog.at_level(logging.WARNING, logger="portfolio_assets.session_tables"):
        table = session_table("XNYS", *SPAN)
    assert "unreadable" in caplog.text and "rebuilding it" in caplog.text
    assert table.sessions.equals(pd.DatetimeIndex(_reference("XNYS", *SPAN).sessions))
    assert path.read_bytes() == good  # replaced by a whole table again
    # A file of another key under this name (copied by hand) is not taken either.
    other = session_table("XNYS", dt.date(2000, 1, 3), dt.date(2030, 12, 31))
    session_table.cache_clear()
    path.write_bytes(next(p for p in private_cache.rglob("*.npz") if p != path).read_bytes())
    assert len(session_table("XNYS", *SPAN).sessions) > len(other.sessions)


def test_an_unwritable_cache_folder_builds_in_memory_and_says_so(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    monkeypatch.setenv(session_tables.CACHE_ENV, str(blocker))
    with caplog.at_level(logging.WARNING, logger="portfolio_assets.session_tables"):
        table = session_table("XNYS", *SPAN)
    assert "session tables are not cached" in caplog.text
    assert table.is_session("2026-11-25")


def test_a_table_that_breaks_its_invariants_is_refused():
    days = pd.DatetimeIndex(["2026-11-25", "2026-11-24"])
    closes = pd.DatetimeIndex(["2026-11-25 21:00", "2026-11-24 21:00"], tz="UTC")
    with pytest.raises(ValueError, match="^X: sessions are not strictly increasing$"):
        SessionTable("X", days, closes)
    with pytest.raises(ValueError, match="^X: 2 sessions but 1 closes$"):
        SessionTable("X", days[::-1], closes[:1])
