import numpy as np
import pandas as pd
import pytest

from portfolio_assets.quant.rawpool import build_raw_pool, instrument_identity


def scan(rows):
    base = {"type": "stock", "Value.Traded": 1e7, "ADX": 20.0, "Perf.3M": 5.0, "Perf.6M": 5.0, "Volatility.D": 2.0,
            "direction": "long"}
    return pd.DataFrame([{**base, **r} for r in rows])


@pytest.mark.parametrize("symbol,cls,identity", [
    ("BINANCE:BTCUSDT", "crypto", "crypto:BTC"),
    ("COINBASE:BTCUSD", "crypto", "crypto:BTC"),
    ("KRAKEN:BTCUSDC", "crypto", "crypto:BTC"),
    ("BYBIT:BTCUSDT.P", "crypto", "crypto-perp:BTC"),
    ("BINANCE:USDTUSD", "crypto", "crypto:USDT"),  # base USDT, quote USD: longest exact suffix
    ("FX:EURUSD", "forex", "fx:EURUSD"),
    ("OANDA:EURUSD", "forex", "fx:EURUSD"),
    ("NYSE:ABC", "equity", "us:ABC"),
    ("NASDAQ:ABC", "equity", "us:ABC"),
    ("LSE:ABC", "equity", "LSE:ABC"),
    ("NASDAQ:ABCD", "equity", "us:ABCD"),  # no prefix heuristic: ABC and ABCD stay distinct
])
def test_identity_rules(symbol, cls, identity):
    assert instrument_identity(symbol, cls) == identity


def test_best_venue_kept_with_alternates_and_baseline_forced():
    crypto = scan([
        {"symbol": "BINANCE:BTCUSDT", "Value.Traded": 9e9},
        {"symbol": "COINBASE:BTCUSD", "Value.Traded": 1e9},
        {"symbol": "BINANCE:ETHUSDT", "Value.Traded": 5e9},
    ])
    equity = scan([{"symbol": "NYSE:AAA"}, {"symbol": "NASDAQ:BBB", "direction": "short", "Perf.3M": -20.0, "Perf.6M": -30.0}])
    spy = scan([{"symbol": "AMEX:SPY", "type": "fund"}])
    pool, audit = build_raw_pool({"crypto": crypto, "equity": equity}, class_cap=30, baseline="AMEX:SPY", baseline_row=spy)
    assert "COINBASE:BTCUSD" not in pool.index
    assert pool.at["BINANCE:BTCUSDT", "alternates"] == "COINBASE:BTCUSD"
    assert pool.at["BINANCE:BTCUSDT", "n_venues"] == 2
    assert bool(pool.at["AMEX:SPY", "forced"]) and pool.at["AMEX:SPY", "direction"] == "long"
    assert pool.at["NASDAQ:BBB", "direction"] == "short"
    # short momentum is sign-flipped: a falling short has positive momentum
    assert pool.at["NASDAQ:BBB", "momentum"] == pytest.approx(25.0)
    assert set(audit["stage"]) >= {"scanned", "raw_pool", "forced_baseline"}


def test_class_cap_keeps_best_scores_and_counts_drops():
    rng = np.random.default_rng(0)
    rows = [{"symbol": f"NYSE:S{i:02d}", "Value.Traded": float(v), "ADX": 20.0} for i, v in enumerate(rng.uniform(1e6, 1e9, 12))]
    rows.append({"symbol": "AMEX:SPY", "type": "fund", "Value.Traded": 1e10})
    pool, audit = build_raw_pool({"equity": scan(rows)}, class_cap=5, baseline="AMEX:SPY")
    eq = pool[pool["asset_class"] == "equity"]
    assert len(eq) == 5
    top5 = sorted(rows[:-1], key=lambda r: -r["Value.Traded"])[:5]
    assert set(eq.index) == {r["symbol"] for r in top5}  # only liquidity differs, so it decides
    dropped = audit[(audit["stage"] == "dropped_class_cap") & (audit["family"] == "equity")]["count"].sum()
    assert dropped == 7


def test_missing_baseline_without_row_is_an_error():
    with pytest.raises(ValueError, match="baseline AMEX:SPY is in no scan and no baseline row was given"):
        build_raw_pool({"equity": scan([{"symbol": "NYSE:AAA"}])}, class_cap=5, baseline="AMEX:SPY")


def test_symbol_in_two_directions_keeps_the_better_row():
    rows = scan([
        {"symbol": "NYSE:AAA", "Perf.3M": 30.0, "Perf.6M": 30.0},
        {"symbol": "NYSE:AAA", "direction": "short", "Perf.3M": 30.0, "Perf.6M": 30.0},
        {"symbol": "NYSE:CCC", "Perf.3M": 1.0, "Perf.6M": 1.0},
        {"symbol": "AMEX:SPY", "type": "fund"},
    ])
    pool, _ = build_raw_pool({"equity": rows}, class_cap=30, baseline="AMEX:SPY")
    assert pool.at["NYSE:AAA", "direction"] == "long"
    assert list(pool.index).count("NYSE:AAA") == 1
