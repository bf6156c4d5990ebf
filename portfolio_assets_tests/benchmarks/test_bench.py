"""`python -m benchmarks` on the development profile at tiny sizes: every requested section has its
rows, the rows of different sections agree with each other (the CLI run executes the same steps as
the in-process materialization, the totals are the sums of their parts), and the reference
comparisons agree numerically (the agreement is the point here, not the speed)."""

from __future__ import annotations

import datetime as dt
import importlib.util
import re
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks import references as R
from benchmarks import runner
from benchmarks import scale as S
from benchmarks.table import PeakRss, Recorder, Row

TINY = (40, 80)  # raw equities of the scale points (the raw pool adds ETFs, crypto and forex)
REQUESTED = ("run", "tournament", "hrp", "scale", "correlation", "celery")


@pytest.fixture(scope="module")
def plan() -> runner.BenchPlan:
    return runner.BenchPlan(profile="development", date=dt.date(2026, 11, 25), sections=REQUESTED, quick=True,
                            scale_sizes=TINY, correlation_n=(TINY[0],))


@pytest.fixture(scope="module")
def bench_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bench")


@pytest.fixture(scope="module")
def rows(plan, bench_root) -> list[Row]:
    return runner.run_bench(plan, bench_root, echo=False)


def section(rows: list[Row], name: str) -> list[Row]:
    return [r for r in rows if r.section == name]


def one(rows: list[Row], name: str, prefix: str) -> Row:
    found = [r for r in section(rows, name) if r.stage.startswith(prefix)]
    assert len(found) == 1, (name, prefix, [r.stage for r in section(rows, name)])
    return found[0]


@pytest.mark.slow
def test_no_row_failed_and_every_requested_section_has_rows(rows):
    assert runner.failed(rows) == [], [(r.section, r.stage, r.note) for r in runner.failed(rows)]
    for name in ("graph", *REQUESTED):
        assert section(rows, name), f"no row for section {name}"
    assert one(rows, "plan", "sections not run").note == "backfill"


@pytest.mark.slow
def test_graph_steps_come_from_one_materialization_and_add_up(rows):
    steps = [r for r in section(rows, "graph") if r.stage.startswith("step ")]
    keys = {r.stage.removeprefix("step ") for r in steps}
    # the real assets' steps, the tournament's dynamic batches included
    assert {"history_500d", "risk_buckets", "tournament.tournament_plan", "reports"} <= keys, keys
    assert any(k.startswith("tournament.tournament_engines[") for k in keys), keys
    assert all(r.seconds is not None and r.seconds > 0 for r in steps)
    total = one(rows, "graph", "sum of the steps")
    assert total.seconds == pytest.approx(sum(r.seconds or 0 for r in steps), rel=1e-12)
    assert total.size == f"{len(steps)} steps"
    whole = one(rows, "graph", "whole development graph")
    assert whole.ref_seconds == total.seconds and whole.seconds is not None
    assert whole.seconds > total.seconds  # the call's wall time contains every step


@pytest.mark.slow
def test_cli_run_is_timed_against_the_in_process_compute(rows):
    total = one(rows, "graph", "sum of the steps")
    cli = one(rows, "run", "`make run` equivalent")
    assert cli.ref_seconds == total.seconds  # ref = the in-process compute of the graph section
    assert cli.ratio == pytest.approx(cli.seconds / total.seconds, rel=1e-12)
    assert cli.cells()[7] == f"{cli.seconds / total.seconds:.2f}"
    own = one(rows, "run", "CLI run vs its own steps")
    assert own.seconds == cli.seconds
    assert own.size == total.size  # the CLI ran the same steps as the in-process materialization
    assert own.ref_seconds is not None and 0 < own.ref_seconds < own.seconds


@pytest.mark.slow
def test_tournament_agrees_with_skfolio_per_engine_and_in_total(rows):
    engines = {e: one(rows, "tournament", f"{e} vs skfolio") for e in R.COMPARE_ENGINES}
    for engine, row in engines.items():
        assert row.agreement is not None and row.agreement <= R.TOLERANCE[engine], (engine, row.agreement)
        assert row.seconds and row.ref_seconds
    total = one(rows, "tournament", "total, 4 engines")
    assert total.seconds == pytest.approx(sum(r.seconds or 0 for r in engines.values()), rel=1e-9)
    assert total.ref_seconds == pytest.approx(sum(r.ref_seconds or 0 for r in engines.values()), rel=1e-9)
    assert total.agreement == max(r.agreement or 0 for r in engines.values())
    windows = int(re.search(r"x (\d+) windows", total.size).group(1))
    assert windows >= 1
    assert len(section(rows, "blas")) == 2  # the tournament's and HRP's


@pytest.mark.slow
def test_hrp_and_correlation_agree_with_riskfolio_and_pandas(rows):
    hrp = one(rows, "hrp", "engines.hrp_weights vs riskfolio")
    assert hrp.agreement is not None and hrp.agreement <= R.TOLERANCE["hrp_riskfolio"]
    corr = one(rows, "correlation", f"{TINY[0]:,}: pairwise_correlation")
    assert corr.agreement is not None and corr.agreement <= R.TOLERANCE["correlation"]
    ward = one(rows, "correlation", f"{TINY[0]:,}: corr + angular distance + Ward")
    assert ward.note.endswith("same clusters: yes")
    assert ward.seconds is not None and corr.seconds is not None and ward.seconds > corr.seconds


@pytest.mark.slow
def test_scale_rows_for_each_size(rows):
    if importlib.util.find_spec(S.STORE_MODULE) is not None:  # the columnar store's own rows
        sizes = {r.size for r in section(rows, "scale")}
        assert {f"{n:,}" for n in TINY} <= sizes, sizes
        return
    assert one(rows, "scale", "columnar price store").note.startswith("not available on this branch")
    for n in TINY:
        stages = section(rows, f"scale {n:,}")
        assert len(stages) == 7 and all(r.seconds and r.seconds > 0 for r in stages), stages
        assert stages[-1].stage.startswith("natural selection")
    assert len(section(rows, "growth")) == 6


def test_store_rows_are_taken_from_price_store_scale_when_it_exists(monkeypatch):
    fake = types.ModuleType(S.STORE_MODULE)
    fake.scale_rows = lambda sizes: [{"stage": "scan to selection", "n": n, "wall_s": n / 1000, "peak_mb": 2.5,
                                      "note": "incl. I/O"} for n in sizes]
    monkeypatch.setitem(sys.modules, S.STORE_MODULE, fake)
    rec = Recorder(PeakRss(), echo=False)
    assert S.store_rows(rec, (5_000, 20_000))
    assert [(r.size, r.seconds, r.peak_mb) for r in rec.rows] == [("5,000", 5.0, 2.5), ("20,000", 20.0, 2.5)]
    fake.scale_rows = lambda sizes: [{"stage": "x", "n": 1}]
    with pytest.raises(ValueError, match="without"):
        S.store_rows(rec, (5_000,))


def test_missing_price_store_is_one_honest_row(monkeypatch):
    monkeypatch.setitem(sys.modules, S.STORE_MODULE, None)  # import raises ModuleNotFoundError for it
    rec = Recorder(PeakRss(), echo=False)
    assert not S.store_rows(rec, (5_000,))
    assert [r.note for r in rec.rows] == ["not available on this branch: today's path is timed below"]


def test_peak_rss_sees_a_stage_that_allocates_and_frees_200_mib():
    """The probe the bench's memory column comes from: a stage that holds 200 MiB (then frees it)
    peaks at least ~200 MiB above its start; a stage that allocates nothing stays far below."""
    import time

    with PeakRss() as probe:
        token = probe.begin()
        block = np.ones(200 * 2**20 // 8)  # written, so resident
        time.sleep(0.2)  # held long enough for the 5 ms sampler (not a timing assertion)
        del block
        grew = probe.end(token)
        token = probe.begin()
        idle = probe.end(token)
    assert grew >= 190, grew
    assert idle < 50, idle


def test_hrp_and_correlation_helpers_match_the_references_directly():
    """The helpers the bench times, on an independent seeded panel with gaps."""
    rng = np.random.default_rng(5)
    values = rng.normal(0, 0.01, (120, 30)) + rng.normal(0, 0.01, (120, 1))
    cols = [f"NYSE:S{i:02d}" for i in range(30)]
    returns = pd.DataFrame(values, index=pd.bdate_range("2024-01-02", periods=120), columns=cols)
    np.testing.assert_allclose(R.hrp_ours(returns).to_numpy(), R.hrp_riskfolio(returns).to_numpy(), atol=1e-10)

    from portfolio_assets.quant.clustering import pairwise_correlation

    gappy = returns.mask(rng.random(returns.shape) < 0.3)
    gappy.iloc[:100, 0] = np.nan  # 20 sessions left: at the overlap floor
    gappy.iloc[:, 1] = 0.0  # constant: NaN correlations on both sides
    ours = pairwise_correlation(gappy, min_overlap=20).to_numpy()
    assert R.corr_agreement(ours, R.corr_reference(gappy, 20)) <= 1e-10
    assert R.corr_agreement(ours, np.zeros_like(ours)) == np.inf  # NaN pattern differs -> disagreement


def test_failed_rows_and_render(plan):
    rows = [Row("graph", "step a", seconds=1.0), Row("run", "cli", seconds=3.0, ref_seconds=2.0),
            Row("celery", "x", note="ERROR OSError: no broker"), Row("backfill", "y", note="FAILED exit 1: z")]
    assert [r.stage for r in runner.failed(rows)] == ["x", "y"]
    text, markdown = runner.render(rows, plan, pd.Timestamp("2026-11-27 12:00", tz="UTC").to_pydatetime(), 12.0)
    body = text.split("\n\n", 1)[1].splitlines()
    assert body[0].split()[:3] == ["section", "stage", "size"]
    assert len(body) == len(rows) + 2  # header + rule + one line per row
    assert body[3].split()[-1] == "1.50"  # 3.0 / 2.0
    table = [line for line in markdown.splitlines() if line.startswith("|")]
    assert len(table) == len(rows) + 2
    cells = {len(re.split(r"(?<!\\)\|", line.strip().strip("|"))) for line in table}
    assert cells == {9}
    assert "nproc" in text and "peak RSS" in text and "sections run,tournament" in text


def test_plan_from_args_and_bad_sections():
    args = runner.parser().parse_args(["--quick"])
    quick = runner.BenchPlan.from_args(args)
    assert quick.sections == runner.QUICK_DEFAULT and quick.scales == runner.QUICK_SCALES
    assert quick.backfill_dates == 2 and runner.BenchPlan(quick=True, backfill_n=1).backfill_dates == 1
    full = runner.BenchPlan.from_args(runner.parser().parse_args(["--sections", "backfill, scale"]))
    assert full.sections == ("backfill", "scale") and full.scales == (5_000, 20_000) and full.backfill_dates == 20
    with pytest.raises(ValueError, match="unknown or no sections"):
        runner.BenchPlan.from_args(runner.parser().parse_args(["--sections", "tournament,dask"]))


BATCHES = "engine batches: batch_1, batch_2"  # the settings' parallel executor: one batch per worker


@pytest.mark.slow
def test_celery_section_runs_the_tournament_on_each_executor_with_the_in_process_tables(rows):
    """The section the quick run leaves out, requested with the others (so it reads the same graph
    section): the tournament asset on in_process, multiprocess and (with redis-server, started by
    the section) two celery workers, each against the in_process time. Its tables are deleted
    before each run; the multiprocess and celery runs must store the in_process run's tables again
    (frame hashes), with the engines fanned out into two batches and no step in this process.
    These are the suite's tests of the multiprocess and celery executors on the tournament."""
    from portfolio_assets.celery_local import redis_server_path

    local = one(rows, "celery", "tournament asset only, in_process")
    assert local.note == "ok" and local.seconds
    for prefix in ("tournament asset only, multiprocess", "tournament asset only, celery"):
        row = one(rows, "celery", prefix)
        if "celery" in prefix and redis_server_path() is None:
            assert row.note.startswith("not run: redis-server is not installed")
            continue
        found = re.match(r"ok; the same (\d+) tournament tables as in_process; (\d+) steps in (\d+) process\(es\), "
                         r"none the bench's; (engine batches: [^;]*); ", row.note)
        assert found, row.note
        tables, steps, processes, batches = found.groups()
        assert int(tables) == 5 and batches == BATCHES, row.note  # tournament + windows, returns, weights, contexts
        assert int(steps) == 4, row.note  # plan, the 2 batches, collect
        if "multiprocess" in prefix:
            assert int(processes) >= 2, row.note  # a process per step
        assert row.ref_seconds == local.seconds
        assert row.ratio == pytest.approx(row.seconds / local.seconds, rel=1e-12)


def _flat(value, prefix: str = "") -> dict:
    """A nested JSON value as `{dotted.path: leaf}`."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): value}


@pytest.mark.slow
def test_the_daily_graph_on_two_celery_workers_stores_the_in_process_tables(rows, bench_root, plan):
    """Issue 15: `portfolio-assets run` of the whole daily graph with `executor.kind: celery`, on a
    fresh `s3://` lakehouse (moto's S3 server) and two workers (Redis and both workers started by
    the section, with the run's settings in their environment, as docs/deployment.md says), each
    with its own working copy of the bucket as on two hosts, stores in the bucket exactly the
    tables of the graph section's in-process materialization of the same partition, with every gate
    passed, every step executed in a worker process (the tournament's two engine batches included)
    and a ledger that verifies against those tables. `run_manifest` records the resolved settings,
    so it differs in the executor's settings and nothing else."""
    import json

    from portfolio_assets.celery_local import redis_server_path
    from portfolio_assets_tests.conftest import check_lines
    from portfolio_assets_tests.graph_helpers import table_hashes

    graph = one(rows, "graph", "whole development graph, materialize (in_process)")
    whole = one(rows, "celery", "daily graph: CLI run on celery (2 workers)")
    if redis_server_path() is None:
        assert whole.note.startswith("not run: redis-server is not installed")
        pytest.skip("redis-server is not installed (Debian package redis-server; .ci/run installs it)")
    found = re.match(r"the same (\d+) tables \(all but run_manifest\); (\d+) steps in (\d+) process\(es\), "
                     r"none the run's; (engine batches: [^;]*); 2 of 2 workers' working copies hold tables; "
                     r"the bucket's ledger verifies; ",
                     whole.note)
    assert found, whole.note
    assert int(found.group(1)) > 30 and int(found.group(2)) > 25 and found.group(4) == BATCHES, whole.note
    assert whole.ref_seconds == graph.seconds
    assert whole.ratio == pytest.approx(whole.seconds / graph.seconds, rel=1e-12)

    date = plan.date.isoformat()
    # the bucket's tables, as the section's fresh working copy pulled them
    (ours,) = (bench_root / "executors" / "graph" / "host-reader" / "lakes").glob("*/development")
    ref = bench_root / "graph" / "lakehouse" / "development"
    got, want = table_hashes(ours, date), table_hashes(ref, date)  # the note's comparison, checked here too
    manifest = f"run/run_manifest/{date}.parquet"
    assert set(got) == set(want) and sorted(t for t in want if got[t] != want[t]) == [manifest]
    mine, theirs = (_flat(json.loads(pd.read_parquet(root / manifest)["config_json"].iloc[0])) for root in (ours, ref))
    assert {k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k)} == {
        "executor.kind", "executor.celery.broker"}
    assert (mine["executor.kind"], theirs["executor.kind"]) == ("celery", "in_process")
    checks = check_lines((bench_root / "executors" / "graph" / "cli_run.log").read_text())
    assert len(checks) == 3 and all(v.startswith("passed") for v in checks.values()), checks


@pytest.mark.slow
def test_backfill_section(plan, tmp_path):
    """The other section the quick run leaves out, alone (it needs no graph section): a CLI backfill
    of one date (the whole graph in the job backfill's one run for it)."""
    rows = runner.run_bench(runner.BenchPlan(profile="development", date=plan.date, sections=("backfill",),
                                             quick=True, backfill_n=1), tmp_path, echo=False)
    assert runner.failed(rows) == [], [(r.section, r.stage, r.note) for r in runner.failed(rows)]
    assert one(rows, "plan", "sections not run").note == "graph, run, tournament, hrp, scale, correlation, celery"
    whole = one(rows, "backfill", "CLI backfill --profile development --from 2026-11-25 --to 2026-11-25")
    assert whole.size == "1 date" and whole.note.startswith("1/1 partitions succeeded"), whole.note
    assert one(rows, "backfill", "per date").seconds == pytest.approx(whole.seconds, rel=1e-12)
