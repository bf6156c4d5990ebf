import pandas as pd
import pytest

from portfolio_assets.quant.orders import build_orders


def test_orders_from_holdings_to_target_with_dust_rule():
    current = pd.Series({"A:X": 0.30, "A:Y": 0.20, "A:Z": -0.10, "A:OLD": 0.05})
    target = pd.Series({"A:X": 0.305, "A:Y": 0.40, "A:Z": -0.25, "A:NEW": 0.05})
    dirs = pd.Series({"A:X": "long", "A:Y": "long", "A:Z": "short", "A:OLD": "long", "A:NEW": "long"})
    on = build_orders(current, target, dirs, partial_rebalance=True).set_index("symbol")
    assert on.at["A:X", "action"] == "HOLD" and on.at["A:X", "reason"].startswith("dust: |change| 0.0050 < 0.01")
    assert on.at["A:X", "size"] == 0.0
    assert (on.at["A:Y", "action"], on.at["A:Y", "size"]) == ("BUY", pytest.approx(0.20))
    assert (on.at["A:Z", "action"], on.at["A:Z", "size"]) == ("SELL", pytest.approx(0.15))  # a bigger short
    assert (on.at["A:OLD", "action"], on.at["A:OLD", "reason"]) == ("SELL", "close")
    assert (on.at["A:NEW", "action"], on.at["A:NEW", "reason"]) == ("BUY", "open")
    assert on.at["A:Z", "target_weight"] == pytest.approx(0.25) and on.at["A:Z", "target_net_weight"] == -0.25

    off = build_orders(current, target, dirs, partial_rebalance=False).set_index("symbol")
    assert off.at["A:X", "action"] == "BUY" and off.at["A:X", "size"] == pytest.approx(0.005)
    assert (off["action"] != "HOLD").sum() == (on["action"] != "HOLD").sum() + 1


def test_orders_refuse_non_finite_weights():
    with pytest.raises(ValueError, match="target contain non-finite weights"):
        build_orders(pd.Series(dtype=float), pd.Series({"A:X": float("nan")}), pd.Series({"A:X": "long"}),
                     partial_rebalance=True)
