"""Reports (SPEC §6 "Reports (13)"): numbers equal the tournament's, hand-checked tables, links that
resolve, offline QuantStats, the decay audit behind its flag, and the golden bundle."""

from __future__ import annotations

import dataclasses
import json
import re
import socket
import struct
import zlib
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from portfolio_assets.ledger import file_hash
from portfolio_assets.manifest import BacktestConfig
from portfolio_assets.quant.clustering import bucket_stats, pairwise_correlation, top_correlated_pairs
from portfolio_assets.quant.metrics import max_drawdown
from portfolio_assets.quant.regimes import detect_regime
from portfolio_assets.quant.simulate import simulator_params
from portfolio_assets.quant.walkforward import WeightsDecision, make_windows, run_walkforward, summary_table
from portfolio_assets.reports.builder import (
    ReportInputs,
    build_reports,
    engine_ranking,
    slippage_decay_table,
    tearsheet_targets,
)
from portfolio_assets.reports.golden import MANIFEST_NAME, select_golden, write_golden
from portfolio_assets.reports.markdown import health_markdown, markdown_to_html, md_table
from portfolio_assets.reports.tearsheet import annual_returns, drawdown_periods, monthly_returns

BASELINE = "AMEX:SPY"
PRODUCTION = "inverse_vol"
PARTITION = "2024-11-28"  # the last session of the fixture


# ------------------------------------------------------------------------------------------------
# a real tournament on seeded random data
# ------------------------------------------------------------------------------------------------


def _tiny_png() -> bytes:
    """A valid 1x1 grey PNG (stands in for the images other assets write)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00\x80")) + chunk(b"IEND", b"")


def _market_data(seed: int = 7, n: int = 500):
    rng = np.random.default_rng(seed)
    sessions = pd.bdate_range("2022-12-30", periods=n, name="session")
    filtered = [f"NYSE:F{i:02d}" for i in range(12)]
    raw_only = [f"NASDAQ:R{i:02d}" for i in range(6)]
    symbols = [BASELINE, *filtered, *raw_only]
    market = rng.standard_t(5, n) * 0.008 + 0.0004
    factors = rng.normal(0, 0.006, (n, 3))
    loadings = rng.uniform(0.3, 1.2, (len(symbols), 3))
    betas = rng.uniform(0.6, 1.4, len(symbols))
    drift = np.r_[0.0, rng.normal(0.0006, 0.0004, 12), rng.normal(-0.0002, 0.0004, 6)]
    noise = rng.normal(0, 0.012, (n, len(symbols)))
    rets = market[:, None] * betas + factors @ loadings.T + noise + drift
    rets[:, 0] = market
    returns = pd.DataFrame(rets, index=sessions, columns=symbols)
    directions = pd.Series("long", index=symbols)
    directions[["NYSE:F10", "NYSE:F11"]] = "short"
    return returns, directions, filtered, raw_only


def _engines(filtered: list[str], all_symbols: list[str]):
    def ew(symbols):
        return pd.Series(1.0 / len(symbols), index=symbols)

    def inverse_vol(window, train):
        vol = train[filtered].std()
        return (1 / vol) / (1 / vol).sum()

    def momentum(window, train):
        top = train[filtered].mean().nlargest(4).index
        fallbacks = ["momentum -> inverse_vol: forced in test"] if window.k == 3 else []
        return WeightsDecision(ew(list(top)), {"fallbacks": fallbacks})

    def churn(window, train):  # built to over-trade: all-in on a different asset every window
        return pd.Series({filtered[window.k % len(filtered)]: 1.0})

    def low_vol(window, train):
        return ew(list(train[filtered].std().nsmallest(5).index))

    def tilt(window, train):
        rank = train[filtered].mean().rank()
        return rank / rank.sum()

    def best_two(window, train):
        return ew(list(train[filtered].mean().nlargest(2).index))

    def half_market(window, train):
        w = ew(filtered) * 0.5
        w[BASELINE] = 0.5
        return w

    return {
        "market": lambda w, t: pd.Series({BASELINE: 1.0}),
        "raw_pool_ew": lambda w, t: ew(all_symbols),
        "equal_weight": lambda w, t: ew(filtered),
        "inverse_vol": inverse_vol,
        "momentum": momentum,
        "churn": churn,
        "low_vol": low_vol,
        "tilt": tilt,
        "best_two": best_two,
        "half_market": half_market,
    }


def make_report_inputs(reports_dir: Path, **overrides) -> ReportInputs:
    """A realistic `ReportInputs`: 10 engines x 2 simulators x 240 out-of-sample sessions from
    `quant.walkforward`, real buckets and regime; images and data_health.md written like the
    upstream assets do."""
    returns, directions, filtered, raw_only = _market_data()
    all_symbols = list(returns.columns)
    bt = BacktestConfig()
    windows = make_windows(returns.index, bt.train, bt.test, bt.step)
    engines = _engines(filtered, all_symbols)
    results = run_walkforward(returns, directions, windows, engines, simulator_params(bt))

    summary = summary_table(results)
    n_fb = {name: sum(bool(d.diagnostics.get("fallbacks")) for d in res.decisions) for name, res in results.items()}
    summary["n_fallbacks"] = summary["engine"].map(n_fb)
    summary["n_violations"] = 0
    win = pd.concat([res.window_table() for res in results.values()], ignore_index=True)
    regime = detect_regime(returns[BASELINE], returns[filtered], spectral=True)
    labels = regime.features["label"]
    win["regime"] = [labels.asof(t) for t in win["train_last"]]
    clusters = pd.Series([i % 4 + 1 for i in range(len(all_symbols))], index=all_symbols)
    win["n_buckets"] = 4
    win["violations"] = ""
    win["fallbacks"] = [
        "; ".join(results[e].decisions[k].diagnostics.get("fallbacks", [])) for e, k in zip(win["engine"], win["k"], strict=True)
    ]
    long = pd.concat(
        [res.returns_frame().rename_axis("session").reset_index()
         .melt(id_vars="session", var_name="simulator", value_name="ret").assign(engine=name)
         for name, res in results.items()],
        ignore_index=True,
    )[["session", "engine", "simulator", "ret"]]

    train = returns.iloc[-252:]
    rows = []
    for name, fit in engines.items():
        w = fit(windows[-1], train)
        w = w.weights if isinstance(w, WeightsDecision) else w
        for sym, weight in w.items():
            sign = -1.0 if directions[sym] == "short" else 1.0
            rows.append({"engine": name, "symbol": sym, "bucket": int(clusters[sym]), "direction": directions[sym],
                         "weight": float(weight), "net_weight": float(weight) * sign, "is_production": name == PRODUCTION,
                         "engine_used": name, "asset_class": "etf" if sym == BASELINE else "equity",
                         "sector": "Index" if sym == BASELINE else "Technology"})
    weights = pd.DataFrame(rows)

    audit = pd.DataFrame({
        "symbol": all_symbols,
        "direction": directions.to_numpy(),
        "asset_class": ["etf" if s == BASELINE else "equity" for s in all_symbols],
        "cluster": pd.array([int(clusters[s]) for s in all_symbols], dtype="Int64"),
        "score": np.linspace(0.9, 0.1, len(all_symbols)),
        "selected": [s not in raw_only for s in all_symbols],
        "outcome": ["baseline" if s == BASELINE else "below_top_n" if s in raw_only else "selected" for s in all_symbols],
        "reason": ["baseline (always kept)" if s == BASELINE else
                   "rank 3 > top 2 of cluster | beaten" if s in raw_only else "top 2 of cluster: rank 1"
                   for s in all_symbols],
    })
    audit.loc[audit["symbol"] == "NASDAQ:R05", ["cluster", "outcome", "reason"]] = [
        pd.NA, "momentum_gate", "momentum gate: 60-session return -7.0% < -5.0%"]
    raw_pool_audit = pd.DataFrame({"stage": ["scanned", "scanned", "raw_pool", "forced_baseline"],
                                   "family": ["equity", "equity", "equity", "equity"],
                                   "direction": ["long", "short", "long", "long"], "count": [40, 10, 18, 1]})
    funnel = {"raw": 19, "with_data": 19, "clusters": 4, "winners": 13, "selected": 12, "baseline": 1,
              "below_top_n": 5, "momentum_gate": 1}
    health = pd.DataFrame({"symbol": all_symbols, "calendar": "XNYS", "status_before": "OK", "status": "OK",
                           "attempts": 0, "issues": ""})
    health.loc[1, ["status_before", "attempts", "issues"]] = ["GAPS", 1, "2 sessions missing, recovered"]
    corr = pairwise_correlation(returns, min_overlap=20)
    stats = bucket_stats(returns, clusters, corr)
    pairs = top_correlated_pairs(corr, 10)

    reports_dir.mkdir(parents=True, exist_ok=True)
    (reports_dir / "images").mkdir(exist_ok=True)
    for name in ("dendrogram.png", "clustermap.png", "regime.png"):
        (reports_dir / "images" / name).write_bytes(_tiny_png())
    (reports_dir / "data_health.md").write_text(health_markdown(health, PARTITION, strict=False))

    base = dict(
        partition=PARTITION, profile="demo", production_engine=PRODUCTION, baseline=BASELINE,
        summary=summary, windows=win, returns=long, weights=weights, selection_audit=audit,
        raw_pool_audit=raw_pool_audit, funnel=funnel, health=health, bucket_stats=stats, pairs=pairs,
        regime=regime.features, regime_label=regime.label, features={"feat_decay_audit": True},
        top_engines=3, quantstats_html=False,
    )
    base.update(overrides)
    return ReportInputs(**base)


# ------------------------------------------------------------------------------------------------
# helpers: read the reports back
# ------------------------------------------------------------------------------------------------


def md_tables(text: str) -> list[pd.DataFrame]:
    """Every pipe table of a Markdown document, as frames of cell strings."""
    tables, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            j = i + 2
            while j < len(lines) and lines[j].startswith("|"):
                j += 1

            def cells(line):
                return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]

            tables.append(pd.DataFrame([cells(ln) for ln in lines[i + 2:j]], columns=cells(lines[i])))
            i = j
        else:
            i += 1
    return tables


def section_table(text: str, heading: str) -> pd.DataFrame:
    """The first table after `## heading`."""
    return md_tables(text.split(f"## {heading}", 1)[1])[0]


def pct(cell: str) -> float:
    return float(cell.rstrip("%")) / 100.0


def row_of(summary: pd.DataFrame, engine: str, simulator: str) -> pd.Series:
    return summary[(summary["engine"] == engine) & (summary["simulator"] == simulator)].iloc[0]


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.targets: list[str] = []

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if (tag, key) in {("a", "href"), ("img", "src"), ("link", "href"), ("script", "src")} and value:
                self.targets.append(value)


def links_of(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".html":
        parser = _Links()
        parser.feed(text)
        return parser.targets
    return re.findall(r"\]\(([^)\s]+)\)", text)


# ------------------------------------------------------------------------------------------------
# fixtures
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """Reports built once (no QuantStats HTML): (inputs, out_dir, written paths)."""
    out = tmp_path_factory.mktemp("reports")
    inputs = make_report_inputs(out)
    written = build_reports(inputs, out)
    return inputs, out, written


def _block_network(monkeypatch, attempts: list) -> None:
    def refuse(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError(f"network blocked by test: connect to {address!r}")

    def refuse_dns(*args, **kwargs):
        attempts.append(args[:2])
        raise OSError("network blocked by test: DNS lookup")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse_dns)


@pytest.fixture(scope="module")
def offline_bundle(tmp_path_factory):
    """Reports with QuantStats HTML built while every outbound socket and DNS lookup is refused.

    top_engines=0 keeps it to the production engine's two tear-sheets (QuantStats is slow)."""
    out = tmp_path_factory.mktemp("offline")
    inputs = make_report_inputs(out, quantstats_html=True, top_engines=0)
    attempts: list = []
    with pytest.MonkeyPatch.context() as mp:
        _block_network(mp, attempts)
        # the block lives in this process: render the QuantStats pages here, not in spawned workers
        mp.setattr("portfolio_assets.reports.tearsheet.tearsheet_processes", lambda n: 1)
        with pytest.raises(OSError, match="network blocked"):  # the block is really in place
            socket.create_connection(("example.com", 443), timeout=1)
        with socket.socket() as sock, pytest.raises(OSError, match="network blocked"):
            sock.connect(("127.0.0.1", 9))
        attempts.clear()
        written = build_reports(inputs, out)
    return inputs, out, written, attempts


# ------------------------------------------------------------------------------------------------
# dashboards
# ------------------------------------------------------------------------------------------------


def test_engine_comparison_numbers_equal_the_summary_and_are_sorted_by_sharpe(bundle):
    inputs, out, _ = bundle
    table = section_table((out / "engine_comparison_report.md").read_text(), "Ranking")
    assert len(table) == len(inputs.summary) == 20
    sharpes = table["sharpe"].astype(float).to_numpy()
    assert (np.diff(sharpes) <= 0).all(), "rows must be sorted by Sharpe, best first"
    for cell in table.itertuples(index=False):
        row = row_of(inputs.summary, cell.engine, cell.simulator)
        assert float(cell.sharpe) == pytest.approx(row["sharpe"], abs=5e-4)
        assert pct(cell.cagr) == pytest.approx(row["cagr"], abs=5e-5)
        assert pct(cell.max_drawdown) == pytest.approx(row["max_drawdown"], abs=5e-5)
        assert float(cell.turnover_one_way) == pytest.approx(row["turnover_one_way"], abs=5e-3)
        assert cell.production == ("yes" if cell.engine == PRODUCTION else "")
    # the ranking helper is the same ordering with exact numbers
    ranked = engine_ranking(inputs.summary, PRODUCTION)
    assert list(ranked["engine"]) == list(table["engine"])


def test_backtest_comparison_is_the_realized_strategy_resume_in_order(bundle):
    inputs, out, _ = bundle
    table = md_tables((out / "backtest_comparison.md").read_text())[0]
    real = inputs.summary[inputs.summary["simulator"] == "realized"]
    others = real[~real["engine"].isin(["market", "raw_pool_ew", "equal_weight"])].sort_values("sharpe", ascending=False)
    assert list(table["engine"]) == ["market", "raw_pool_ew", "equal_weight", *others["engine"]]
    assert table["strategy"].iloc[0] == f"Market hold ({BASELINE})"
    market_cagr = row_of(inputs.summary, "market", "realized")["cagr"]
    for cell in table.itertuples(index=False):
        row = row_of(inputs.summary, cell.engine, "realized")
        assert pct(cell.cagr) == pytest.approx(row["cagr"], abs=5e-5)
        assert pct(cell.costs_paid) == pytest.approx(row["costs_paid"], abs=5e-6)
        assert pct(cell.excess_cagr_vs_market) == pytest.approx(row["cagr"] - market_cagr, abs=5e-5)


def test_alpha_isolation_arithmetic_by_hand(bundle):
    inputs, out, _ = bundle
    text = (out / "alpha_isolation_audit.md").read_text()
    selection = section_table(text, "Selection alpha").set_index("simulator")
    optimization = section_table(text, "Optimization alpha")
    s = inputs.summary
    for simulator in ("idealized", "realized"):
        raw, filt = row_of(s, "raw_pool_ew", simulator), row_of(s, "equal_weight", simulator)
        assert pct(selection.at[simulator, "cagr_alpha"]) == pytest.approx(filt["cagr"] - raw["cagr"], abs=5e-5)
        assert float(selection.at[simulator, "sharpe_alpha"]) == pytest.approx(filt["sharpe"] - raw["sharpe"], abs=5e-4)
        prod = optimization[(optimization["simulator"] == simulator)
                            & (optimization["engine"] == f"{PRODUCTION} (production)")].iloc[0]
        engine = row_of(s, PRODUCTION, simulator)
        assert pct(prod["cagr_alpha"]) == pytest.approx(engine["cagr"] - filt["cagr"], abs=5e-5)
        assert float(prod["sharpe_alpha"]) == pytest.approx(engine["sharpe"] - filt["sharpe"], abs=5e-4)
        assert pct(prod["cagr_vs_raw_ew"]) == pytest.approx(engine["cagr"] - raw["cagr"], abs=5e-5)
    # reference engines are not "optimizers"
    assert not optimization["engine"].isin(["market", "raw_pool_ew", "equal_weight"]).any()


def test_slippage_decay_flags_the_over_trader_and_follows_the_flag(bundle, tmp_path):
    inputs, out, _ = bundle
    text = (out / "slippage_decay_audit.md").read_text()
    assert "Over-trading rule" in text and "6x NAV per year" in text and "25% of that edge" in text
    table = md_tables(text)[0].set_index("engine")
    assert table.at["churn", "flag"].startswith("OVER-TRADING")
    assert table.at["equal_weight", "flag"] == "" and table.at["market", "flag"] == ""
    # the decay is idealized - realized of the summary
    ideal, real = row_of(inputs.summary, "churn", "idealized"), row_of(inputs.summary, "churn", "realized")
    assert pct(table.at["churn", "cagr_decay"]) == pytest.approx(ideal["cagr"] - real["cagr"], abs=5e-5)
    exact = slippage_decay_table(inputs.summary).set_index("engine")
    assert exact.at["churn", "annual_turnover"] == pytest.approx(real["turnover_one_way"] * 252 / real["n_days"])
    assert exact.at["churn", "annual_turnover"] > 6.0

    # flag off: no report, not linked; re-running in the same folder removes the stale one
    off = dataclasses.replace(inputs, features={"feat_decay_audit": False})
    written = build_reports(off, tmp_path)
    assert not (tmp_path / "slippage_decay_audit.md").exists()
    assert "slippage_decay_audit.md" not in (tmp_path / "index.md").read_text()
    build_reports(inputs, tmp_path)
    assert (tmp_path / "slippage_decay_audit.md").exists()
    build_reports(off, tmp_path)
    assert not (tmp_path / "slippage_decay_audit.md").exists()
    assert all(p.exists() for p in written)


def test_overtrading_rule_by_hand():
    def rows(engine, ideal_cagr, real_cagr, turnover):
        base = {"engine": engine, "sharpe": 1.0, "turnover_one_way": turnover, "n_days": 126.0}
        return [{**base, "simulator": "idealized", "cagr": ideal_cagr, "costs_paid": 0.0},
                {**base, "simulator": "realized", "cagr": real_cagr, "costs_paid": 0.01}]

    summary = pd.DataFrame(
        rows("market", 0.02, 0.019, 0.5)
        + rows("dragged", 0.10, 0.06, 1.0)   # edge 8%, decay 4% = 50% of edge > 25%
        + rows("fine", 0.10, 0.09, 1.0)      # decay 1% = 12.5% of edge
        + rows("loser", 0.01, -0.05, 1.0)    # no positive edge: the drag rule does not apply
        + rows("spinner", 0.03, 0.029, 3.5)  # 3.5 over half a year = 7x/yr > 6x
    )
    table = slippage_decay_table(summary).set_index("engine")
    assert table.at["dragged", "edge"] == pytest.approx(0.08)
    assert table.at["dragged", "drag_share"] == pytest.approx(0.5)
    assert table.at["dragged", "flag"] == "OVER-TRADING: cost drag 50% of edge > 25%"
    assert table.at["fine", "flag"] == "" and table.at["loser", "flag"] == ""
    assert np.isnan(table.at["loser", "drag_share"])
    assert table.at["spinner", "annual_turnover"] == pytest.approx(7.0)
    assert table.at["spinner", "flag"] == "OVER-TRADING: turnover 7.0x/yr > 6x"
    relaxed = slippage_decay_table(summary, drag_share=0.6).set_index("engine")
    assert relaxed.at["dragged", "flag"] == ""  # the threshold is a parameter, not a constant


def test_selection_weights_regime_and_bucket_reports(bundle):
    inputs, out, _ = bundle
    sel = (out / "selection_audit.md").read_text()
    assert "raw 19 → with data 19 → clusters 4 → winners 13" in sel
    losers = section_table(sel, "Losers (6) and why they lost").set_index("symbol")
    assert losers.at["NASDAQ:R05", "outcome"] == "momentum_gate" and losers.at["NASDAQ:R05", "cluster"] == ""
    assert losers.at["NASDAQ:R00", "reason"] == "rank 3 > top 2 of cluster | beaten"  # pipe survives escaping

    weights = (out / "weights.md").read_text()
    prod = section_table(weights, "Production weights").set_index("symbol")
    expected = inputs.weights[inputs.weights["is_production"]].set_index("symbol")
    assert set(prod.index) == set(expected.index)
    for sym in expected.index:
        assert float(prod.at[sym, "net_weight"]) == pytest.approx(expected.at[sym, "net_weight"], abs=5e-5)
    assert float(prod.at["NYSE:F10", "net_weight"]) < 0  # shorts are published negative
    buckets = section_table(weights, "Weight per risk bucket and engine")
    assert buckets[PRODUCTION].astype(float).sum() == pytest.approx(1.0, abs=1e-3)

    regime = (out / "regime.md").read_text()
    assert f"Current label: **{inputs.regime_label}**" in regime
    dist = section_table(regime, "Distribution").set_index("label")
    counts = inputs.regime.loc[~inputs.regime["warmup"], "label"].value_counts()
    assert {k: int(v) for k, v in dist["sessions"].items()} == counts.to_dict()

    bucket_md = (out / "buckets.md").read_text()
    stats = section_table(bucket_md, "Bucket statistics")
    assert list(stats["lead"]) == list(inputs.bucket_stats["lead"])
    assert "images/dendrogram.png" in bucket_md and "images/clustermap.png" in bucket_md


def test_every_link_in_every_report_resolves(offline_bundle):
    _, out, written, _ = offline_bundle
    index_targets = set(links_of(out / "index.md"))
    assert index_targets == set(links_of(out / "index.html")), "index.md and index.html link the same files"
    expected = {"selection_audit.md", "data_health.md", "buckets.md", "images/dendrogram.png",
                "images/clustermap.png", "regime.md", "images/regime.png", "weights.md",
                "engine_comparison_report.md", "backtest_comparison.md", "alpha_isolation_audit.md",
                "slippage_decay_audit.md", "equity_curves.png", f"tearsheets/{PRODUCTION}__realized.md",
                f"tearsheets/{PRODUCTION}__realized.html", f"tearsheets/{PRODUCTION}__idealized.md"}
    assert expected <= index_targets
    ours = [p for p in written if p.suffix == ".md" or p.name == "index.html"]
    checked = 0
    for path in ours:
        for target in links_of(path):
            assert not re.match(r"^[a-z]+://", target), f"{path.name} links outside: {target}"
            assert (path.parent / target).resolve().is_file(), f"{path.name}: broken link {target}"
            checked += 1
    assert checked > 30
    html = (out / "index.html").read_text()
    assert "<table>" in html and "<style>" in html and "http" not in html.replace("http-equiv", "")


def test_reports_run_with_the_network_blocked_including_quantstats(offline_bundle):
    inputs, out, written, attempts = offline_bundle
    assert attempts == [], f"the reports tried to reach the network: {attempts}"
    page = out / "tearsheets" / f"{PRODUCTION}__realized.html"
    assert page in written and page.stat().st_size > 50_000
    text = page.read_text()
    assert PRODUCTION in text and BASELINE in text and "qtpylib.io" not in text
    assert not list(out.glob("**/*.tmp*")), "no temp files left behind"
    assert sorted(p.name for p in (out / "tearsheets").iterdir()) == sorted(
        f"{PRODUCTION}__{s}.{x}" for s in ("idealized", "realized") for x in ("md", "html"))


# ------------------------------------------------------------------------------------------------
# tear-sheets
# ------------------------------------------------------------------------------------------------


def test_drawdown_periods_by_hand():
    idx = pd.bdate_range("2024-01-01", periods=7)
    r = pd.Series([0.10, -0.20, 0.05, 0.20, -0.10, -0.10, 0.05], index=idx)
    # wealth 1.1, .88, .924, 1.1088, .99792, .898128, .9430344; peaks 1.1 x3, 1.1088 x4
    dd = drawdown_periods(r)
    assert list(dd.columns) == ["start", "trough", "end", "depth", "length"]
    assert len(dd) == 2
    first, second = dd.iloc[0], dd.iloc[1]
    assert (first["start"], first["trough"], first["end"]) == (idx[1], idx[1], idx[3])
    assert first["depth"] == pytest.approx(0.88 / 1.1 - 1) and first["length"] == 2
    assert (second["start"], second["trough"]) == (idx[4], idx[5]) and pd.isna(second["end"])
    assert second["depth"] == pytest.approx(0.898128 / 1.1088 - 1) and second["length"] == 3
    assert dd["depth"].min() == pytest.approx(max_drawdown(r))
    assert len(drawdown_periods(r, top=1)) == 1
    # the starting capital is a peak: a first-day loss is a drawdown, recovered on day 2
    r2 = pd.Series([-0.05, 0.10], index=idx[:2])
    d2 = drawdown_periods(r2)
    assert (d2.at[0, "start"], d2.at[0, "end"], d2.at[0, "length"]) == (idx[0], idx[1], 1)
    assert d2.at[0, "depth"] == pytest.approx(-0.05)
    assert drawdown_periods(pd.Series([0.01, 0.02], index=idx[:2])).empty


def test_monthly_matrix_and_annual_returns_by_hand():
    idx = pd.DatetimeIndex(["2024-01-30", "2024-01-31", "2024-02-01", "2024-03-04", "2025-01-02"])
    r = pd.Series([0.10, -0.10, 0.05, np.nan, 0.02], index=idx)
    m = monthly_returns(r)
    assert list(m.columns) == ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    assert list(m.index) == [2024, 2025]
    assert m.at[2024, "Jan"] == pytest.approx(1.1 * 0.9 - 1)
    assert m.at[2024, "Feb"] == pytest.approx(0.05)
    assert np.isnan(m.at[2024, "Mar"]) and np.isnan(m.at[2025, "Feb"])  # NaN day is no data
    assert m.at[2025, "Jan"] == pytest.approx(0.02)
    a = annual_returns(r)
    assert a[2024] == pytest.approx(1.1 * 0.9 * 1.05 - 1) and a[2025] == pytest.approx(0.02)
    assert "| 2024 | -1.00% | 5.00% |" in md_table(m, floatfmt=".2%", index=True)


def test_tearsheet_metrics_come_from_summarize_of_the_same_series(bundle):
    inputs, out, _ = bundle
    text = (out / "tearsheets" / f"{PRODUCTION}__realized.md").read_text()
    metrics = section_table(text, "Metrics").set_index("metric")
    row, bench = row_of(inputs.summary, PRODUCTION, "realized"), row_of(inputs.summary, "market", "realized")
    assert float(metrics.at["Sharpe", PRODUCTION]) == pytest.approx(row["sharpe"], abs=5e-4)
    assert pct(metrics.at["CAGR (annualized)", PRODUCTION]) == pytest.approx(row["cagr"], abs=5e-5)
    assert float(metrics.at["Sharpe", "benchmark"]) == pytest.approx(bench["sharpe"], abs=5e-4)
    assert pct(metrics.at["Costs paid (of NAV, total)", PRODUCTION]) == pytest.approx(row["costs_paid"], abs=5e-6)
    series = inputs.series(PRODUCTION, "realized")
    monthly = section_table(text, "Monthly returns (compounded)").set_index("year")
    last = series.index[-1]
    expected = (1 + series[(series.index.year == last.year) & (series.index.month == last.month)]).prod() - 1
    assert pct(monthly.at[str(last.year), last.strftime("%b")]) == pytest.approx(expected, abs=5e-5)
    worst = section_table(text, "Worst 5 drawdowns")
    assert len(worst) <= 5 and pct(worst["depth"].iloc[0]) == pytest.approx(row["max_drawdown"], abs=5e-5)
    windows = section_table(text, "Walk-forward windows")
    assert len(windows) == 12


def test_tearsheet_targets_are_production_plus_top_k_deduplicated(bundle):
    inputs, _, written = bundle
    s = inputs.summary
    targets = tearsheet_targets(s, PRODUCTION, 3)
    assert targets[:2] == [(PRODUCTION, "idealized"), (PRODUCTION, "realized")]
    assert len(targets) == len(set(targets))
    for sim in ("idealized", "realized"):
        best = s[s["simulator"] == sim].nlargest(3, "sharpe")["engine"]
        assert all((e, sim) in targets for e in best)
    names = {p.name for p in written if p.parent.name == "tearsheets"}
    assert names == {f"{e}__{sim}.md" for e, sim in targets}
    assert tearsheet_targets(s, PRODUCTION, 0) == [(PRODUCTION, "idealized"), (PRODUCTION, "realized")]


def test_written_files_and_equity_curve(bundle):
    _, out, written = bundle
    rel = {p.relative_to(out).as_posix() for p in written}
    assert {"engine_comparison_report.md", "backtest_comparison.md", "alpha_isolation_audit.md",
            "slippage_decay_audit.md", "selection_audit.md", "weights.md", "regime.md", "buckets.md",
            "equity_curves.png", "index.md", "index.html"} <= rel
    assert written[-2:] == [out / "index.md", out / "index.html"]
    png = (out / "equity_curves.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    index = (out / "index.md").read_text()
    headings = [line[3:] for line in index.splitlines() if line.startswith("## ")]
    assert headings == ["Decision", "Today's proposed orders", "Change since the previous session",
                        "Production engine (realized simulator)", "1. Universe funnel", "2. Data health",
                        "3. Risk buckets", "4. Market regime", "5. Target weights", "6. Walk-forward tournament",
                        "7. Tear-sheets", "8. Equity curves"], "index opens with the decision, then tells the story"


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------


def test_inconsistent_or_incomplete_inputs_are_refused(bundle, tmp_path):
    inputs, _, _ = bundle
    summary = inputs.summary.copy()
    summary.loc[(summary["engine"] == "tilt") & (summary["simulator"] == "realized"), "sharpe"] += 0.01
    with pytest.raises(ValueError, match=r"summary tilt/realized sharpe=.*summarize\(\) of the stored returns"):
        build_reports(dataclasses.replace(inputs, summary=summary), tmp_path)
    assert not (tmp_path / "index.md").exists()
    with pytest.raises(ValueError, match=r"ReportInputs.weights lacks column\(s\) \['net_weight'\]"):
        dataclasses.replace(inputs, weights=inputs.weights.drop(columns="net_weight"))
    with pytest.raises(ValueError, match="production_engine 'nope' is not in the tournament summary"):
        dataclasses.replace(inputs, production_engine="nope")
    with pytest.raises(ValueError, match="partition must be a date"):
        dataclasses.replace(inputs, partition="../../etc")
    bad = inputs.summary.assign(engine=inputs.summary["engine"].replace({"tilt": "../tilt"}))
    with pytest.raises(ValueError, match="unsafe for file names"):
        dataclasses.replace(inputs, summary=bad)


def test_markdown_to_html_renders_tables_and_escapes_cells():
    md = "# Title\n\nSee [the report](a.md) and ![chart](images/x.png).\n\n" + md_table(
        pd.DataFrame({"name": ["<script>x</script>", "a|b"], "value": [1.5, float("nan")]}), floatfmt=".2f")
    html = markdown_to_html(md)
    assert "<h1>Title</h1>" in html and '<a href="a.md">the report</a>' in html
    assert '<img src="images/x.png" alt="chart">' in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<td>a|b</td>" in html and '<td class="num">1.50</td>' in html and "<td></td>" in html


# ------------------------------------------------------------------------------------------------
# golden bundle
# ------------------------------------------------------------------------------------------------


def test_select_golden_priority_and_limit(bundle):
    _, out, _ = bundle
    files = sorted(p for p in out.rglob("*") if p.is_file())
    picked = select_golden(files, out, limit=12, production_engine=PRODUCTION)
    rel = [p.relative_to(out).as_posix() for p in picked]
    assert len(rel) == 12
    assert rel[:7] == ["index.md", "index.html", "engine_comparison_report.md", "backtest_comparison.md",
                       "alpha_isolation_audit.md", "slippage_decay_audit.md", "selection_audit.md"]
    assert rel[7:9] == [f"tearsheets/{PRODUCTION}__realized.md", f"tearsheets/{PRODUCTION}__idealized.md"]
    assert rel[9:12] == ["equity_curves.png", "images/regime.png", "images/dendrogram.png"]
    everything = select_golden(files + files, out, production_engine=PRODUCTION)
    assert len(everything) == min(32, len(files)) and len(set(everything)) == len(everything)
    with pytest.raises(ValueError, match="not inside the reports root"):
        select_golden([Path("/etc/hostname")], out)
    with pytest.raises(ValueError, match="limit must be a positive integer"):
        select_golden(files, out, limit=0)


def test_write_golden_manifest_hashes_match_and_rerun_replaces(bundle, tmp_path):
    _, out, _ = bundle
    files = sorted(p for p in out.rglob("*") if p.is_file() and "golden" not in p.parts)
    picked = select_golden(files, out, limit=32, production_engine=PRODUCTION)
    golden = write_golden(tmp_path, picked, out)
    manifest = json.loads((golden / MANIFEST_NAME).read_text())
    assert manifest["count"] == len(picked) <= 32
    for entry, src in zip(manifest["files"], picked, strict=True):
        copy = golden / entry["name"]
        assert entry["source"] == src.relative_to(out).as_posix()
        assert entry["sha256"] == file_hash(copy) == file_hash(src)
        assert entry["size"] == copy.stat().st_size == src.stat().st_size
    readme = (golden / "README.md").read_text()
    assert all(f"]({e['name']})" in readme for e in manifest["files"])
    # links of the index keep working inside the bundle for the files it holds
    assert (golden / "index.md").is_file() and (golden / "images" / "regime.png").is_file()
    # a re-run with fewer files replaces the bundle (no leftovers)
    write_golden(tmp_path, picked[:3], out)
    left = sorted(p.relative_to(golden).as_posix() for p in golden.rglob("*") if p.is_file())
    assert left == sorted(["README.md", MANIFEST_NAME, *[p.relative_to(out).as_posix() for p in picked[:3]]])
    assert [p.name for p in tmp_path.iterdir()] == ["golden"]


def test_missing_upstream_artifacts_are_reported_not_linked(bundle, tmp_path):
    inputs, _, _ = bundle
    build_reports(inputs, tmp_path)  # no images/ and no data_health.md in this folder
    index = (tmp_path / "index.md").read_text()
    assert "(Data health report: `data_health.md` was not written for this partition)" in index
    assert "](images/regime.png)" not in index and "](data_health.md)" not in index
    assert "`images/dendrogram.png` was not written" in (tmp_path / "buckets.md").read_text()
    for target in links_of(tmp_path / "index.html"):
        assert (tmp_path / target).is_file()


# ------------------------------------------------------------------------------------------------
# the index's first screen and the banners
# ------------------------------------------------------------------------------------------------

TOURNAMENT_REPORTS = ("engine_comparison_report.md", "backtest_comparison.md", "alpha_isolation_audit.md",
                      "slippage_decay_audit.md", "index.md")
OTHER_REPORTS = ("selection_audit.md", "weights.md", "regime.md", "buckets.md")


def decision_rows(text: str) -> dict[str, str]:
    table = section_table(text, "Decision")
    return dict(zip(table["item"], table["value"], strict=True))


@pytest.fixture(scope="module")
def bannered(tmp_path_factory):
    """Synthetic data with point-in-time off, QuantStats for the production engine only."""
    out = tmp_path_factory.mktemp("bannered")
    inputs = make_report_inputs(out, source_kind="synthetic", pit_fidelity=False, quantstats_html=True, top_engines=0)
    return inputs, out, build_reports(inputs, out)


def test_synthetic_banner_on_every_report_look_ahead_warning_on_every_tournament_report(bannered):
    _, out, written = bannered
    sheets = [p.relative_to(out).as_posix() for p in written if p.parent.name == "tearsheets"]
    assert sorted(sheets) == ["tearsheets/inverse_vol__idealized.html", "tearsheets/inverse_vol__idealized.md",
                              "tearsheets/inverse_vol__realized.html", "tearsheets/inverse_vol__realized.md"]
    for name in (*TOURNAMENT_REPORTS, *OTHER_REPORTS, *(s for s in sheets if s.endswith(".md"))):
        lines = (out / name).read_text().split("\n\n")
        assert lines[0].startswith("# ") and lines[1].startswith("> **SYNTHETIC DATA.**"), name
        warned = any(block.startswith("> **WARNING: look-ahead.** `feat_pit_fidelity` is off") for block in lines)
        assert warned == (name in TOURNAMENT_REPORTS or name.startswith("tearsheets/")), name
    index_html = (out / "index.html").read_text()
    assert '<blockquote class="warn"><p><strong>WARNING: look-ahead.</strong>' in index_html
    assert "<blockquote><p><strong>SYNTHETIC DATA.</strong>" in index_html
    for page in (s for s in sheets if s.endswith(".html")):
        html = (out / page).read_text()
        body = html.split("<body", 1)[1]
        assert body.index("SYNTHETIC DATA.") < body.index("<h1") and "WARNING: look-ahead." in body, page
        assert "\ufe6a" not in html and "CAGR%" in html, page  # QuantStats' "CAGR﹪" glyph replaced
    assert decision_rows((out / "index.md").read_text())["Data"] == (
        "**SYNTHETIC** (embedded generated market); baseline AMEX:SPY; **look-ahead tournament**")


def test_no_banner_on_real_point_in_time_data(bundle, tmp_path):
    inputs, _, _ = bundle
    written = build_reports(dataclasses.replace(inputs, source_kind="files"), tmp_path)
    for path in written:
        if path.suffix == ".md":
            text = path.read_text()
            assert "SYNTHETIC" not in text and "WARNING: look-ahead" not in text, path.name
    assert decision_rows((tmp_path / "index.md").read_text())["Data"] == (
        "`files` source; baseline AMEX:SPY; point-in-time tournament")


def test_decision_rank_against_engines_and_market_by_hand(bundle):
    inputs, out, _ = bundle
    rows = decision_rows((out / "index.md").read_text())
    real = inputs.summary[inputs.summary["simulator"] == "realized"].sort_values("sharpe", ascending=False)
    order = list(real["engine"])
    assert rows["Rank (realized, by Sharpe)"] == (
        f"{order.index(PRODUCTION) + 1} of {len(order)} engines (market hold {BASELINE}: "
        f"{order.index('market') + 1} of {len(order)})")
    prod, market = row_of(inputs.summary, PRODUCTION, "realized"), row_of(inputs.summary, "market", "realized")
    assert rows["Against the market (annualized)"].startswith(
        f"CAGR {prod['cagr']:.2%} vs {market['cagr']:.2%} ({(prod['cagr'] - market['cagr']) * 100:+.2f} points/yr)")
    assert rows["Production engine"] == f"**{PRODUCTION}**: weights from its own rules; 12 position(s)"
    assert rows["Flags"] == "none"


def test_flags_name_a_fallback_today_relaxed_caps_and_over_trading(bundle, tmp_path):
    inputs, _, _ = bundle
    weights = inputs.weights.copy()
    weights["is_production"] = weights["engine"] == "churn"
    weights.loc[weights["engine"] == "churn", "engine_used"] = "equal_weight"
    diagnostics = pd.DataFrame({"engine": ["churn"], "engine_used": ["equal_weight"],
                                "fallbacks": ["churn -> equal_weight: solver failed"],
                                "relaxations": ["max_weight 0.25 -> 0.5 (2 symbols)"]})
    changed = dataclasses.replace(inputs, production_engine="churn", weights=weights, diagnostics=diagnostics)
    build_reports(changed, tmp_path)
    rows = decision_rows((tmp_path / "index.md").read_text())
    turnover = slippage_decay_table(inputs.summary).set_index("engine").at["churn", "annual_turnover"]
    assert rows["Flags"] == (
        "**FALLBACK TODAY: today's weights come from equal_weight, not churn (churn -> equal_weight: solver failed)**; "
        "**RELAXED CAPS TODAY: max_weight 0.25 -> 0.5 (2 symbols)**; "
        f"**OVER-TRADING: turnover {turnover:.1f}x/yr > 6x**")
    assert rows["Production engine"] == "**churn**: **fell back: today's weights come from equal_weight**; 1 position(s)"


def test_proposed_orders_and_changes_since_the_previous_session_by_hand(bundle, tmp_path):
    inputs, _, _ = bundle
    prod = inputs.weights[inputs.weights["is_production"]].set_index("symbol")["net_weight"]
    a, b, c = sorted(prod.index)[:3]
    # The book: a at its target + 0.4% (dust), b missing (opened), an old position to close.
    book = pd.DataFrame({"symbol": [a, "NASDAQ:OLD", *[s for s in prod.index if s not in (a, b)]],
                         "direction": "long",
                         "net_weight": [prod[a] + 0.004, 0.07, *[prod[s] for s in prod.index if s not in (a, b)]]})
    book.loc[book["symbol"].isin(prod.index), "direction"] = [
        inputs.weights.set_index(["engine", "symbol"]).at[(PRODUCTION, s), "direction"]
        for s in book.loc[book["symbol"].isin(prod.index), "symbol"]]
    # Yesterday's target: c 2 points lower, b absent, and a symbol dropped today.
    previous = inputs.weights[inputs.weights["is_production"]].copy()
    previous = previous[previous["symbol"] != b]
    previous.loc[previous["symbol"] == c, "net_weight"] -= 0.02
    previous = pd.concat([previous, previous.iloc[:1].assign(symbol="NYSE:GONE", net_weight=0.03)], ignore_index=True)
    build_reports(dataclasses.replace(inputs, holdings=book, previous_weights=previous,
                                      previous_partition="2024-11-27"), tmp_path)
    text = (tmp_path / "index.md").read_text()
    orders = section_table(text, "Today's proposed orders").set_index("symbol")
    assert sorted(orders.index) == sorted([b, "NASDAQ:OLD"])  # a is dust (HOLD), the rest at target
    assert orders.loc[b, ["side", "size (% NAV)", "from (net % NAV)", "reason"]].tolist() == [
        "BUY" if prod[b] > 0 else "SELL", f"{abs(prod[b]):.2%}", "0.00%", "open"]
    assert orders.loc["NASDAQ:OLD", ["side", "size (% NAV)", "to (net % NAV)", "reason"]].tolist() == [
        "SELL", "7.00%", "0.00%", "close"]
    block = text.split("## Today's proposed orders", 1)[1].split("\n## ", 1)[0]
    n = len(set(prod.index) | {"NASDAQ:OLD"})
    assert f"BUY {int(prod[b] > 0)}, SELL {1 + int(prod[b] < 0)}, HOLD {n - 2}; gross traded " \
           f"{abs(prod[b]) + 0.07:.2%} of NAV" in block
    assert "1 change(s) under 1% of NAV are held as dust" in block
    changes = section_table(text, "Change since the previous session").set_index("symbol")
    assert changes.loc[b, "what"] == "added" and changes.loc["NYSE:GONE", "what"] == "removed"
    assert changes.loc[c, ["what", "change (% NAV)"]].tolist() == ["up", "2.00%"]
    assert "Production target against 2024-11-27: added 1, removed 1, up 1, down 0, unchanged " \
           f"{len(prod) - 2}; one-way change {(abs(prod[b]) + 0.03 + 0.02) / 2:.2%} of NAV." in text


def test_quantstats_pages_go_to_the_production_engine_unless_all_are_asked_for():
    from portfolio_assets.reports.builder.sections import quantstats_targets

    targets = [("hrp", "idealized"), ("hrp", "realized"), ("min_variance", "idealized"), ("herc", "realized")]
    inputs = SimpleNamespace(quantstats_html=True, quantstats_pages="production", production_engine="hrp")
    assert quantstats_targets(targets, inputs) == [("hrp", "idealized"), ("hrp", "realized")]
    inputs.quantstats_pages = "all"
    assert quantstats_targets(targets, inputs) == targets
    inputs.quantstats_html = False
    assert quantstats_targets(targets, inputs) == []
    inputs.quantstats_html, inputs.quantstats_pages = True, "top"
    with pytest.raises(ValueError, match=r"^quantstats_pages must be 'production' or 'all', got 'top'$"):
        quantstats_targets(targets, inputs)
