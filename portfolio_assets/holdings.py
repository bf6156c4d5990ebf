"""The book: what was traded, and what is held.

Orders are proposals. `portfolio-assets accept --date D` records what was *executed* of D's
orders (the `executions` asset of partition D): by default the orders as proposed, minus the
symbols the operator says were not traded; or a fills file (CSV or Parquet with `symbol` and the
executed signed change `delta_net_weight`). A HOLD (dust or at target) trades nothing, so a
size-0 target is never a position.

The `holdings` asset of partition D is the book at the close of D:

    holdings(D) = holdings(P) + executions(P)      P = the previous session

with the signed net weights added per symbol (positions that net to zero are closed; a
position's direction is the sign of its net weight). The
first book ever is empty. Weights are fractions of NAV: `net_weight` signed (short < 0),
`weight` = |net_weight| (the synthetic-long weight the optimizers' turnover penalty starts from).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

HOLDINGS_COLUMNS = ("symbol", "direction", "weight", "net_weight", "last_traded")
EXECUTION_COLUMNS = ("symbol", "direction", "action", "ordered_delta_net_weight", "delta_net_weight", "source")
ZERO = 1e-12  # |net weight| below this is no position


def empty_book() -> pd.DataFrame:
    """The first book ever: no positions, the columns of `HOLDINGS_COLUMNS` with their dtypes."""
    return pd.DataFrame({"symbol": pd.Series(dtype=str), "direction": pd.Series(dtype=str),
                         "weight": pd.Series(dtype=float), "net_weight": pd.Series(dtype=float),
                         "last_traded": pd.Series(dtype=str)})


def read_fills(path: Path) -> pd.DataFrame:
    """A fills file: `symbol` and `delta_net_weight` (the signed change executed), CSV or Parquet."""
    if not path.exists():
        raise ValueError(f"fills file {path} does not exist")
    fills = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    missing = [c for c in ("symbol", "delta_net_weight") if c not in fills.columns]
    if missing:
        raise ValueError(f"fills file {path}: missing column(s) {missing} (need symbol, delta_net_weight)")
    delta = pd.to_numeric(fills["delta_net_weight"], errors="coerce")
    if not np.isfinite(delta.to_numpy(dtype=float)).all():
        raise ValueError(f"fills file {path}: delta_net_weight must be finite numbers")
    if fills["symbol"].duplicated().any():
        raise ValueError(f"fills file {path}: symbols listed twice: {sorted(set(fills.loc[fills['symbol'].duplicated(), 'symbol']))}")
    return pd.DataFrame({"symbol": fills["symbol"].astype(str), "delta_net_weight": delta.astype(float)})


def executed_orders(orders: pd.DataFrame, *, not_traded: list[str] | None = None,
                    fills: pd.DataFrame | None = None) -> pd.DataFrame:
    """What was traded of `orders` (one row per BUY/SELL order and per filled symbol).

    Without `fills`: every BUY/SELL order executed as proposed, except the `not_traded` symbols
    (recorded with 0 and source `not traded`). With `fills`: the fills' changes (source `fills`);
    a fill for a symbol without an order is an error, and `not_traded` must then be empty.
    """
    not_traded = list(not_traded or [])
    trades = orders[orders["action"].isin(["BUY", "SELL"])]
    unknown = sorted(set(not_traded) - set(trades["symbol"]))
    if unknown:
        raise ValueError(f"not traded: {unknown} have no BUY/SELL order in this partition")
    if fills is not None:
        if not_traded:
            raise ValueError("give either a fills file or --not-traded, not both")
        stray = sorted(set(fills["symbol"]) - set(orders["symbol"]))
        if stray:
            raise ValueError(f"fills for symbols without an order in this partition: {stray}")
        filled = fills.set_index("symbol")["delta_net_weight"]
        rows = orders[orders["symbol"].isin(filled.index) | orders["action"].isin(["BUY", "SELL"])]
        delta = rows["symbol"].map(filled).fillna(0.0)
        source = np.where(rows["symbol"].isin(filled.index), "fills", "not in fills")
    else:
        rows = trades
        skipped = rows["symbol"].isin(not_traded)
        delta = rows["delta_net_weight"].where(~skipped, 0.0)
        source = np.where(skipped, "not traded", "orders as proposed")
    return pd.DataFrame({
        "symbol": rows["symbol"].to_numpy(), "direction": rows["direction"].to_numpy(),
        "action": rows["action"].to_numpy(), "ordered_delta_net_weight": rows["delta_net_weight"].to_numpy(dtype=float),
        "delta_net_weight": delta.to_numpy(dtype=float), "source": source,
    }, columns=list(EXECUTION_COLUMNS))


def book_after(book: pd.DataFrame, executions: pd.DataFrame | None, traded_on: str) -> pd.DataFrame:
    """`book` plus the executed signed changes of `executions` (None: nothing was traded)."""
    if executions is None or executions.empty:
        return book.reset_index(drop=True)
    net = book.set_index("symbol")["net_weight"].astype(float)
    delta = executions.groupby("symbol")["delta_net_weight"].sum()
    after = net.add(delta, fill_value=0.0)
    after = after[after.abs() > ZERO].sort_index()
    last = book.set_index("symbol")["last_traded"].reindex(after.index)
    traded = delta[delta.abs() > ZERO].index
    last = last.where(~after.index.isin(traded), traded_on)
    return pd.DataFrame({
        "symbol": after.index, "direction": np.where(after.to_numpy() < 0, "short", "long"),
        "weight": after.abs().to_numpy(), "net_weight": after.to_numpy(), "last_traded": last.astype(str).to_numpy(),
    }, columns=list(HOLDINGS_COLUMNS))
