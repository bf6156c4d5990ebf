"""The benchmark at a tiny scale: every row is there with a positive time, and the reference
comparisons agree numerically (the agreement is the point here, not the speed)."""

from __future__ import annotations

import argparse
import datetime as dt
import re

import numpy as np
import pandas as pd
import pytest

from portfolio_assets import bench as B

TINY = (40, 80)  # raw equities of the scale points (the raw pool adds ETFs, crypto and forex)
HISTORY = 200  # a shorter development history: 4 walk-forward windows instead of 9, same code paths


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> list[B.Row]:
    plan = B.BenchPlan(profile="development", date=dt.date(2026, 11, 25), scales=TINY, dagster=False,
                       hrp_shape=(40, 120), hrp_repeat=3)
    # train 120 (development's own) so that every profile the bench resolves (the reference rows use
    # demo's) fits train + test in the shorter history: resolution refuses it otherwise.
    with B.environment(PA_PROFILE="development", PA_DATA__LOOKBACK_HISTORY=str(HISTORY), PA_DATA__MIN_DAYS_FLOOR="150",
                       PA_BACKTEST__TRAIN="120"):
        return B.run_bench(plan, tmp_path_factory.mktemp("bench"), echo=False)


def _by_stage(rows: list[B.Row]) -> dict[tuple[str, str], B.Row]:
    return {(r.section, r.stage): r for r in rows}


def test_every_expected_row_with_a_positive_time(rows):
    stages = _by_stage(rows)
    demo = [s for sec, s in stages if sec == "demo"]
    for expected in (
        "synthetic source (build the market)", "discovery scans (4 families)",
        "raw pool (quant.rawpool.build_raw_pool)", "60-session prep (fetch + align + returns)",
        "natural selection (quant.selection.select_universe)", "enrichment",
        f"{HISTORY}-session history (fetch + align)", "health assessment + recovery",
        f"raw-pool history ({HISTORY} sessions, fetch + align)", "risk buckets (quant.clustering.hierarchical_clusters)",
        "regime (quant.regimes.detect_regime)", "all engines (quant.engines.run_engine)",
        "tournament plan (point-in-time)", "tournament engines x windows x simulators (point-in-time)",
        "tournament plan (today's context)", "tournament engines x windows x simulators (today's context)",
        "reports (build_reports, no QuantStats HTML)", "demo partition total (sum of the stages above)",
    ):
        assert expected in demo, f"missing demo row {expected!r}"
    for n in TINY:
        scale = [s for sec, s in stages if sec == f"scale {n:,}"]
        assert len(scale) == 7, scale
        assert any(s.startswith("natural selection") for s in scale)
    growth = [s for sec, s in stages if sec == "growth"]
    assert len(growth) == 6 and all(s.endswith(f"{TINY[0]:,} -> {TINY[1]:,}") for s in growth)
    refs = [s for sec, s in stages if sec == "ref"]
    for engine in B.COMPARE_ENGINES:
        assert any(s.startswith(f"(a) tournament {engine} vs skfolio") for s in refs), engine
    assert sum(s.startswith("(b) HRP") for s in refs) == 1
    assert len([s for sec, s in stages if sec == "blas"]) == 2
    assert sum(s.startswith("(c) correlation") for s in refs) == len(TINY)
    assert sum(s.startswith("(c) corr + Ward") for s in refs) == len(TINY)
    assert {r.note for r in rows if r.section in ("backfill", "executors")} == {"skipped (--quick)"}

    assert sum(r.section == "memory" for r in rows) == 1
    timed = [r for r in rows if r.section not in ("growth", "memory", "backfill", "executors")]
    assert all(r.seconds is not None and r.seconds > 0 for r in timed), [r.stage for r in timed if not r.seconds]
    assert all(r.ref_seconds > 0 for r in rows if r.section == "ref")
    measured = [r.peak_mb for r in rows if r.section == "demo" and r.peak_mb is not None]
    assert measured and max(measured) > 0, "no demo stage measured any memory above its start"


def test_peak_rss_sees_a_stage_that_allocates_and_frees_200_mib():
    """The probe the bench's memory column comes from: a stage that holds 200 MiB (then frees it)
    peaks at least ~200 MiB above its start; a stage that allocates nothing stays far below."""
    import time

    import numpy as np

    with B.PeakRss() as probe:
        token = probe.begin()
        block = np.ones(200 * 2**20 // 8)  # written, so resident
        time.sleep(0.2)  # held long enough for the 5 ms sampler (not a timing assertion)
        del block
        grew = probe.end(token)
        token = probe.begin()
        idle = probe.end(token)
    assert grew >= 190, grew
    assert idle < 50, idle


def test_reference_comparisons_agree(rows):
    refs = {r.stage: r for r in rows if r.section == "ref"}
    hrp = next(r for s, r in refs.items() if s.startswith("(b) HRP"))
    assert hrp.agreement is not None and hrp.agreement <= 1e-8
    for stage, row in refs.items():
        if stage.startswith("(c) correlation"):
            assert row.agreement <= 1e-10, stage
        if stage.startswith("(c) corr + Ward"):
            assert row.note.endswith("same clusters: yes"), stage
    # closed forms agree to rounding, the cvxpy engines to solver tolerance
    tolerance = {"inverse_vol": 1e-10, "hrp": 1e-10, "min_variance": 1e-3, "risk_parity": 1e-3}
    for engine, tol in tolerance.items():
        row = next(r for s, r in refs.items() if s.startswith(f"(a) tournament {engine} vs"))
        assert row.agreement is not None and row.agreement <= tol, (engine, row.agreement)


def test_hrp_and_correlation_helpers_match_the_references_directly():
    """The helpers the bench times, on an independent seeded panel with gaps."""
    rng = np.random.default_rng(5)
    values = rng.normal(0, 0.01, (120, 30)) + rng.normal(0, 0.01, (120, 1))
    cols = [f"NYSE:S{i:02d}" for i in range(30)]
    returns = pd.DataFrame(values, index=pd.bdate_range("2024-01-02", periods=120), columns=cols)
    np.testing.assert_allclose(B.hrp_ours(returns).to_numpy(), B.hrp_riskfolio(returns).to_numpy(), atol=1e-10)

    from portfolio_assets.quant.clustering import pairwise_correlation

    gappy = returns.mask(rng.random(returns.shape) < 0.3)
    gappy.iloc[:100, 0] = np.nan  # 20 sessions left: at the overlap floor
    gappy.iloc[:, 1] = 0.0  # constant: NaN correlations on both sides
    ours = pairwise_correlation(gappy, min_overlap=20).to_numpy()
    assert B.corr_agreement(ours, B.corr_reference(gappy, 20)) <= 1e-10
    assert B.corr_agreement(ours, np.zeros_like(ours)) == np.inf  # NaN pattern differs -> disagreement


def test_table_renders_as_text_and_markdown(rows):
    plan = B.BenchPlan(profile="development", scales=TINY, dagster=False)
    text, markdown = B.render(rows, plan, pd.Timestamp("2026-11-27 12:00", tz="UTC").to_pydatetime(), 12.0)
    body = text.split("\n\n", 1)[1].splitlines()
    assert body[0].split()[:3] == ["section", "stage", "size"]
    assert len(body) == len(rows) + 2  # header + rule + one line per row
    table = [line for line in markdown.splitlines() if line.startswith("|")]
    assert len(table) == len(rows) + 2
    cells = {len(re.split(r"(?<!\\)\|", line.strip().strip("|"))) for line in table}
    assert cells == {len(B.COLUMNS)}
    assert "nproc" in text and "peak RSS" in text


def test_quick_plan_from_cli_args():
    quick = B.BenchPlan.from_args(argparse.Namespace(quick=True))
    assert quick.scales == B.QUICK_SCALES and not quick.dagster and quick.profile == "demo"
    full = B.BenchPlan.from_args(argparse.Namespace(quick=False))
    assert full.scales == B.FULL_SCALES == (500, 5_000, 20_000) and full.dagster
