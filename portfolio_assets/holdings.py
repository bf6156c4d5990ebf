"""Current holdings: the last *accepted* implementation.

Orders are proposals; a portfolio manager accepts a partition's implementation once it is
executed (`portfolio-assets accept --date D`). Accepting copies that partition's production
target into `state/holdings.parquet` (and `state/holdings_history/<D>.parquet`), which the next
day's orders and the optimizers' turnover penalty start from. Nothing is accepted automatically.
"""

from __future__ import annotations

import pandas as pd

from portfolio_assets.lakehouse import Lakehouse, atomic_write_frame

HOLDINGS_COLUMNS = ("symbol", "direction", "weight", "net_weight")


def current_holdings(lake: Lakehouse) -> pd.DataFrame | None:
    """The accepted holdings (synthetic-long `weight`, signed `net_weight`), or None if none yet."""
    path = lake.state_path("holdings.parquet")
    if not path.exists():
        return None
    df = pd.read_parquet(path)
    df.attrs["accepted_from"] = str(df["accepted_from"].iloc[0]) if len(df) else None
    return df


def accept_implementation(lake: Lakehouse, partition: str) -> pd.DataFrame:
    """Accept partition `partition`'s orders: their target becomes the current holdings."""
    orders = lake.read_table("implementation", "implementation_orders", partition)
    held = orders[orders["target_weight"] > 0]
    table = pd.DataFrame({
        "symbol": held["symbol"].to_numpy(),
        "direction": held["direction"].to_numpy(),
        "weight": held["target_weight"].to_numpy(),
        "net_weight": held["target_net_weight"].to_numpy(),
        "accepted_from": partition,
    })
    atomic_write_frame(lake.state_path(f"holdings_history/{partition}.parquet"), table)
    atomic_write_frame(lake.state_path("holdings.parquet"), table)
    return table
