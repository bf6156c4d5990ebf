"""Tests for portfolio_assets.quant.selection (natural selection, step 5)."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy.stats import skew

from portfolio_assets.manifest import Config, DataConfig, SelectionConfig
from portfolio_assets.quant.selection import (
    OUTCOMES,
    SelectionParams,
    alpha_components,
    alpha_scores,
    fill_min_winners,
    keep_count,
    select_universe,
)

T = 60
SESSIONS = pd.bdate_range("2024-01-02", periods=T, name="session")
BASELINE = "AMEX:SPY"


def _params(xs_momentum: bool = True, **selection) -> SelectionParams:
    """The manifest's defaults with `selection` overrides (validated by SelectionConfig)."""
    return SelectionParams(SelectionConfig(**selection), min_overlap=DataConfig().min_overlap,
                           xs_momentum=xs_momentum)


# The steps before the minimum-winners fill, on universes smaller than its default target.
NO_FILL = {"min_winners": 1}


def _candidates(rows: dict[str, dict]) -> pd.DataFrame:
    """rows: symbol -> overrides of direction/identity/asset_class/value_traded."""
    out = {
        s: {
            "direction": r.get("direction", "long"),
            "identity": r.get("identity", s.split(":")[1]),
            "asset_class": r.get("asset_class", "equity"),
            "value_traded": r.get("value_traded", 1e7),
        }
        for s, r in rows.items()
    }
    return pd.DataFrame.from_dict(out, orient="index")


def _factor_universe(seed: int = 7):
    """3 latent factors x 4 members, member j = drift_j + vol_j * (factor + 0.5 * idio).

    Drift and scale do not change correlations (rho ~ 0.8 within, ~0 across), so the clusters
    are the factors; member 0 has the highest drift, the lowest volatility and the most value
    traded, so it is the known best of its cluster on three of the four components.
    """
    rng = np.random.default_rng(seed)
    f = rng.normal(0.0, 0.01, (T, 3))
    drift, vol, liq = [0.004, 0.0015, 0.001, 0.0005], [0.8, 1.0, 1.2, 1.4], [1e9, 1e8, 5e7, 1e7]
    cols, rows = {}, {}
    for k in range(3):
        for j in range(4):
            s = f"NYSE:F{k}M{j}"
            cols[s] = drift[j] + vol[j] * (f[:, k] + 0.5 * rng.normal(0.0, 0.01, T))
            rows[s] = {"value_traded": liq[j]}
    cols[BASELINE] = rng.normal(0.0005, 0.01, T)
    return pd.DataFrame(cols, index=SESSIONS), _candidates(rows)


def _row(res, symbol: str) -> pd.Series:
    a = res.audit.set_index("symbol")
    return a.loc[symbol]


def test_latent_factors_three_clusters_and_known_winners():
    returns, cands = _factor_universe()
    res = select_universe(cands, returns, _params(min_momentum=-1.0, **NO_FILL))
    cl = res.clusters.clusters.drop(BASELINE)
    groups = {frozenset(g.index) for _, g in cl.groupby(cl)}
    assert groups == {frozenset(f"NYSE:F{k}M{j}" for j in range(4)) for k in range(3)}
    # tight clusters (rho ~ 0.8): n_c = round(2 * (0.5 + 0.2)) = 1
    assert set(res.audit["n_keep_cluster"].dropna()) == {1}
    assert sorted(res.winners["symbol"]) == sorted([BASELINE, "NYSE:F0M0", "NYSE:F1M0", "NYSE:F2M0"])
    for k in range(3):
        r = _row(res, f"NYSE:F{k}M0")
        assert r["reason"] == f"top 1 of cluster {r['cluster']} (long): rank 1"
        loser = _row(res, f"NYSE:F{k}M3")
        assert loser["outcome"] == "below_top_n"
        assert loser["reason"] == (
            f"rank {loser['rank_in_cluster']} in cluster {loser['cluster']} (long); cluster keeps top 1"
        )
    # invariants: every candidate once, winners are exactly the selected rows, funnel adds up
    assert sorted(res.audit["symbol"]) == sorted([*cands.index, BASELINE])
    assert res.audit["reason"].str.len().min() > 0
    assert res.funnel["raw"] == 12 and res.funnel["with_data"] == 12
    assert res.funnel["winners"] == 4 == len(res.winners)
    assert sum(res.funnel[o] for o in OUTCOMES) == len(res.audit)
    assert res.funnel["clusters"] == 4  # 3 factors + the independent baseline
    assert res.funnel["baseline_added"] == 1 and res.funnel["liquidity_missing"] == 1


def test_diverse_cluster_keeps_more_than_tight_cluster():
    returns, cands = _factor_universe()
    res = select_universe(cands, returns, _params(min_momentum=-1.0, max_clusters=1, top_n=2, **NO_FILL))
    # one big cluster of 13 near-independent groups: mean rho ~ 0.2, n_c = round(2 * 1.3) = 3
    assert res.funnel["clusters"] == 1
    intra = res.clusters.corr.to_numpy()[np.triu_indices(13, 1)].mean()
    assert res.audit["n_keep_cluster"].iloc[0] == math.floor(2 * (0.5 + 1 - intra) + 0.5) == 3
    assert res.funnel["selected"] == 3


def test_components_match_independent_computation():
    rng = np.random.default_rng(4)
    x = rng.standard_t(4, (T, 3)) * 0.01 + 0.001
    x[rng.random((T, 3)) < 0.1] = np.nan
    streams = pd.DataFrame(x, index=SESSIONS, columns=["A:A", "A:B", "A:C"])
    vt = pd.Series({"A:A": 1e6, "A:B": np.nan, "A:C": 0.0})
    comps = alpha_components(streams, vt)
    for s in streams.columns:
        r = streams[s].dropna().to_numpy()
        lo, hi = np.quantile(r, 0.05), np.quantile(r, 0.95)
        expected_af = skew(r, bias=False) + r[r >= hi].mean() / abs(r[r <= lo].mean())
        assert comps.at[s, "ret"] == pytest.approx(np.prod(1 + r) - 1, rel=1e-12)
        assert comps.at[s, "inv_vol"] == pytest.approx(1 / np.std(r, ddof=1), rel=1e-12)
        assert comps.at[s, "antifragility"] == pytest.approx(expected_af, rel=1e-10)
    assert comps.at["A:A", "liquidity"] == pytest.approx(math.log1p(1e6))
    assert np.isnan(comps.at["A:B", "liquidity"]) and comps.at["A:C", "liquidity"] == 0.0
    # a stale (flat) stream cannot win on inverse volatility
    flat = alpha_components(pd.DataFrame({"A:F": np.zeros(T)}), pd.Series({"A:F": 1.0}))
    assert np.isnan(flat.at["A:F", "inv_vol"]) and np.isnan(flat.at["A:F", "antifragility"])


def test_alpha_scores_percentile_and_minmax_by_hand():
    comps = pd.DataFrame(
        {
            "ret": [0.1, 0.2, 0.3, 0.0],
            "inv_vol": [50.0, 40.0, 30.0, 10.0],
            "antifragility": [1.0, 1.0, 2.0, np.nan],
            "liquidity": [10.0, np.nan, 12.0, 11.0],
        },
        index=["A:A", "A:B", "A:C", "A:D"],
    )
    clusters = pd.Series({"A:A": 1, "A:B": 1, "A:C": 1, "A:D": 2})
    xs = alpha_scores(comps, clusters, xs_momentum=True)
    # ranks: ret 2,3,4,1 /4; inv_vol 4,3,2,1 /4; antifrag (1.5,1.5,3)/3, NaN->0; liq 1/3, unknown, 3/3, 2/3
    assert xs["ret_score"].tolist() == [0.5, 0.75, 1.0, 0.25]
    assert xs["antifragility_score"].tolist() == [0.5, 0.5, 1.0, 0.0]
    assert xs["liquidity_score"].tolist() == pytest.approx([1 / 3, np.nan, 1.0, 2 / 3], nan_ok=True)
    assert xs.at["A:A", "score"] == pytest.approx((0.5 + 1.0 + 0.5 + 1 / 3) / 4)
    assert xs.at["A:B", "score"] == pytest.approx((0.75 + 0.75 + 0.5) / 3)  # unknown liquidity: left out
    mm = alpha_scores(comps, clusters, xs_momentum=False)
    assert mm.loc[["A:A", "A:B", "A:C"], "ret_score"].tolist() == pytest.approx([0.0, 0.5, 1.0])
    assert mm.loc[["A:A", "A:B", "A:C"], "inv_vol_score"].tolist() == pytest.approx([1.0, 0.5, 0.0])
    assert mm.loc[["A:A", "A:B", "A:C"], "antifragility_score"].tolist() == [0.0, 0.0, 1.0]
    assert mm.loc[["A:A", "A:B", "A:C"], "liquidity_score"].tolist() == pytest.approx([0.0, np.nan, 1.0], nan_ok=True)
    # singleton cluster: every present component is constant -> 0.5, missing one -> 0
    assert mm.loc[
        "A:D", ["ret_score", "inv_vol_score", "antifragility_score", "liquidity_score"]
    ].tolist() == [
        0.5,
        0.5,
        0.0,
        0.5,
    ]


@pytest.mark.parametrize(
    ("size", "rho", "top_n", "expected"),
    [
        (1, float("nan"), 2, 1),
        (4, 0.9, 2, 1),
        (4, 0.3, 2, 2),
        (4, 0.0, 2, 3),
        (2, 0.0, 2, 2),
        (5, 0.25, 2, 3),
        (5, -0.4, 3, 5),
        (6, float("nan"), 1, 2),
    ],
)
def test_keep_count_formula(size, rho, top_n, expected):
    # n_c = max(1, min(size, round_half_up(top_n * (0.5 + clip(1 - rho, 0, 1)))));
    # e.g. rho -0.4 -> diversity clipped to 1 -> round(3 * 1.5) = 5
    assert keep_count(size, rho, top_n) == expected


def test_xs_momentum_on_and_off_pick_different_winners():
    """Cluster A holds a and b: a = (1 - eps) * s + delta, b = s.

    a beats b by a hair on return, inverse volatility and antifragility (scale-free skew is equal;
    the shift raises the tail ratio); b has far more value traded. Within-cluster min-max turns
    every hair into a full 0-vs-1 vote, so a wins 3 components to 1. Global percentile ranks
    turn a hair into one rank step (1/N) but b's liquidity lead into many steps, because the six
    candidates of the other clusters trade amounts in between — so b wins.
    """
    rng = np.random.default_rng(21)
    s = 0.001 + rng.normal(0.0, 0.01, T)
    cols = {"NYSE:A": (1 - 1e-3) * s + 1e-5, "NYSE:B": s}
    rows = {"NYSE:A": {"value_traded": 1e6}, "NYSE:B": {"value_traded": 1e10}}
    f = rng.normal(0.0, 0.01, (T, 2))
    for k in range(2):
        for j in range(3):
            sym = f"NYSE:O{k}{j}"
            cols[sym] = 0.001 + f[:, k] + 0.4 * rng.normal(0.0, 0.01, T)
            rows[sym] = {"value_traded": 10.0 ** (7 + j + k * 0.5)}
    cols[BASELINE] = rng.normal(0.0, 0.01, T)
    returns = pd.DataFrame(cols, index=SESSIONS)
    cands = _candidates(rows)
    base = {"min_momentum": -1.0, "top_n": 1, **NO_FILL}
    on = select_universe(cands, returns, _params(xs_momentum=True, **base))
    off = select_universe(cands, returns, _params(xs_momentum=False, **base))

    a, b = _row(on, "NYSE:A"), _row(on, "NYSE:B")
    assert a["cluster"] == b["cluster"]
    # the construction's preconditions: a ahead by one rank step on three components, b far ahead
    # on liquidity
    n_scored = len(on.clusters.clusters)  # 8 candidates + the baseline
    for c in ("ret", "inv_vol", "antifragility"):
        assert a[c] > b[c]
        assert a[f"{c}_score"] - b[f"{c}_score"] == pytest.approx(1 / n_scored)
    # liquidity: the added baseline has none (NaN is not ranked), so 8 ranked values, a lowest, b top
    assert b["liquidity_score"] - a["liquidity_score"] == pytest.approx(7 / 8)

    assert "NYSE:B" in set(on.winners["symbol"]) and "NYSE:A" not in set(on.winners["symbol"])
    assert "NYSE:A" in set(off.winners["symbol"]) and "NYSE:B" not in set(off.winners["symbol"])
    assert _row(off, "NYSE:A")["score"] == pytest.approx(0.75)
    assert _row(off, "NYSE:B")["score"] == pytest.approx(0.25)
    assert set(on.winners["symbol"]) != set(off.winners["symbol"])


def test_momentum_gate_reason_and_no_slot_taken():
    returns, cands = _factor_universe()
    returns["NYSE:F2M0"] = returns["NYSE:F2M0"] - 0.008  # best member now falls ~ -25 %
    res = select_universe(cands, returns, _params(**NO_FILL))
    r = _row(res, "NYSE:F2M0")
    expected_ret = np.prod(1 + returns["NYSE:F2M0"].to_numpy()) - 1
    assert r["ret"] == pytest.approx(expected_ret, rel=1e-12) and expected_ret < -0.05
    assert r["outcome"] == "momentum_gate" and not r["selected"]
    assert r["reason"] == f"momentum gate: 60-session return {expected_ret * 100:.1f}% < -5.0%"
    assert pd.isna(r["rank_in_cluster"])
    # the cluster's slot goes to the best-scoring member that passes the gate, ranked 1
    a = res.audit
    peers = a[(a["cluster"] == r["cluster"]) & (a["ret"] >= -0.05)].sort_values("score", ascending=False)
    assert len(peers) >= 2
    best = peers.iloc[0]
    assert best["selected"] and best["rank_in_cluster"] == 1
    assert set(a.loc[a["cluster"] == r["cluster"], "symbol"]) & set(res.winners["symbol"]) == {best["symbol"]}
    assert res.funnel["momentum_gate"] == int((a["ret"] < -0.05).sum())


def test_momentum_gate_message_format_exact():
    x = np.full(T, np.nan)
    x[-20:] = (1 - 0.073) ** (1 / 20) - 1  # 20 sessions compounding to -7.3 %
    x[-20:] += np.linspace(-1e-4, 1e-4, 20) - np.linspace(-1e-4, 1e-4, 20).mean()
    returns = pd.DataFrame({"NYSE:DOWN": x, BASELINE: np.linspace(-0.01, 0.01, T)}, index=SESSIONS)
    res = select_universe(_candidates({"NYSE:DOWN": {}}), returns, _params(**NO_FILL))
    r = _row(res, "NYSE:DOWN")
    assert f"{r['ret']:.3f}" == "-0.073"
    assert r["reason"] == "momentum gate: 60-session return -7.3% < -5.0%"


def test_identity_dedup_keeps_higher_score_and_names_winner():
    returns, cands = _factor_universe()
    rng = np.random.default_rng(99)
    btc = 0.003 + rng.normal(0.0, 0.03, T)
    returns["BINANCE:BTCUSDT"] = btc
    returns["COINBASE:BTCUSD"] = btc + rng.normal(0.0, 1e-5, T)
    extra = _candidates(
        {
            "BINANCE:BTCUSDT": {"identity": "BTC", "asset_class": "crypto", "value_traded": 5e10},
            "COINBASE:BTCUSD": {"identity": "BTC", "asset_class": "crypto", "value_traded": 1e6},
        }
    )
    res = select_universe(pd.concat([cands, extra]), returns, _params(min_momentum=-1.0, **NO_FILL))
    win, lose = _row(res, "BINANCE:BTCUSDT"), _row(res, "COINBASE:BTCUSD")
    assert win["score"] > lose["score"]
    assert win["selected"] and not lose["selected"]
    assert lose["outcome"] == "identity_duplicate"
    assert lose["reason"] == (
        f"duplicate identity 'BTC': BINANCE:BTCUSDT kept (score {win['score']:.3f} vs {lose['score']:.3f})"
    )
    assert res.funnel["identity_duplicate"] == 1


def test_baseline_kept_even_when_it_scores_worst():
    returns, cands = _factor_universe()
    rng = np.random.default_rng(3)
    returns[BASELINE] = -0.01 + rng.normal(0.0, 0.05, T)  # falls hard, very volatile
    cands = pd.concat(
        [cands, _candidates({BASELINE: {"identity": "SPY", "asset_class": "etf", "value_traded": 1.0}})]
    )
    res = select_universe(cands, returns, _params(**NO_FILL))
    b = _row(res, BASELINE)
    assert b["score"] == res.audit["score"].min()
    assert b["ret"] < -0.05  # would fail the momentum gate
    assert b["selected"] and b["outcome"] == "baseline"
    assert b["reason"] == "baseline (always kept)"
    assert pd.isna(b["rank_in_cluster"])
    assert res.funnel["baseline_added"] == 0 and res.funnel["raw"] == 13


def test_falling_short_preferred_over_rising_short():
    rng = np.random.default_rng(12)
    f = rng.normal(0.0, 0.01, T)
    raw = {
        "NYSE:FALL": -0.004 + f + 0.3 * rng.normal(0.0, 0.01, T),  # price falls: good short
        "NYSE:RISE": 0.004 + f + 0.3 * rng.normal(0.0, 0.01, T),  # price rises: bad short
        BASELINE: rng.normal(0.0, 0.01, T),
    }
    returns = pd.DataFrame(raw, index=SESSIONS)
    cands = _candidates(
        {
            "NYSE:FALL": {"direction": "short", "value_traded": 1e7},
            "NYSE:RISE": {"direction": "short", "value_traded": 1e7},
        }
    )
    res = select_universe(cands, returns, _params(min_momentum=-1.0, **NO_FILL))
    fall, rise = _row(res, "NYSE:FALL"), _row(res, "NYSE:RISE")
    assert fall["cluster"] == rise["cluster"]
    # scored on the synthetic-long stream max(-r, -1)
    assert fall["ret"] == pytest.approx(np.prod(1 - raw["NYSE:FALL"]) - 1, rel=1e-12)
    assert fall["ret"] > 0 > rise["ret"]
    assert fall["score"] > rise["score"]
    assert fall["selected"] and fall["reason"] == f"top 1 of cluster {fall['cluster']} (short): rank 1"
    assert not rise["selected"] and rise["outcome"] == "below_top_n"
    # and with the default gate the rising short is stopped by momentum first
    gated = _row(select_universe(cands, returns, _params(**NO_FILL)), "NYSE:RISE")
    assert gated["outcome"] == "momentum_gate"


def test_insufficient_data_and_absent_candidates():
    returns, cands = _factor_universe()
    returns.loc[returns.index[:45], "NYSE:F1M0"] = np.nan  # 15 sessions left
    cands = pd.concat([cands, _candidates({"NYSE:GONE": {}})])  # no returns column at all
    res = select_universe(cands, returns, _params(min_momentum=-1.0, **NO_FILL))
    short = _row(res, "NYSE:F1M0")
    assert short["reason"] == "insufficient data: 15 of 60 sessions with returns < min_overlap 20"
    assert pd.isna(short["cluster"]) and pd.isna(short["score"])
    assert (
        _row(res, "NYSE:GONE")["reason"]
        == "insufficient data: 0 of 60 sessions with returns < min_overlap 20"
    )
    assert res.funnel["insufficient_data"] == 2 and res.funnel["with_data"] == 11
    assert "NYSE:F1M0" not in res.clusters.clusters.index


def test_missing_baseline_raises_with_name():
    returns, cands = _factor_universe()
    with pytest.raises(
        ValueError,
        match=re.escape(
            "baseline 'AMEX:SPY' is not in returns; the 60-session prep must include the baseline"
        ),
    ):
        select_universe(cands, returns.drop(columns=[BASELINE]), _params(**NO_FILL))


def test_bad_inputs_are_named():
    returns, cands = _factor_universe()
    params = _params(**NO_FILL)
    with pytest.raises(ValueError, match=re.escape("candidates lacks columns ['value_traded']")):
        select_universe(cands.drop(columns=["value_traded"]), returns, params)
    bad = cands.copy()
    bad.loc["NYSE:F0M0", "direction"] = "sideways"
    with pytest.raises(
        ValueError, match=re.escape("candidates.direction must be 'long' or 'short', got ['sideways']")
    ):
        select_universe(bad, returns, params)
    with pytest.raises(ValueError, match=re.escape("params must be a SelectionParams (SelectionParams.from_config), "
                                                   "got SelectionConfig")):
        select_universe(cands, returns, SelectionConfig())
    synthetic = returns.copy()
    synthetic.attrs["synthetic_long"] = True
    with pytest.raises(ValueError, match="already synthetic-long"):
        select_universe(cands, synthetic, params)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("top_n", 0, "Input should be greater than or equal to 1"),
    ("min_winners", 0, "Input should be greater than or equal to 1"),
    ("min_winners", 1001, "Input should be less than or equal to 1000"),
    ("float32_min_symbols", 1, "Input should be greater than or equal to 2"),
    ("min_momentum", -1.5, "Input should be greater than or equal to -1"),
    ("min_momentum", float("nan"), "Input should be a finite number"),
    ("baseline", "spy", "String should match pattern"),
])
def test_selection_config_bounds(field, value, message):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=re.escape(message)):
        SelectionConfig(**{field: value})


def test_params_are_the_manifest_sections_built_in_one_place():
    cfg = Config(selection=SelectionConfig(top_n=3, min_winners=7), data=DataConfig(min_overlap=30),
                 features={"feat_xs_momentum": False})
    p = SelectionParams.from_config(cfg)
    assert p.selection is cfg.selection and (p.min_overlap, p.xs_momentum) == (30, False)
    assert p.record() == {"baseline": "AMEX:SPY", "threshold": 0.45, "max_clusters": 25, "top_n": 3,
                          "min_momentum": -0.05, "min_winners": 7, "float32_min_symbols": 5000,
                          "min_overlap": 30, "xs_momentum": False}


# ------------------------------------------------------------------------------- minimum winners
def _hand_audit() -> pd.DataFrame:
    """Scores and outcomes set by hand: 4 winners, 5 below_top_n in 3 clusters, one gated and one
    duplicate that score higher than every loser (neither may fill)."""
    rows = [  # symbol, cluster, direction, score, rank_in_cluster, outcome
        ("X:A1", 1, "long", 0.90, 1, "selected"),
        ("X:A2", 1, "long", 0.80, 2, "below_top_n"),
        ("X:A3", 1, "long", 0.30, 3, "below_top_n"),
        ("X:B1", 2, "short", 0.70, 1, "selected"),
        ("X:B2", 2, "short", 0.50, 2, "below_top_n"),
        ("X:B3", 2, "short", 0.45, 3, "below_top_n"),
        ("X:C1", 3, "long", 0.20, 1, "selected"),
        ("X:C2", 3, "long", 0.10, 2, "below_top_n"),
        ("X:G1", 3, "long", 0.95, pd.NA, "momentum_gate"),
        ("X:D1", 2, "long", 0.99, pd.NA, "identity_duplicate"),
        ("X:BASE", 4, "long", 0.40, pd.NA, "baseline"),
    ]
    audit = pd.DataFrame(rows, columns=["symbol", "cluster", "direction", "score", "rank_in_cluster", "outcome"])
    audit = audit.set_index("symbol")
    audit["cluster"] = audit["cluster"].astype("Int64")
    audit["rank_in_cluster"] = audit["rank_in_cluster"].astype("Int64")
    audit["reason"] = "r"
    return audit


def test_fill_is_round_robin_over_clusters_by_score_exact():
    audit = _hand_audit()
    assert fill_min_winners(audit, target=8) == 4
    filled = audit.index[audit["outcome"] == "min_winners_fill"].tolist()
    # round 1: the second of each cluster, best first (A2 0.8, B2 0.5, C2 0.1); round 2: B3 0.45
    # beats A3 0.3. Best-score-first alone would have taken A3 before C2.
    assert sorted(filled) == ["X:A2", "X:B2", "X:B3", "X:C2"]
    assert audit.at["X:C2", "reason"] == (
        "min_winners fill 3 of 4: 4 winners < min_winners 8; round 1 over clusters, cluster 3 (long) rank 2, "
        "score 0.100"
    )
    assert audit.at["X:B3", "reason"].startswith("min_winners fill 4 of 4: 4 winners < min_winners 8; round 2 ")
    assert audit.at["X:A3", "outcome"] == "below_top_n" and audit.at["X:A3", "reason"] == "r"
    assert audit.at["X:G1", "reason"] == "r; not taken by the min_winners fill (momentum gate)"
    assert audit.at["X:D1", "outcome"] == "identity_duplicate" and audit.at["X:D1", "reason"] == "r"


def test_fill_takes_nothing_at_or_above_target_and_stops_when_the_pool_is_empty():
    audit = _hand_audit()
    assert fill_min_winners(audit, target=4) == 0
    assert audit.equals(_hand_audit())  # untouched, the gated reason included
    assert fill_min_winners(audit, target=20) == 5  # every below_top_n, never the gated/duplicate
    assert set(audit.index[audit["outcome"] == "min_winners_fill"]) == {"X:A2", "X:A3", "X:B2", "X:B3", "X:C2"}


def test_select_universe_fills_to_min_winners_and_records_it():
    returns, cands = _factor_universe()
    base = select_universe(cands, returns, _params(min_momentum=-1.0, **NO_FILL))
    res = select_universe(cands, returns, _params(min_momentum=-1.0, min_winners=9))
    assert res.funnel["winners"] == 9 == len(res.winners)
    assert (res.funnel["min_winners"], res.funnel["min_winners_fill"], res.funnel["min_winners_shortfall"]) == (9, 5, 0)
    assert sum(res.funnel[o] for o in OUTCOMES) == len(res.audit)
    # the top-n winners are unchanged; the extra symbols were below_top_n before
    assert set(base.winners["symbol"]) < set(res.winners["symbol"])
    extra = res.audit[res.audit["outcome"] == "min_winners_fill"]
    assert set(extra["symbol"]) == set(res.winners["symbol"]) - set(base.winners["symbol"])
    assert (base.audit.set_index("symbol").loc[extra["symbol"], "outcome"] == "below_top_n").all()
    # round-robin: 3 clusters hold the 5 extras as 2 + 2 + 1, each a cluster's best remaining
    per_cluster = extra.groupby("cluster").size().sort_values().tolist()
    assert per_cluster == [1, 2, 2]
    assert (extra["rank_in_cluster"] <= 3).all() and extra["selected"].all()
    # the audit keeps its columns: the record is the outcome and the reason
    assert list(res.audit.columns) == list(base.audit.columns)


def test_min_winners_is_capped_by_the_symbols_with_data_and_a_gap_is_recorded():
    returns, cands = _factor_universe()
    returns["NYSE:F2M3"] = returns["NYSE:F2M3"] - 0.008  # falls ~ -25 %: gated
    returns.loc[returns.index[:50], "NYSE:F1M3"] = np.nan  # 10 sessions: no data
    res = select_universe(cands, returns, _params(min_winners=1000))
    n_gated = res.funnel["momentum_gate"]
    assert n_gated >= 1 and res.funnel["insufficient_data"] == 1 and res.funnel["identity_duplicate"] == 0
    # 11 candidates with data + the baseline; the gated ones never fill
    assert res.funnel["min_winners"] == 12
    assert res.funnel["winners"] == 12 - n_gated and res.funnel["min_winners_shortfall"] == n_gated
    assert res.funnel["below_top_n"] == 0  # every eligible loser was taken
    gated = res.audit[res.audit["outcome"] == "momentum_gate"]
    assert "NYSE:F2M3" in set(gated["symbol"]) and not gated["selected"].any()
    assert gated["reason"].str.endswith("; not taken by the min_winners fill (momentum gate)").all()
    assert _row(res, "NYSE:F1M3")["outcome"] == "insufficient_data"


def _sp500_window(end: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The 60 sessions of skfolio's 20 S&P 500 stocks (all screened short, as on a crash day) and
    the S&P 500 index (the baseline, long) ending at `end`, as the real-data fixture names them."""
    from portfolio_assets_tests.realdata import BASELINE as INDEX
    from portfolio_assets_tests.realdata import STOCKS, skfolio_closes

    closes, _ = skfolio_closes()
    stocks = [f"{exchange}:{t}" for t, (exchange, _, _) in STOCKS.items()]
    prices = closes[[*stocks, INDEX]].dropna(how="all")
    returns = prices.pct_change().loc[:end].iloc[-60:]
    cands = pd.DataFrame({"direction": "short", "identity": [s.split(":")[1] for s in stocks],
                          "asset_class": "equity", "value_traded": np.nan}, index=stocks)  # closes only
    return returns, cands


@pytest.mark.parametrize(("end", "collapsed"), [("2008-10-15", 8), ("2020-03-20", 4)])
def test_real_crash_days_keep_at_least_min_winners(end, collapsed):
    returns, cands = _sp500_window(end)
    assert returns.index[-1] == pd.Timestamp(end) and len(returns) == 60 and returns.notna().all().all()
    before = select_universe(cands, returns, _params(baseline="SP:SPX", **NO_FILL))
    assert before.funnel["winners"] == collapsed  # the crash-day collapse this rule is for
    res = select_universe(cands, returns, _params(baseline="SP:SPX"))
    pool = res.funnel["with_data"] + 1  # the stocks with data and the baseline
    assert res.funnel["winners"] >= min(10, pool) and res.funnel["winners"] == 10
    assert res.funnel["min_winners_fill"] == 10 - collapsed and res.funnel["min_winners_shortfall"] == 0
    # every stock was scored on its synthetic-long stream max(-r, -1)
    audit = res.audit.set_index("symbol")
    for s in cands.index:
        assert audit.at[s, "ret"] == pytest.approx(np.prod(1.0 - returns[s].to_numpy()) - 1.0, rel=1e-12)
    extra = audit[audit["outcome"] == "min_winners_fill"]
    assert (extra["ret"] >= -0.05).all() and (extra["direction"] == "short").all()
    assert set(before.winners["symbol"]) < set(res.winners["symbol"])
