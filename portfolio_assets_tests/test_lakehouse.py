import datetime as dt
import os

import numpy as np
import pandas as pd
import pytest

from portfolio_assets import lakehouse as lh
from portfolio_assets.lakehouse import Lakehouse, UnsafePathError
from portfolio_assets.symbols import InvalidSymbolError


@pytest.fixture
def lake(tmp_path):
    return Lakehouse(tmp_path, "demo")


def frame(v: float) -> pd.DataFrame:
    return pd.DataFrame({"a": [v, v + 1], "b": ["x", "y"]})


def test_write_is_idempotent_and_replaces(lake):
    lake.write_table("universe", "raw_pool", "2024-07-05", frame(1.0))
    lake.write_table("universe", "raw_pool", "2024-07-05", frame(2.0))
    pd.testing.assert_frame_equal(lake.read_table("universe", "raw_pool", "2024-07-05"), frame(2.0))
    files = list((lake.root / "universe" / "raw_pool").iterdir())
    assert [f.name for f in files] == ["2024-07-05.parquet"]  # no temp files left


def test_exception_mid_write_leaves_previous_partition_intact(lake, monkeypatch):
    lake.write_table("universe", "raw_pool", "2024-07-05", frame(1.0))

    def boom(table, where, **kw):
        with open(where, "wb") as fh:
            fh.write(b"PAR1 half written")
        raise OSError("disk full")

    monkeypatch.setattr(lh.pq, "write_table", boom)
    with pytest.raises(OSError, match="disk full"):
        lake.write_table("universe", "raw_pool", "2024-07-05", frame(9.0))
    monkeypatch.undo()
    pd.testing.assert_frame_equal(lake.read_table("universe", "raw_pool", "2024-07-05"), frame(1.0))
    assert [f.name for f in (lake.root / "universe" / "raw_pool").iterdir()] == ["2024-07-05.parquet"]


def test_path_safety(lake, tmp_path):
    with pytest.raises(UnsafePathError, match="invalid partition '../x'"):
        lake.table_path("universe", "raw_pool", "../x")
    with pytest.raises(UnsafePathError, match="invalid asset name"):
        lake.table_path("universe", "../../etc", "2024-07-05")
    with pytest.raises(UnsafePathError, match="invalid profile name"):
        Lakehouse(tmp_path, "../other")
    with pytest.raises(InvalidSymbolError, match="invalid symbol '../AMEX:SPY'"):
        lake.price_path("../AMEX:SPY")
    with pytest.raises(InvalidSymbolError):
        lake.price_path("AMEX:SPY/../../x")
    with pytest.raises(UnsafePathError, match="must be relative"):
        lake.report_path("2024-07-05", "../../secrets.md")


def test_price_cache_merges_and_deduplicates(lake):
    t = pd.date_range("2024-07-01", periods=3, tz="UTC")
    b1 = pd.DataFrame({"time": t, "open": 1.0, "high": 1.0, "low": 1.0, "close": [1.0, 2.0, 3.0], "volume": 5.0})
    lake.merge_prices("AMEX:SPY", b1, "synthetic", dt.datetime(2024, 7, 4, tzinfo=dt.UTC))
    b2 = b1.iloc[1:].assign(close=[20.0, 30.0])
    b2 = pd.concat([b2, b1.iloc[:1].assign(time=pd.Timestamp("2024-07-05", tz="UTC"), close=5.0)])
    merged = lake.merge_prices("AMEX:SPY", b2.iloc[::-1], "synthetic", dt.datetime(2024, 7, 6, tzinfo=dt.UTC))
    assert merged["close"].tolist() == [1.0, 20.0, 30.0, 5.0]  # newest fetch wins, sorted, unique
    assert merged["time"].is_monotonic_increasing
    assert lake.cached_symbols() == ["AMEX:SPY"]


def test_clear_partition_never_touches_price_cache(lake):
    t = pd.date_range("2024-07-01", periods=2, tz="UTC")
    lake.merge_prices("AMEX:SPY", pd.DataFrame({"time": t, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0}),
                      "synthetic", dt.datetime.now(dt.UTC))
    lake.write_table("universe", "raw_pool", "2024-07-05", frame(1.0))
    lake.write_table("universe", "raw_pool", "2024-07-08", frame(1.0))
    lake.write_table("run", "run_manifest", "2024-07-05", frame(1.0))
    removed = lake.clear_partition("2024-07-05")
    assert removed == ["universe/raw_pool/2024-07-05.parquet"]
    assert lake.has_table("universe", "raw_pool", "2024-07-08") and lake.has_table("run", "run_manifest", "2024-07-05")
    assert lake.price_path("AMEX:SPY").exists()


def test_duckdb_views_over_every_asset(lake):
    lake.write_table("universe", "raw_pool", "2024-07-05", frame(1.0))
    lake.write_table("universe", "raw_pool", "2024-07-08", frame(3.0))
    lake.write_table("universe", "raw_pool", "2024-07-08", frame(1.0), part="audit")
    con = lake.duckdb()
    got = con.execute('SELECT partition, sum(a) FROM raw_pool GROUP BY 1 ORDER BY 1').fetchall()
    assert got == [("2024-07-05", 3.0), ("2024-07-08", 7.0)]
    assert con.execute("SELECT count(*) FROM raw_pool__audit").fetchone() == (2,)
    path = lake.write_catalog()
    assert path.exists() and not any(p.name.endswith(".tmp") for p in path.parent.iterdir())


def test_no_pickle_anywhere_in_the_package():
    root = lh.PROJECT_ROOT / "portfolio_assets"
    offenders = [p for p in root.rglob("*.py") if "import pickle" in p.read_text() or "pickle.load" in p.read_text()]
    assert offenders == []
    assert np.__name__ and os.sep
