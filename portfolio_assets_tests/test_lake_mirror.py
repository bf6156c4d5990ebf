"""The lakehouse on object storage (`lake_mirror`): two hosts, each with its own working copy, on
one S3 bucket served by moto's server (conditional writes included), in this process.

A "host" is a `PA_CACHE_DIR`: the working copy lives under it, so two cache folders share nothing
but the bucket, as two machines would. The whole daily graph on two celery workers, each with its
own working copy, is the bench's celery row (`benchmarks/executors.py`), asserted by
`benchmarks/test_bench.py::test_the_daily_graph_on_two_celery_workers_stores_the_in_process_tables`."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from portfolio_assets_tests.graph_helpers import environment

BUCKET = "pa-lake"


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    """moto's S3 server on a free port (the bench's `moto_s3`); yields the bucket, with AWS_* set."""
    from benchmarks.object_store import moto_s3

    with moto_s3(BUCKET):
        yield BUCKET


@pytest.fixture
def url(s3: str, request: pytest.FixtureRequest) -> str:
    """A fresh prefix of the bucket for each test."""
    return f"s3://{s3}/{request.node.name[:60].replace('[', '_').replace(']', '_')}-{time.time_ns()}"


@contextlib.contextmanager
def host(tmp_path: Path, name: str) -> Iterator[Path]:
    """Act as host `name`: its own cache folder (and so its own working copy)."""
    cache = tmp_path / f"host-{name}"
    with environment(PA_CACHE_DIR=str(cache)):
        yield cache


def lake(url: str, profile: str = "demo"):
    from portfolio_assets.lakehouse import Lakehouse

    return Lakehouse(url, profile)


def frame(n: int, seed: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame({"symbol": [f"X:S{i}" for i in range(n)], "weight": [seed + i / 10 for i in range(n)]})


def objects(url: str) -> list[str]:
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)
    root = url.removeprefix("s3://")
    return sorted(k[len(root) + 1:] for k in fs.find(root))


def test_a_table_written_on_one_host_is_read_on_another_and_a_rewrite_reaches_it(tmp_path, url):
    with host(tmp_path, "a"):
        a = lake(url)
        a.write_table("weights", "target_weights", "2026-11-25", frame(3))
    with host(tmp_path, "b"):
        b = lake(url)
        assert b.root != a.root  # two working copies
        pd.testing.assert_frame_equal(b.read_table("weights", "target_weights", "2026-11-25"), frame(3))
    assert "demo/weights/target_weights/2026-11-25.parquet" in objects(url)
    with host(tmp_path, "a"):
        lake(url).write_table("weights", "target_weights", "2026-11-25", frame(4, 1.0))
    with host(tmp_path, "b"):
        pd.testing.assert_frame_equal(lake(url).read_table("weights", "target_weights", "2026-11-25"), frame(4, 1.0))


def _read_in_child(url: str, out) -> None:
    out.put(len(lake(url).read_table("weights", "target_weights", "2026-11-25")))


def test_a_working_copy_opened_before_a_fork_is_used_in_the_child(tmp_path, url):
    """s3fs refuses use after a fork ("not fork-safe"); a celery pool or a forking executor forks
    processes that inherit the opened working copy, so each process makes its own client."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    with host(tmp_path, "a"):
        lake(url).write_table("weights", "target_weights", "2026-11-25", frame(3))
        out = ctx.Queue()
        child = ctx.Process(target=_read_in_child, args=(url, out))
        child.start()
        child.join(600)  # a guard against a hang, far above the ~1 s it takes
        assert child.exitcode == 0
        assert out.get(timeout=60) == 3


def test_a_second_opening_downloads_only_what_changed(tmp_path, url):
    from portfolio_assets.lakehouse import publish_dir

    with host(tmp_path, "a"):
        a = lake(url)
        for d in ("2026-11-23", "2026-11-24", "2026-11-25"):
            a.write_table("weights", "target_weights", d, frame(2))
    with host(tmp_path, "b"):
        b = lake(url)
        assert b.mirror.pull("demo/") == 0  # the opening pulled all three already
    with host(tmp_path, "a"):
        a = lake(url)
        a.write_table("weights", "target_weights", "2026-11-24", frame(5))
        publish_dir(a.reports_dir("2026-11-24"), lambda stage: (stage / "index.md").write_text("x"))
    with host(tmp_path, "b"):
        assert b.mirror.pull("demo/") == 2  # the table and the folder's file; its pointer is read too
        reads = []
        cat_file = b.mirror.fs.cat_file
        b.mirror.fs.cat_file = lambda path, *args, **kw: reads.append(path) or cat_file(path, *args, **kw)
        assert b.mirror.pull("demo/") == 0
        assert reads == []  # nothing changed: no object read, the pointer neither
        assert (b.reports_dir("2026-11-24") / "index.md").read_text() == "x"


def test_a_published_folder_reaches_the_other_host_whole_and_its_old_version_is_gone(tmp_path, url):
    from portfolio_assets.lakehouse import publish_dir

    def build(text: str):
        def write(stage: Path) -> None:
            (stage / "report.md").write_text(text)
            (stage / "sub").mkdir()
            (stage / "sub" / "data.json").write_text(json.dumps({"text": text}))
        return write

    with host(tmp_path, "a"):
        a = lake(url)
        publish_dir(a.reports_dir("2026-11-25"), build("first"))
    with host(tmp_path, "b"):
        folder = lake(url).reports_dir("2026-11-25")
        assert folder.is_symlink()
        assert (folder / "report.md").read_text() == "first"
        first_version = folder.resolve()
    with host(tmp_path, "a"):
        publish_dir(lake(url).reports_dir("2026-11-25"), build("second"))
    with host(tmp_path, "b"):
        folder = lake(url).reports_dir("2026-11-25")
        assert (folder / "report.md").read_text() == "second"
        assert json.loads((folder / "sub" / "data.json").read_text()) == {"text": "second"}
        assert not first_version.exists()  # synced here, deleted in the bucket: removed here too
    keys = objects(url)
    assert sum(k.endswith("/report.md") for k in keys) == 1, keys
    assert "demo/reports/2026-11-25.__link__" in keys


def test_ledger_appends_from_two_hosts_extend_one_chain(tmp_path, url):
    from portfolio_assets.ledger import Ledger

    def ledger() -> Ledger:
        return Ledger(lake(url).ledger_path("2026-11-25"), "2026-11-25")

    with host(tmp_path, "a"):
        ledger().genesis("run-a", {"profile": "demo"})
    with host(tmp_path, "b"):
        ledger().intent("run-a", "raw_pool", {})
    with host(tmp_path, "a"):
        ledger().outcome("run-a", "raw_pool", {"status": "ok"})
    for name in ("a", "b"):
        with host(tmp_path, name):
            records = ledger().records()
            assert [r["seq"] for r in records] == [0, 1, 2]
            assert [r["kind"] for r in records] == ["genesis", "intent", "outcome"]
            assert records[1]["prev_hash"] == records[0]["hash"] and records[2]["prev_hash"] == records[1]["hash"]
            assert ledger().verify(root=lake(url).root).ok


def test_a_file_replaced_by_one_of_the_same_size_and_time_is_still_pushed(tmp_path, url):
    """Two anchor writes a millisecond apart can share size and modification time (the clock the
    file system stamps with is coarse); the new inode tells them apart."""
    with host(tmp_path, "a"):
        a = lake(url)
        path = a.root / "alerts" / "sent.jsonl"
        with a.mirror.critical(path, hold_s=60):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("first\n")
        before = path.stat()
        with a.mirror.critical(path, hold_s=60):
            tmp = path.with_name("x.tmp")
            tmp.write_text("other\n")
            os.utime(tmp, ns=(before.st_atime_ns, before.st_mtime_ns))
            os.replace(tmp, path)
    with host(tmp_path, "b"):
        b = lake(url)
        with b.mirror.critical(path := b.root / "alerts" / "sent.jsonl", hold_s=60, write=False):
            assert path.read_text() == "other\n"


APPENDER = """
import sys
from portfolio_assets.lakehouse import Lakehouse
from portfolio_assets.ledger import Ledger
lake = Lakehouse(sys.argv[1], "demo")
ledger = Ledger(lake.ledger_path("2026-11-25"), "2026-11-25")
for i in range(int(sys.argv[3])):
    ledger.note("run-x", {"host": sys.argv[2], "i": i})
"""


def test_concurrent_appends_from_two_processes_on_two_hosts_lose_no_record(tmp_path, url):
    from portfolio_assets.ledger import Ledger

    with host(tmp_path, "a"):
        Ledger(lake(url).ledger_path("2026-11-25"), "2026-11-25").genesis("run-x", {"profile": "demo"})
    procs = []
    for name in ("a", "b"):
        env = {**os.environ, "PA_CACHE_DIR": str(tmp_path / f"host-{name}")}
        procs.append(subprocess.Popen([sys.executable, "-c", APPENDER, url, name, "15"], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out
    with host(tmp_path, "c"):
        ledger = Ledger(lake(url).ledger_path("2026-11-25"), "2026-11-25")
        records = ledger.records()
        assert [r["seq"] for r in records] == list(range(31))
        assert sorted((r["payload"]["host"], r["payload"]["i"]) for r in records[1:]) == \
            sorted((h, i) for h in "ab" for i in range(15))
        assert ledger.verify(root=lake(url).root).ok


def test_a_runs_op_values_travel_only_to_the_run_that_reads_them(tmp_path, url):
    with host(tmp_path, "a"):
        a = lake(url)
        for run in ("run-1", "run-2"):
            _write(a.root / "_intermediate" / run / "plan.result.parquet", frame(2))  # uploaded as written
    with host(tmp_path, "b"):
        b = lake(url)  # the profile-wide pull leaves every run's values in the bucket
        assert not (b.root / "_intermediate").exists()
        assert b.mirror.pull(f"{b.profile}/_intermediate/run-2/") == 1
        assert [p.parent.name for p in (b.root / "_intermediate").glob("*/*.parquet")] == ["run-2"]


def _write(path: Path, df: pd.DataFrame) -> Path:
    from portfolio_assets.lakehouse import atomic_write_frame

    return atomic_write_frame(path, df)


def test_a_held_lease_makes_another_host_wait_then_fail_naming_the_holder_and_a_dead_one_is_taken(tmp_path, url):
    from portfolio_assets.lake_mirror import LeaseBusy

    with host(tmp_path, "a"):
        a = lake(url).mirror
    with host(tmp_path, "b"):
        b = lake(url).mirror
    with a.lease("demo/alerts/sent.jsonl", hold_s=60):
        t0 = time.monotonic()
        with pytest.raises(LeaseBusy, match=rf"demo/alerts/sent.jsonl: held by .* pid {os.getpid()} for over 0.5 s"):
            with b.lease("demo/alerts/sent.jsonl", hold_s=60, wait_s=0.5):
                pass
        assert time.monotonic() - t0 >= 0.5
    with b.lease("demo/alerts/sent.jsonl", hold_s=60, wait_s=0.5):  # released: free at once
        pass
    # a holder that died: its lease expires and the next host takes it over
    dead = a.lease("demo/alerts/sent.jsonl", hold_s=0.2)
    dead.__enter__()
    time.sleep(0.3)
    with b.lease("demo/alerts/sent.jsonl", hold_s=60, wait_s=5):
        with pytest.raises(LeaseBusy):
            with a.lease("demo/alerts/sent.jsonl", hold_s=60, wait_s=0.3):
                pass


def test_price_parts_reach_the_other_host_and_a_compaction_elsewhere_keeps_the_bars(tmp_path, url):
    days = pd.date_range("2026-11-02", periods=5, freq="B", tz="UTC")
    bars = pd.DataFrame({"time": days, "open": 1.0, "high": 2.0, "low": 0.5, "close": [1.0, 1.1, 1.2, 1.3, 1.4],
                         "volume": 100.0})
    with host(tmp_path, "a"):
        a = lake(url)
        for k in range(3):
            a.write_prices({"NYSE:XOM": bars.assign(close=bars["close"] + k)}, "synthetic",
                           dt.datetime(2026, 11, 20 + k, tzinfo=dt.UTC))
        expected = a.read_prices("NYSE:XOM")
    with host(tmp_path, "b"):
        b = lake(url)
        pd.testing.assert_frame_equal(b.read_prices("NYSE:XOM"), expected)
        assert len(b.price_store().part_paths()) == 3
    with host(tmp_path, "a"):
        assert lake(url).price_store().compact(keep_recent_s=0) == 3
        assert len([k for k in objects(url) if "/prices/parts/" in k]) == 1
    with host(tmp_path, "b"):
        b = lake(url)
        assert len(b.price_store().part_paths()) == 1
        pd.testing.assert_frame_equal(b.read_prices("NYSE:XOM"), expected)


@pytest.mark.parametrize(("text", "message"), [
    ("gs://bucket/lake", "'gs://bucket/lake' is a gs:// URL; the lakehouse root must be a local path, a file:// URL or an s3:// URL"),
    ("s3://Bad_Bucket/lake", "'Bad_Bucket' is not an S3 bucket name"),
    ("s3://bucket/a/../b", "the prefix 'a/../b' has an empty, '.' or '..' part"),
    ("s3://bucket/lake?versionId=3", "without query, fragment, user or port"),
])
def test_an_unusable_lakehouse_url_is_refused_with_the_reason(text, message):
    from portfolio_assets.manifest.base import lakehouse_base_path

    with pytest.raises(ValueError, match=message.replace("?", r"\?").replace("(", r"\(").replace(")", r"\)")):
        lakehouse_base_path(text)


@pytest.mark.parametrize("where", ["no_endpoint", "no_bucket"])
def test_a_bucket_the_host_cannot_list_is_refused_before_any_work(where, s3, tmp_path):
    from portfolio_assets_tests.conftest import DEV_DATE, graph_env, run_cli_in_process

    env = graph_env(tmp_path / "unused", tmp_path / "home", PA_CACHE_DIR=str(tmp_path / "cache"))
    if where == "no_endpoint":  # nothing listens on port 9
        env.update(PA_LAKEHOUSE="s3://lake-bucket/x", AWS_ENDPOINT_URL="http://127.0.0.1:9")
        expected = ("portfolio-assets: PA_LAKEHOUSE: s3://lake-bucket/x: cannot list the bucket "
                    "(EndpointConnectionError: Could not connect to the endpoint URL")
    else:
        env.update(PA_LAKEHOUSE="s3://no-such-bucket/x")
        expected = ("portfolio-assets: PA_LAKEHOUSE: s3://no-such-bucket/x: the bucket 'no-such-bucket' does not "
                    "exist (or this host may not see it); nothing was run\n")
    proc = run_cli_in_process(["run", "--date", DEV_DATE], env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(expected), proc.stderr
    assert proc.stderr.endswith("; nothing was run\n")
    assert not (tmp_path / "home" / "profiles").exists()  # no Dagster instance was opened


def test_an_object_key_that_would_leave_the_working_copy_is_refused(tmp_path, url):
    import s3fs

    from portfolio_assets.lake_mirror import MirrorError

    s3fs.S3FileSystem(skip_instance_cache=True).pipe_file(f"{url.removeprefix('s3://')}/demo/x/../../../escape", b"1")
    with host(tmp_path, "a"), pytest.raises(MirrorError, match=r"the object 'demo/x/\.\./\.\./\.\./escape' would land outside"):
        lake(url)
    assert not (tmp_path / "host-a" / "escape").exists()


def test_one_url_with_or_without_a_trailing_slash_is_one_working_copy(tmp_path):
    from portfolio_assets.manifest.base import lakehouse_base_path

    with host(tmp_path, "a"):
        assert lakehouse_base_path("s3://bucket/lake") == lakehouse_base_path("s3://bucket/lake/")
        assert lakehouse_base_path("s3://bucket/lake") != lakehouse_base_path("s3://bucket/other")
        assert (lakehouse_base_path("s3://bucket/lake") / ".mirror" / "url").read_text() == "s3://bucket/lake\n"
