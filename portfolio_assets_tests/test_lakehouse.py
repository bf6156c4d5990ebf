import datetime as dt
import os

import numpy as np
import pandas as pd
import pytest

from portfolio_assets import lakehouse as lh
from portfolio_assets.lakehouse import Lakehouse, UnsafePathError
from portfolio_assets.manifest import PROJECT_ROOT
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


def test_tables_are_stored_without_pandas_index_columns(lake):
    import pyarrow.parquet as pq

    filtered = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": list("xyz")}).iloc[[2, 0]]  # a leftover index 2, 0
    path = lake.write_table("universe", "raw_pool", "2024-07-05", filtered)
    assert pq.read_schema(path).names == ["a", "b"]
    pd.testing.assert_frame_equal(lake.read_table("universe", "raw_pool", "2024-07-05"), filtered.reset_index(drop=True))
    sessions = pd.DataFrame({"x": [0.1, 0.2]}, index=pd.DatetimeIndex(["2024-07-03", "2024-07-05"], name="session"))
    path = lake.write_table("universe", "returns_60d", "2024-07-05", sessions)
    assert pq.read_schema(path).names == ["x", "session"]  # a named index is an ordinary column ...
    pd.testing.assert_frame_equal(lake.read_table("universe", "returns_60d", "2024-07-05"), sessions)  # ... and comes back
    with pytest.raises(ValueError, match="name every level or none"):
        lh.stored_form(pd.DataFrame({"x": [1]}, index=pd.MultiIndex.from_tuples([("a", 1)], names=["k", None])))


def test_read_back_is_what_the_file_gives_back(lake):
    from portfolio_assets.ledger import file_hash, frame_hash

    df = pd.DataFrame({"n": pd.array([1, None], dtype="Int32"), "s": ["a", "b"]}).iloc[[1, 0]]
    path = lake.write_table("universe", "raw_pool", "2024-07-05", df)
    assert frame_hash(lh.read_back(df)) == file_hash(path)


def test_publish_dir_swaps_a_whole_folder_and_keeps_the_old_one_on_failure(lake):
    target = lake.files_dir("risk_buckets", "2024-07-05")

    def build(files: dict[str, str]):
        def write(stage):
            for name, text in files.items():
                (stage / name).write_text(text)
            return sorted(files)
        return write

    assert lh.publish_dir(target, build({"a.md": "1", "b.md": "2"})) == ["a.md", "b.md"]
    assert target.is_symlink() and sorted(p.name for p in target.iterdir()) == ["a.md", "b.md"]
    lh.publish_dir(target, build({"a.md": "3"}))
    assert sorted(p.name for p in target.iterdir()) == ["a.md"] and (target / "a.md").read_text() == "3"  # b.md gone

    def fail(stage):
        (stage / "a.md").write_text("half")
        raise RuntimeError("plot failed")

    with pytest.raises(RuntimeError, match="plot failed"):
        lh.publish_dir(target, fail)
    assert (target / "a.md").read_text() == "3"
    versions = target.parent / f".{target.name}.versions"
    assert len(list(versions.iterdir())) == 1  # the failed stage and the replaced versions are gone
    assert lake.relative(target / "a.md") == "files/risk_buckets/2024-07-05/a.md"  # as named, not resolved


def test_publish_dir_takes_over_a_plain_folder(lake):
    target = lake.reports_dir("2024-07-05")
    target.mkdir(parents=True)
    (target / "old.md").write_text("old")
    lh.publish_dir(target, lambda stage: (stage / "new.md").write_text("new"))
    assert target.is_symlink() and [p.name for p in target.iterdir()] == ["new.md"]


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


def test_duckdb_views_hide_index_columns_and_keep_one_partition_column(lake):
    import pyarrow as pa
    import pyarrow.parquet as pq

    manifest = pd.DataFrame([{"partition": "2024-07-05", "profile": "demo"}])
    lake.write_table("run", "run_manifest", "2024-07-05", manifest)
    legacy = lake.table_path("universe", "raw_pool", "2024-07-08")  # written before tables dropped the index
    legacy.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(frame(1.0).iloc[[1, 0]], preserve_index=True), legacy)
    assert "__index_level_0__" in pq.read_schema(legacy).names
    con = lake.duckdb()
    assert [c[0] for c in con.execute("DESCRIBE run_manifest").fetchall()] == ["partition", "profile"]
    assert [c[0] for c in con.execute("DESCRIBE raw_pool").fetchall()] == ["partition", "a", "b"]


@pytest.mark.parametrize("folder", ["o'brien lake", "a[1]b", "a*b", "a?b", "lake {1}"])
def test_duckdb_views_of_a_root_with_quotes_or_wildcards_read_that_root_only(tmp_path, folder):
    """A quote used to break the SQL; `*`, `?` and `[` were DuckDB wildcards, so a root `a*b` also
    read its sibling `a?b`'s tables and `a[1]b` found none. Every sibling holds a different table."""
    names = ["o'brien lake", "a[1]b", "a*b", "a?b", "lake {1}", "a1b", "aXb"]
    for i, name in enumerate(names):
        Lakehouse(tmp_path / name, "demo").write_table("universe", "raw_pool", "2024-07-05", frame(10.0 * i))
        Lakehouse(tmp_path / name, "demo").write_prices(
            {"NYSE:XOM": pd.DataFrame({"time": pd.to_datetime(["2024-07-05"], utc=True), "open": [1.0 + i],
                                       "high": [1.0 + i], "low": [1.0 + i], "close": [1.0 + i], "volume": [1.0]})},
            "test", dt.datetime(2024, 7, 6, tzinfo=dt.UTC))
    con = Lakehouse(tmp_path / folder, "demo").duckdb()
    i = names.index(folder)
    assert con.execute("SELECT partition, sum(a) FROM raw_pool GROUP BY 1").fetchall() == [("2024-07-05", 20.0 * i + 1)]
    assert con.execute("SELECT symbol, close FROM prices").fetchall() == [("NYSE:XOM", 1.0 + i)]


def test_duckdb_views_refuse_a_root_with_a_backslash(tmp_path):
    lake = Lakehouse(tmp_path / "a\\b", "demo")
    lake.write_table("universe", "raw_pool", "2024-07-05", frame(1.0))
    with pytest.raises(ValueError) as err:
        lake.duckdb()
    assert str(err.value) == (f"the lakehouse folder {lake.root / 'universe' / 'raw_pool'} contains a backslash, "
                              "which DuckDB's file globs cannot match; use a lakehouse root without one for SQL views")


def test_no_pickle_anywhere_in_the_package():
    root = PROJECT_ROOT / "portfolio_assets"
    offenders = [p for p in root.rglob("*.py") if "import pickle" in p.read_text() or "pickle.load" in p.read_text()]
    assert offenders == []
    assert np.__name__ and os.sep


def test_the_root_is_a_path_or_a_file_url(tmp_path, monkeypatch):
    """`PA_LAKEHOUSE` / a resource's root: a path, `~`-expanded, or a `file://` URL (percent-decoded)."""
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "a lake"
    assert Lakehouse(str(target), "demo").root == target / "demo"
    assert Lakehouse("rel/lake", "demo").root == tmp_path / "rel" / "lake" / "demo"
    assert Lakehouse("file://" + str(target).replace(" ", "%20"), "demo").root == target / "demo"
    assert Lakehouse("file://localhost" + str(target), "demo").root == target / "demo"
    monkeypatch.setenv("PA_LAKEHOUSE", f"file://{target}")
    assert Lakehouse(profile="demo").base == target
    monkeypatch.setenv("HOME", str(tmp_path))
    assert Lakehouse("~/lake", "demo").base == tmp_path / "lake"


@pytest.mark.parametrize("url, problem", [
    ("gs://bucket/lake", "is a gs:// URL; the lakehouse root must be a local path, a file:// URL or an s3:// URL "
                         "(the object-store layer relies on S3's conditional writes), or mount the storage at the "
                         "same path on every host (docs/deployment.md)"),
    ("GS://bucket", "is a GS:// URL; the lakehouse root must be a local path, a file:// URL or an s3:// URL"),
    ("file://otherhost/lake", "is not a local file:// URL (file:///absolute/path)"),
    ("file:///lake?x=1", "is not a local file:// URL (file:///absolute/path)"),
])
def test_a_url_other_than_s3_or_file_is_refused_not_taken_for_a_folder(url, problem, tmp_path, monkeypatch):
    """`gs://bucket/lake` would become the relative folder `./gs:/bucket/lake`: it is refused, and
    nothing is created (`s3://` is the object-store lakehouse, test_lake_mirror.py)."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as err:
        Lakehouse(url, "demo")
    assert str(err.value).startswith(f"{url!r} {problem}")
    assert list(tmp_path.iterdir()) == []
