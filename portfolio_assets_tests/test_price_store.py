"""The columnar price store: round trip, idempotence, newest fetch wins, predicate pushdown,
concurrent writers in two processes, atomic parts, compaction, content fingerprints, and the
fetch-once-per-run window (`fetch.first_fetch`) with point-in-time reads."""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from portfolio_assets import price_store as ps
from portfolio_assets.fetch import fetch_into_cache, first_fetch
from portfolio_assets.lakehouse import Lakehouse
from portfolio_assets.ledger import price_fingerprint
from portfolio_assets.price_store import PriceStore, PriceStoreError, price_ref

T0 = dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC)


def bars(first: str, n: int, base: float = 100.0) -> pd.DataFrame:
    times = pd.date_range(first, periods=n, freq="D", tz="UTC")
    close = base + np.arange(n, dtype=float)
    return pd.DataFrame({"time": times, "open": close - 0.5, "high": close + 1.0, "low": close - 1.0,
                         "close": close, "volume": 1000.0 + np.arange(n)})


def bar_cols(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.loc[:, list(ps.BAR_FIELDS)].reset_index(drop=True)


@pytest.fixture
def store(tmp_path: Path) -> PriceStore:
    return PriceStore(tmp_path / "prices")


def test_round_trip_keeps_every_bar_and_type(store: PriceStore) -> None:
    given = {"AMEX:SPY": bars("2026-11-01", 10), "NASDAQ:AAPL": bars("2026-11-03", 5, 50.0)}
    part = store.write(given, "synthetic", T0, start=dt.date(2026, 11, 1), end=dt.date(2026, 11, 10))
    assert part is not None and ps.PART_RE.fullmatch(part.name)
    got = store.read_many(list(given))
    for symbol, frame in given.items():
        pd.testing.assert_frame_equal(bar_cols(got[symbol]), bar_cols(frame))
        assert (got[symbol]["source"] == "synthetic").all()
        assert (got[symbol]["fetched_at"] == pd.Timestamp(T0)).all()
    assert str(got["AMEX:SPY"]["time"].dtype) == "datetime64[ns, UTC]"
    assert store.symbols() == ["AMEX:SPY", "NASDAQ:AAPL"]
    (info,) = store.parts()
    assert (info.start, info.end, info.attempt, info.symbols) == (
        dt.date(2026, 11, 1), dt.date(2026, 11, 10), 0, frozenset(given))


def test_rewriting_the_same_bars_changes_no_read_and_no_fingerprint(store: PriceStore) -> None:
    given = {"AMEX:SPY": bars("2026-11-01", 10)}
    store.write(given, "synthetic", T0)
    once = store.read(["AMEX:SPY"]).drop(columns="fetched_at")
    fp = store.fingerprint("AMEX:SPY", dt.date(2026, 11, 1), dt.date(2026, 11, 10))
    store.write(given, "synthetic", T0 + dt.timedelta(hours=1))
    assert len(store.part_paths()) == 2
    pd.testing.assert_frame_equal(store.read(["AMEX:SPY"]).drop(columns="fetched_at"), once)
    assert store.fingerprint("AMEX:SPY", dt.date(2026, 11, 1), dt.date(2026, 11, 10)) == fp


def test_the_newest_fetch_wins_per_bar_whatever_the_write_order(store: PriceStore) -> None:
    old, new = bars("2026-11-01", 6), bars("2026-11-04", 6, 200.0)
    store.write({"AMEX:SPY": new}, "synthetic", T0 + dt.timedelta(days=1))  # newer fetch, written first
    store.write({"AMEX:SPY": old}, "synthetic", T0)
    got = store.read(["AMEX:SPY"])
    assert got["time"].is_monotonic_increasing and not got["time"].duplicated().any()
    assert got["close"].tolist() == [100.0, 101.0, 102.0, *new["close"].tolist()]


def test_filters_return_only_the_requested_symbols_and_days(store: PriceStore) -> None:
    for i in range(3):
        store.write({f"NYSE:S{i}{j}": bars("2026-10-01", 40, 10.0 * (i + 1)) for j in range(4)}, "synthetic",
                    T0 + dt.timedelta(minutes=i))
    got = store.read(["NYSE:S01", "NYSE:S22"], dt.date(2026, 10, 5), dt.date(2026, 10, 9))
    assert sorted(set(got["symbol"])) == ["NYSE:S01", "NYSE:S22"]
    days = got["time"].dt.date
    assert days.min() == dt.date(2026, 10, 5) and days.max() == dt.date(2026, 10, 9) and len(got) == 10
    assert store.read(["NYSE:X"]).empty
    many = store.read_many(["NYSE:S01", "NYSE:X"], dt.date(2026, 10, 5), dt.date(2026, 10, 9))
    assert len(many["NYSE:S01"]) == 5 and many["NYSE:X"].empty
    # Rows come from the one part that holds the symbol.
    scanned = store.scan(["NYSE:S13"])
    assert set(scanned["_part"].to_pylist()) == {1}
    with pytest.raises(PriceStoreError, match="start is after end"):
        store.read(["NYSE:S01"], dt.date(2026, 10, 9), dt.date(2026, 10, 5))


def test_bad_bars_are_refused(store: PriceStore) -> None:
    dup = pd.concat([bars("2026-11-01", 3), bars("2026-11-03", 1)], ignore_index=True)
    with pytest.raises(PriceStoreError, match="NASDAQ:AAPL: duplicated timestamps"):
        store.write({"NASDAQ:AAPL": dup}, "synthetic", T0)
    with pytest.raises(PriceStoreError, match="missing columns"):
        store.write({"NASDAQ:AAPL": bars("2026-11-01", 3).drop(columns="volume")}, "synthetic", T0)
    with pytest.raises(PriceStoreError, match="empty timestamp"):
        store.write({"NASDAQ:AAPL": bars("2026-11-01", 3).assign(time=pd.NaT)}, "synthetic", T0)
    assert store.part_paths() == []


def _writer(folder: str, tag: int, n_parts: int) -> None:
    store = PriceStore(folder)
    for k in range(n_parts):
        store.write({f"NYSE:P{tag}X{k}": bars("2026-11-01", 5, float(tag * 100 + k))}, "synthetic",
                    dt.datetime(2026, 11, 28, tzinfo=dt.UTC))  # the same fetched_at in both processes


def test_two_processes_writing_at_once_lose_nothing(store: PriceStore) -> None:
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(store.folder), tag, 15)) for tag in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert [p.exitcode for p in procs] == [0, 0]
    assert len(store.part_paths()) == 30
    got = store.read_many([f"NYSE:P{t}X{k}" for t in (1, 2) for k in range(15)])
    for t in (1, 2):
        for k in range(15):
            assert got[f"NYSE:P{t}X{k}"]["close"].iloc[0] == t * 100 + k


def test_a_write_that_fails_leaves_no_part(store: PriceStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.write({"AMEX:SPY": bars("2026-11-01", 5)}, "synthetic", T0)

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        store.write({"AMEX:SPY": bars("2026-11-01", 5, 999.0)}, "synthetic", T0 + dt.timedelta(hours=1))
    monkeypatch.undo()
    assert len(store.part_paths()) == 1
    assert [p.name for p in store.parts_dir.iterdir() if not p.name.startswith(".lock")] == [store.part_paths()[0].name]
    assert store.read(["AMEX:SPY"])["close"].iloc[0] == 100.0


def test_compaction_merges_parts_without_changing_a_read(store: PriceStore) -> None:
    store.write({"AMEX:SPY": bars("2026-11-01", 6)}, "synthetic", T0)
    store.write({"AMEX:SPY": bars("2026-11-04", 6, 200.0)}, "synthetic", T0 + dt.timedelta(hours=1))
    store.write({"NASDAQ:AAPL": bars("2026-11-01", 3)}, "synthetic", T0 + dt.timedelta(hours=2))
    before = store.read()
    assert store.compact() == 3
    assert len(store.part_paths()) == 1
    pd.testing.assert_frame_equal(store.read(), before)
    later = store.write({"AMEX:SPY": bars("2026-11-05", 1, 7.0)}, "synthetic", pd.Timestamp.now(tz="UTC"))
    assert store.compact(keep_recent_s=3600) == 0  # one old part and a recent one: nothing to merge
    assert later in store.part_paths()


def test_parts_of_finished_runs_merge_young_but_only_as_a_prefix_of_the_fetch_order(store: PriceStore) -> None:
    """With `finished`, young parts of finished runs merge; the merge stops at the first part
    of a run still going (later parts of finished runs wait for it), and a compaction's own part
    never holds one back. Reads never change: run B's repair sits between run A's fault and run
    C's re-delivery of it; merging A and C without B would keep C's faulty row as newest."""
    now = pd.Timestamp.now(tz="UTC")
    clean = bars("2026-11-01", 6)
    bad = with_tick(clean, 3, 2500.0)
    live = {"run-b"}

    def finished(scope: str) -> bool:
        return scope.split("@")[0] not in live

    store.write({"AMEX:XLF": bad}, "synthetic", now - dt.timedelta(seconds=40), scope="run-a@2026-11-06")
    store.write({"AMEX:SPY": clean}, "synthetic", now - dt.timedelta(seconds=30), scope="run-a@2026-11-06")
    store.write({"AMEX:XLF": clean}, "synthetic", now - dt.timedelta(seconds=20), attempt=1,
                scope="run-b@2026-11-06")
    store.write({"AMEX:XLF": bad}, "synthetic", now - dt.timedelta(seconds=10), scope="run-c@2026-11-06")
    before = store.read()
    assert before.loc[before["symbol"] == "AMEX:XLF", "close"].iloc[3] == clean["close"].iloc[3]
    assert store.compact(keep_recent_s=3600) == 0  # every part is young and no run is known finished
    assert store.compact(keep_recent_s=3600, finished=finished, min_parts=3) == 0  # only run A's 2 parts qualify
    assert store.compact(keep_recent_s=3600, finished=finished) == 2  # run A's; B holds C back
    pd.testing.assert_frame_equal(store.read(), before)
    assert [p.scope for p in store.parts()] == [ps.COMPACTED, "run-b@2026-11-06", "run-c@2026-11-06"]
    live.clear()  # run B ends: the young compacted part does not hold anything back
    assert store.compact(keep_recent_s=3600, finished=finished) == 3
    pd.testing.assert_frame_equal(store.read(), before)
    assert [p.scope for p in store.parts()] == [ps.COMPACTED]


def test_a_fetch_in_progress_holds_compaction_off(tmp_path: Path) -> None:
    """From a fetch's time stamp to its part's write, no compaction runs (else a part fetched
    before a merged one could appear after the merge)."""
    lake = Lakehouse(tmp_path, "demo")
    store = lake.price_store()
    store.write({"AMEX:SPY": bars("2026-11-01", 3)}, "synthetic", T0)
    store.write({"AMEX:SPY": bars("2026-11-02", 3)}, "synthetic", T0 + dt.timedelta(hours=1))
    seen: list[int] = []

    class Compacting(CountingSource):
        def bars(self, symbol: str, start: dt.date, end: dt.date, *, attempt: int = 0) -> pd.DataFrame:
            seen.append(store.compact(blocking=False))
            return super().bars(symbol, start, end, attempt=attempt)

    fetch_into_cache(Compacting(), lake, ["AMEX:SPY"], dt.date(2026, 11, 1), dt.date(2026, 11, 20))
    assert seen == [0] and len(store.part_paths()) == 3
    assert store.compact(blocking=False) == 3


def with_tick(frame: pd.DataFrame, row: int, close: float) -> pd.DataFrame:
    """`frame` with a bad tick: bar `row`'s close (and high) set to `close`."""
    out = frame.copy()
    out.loc[row, ["close", "high"]] = close
    return out


def test_a_first_fetch_re_delivering_a_repaired_fault_does_not_undo_the_repair(store: PriceStore) -> None:
    """Run A's first fetch has a bad tick, its recovery re-fetch repairs it; run B's first fetch
    (attempt 0) delivers the same bad tick again. The repair stands (reads and fingerprints): B's
    re-delivery must not flip the bar back while B has not repaired it, or a seal taken by A in
    between fails verification for bars that did not change. A first fetch with a new value (a
    revision) still wins, and a bar without a repair stays newest-wins."""
    clean = bars("2026-11-01", 6)
    bad = with_tick(clean, 3, 2500.0)
    day = (dt.date(2026, 11, 1), dt.date(2026, 11, 6))
    store.write({"AMEX:XLF": bad, "AMEX:SPY": clean}, "synthetic", T0)  # A: first fetch
    assert store.read(["AMEX:XLF"])["close"].iloc[3] == 2500.0  # newest (and only) fetch
    store.write({"AMEX:XLF": clean}, "synthetic", T0 + dt.timedelta(seconds=1), attempt=1)  # A: repair
    sealed = store.fingerprint("AMEX:XLF", *day)
    assert sealed == store.fingerprints({"AMEX:XLF": day}, trust_statistics=False)["AMEX:XLF"]
    store.write({"AMEX:XLF": bad, "AMEX:SPY": with_tick(clean, 2, 9.0)}, "synthetic",
                T0 + dt.timedelta(seconds=2))  # B: first fetch, the same fault again
    got = store.read(["AMEX:XLF", "AMEX:SPY"])
    xlf, spy = got[got["symbol"] == "AMEX:XLF"], got[got["symbol"] == "AMEX:SPY"]
    assert xlf["close"].tolist() == clean["close"].tolist()  # the repair stands
    assert xlf["fetched_at"].iloc[3] == pd.Timestamp(T0 + dt.timedelta(seconds=1))  # the repair's row
    assert xlf["fetched_at"].iloc[0] == pd.Timestamp(T0 + dt.timedelta(seconds=2))  # unchanged bars: newest
    assert spy["close"].iloc[2] == 9.0  # no repair of SPY: the newest fetch wins, as always
    assert store.fingerprint("AMEX:XLF", *day) == sealed
    assert store.fingerprints({"AMEX:XLF": day}, trust_statistics=False)["AMEX:XLF"] == sealed  # the verifier's read
    # Compaction keeps what the rule needs: a later re-delivery still does not undo the repair.
    before = store.read()
    assert store.compact() == 3
    pd.testing.assert_frame_equal(store.read(), before)
    store.write({"AMEX:XLF": bad}, "synthetic", T0 + dt.timedelta(seconds=3))
    assert store.fingerprint("AMEX:XLF", *day) == sealed
    # A revision (a value never replaced) wins; so does a later repair.
    store.write({"AMEX:XLF": with_tick(clean, 3, 103.25)}, "synthetic", T0 + dt.timedelta(seconds=4))
    assert store.read(["AMEX:XLF"])["close"].iloc[3] == 103.25
    store.write({"AMEX:XLF": clean}, "synthetic", T0 + dt.timedelta(seconds=5), attempt=2)
    assert store.fingerprint("AMEX:XLF", *day) == sealed


def test_parts_written_before_the_attempt_column_read_as_first_fetches(store: PriceStore) -> None:
    """A part without the `attempt` column (written before it existed) reads as a first fetch:
    the newest fetch wins, as it did."""
    old = ps.bars_table({"AMEX:SPY": bars("2026-11-01", 3)}, "synthetic", T0).drop_columns(["attempt"])
    store.parts_dir.mkdir(parents=True)
    pq.write_table(old.replace_schema_metadata({"pa.attempt": "1"}),
                   store.parts_dir / f"part-{pd.Timestamp(T0).value:020d}-1-{'0' * 16}.parquet")
    store.write({"AMEX:SPY": bars("2026-11-01", 3, 7.0)}, "synthetic", T0 + dt.timedelta(seconds=1))
    got = store.read(["AMEX:SPY"])
    assert got["close"].tolist() == [7.0, 8.0, 9.0] and list(got.columns) == ["symbol", *ps.PRICE_COLUMNS]
    assert store.scan(["AMEX:SPY"])["attempt"].to_pylist() == [None] * 3 + [0] * 3


def test_fingerprint_is_of_content_and_equals_the_old_per_file_hash(store: PriceStore, tmp_path: Path) -> None:
    spy = bars("2026-11-01", 10)
    store.write({"AMEX:SPY": spy.iloc[:6]}, "synthetic", T0)
    store.write({"AMEX:SPY": spy.iloc[6:], "NASDAQ:AAPL": bars("2026-11-01", 3)}, "synthetic", T0)
    first, last = dt.date(2026, 11, 1), dt.date(2026, 11, 10)
    fp = store.fingerprint("AMEX:SPY", first, last)
    legacy = tmp_path / "legacy.parquet"
    spy.assign(source="x", fetched_at=pd.Timestamp(T0)).to_parquet(legacy)
    assert price_fingerprint(legacy, "2026-11-10") == fp  # the same bars hash alike in either layout
    assert store.fingerprint("AMEX:SPY", first, dt.date(2026, 11, 9)) != fp
    ref = price_ref("AMEX:SPY", first, last)
    assert ref == "prices/AMEX__SPY@2026-11-01..2026-11-10"
    assert price_fingerprint(store.folder.parent / ref, "2026-11-10") == fp
    assert price_fingerprint(store.folder.parent / ref, "2026-11-09") == store.fingerprint("AMEX:SPY", first, dt.date(2026, 11, 9))
    with pytest.raises(FileNotFoundError):
        store.fingerprint("NYSE:NONE", first, last)
    # an edited bar in a part changes the hash
    part = store.part_paths()[0]
    table = pq.read_table(part)
    frame = table.to_pandas()
    frame.loc[2, "close"] += 0.01
    pq.write_table(type(table).from_pandas(frame, schema=table.schema, preserve_index=False), part)
    assert store.fingerprint("AMEX:SPY", first, last) != fp
    assert price_fingerprint(store.folder.parent / ref, "2026-11-10") != fp


class CountingSource:
    name = "counting"

    def __init__(self) -> None:
        self.calls: list[tuple[str, dt.date, dt.date, int]] = []

    def bars(self, symbol: str, start: dt.date, end: dt.date, *, attempt: int = 0) -> pd.DataFrame:
        self.calls.append((symbol, start, end, attempt))
        whole = bars("2026-09-01", 120, 10.0 + len(symbol))
        day = whole["time"].dt.date
        return whole[(day >= start) & (day <= end)].reset_index(drop=True)


def test_a_window_is_fetched_once_per_scope_and_narrower_reads_match_the_source(tmp_path: Path) -> None:
    lake = Lakehouse(tmp_path, "demo")
    source = CountingSource()
    symbols = ["AMEX:SPY", "NYSE:IBM"]
    end = dt.date(2026, 11, 25)
    widest = dict.fromkeys(symbols, dt.date(2026, 9, 10))
    wide = first_fetch(source, lake, symbols, dt.date(2026, 10, 1), end, scope="run-1@2026-11-25", widest=widest)
    assert [c[1:] for c in source.calls] == [(dt.date(2026, 9, 10), end, 0)] * 2  # the widest window
    narrow = first_fetch(source, lake, symbols, dt.date(2026, 11, 1), end, scope="run-1@2026-11-25", widest=widest)
    assert len(source.calls) == 2  # read back, not fetched again
    for s in symbols:
        direct = CountingSource().bars(s, dt.date(2026, 11, 1), end)
        pd.testing.assert_frame_equal(bar_cols(narrow[s]), bar_cols(direct))
        assert bar_cols(wide[s])["time"].dt.date.min() == dt.date(2026, 10, 1)
    # Point in time: a window ending earlier is never served from a fetch that reaches later.
    earlier = first_fetch(source, lake, ["AMEX:SPY"], dt.date(2026, 11, 1), dt.date(2026, 11, 20),
                          scope="run-1@2026-11-25", widest=widest)
    assert earlier["AMEX:SPY"]["time"].dt.date.max() == dt.date(2026, 11, 20)
    assert source.calls[-1][2] == dt.date(2026, 11, 20)
    # Another run fetches for itself.
    first_fetch(source, lake, ["AMEX:SPY"], dt.date(2026, 11, 1), end, scope="run-2@2026-11-25", widest=widest)
    assert source.calls[-1][0] == "AMEX:SPY" and len(source.calls) == 4


def test_parts_of_finished_runs_merge_once_they_add_a_quarter_of_the_oldest_part(tmp_path: Path) -> None:
    """`fetch.compact_store`: a merge rewrites the oldest (largest) part too, so the parts of
    finished runs merge once more than 48 parts are stored and the newer ones hold >= 25% of the
    oldest's bytes; past 256 parts they merge whatever their size. Runs still going hold theirs."""
    from portfolio_assets import fetch

    lake = Lakehouse(tmp_path, "demo")
    store = lake.price_store()
    now = pd.Timestamp.now(tz="UTC")
    live: set[str] = set()

    def finished(scope: str) -> bool:
        return scope.split("@")[0] not in live

    rng = np.random.default_rng(7)

    def noisy(n_symbols: int, prefix: str) -> dict[str, pd.DataFrame]:  # bars that do not compress away
        out = {}
        for i in range(n_symbols):
            frame = bars("2025-01-01", 500)
            frame[["open", "high", "low", "close", "volume"]] = rng.uniform(1.0, 2.0, (500, 5))
            out[f"NYSE:{prefix}{i:03d}"] = frame
        return out

    big = noisy(200, "B")
    store.write(big, "synthetic", now - dt.timedelta(minutes=20), scope="run-0@2026-11-30")
    for k in range(48):
        store.write({f"NYSE:S{k:03d}": bars("2026-11-01", 5)}, "synthetic", now - dt.timedelta(seconds=600 - k),
                    scope="run-1@2026-12-01")
    assert fetch.compact_store(lake, finished) == 0  # 49 parts, but little new next to the oldest
    assert sum(p.stat().st_size for p in store.part_paths()[1:]) < 0.25 * store.part_paths()[0].stat().st_size
    more = noisy(60, "M")
    store.write(more, "synthetic", now - dt.timedelta(seconds=60), scope="run-2@2026-12-02")
    live.add("run-1")
    assert fetch.compact_store(lake, finished) == 0  # run 1 still going holds its parts and all after
    assert fetch.compact_store(lake) == 0  # without run statuses: only parts older than 6 h merge
    live.clear()
    before = store.read()
    assert fetch.compact_store(lake, finished) == 50
    pd.testing.assert_frame_equal(store.read(), before)
    for k in range(257):
        store.write({"NYSE:T": bars("2026-11-01", 1, float(k))}, "synthetic", now + dt.timedelta(seconds=k),
                    scope="run-3@2026-12-03")
    assert fetch.compact_store(lake, finished) == 258  # past 256 parts: whatever the new bytes
