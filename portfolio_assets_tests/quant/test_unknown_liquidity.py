"""Unknown liquidity (no volume, e.g. closes-only data) is neutral in the raw pool and in selection."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from portfolio_assets.manifest import DataConfig, SelectionConfig
from portfolio_assets.quant.rawpool import build_raw_pool, score_rows
from portfolio_assets.quant.selection import SelectionParams, select_universe


def _scan(rows: list[dict]) -> pd.DataFrame:
    base = {"type": "stock", "ADX": 20.0, "Perf.3M": 5.0, "Perf.6M": 5.0, "Volatility.D": 2.0,
            "direction": "long", "asset_class": "equity"}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_raw_pool_scores_an_unknown_liquidity_on_the_other_three_components() -> None:
    rows = _scan([
        {"symbol": "NYSE:A", "Value.Traded": 1e9, "ADX": 10.0, "Perf.3M": 1.0, "Volatility.D": 1.0},
        {"symbol": "NYSE:B", "Value.Traded": np.nan, "ADX": 40.0, "Perf.3M": 9.0, "Volatility.D": 2.0},
        {"symbol": "NYSE:C", "Value.Traded": 1e7, "ADX": 30.0, "Perf.3M": 3.0, "Volatility.D": 4.0},
        {"symbol": "NYSE:D", "Value.Traded": 1e8, "ADX": 20.0, "Perf.3M": 5.0, "Volatility.D": 2.0},
    ])
    out = score_rows(rows).set_index("symbol")
    assert out["liquidity_known"].tolist() == [True, False, True, True]
    # liquidity ranks among the three known values only: C 1/3, D 2/3, A 1; B has none
    assert out["rank_liquidity"].tolist() == pytest.approx([1.0, np.nan, 1 / 3, 2 / 3], nan_ok=True)
    # trend ranks (ADX 10, 40, 30, 20): 1/4, 1, 3/4, 1/2; momentum (mean of Perf.3M and Perf.6M = 5):
    # 3, 7, 4, 5 -> 1/4, 1, 1/2, 3/4; vol sanity -|log(vol / median 2)|: -log 2, 0, -log 2, 0 -> tied
    # pairs at average ranks 1.5/4 and 3.5/4
    by_hand = {"NYSE:A": (1.0 + 0.25 + 0.25 + 0.375) / 4, "NYSE:B": (1.0 + 1.0 + 0.875) / 3,
               "NYSE:C": (1 / 3 + 0.75 + 0.5 + 0.375) / 4, "NYSE:D": (2 / 3 + 0.5 + 0.75 + 0.875) / 4}
    assert out["score"].to_dict() == pytest.approx(by_hand)


def test_closes_only_pool_keeps_every_row_and_records_it() -> None:
    """All liquidity unknown: the score is the mean of the three known ranks, nobody is punished."""
    scan = _scan([{"symbol": f"NYSE:S{i}", "Value.Traded": np.nan, "ADX": 10.0 + i} for i in range(5)])
    spx = _scan([{"symbol": "SP:SPX", "type": "index", "Value.Traded": np.nan}])
    pool, _ = build_raw_pool({"equity": scan}, class_cap=30, baseline="SP:SPX", baseline_row=spx)
    assert len(pool) == 6 and not pool["liquidity_known"].any()
    assert pool["rank_liquidity"].isna().all()
    ranked = pool.drop("SP:SPX").sort_values("score", ascending=False).index.tolist()
    assert ranked == [f"NYSE:S{i}" for i in range(4, -1, -1)]  # by ADX, the only component that differs


def test_selection_with_all_liquidity_unknown_picks_as_with_equal_liquidity() -> None:
    rng = np.random.default_rng(3)
    sessions = pd.bdate_range("2024-01-02", periods=60)
    f = rng.normal(0.0, 0.01, (60, 2))
    cols = {f"NYSE:F{k}M{j}": 0.001 * (3 - j) + f[:, k] + 0.005 * rng.normal(size=60) for k in range(2) for j in range(3)}
    cols["AMEX:SPY"] = rng.normal(0.0005, 0.01, 60)
    returns = pd.DataFrame(cols, index=sessions)
    symbols = [s for s in cols if s != "AMEX:SPY"]

    def candidates(value_traded: float) -> pd.DataFrame:
        return pd.DataFrame({"direction": "long", "identity": symbols, "asset_class": "equity",
                             "value_traded": value_traded}, index=symbols)

    params = SelectionParams(SelectionConfig(min_momentum=-1.0, top_n=1, min_winners=1),
                             min_overlap=DataConfig().min_overlap, xs_momentum=True)
    unknown = select_universe(candidates(np.nan), returns, params)
    equal = select_universe(candidates(1e7), returns, params)
    assert unknown.funnel["liquidity_missing"] == len(symbols) + 1  # the candidates and the added baseline
    assert set(unknown.winners["symbol"]) == set(equal.winners["symbol"])
    a, b = unknown.audit.set_index("symbol"), equal.audit.set_index("symbol")
    assert a.loc[symbols, "liquidity_score"].isna().all()
    # equal liquidity adds the same rank to everyone; unknown liquidity leaves it out
    three = b.loc[symbols, ["ret_score", "inv_vol_score", "antifragility_score"]].mean(axis=1)
    assert a.loc[symbols, "score"].to_numpy() == pytest.approx(three.to_numpy())
