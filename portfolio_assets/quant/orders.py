"""Implementation orders: from current holdings to the production target.

Weights are fractions of NAV. Orders are computed on signed net weights (long +, short -), so
BUY means "increase net exposure" (buy a long or cover a short) and SELL means "decrease" (sell a
long or sell short). With `partial_rebalance` a change below `dust` (1% of NAV) is not traded:
the order is HOLD with the reason `dust`, so the book keeps its current weight there.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ORDER_COLUMNS = ("symbol", "direction", "current_net_weight", "target_weight", "target_net_weight",
                 "delta_net_weight", "action", "size", "reason")


def build_orders(current: pd.Series, target_net: pd.Series, directions: pd.Series, *,
                 partial_rebalance: bool, dust: float = 0.01) -> pd.DataFrame:
    """One order per symbol in current ∪ target. `current`/`target_net`: signed net weights."""
    for name, w in (("current holdings", current), ("target", target_net)):
        if not np.isfinite(w.to_numpy(dtype=float)).all():
            raise ValueError(f"{name} contain non-finite weights")
    symbols = sorted(set(current.index) | set(target_net.index))
    cur = current.reindex(symbols).fillna(0.0)
    tgt = target_net.reindex(symbols).fillna(0.0)
    delta = tgt - cur
    rows = []
    for s in symbols:
        d = float(delta[s])
        if abs(d) < 1e-12:
            action, reason = "HOLD", "at target"
        elif partial_rebalance and abs(d) < dust:
            action, reason = "HOLD", f"dust: |change| {abs(d):.4f} < {dust:.2f}"
        else:
            action, reason = ("BUY" if d > 0 else "SELL"), "rebalance" if cur[s] != 0 and tgt[s] != 0 else (
                "open" if cur[s] == 0 else "close")
        rows.append({
            "symbol": s, "direction": directions.get(s, "long" if tgt[s] >= 0 else "short"),
            "current_net_weight": float(cur[s]), "target_weight": float(abs(tgt[s])),
            "target_net_weight": float(tgt[s]), "delta_net_weight": d, "action": action,
            "size": float(abs(d)) if action != "HOLD" else 0.0, "reason": reason,
        })
    return pd.DataFrame(rows, columns=list(ORDER_COLUMNS))
