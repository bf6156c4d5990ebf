"""Raw pool (step 3): merge the scans into one candidate table.

1. Identity: an exchange-independent instrument identity with exact rules (no prefix guessing):
   - crypto: `TICKER = BASE + QUOTE` where QUOTE is one of `CRYPTO_QUOTES` (longest exact suffix,
     non-empty base); USD-pegged quotes are one identity (`crypto:BTC`). A perpetual (`.P`) is a
     different instrument (`crypto-perp:BTC`).
   - forex: six letters `CCY1CCY2` -> `fx:EURUSD`, whatever the broker.
   - US-listed stocks/ETFs (exchanges in `US_EXCHANGES`): `us:TICKER`; anything else: the symbol.
2. Score per row within its asset class: the mean of percentile ranks of liquidity
   (`Value.Traded`), trend strength (`ADX`), momentum (mean of `Perf.3M` and `Perf.6M`, sign-flipped
   for shorts) and volatility sanity (`-|log(Volatility.D / class median)|`: neither dead nor wild).
   A missing field ranks lowest for that component, except liquidity: a row without `Value.Traded`
   (no volume, e.g. closes-only data) has unknown liquidity (`liquidity_known` False, `rank_liquidity`
   NaN), is ranked among the others on nothing, and is scored on the three other components only
   (neutral: neither rewarded nor punished for a number nobody has).
3. Best venue per identity (highest score; ties by liquidity then symbol); the others are listed in
   `alternates`. A symbol scanned in both directions keeps the better-scoring direction.
4. Cap each asset class at `class_cap` by score; force the baseline in.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

CRYPTO_QUOTES = ("FDUSD", "USDT", "USDC", "BUSD", "DAI", "USD")  # longest first; no TUSD: USDTUSD is Tether/USD
US_EXCHANGES = frozenset({"NYSE", "NASDAQ", "AMEX", "ARCA", "NYSEARCA", "BATS", "CBOE"})
FX_RE = re.compile(r"^[A-Z]{6}$")
FAMILY_CLASS = {"crypto": "crypto", "forex": "forex", "bond": "bond_etf", "futures": "futures"}


def instrument_identity(symbol: str, asset_class: str) -> str:
    """Exchange-independent identity of `symbol` (see module docstring for the exact rules)."""
    exchange, ticker = symbol.split(":", 1)
    if asset_class == "crypto":
        perp = ticker.endswith(".P")
        core = ticker[:-2] if perp else ticker
        for quote in CRYPTO_QUOTES:  # longest first
            if core.endswith(quote) and len(core) > len(quote):
                return f"crypto{'-perp' if perp else ''}:{core[: -len(quote)]}"
        return f"crypto{'-perp' if perp else ''}:{core}"
    if asset_class == "forex" and FX_RE.match(ticker):
        return f"fx:{ticker}"
    if exchange in US_EXCHANGES and asset_class in ("equity", "etf", "bond_etf"):
        return f"us:{ticker}"
    return symbol


def asset_class_of(family: str, scan_type: object) -> str:
    """The asset class of a scan row: its family's, else `etf` for funds and DRs, else `equity`."""
    if family in FAMILY_CLASS:
        return FAMILY_CLASS[family]
    return "etf" if str(scan_type).lower() in ("fund", "etf", "dr") else "equity"


def _pct_rank(values: pd.Series) -> pd.Series:
    """Percentile rank in (0, 1] among the known values; NaN stays NaN."""
    return values.rank(pct=True, method="average")


def score_rows(pool: pd.DataFrame) -> pd.DataFrame:
    """Add score components and `score` (per asset class) to scan rows."""
    out = pool.copy()
    sign = np.where(out["direction"] == "short", -1.0, 1.0)
    out["momentum"] = out[["Perf.3M", "Perf.6M"]].astype(float).mean(axis=1, skipna=False) * sign
    vol = out["Volatility.D"].astype(float)
    med = vol.groupby(out["asset_class"]).transform("median")
    out["vol_sanity"] = -np.abs(np.log(vol.where(vol > 0) / med))
    comps = {
        "liquidity": out["Value.Traded"].astype(float),
        "trend": out["ADX"].astype(float),
        "momentum": out["momentum"],
        "vol_sanity": out["vol_sanity"],
    }
    ranks = pd.DataFrame({f"rank_{k}": v.groupby(out["asset_class"]).transform(_pct_rank) for k, v in comps.items()})
    missing_lowest = [f"rank_{k}" for k in comps if k != "liquidity"]
    ranks[missing_lowest] = ranks[missing_lowest].fillna(0.0)
    out["liquidity_known"] = out["Value.Traded"].astype(float).notna()
    out = pd.concat([out, ranks], axis=1)
    out["score"] = ranks.mean(axis=1)  # skips an unknown liquidity rank (module docstring)
    return out


def build_raw_pool(
    scans: dict[str, pd.DataFrame], class_cap: int, baseline: str, baseline_row: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Merge scans into the raw pool. Returns (pool indexed by symbol, audit counts).

    `scans` maps family -> scan rows (with `direction`). `baseline_row` is a scan-like row used
    when the baseline is absent from every scan (it is forced in either way).
    """
    frames = []
    for family, df in sorted(scans.items()):
        if df is None or df.empty:
            continue
        f = df.copy()
        f["family"] = family
        f["asset_class"] = [asset_class_of(family, t) for t in f.get("type", pd.Series(None, index=f.index))]
        frames.append(f)
    audit_rows: list[dict[str, object]] = []
    if not frames:
        raise ValueError("every scan is empty: nothing to build a raw pool from")
    rows = pd.concat(frames, ignore_index=True)
    for (family, direction), n in rows.groupby(["family", "direction"]).size().items():
        audit_rows.append({"stage": "scanned", "family": family, "direction": direction, "count": int(n)})
    rows["identity"] = [instrument_identity(s, c) for s, c in zip(rows["symbol"], rows["asset_class"], strict=True)]
    rows = score_rows(rows)
    rows = rows.sort_values(["score", "Value.Traded", "symbol"], ascending=[False, False, True], kind="mergesort")
    # Same symbol from several scanners/directions: keep the best-scoring row.
    rows = rows.drop_duplicates("symbol", keep="first")
    alternates = rows.groupby("identity", sort=False)["symbol"].apply(lambda s: ",".join(s.iloc[1:]))
    pool = rows.drop_duplicates("identity", keep="first").copy()
    pool["alternates"] = pool["identity"].map(alternates).fillna("")
    pool["n_venues"] = pool["identity"].map(rows.groupby("identity").size())
    pool["class_rank"] = pool.groupby("asset_class")["score"].rank(ascending=False, method="first").astype(int)
    capped = pool[pool["class_rank"] > class_cap]
    pool = pool[pool["class_rank"] <= class_cap].copy()
    for cls, n in capped.groupby("asset_class").size().items():
        audit_rows.append({"stage": "dropped_class_cap", "family": cls, "direction": "any", "count": int(n)})
    pool["forced"] = False
    if baseline not in set(pool["symbol"]):
        source_rows = rows[rows["symbol"] == baseline]
        if source_rows.empty:
            if baseline_row is None or baseline_row.empty:
                raise ValueError(f"baseline {baseline} is in no scan and no baseline row was given")
            source_rows = score_rows(
                baseline_row.assign(family="equity", asset_class="etf", identity=instrument_identity(baseline, "etf"))
            )
        forced = source_rows.iloc[:1].copy()
        forced["direction"] = "long"
        forced["forced"] = True
        forced["alternates"] = ""
        forced["n_venues"] = 1
        forced["class_rank"] = 0
        pool = pd.concat([pool, forced], ignore_index=True)
        audit_rows.append({"stage": "forced_baseline", "family": "equity", "direction": "long", "count": 1})
    pool.loc[pool["symbol"] == baseline, "direction"] = "long"  # the market baseline is always 100% long
    pool = pool.sort_values(["asset_class", "class_rank", "symbol"], kind="mergesort").set_index("symbol")
    for (cls, direction), n in pool.groupby(["asset_class", "direction"]).size().items():
        audit_rows.append({"stage": "raw_pool", "family": cls, "direction": direction, "count": int(n)})
    return pool, pd.DataFrame(audit_rows)
