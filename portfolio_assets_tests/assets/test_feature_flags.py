"""Each of the seven feature flags has a real, visible effect (SPEC §4).

Covered here: feat_turnover_penalty (manifest -> engines), feat_partial_rebalance (orders),
feat_pit_fidelity (tournament contexts and results), feat_audit_ledger (whole run). Covered next to
their algorithms: feat_xs_momentum (quant/test_selection.py: on/off picks different winners),
feat_spectral_regimes (quant/test_regimes: the spectral route into TURBULENT only with the flag,
entering earlier on real history; quant/test_engines: the barbell budget), feat_decay_audit
(test_reports: the slippage report only with the flag).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from dagster import AssetSelection

from portfolio_assets.lakehouse import Lakehouse
from portfolio_assets.ledger import frame_hash
from portfolio_assets.manifest import resolve
from portfolio_assets_tests.conftest import DEV_DATE, copy_run
from portfolio_assets_tests.graph_helpers import (
    PARTITION,
    check_results,
    materialized,
    run_graph,
    step_errors,
)


def test_turnover_penalty_flag_reaches_the_optimizers():
    from portfolio_assets.assets.allocation import engine_params
    from portfolio_assets.quant.engines import EngineInputs, run_engine

    rng = np.random.default_rng(5)
    cols = [f"X:S{i}" for i in range(12)]
    rets = pd.DataFrame(rng.normal(0.0004, 0.01, (252, 12)) + rng.normal(0, 0.006, (252, 1)), columns=cols)
    prev = pd.Series(1 / 12, index=cols)
    clusters = pd.Series(np.arange(12) % 6 + 1, index=cols)
    dist = {}
    for flag in (True, False):
        cfg = resolve("demo", environ={"PA_FEATURES__FEAT_TURNOVER_PENALTY": str(flag).lower(),
                                       "PA_OPTIMIZATION__KAPPA": "0.0005"}).config
        params = engine_params(cfg)
        assert params.turnover_penalty is flag
        w = run_engine("min_variance", EngineInputs(returns=rets, clusters=clusters, regime="NORMAL",
                                                    baseline=cfg.selection.baseline, prev_weights=prev),
                       params).weights
        dist[flag] = float((w.reindex(cols).fillna(0) - prev).abs().sum())
    assert dist[True] < dist[False] - 1e-3


@pytest.fixture(scope="module")
def dev_lake(dev_lakehouse, tmp_path_factory):
    """A copy of the session's development run for PARTITION (the tests below re-run parts of it)."""
    assert PARTITION == DEV_DATE
    return copy_run(dev_lakehouse, tmp_path_factory.mktemp("flags")).lakehouse


def test_pit_fidelity_rebuilds_each_window_from_its_own_past(dev_lake):
    lh = Lakehouse(dev_lake, "development")
    on_ctx = lh.read_table("validation", "tournament", PARTITION, "contexts")
    on_summary = lh.read_table("validation", "tournament", PARTITION)
    assert on_ctx["pool_source"].str.startswith("scanned ").all()
    assert on_ctx.groupby("k")["stream"].apply(frozenset).nunique() > 1  # universes differ across windows

    off = run_graph(dev_lake, selection=AssetSelection.assets("tournament"), PA_FEATURES__FEAT_PIT_FIDELITY="false")
    assert off.success, step_errors(off)
    off_ctx = lh.read_table("validation", "tournament", PARTITION, "contexts")
    assert (off_ctx["pool_source"] == "today").all()
    assert off_ctx.groupby("k")["stream"].apply(frozenset).nunique() == 1  # today's universe everywhere
    assert frame_hash(lh.read_table("validation", "tournament", PARTITION)) != frame_hash(on_summary)
    windows = lh.read_table("validation", "tournament", PARTITION, "windows")
    assert (windows["violations"].fillna("") == "").all()  # audit runs only with pit
    # The reports of that tournament carry the look-ahead warning (and, on this market, the synthetic banner).
    reports = run_graph(dev_lake, selection=AssetSelection.assets("reports"), PA_FEATURES__FEAT_PIT_FIDELITY="false")
    assert reports.success, step_errors(reports)
    for name in ("index.md", "engine_comparison_report.md", "backtest_comparison.md"):
        text = (lh.reports_dir(PARTITION) / name).read_text()
        assert "> **SYNTHETIC DATA.**" in text and "> **WARNING: look-ahead.** `feat_pit_fidelity` is off" in text, name


def test_audit_ledger_flag_off_writes_no_ledger_and_warns(tmp_path):
    result = run_graph(tmp_path, PA_FEATURES__FEAT_AUDIT_LEDGER="false")
    assert result.success, step_errors(result)
    lh = Lakehouse(tmp_path, "development")
    assert not lh.ledger_path(PARTITION).exists()
    gate = check_results(result)["ledger_integrity"]
    assert not gate.passed and gate.severity.value == "WARN" and "feat_audit_ledger is off" in gate.description
    assert "implementation_orders" in materialized(result)
