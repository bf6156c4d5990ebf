"""Unit tests of portfolio_assets/holdings.py: the book, executions and fills, computed by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from portfolio_assets.holdings import (
    EXECUTION_COLUMNS,
    HOLDINGS_COLUMNS,
    book_after,
    empty_book,
    executed_orders,
    read_fills,
)

DAY = "2026-11-25"


def orders_frame() -> pd.DataFrame:
    """A BUY of A (+0.10), a SELL of short B (-0.05), a HOLD of C (no trade)."""
    return pd.DataFrame({
        "symbol": ["A", "B", "C"],
        "direction": ["long", "short", "long"],
        "action": ["BUY", "SELL", "HOLD"],
        "delta_net_weight": [0.10, -0.05, 0.0],
    })


def book(rows: list[tuple[str, float, str]]) -> pd.DataFrame:
    """A book from (symbol, net_weight, last_traded) rows."""
    net = np.array([r[1] for r in rows], dtype=float)
    return pd.DataFrame({
        "symbol": [r[0] for r in rows], "direction": np.where(net < 0, "short", "long"),
        "weight": np.abs(net), "net_weight": net, "last_traded": [r[2] for r in rows],
    }, columns=list(HOLDINGS_COLUMNS))


def execs(rows: list[tuple[str, float]]) -> pd.DataFrame:
    """Executions from (symbol, delta_net_weight) rows (the other columns do not enter the book)."""
    return pd.DataFrame({
        "symbol": [r[0] for r in rows], "direction": "long", "action": "BUY",
        "ordered_delta_net_weight": [r[1] for r in rows], "delta_net_weight": [r[1] for r in rows],
        "source": "orders as proposed",
    }, columns=list(EXECUTION_COLUMNS))


def as_records(frame: pd.DataFrame) -> list[dict]:
    return frame.to_dict("records")


# ------------------------------------------------------------------------------ empty book
def test_the_first_book_is_empty_with_the_holdings_columns():
    first = empty_book()
    assert list(first.columns) == list(HOLDINGS_COLUMNS)
    assert first.empty
    assert first["net_weight"].dtype == float and first["weight"].dtype == float


# ------------------------------------------------------------------------------ executed_orders
def test_orders_as_proposed_trade_every_buy_and_sell_and_never_a_hold():
    out = executed_orders(orders_frame())
    assert list(out.columns) == list(EXECUTION_COLUMNS)
    assert as_records(out) == [
        {"symbol": "A", "direction": "long", "action": "BUY", "ordered_delta_net_weight": 0.10,
         "delta_net_weight": 0.10, "source": "orders as proposed"},
        {"symbol": "B", "direction": "short", "action": "SELL", "ordered_delta_net_weight": -0.05,
         "delta_net_weight": -0.05, "source": "orders as proposed"},
    ]


def test_a_symbol_not_traded_is_recorded_with_zero_change():
    out = executed_orders(orders_frame(), not_traded=["B"])
    assert out["symbol"].tolist() == ["A", "B"]
    assert out["delta_net_weight"].tolist() == [0.10, 0.0]
    assert out["ordered_delta_net_weight"].tolist() == [0.10, -0.05]
    assert out["source"].tolist() == ["orders as proposed", "not traded"]


def test_fills_replace_the_proposed_changes_and_a_missing_fill_is_zero():
    fills = pd.DataFrame({"symbol": ["A", "C"], "delta_net_weight": [0.08, 0.01]})
    out = executed_orders(orders_frame(), fills=fills)
    # A filled 0.08 of 0.10; B (a SELL) had no fill: 0; C (a HOLD) was filled anyway: it counts
    assert out["symbol"].tolist() == ["A", "B", "C"]
    assert out["delta_net_weight"].tolist() == [0.08, 0.0, 0.01]
    assert out["ordered_delta_net_weight"].tolist() == [0.10, -0.05, 0.0]
    assert out["source"].tolist() == ["fills", "not in fills", "fills"]


def test_not_traded_must_name_a_buy_or_sell_order():
    with pytest.raises(ValueError) as err:
        executed_orders(orders_frame(), not_traded=["C", "Z"])
    assert str(err.value) == "not traded: ['C', 'Z'] have no BUY/SELL order in this partition"


def test_fills_and_not_traded_together_are_refused():
    fills = pd.DataFrame({"symbol": ["A"], "delta_net_weight": [0.1]})
    with pytest.raises(ValueError) as err:
        executed_orders(orders_frame(), not_traded=["A"], fills=fills)
    assert str(err.value) == "give either a fills file or --not-traded, not both"


def test_a_fill_without_an_order_is_refused():
    fills = pd.DataFrame({"symbol": ["A", "Z", "Y"], "delta_net_weight": [0.1, 0.2, 0.3]})
    with pytest.raises(ValueError) as err:
        executed_orders(orders_frame(), fills=fills)
    assert str(err.value) == "fills for symbols without an order in this partition: ['Y', 'Z']"


# ------------------------------------------------------------------------------ book_after
def test_nothing_traded_keeps_the_book():
    before = book([("A", 0.2, "2026-11-20")]).set_axis([7])
    for nothing in (None, execs([])):
        after = book_after(before, nothing, DAY)
        assert as_records(after) == as_records(before)
        assert after.index.tolist() == [0]


def test_the_first_book_is_the_first_executions():
    after = book_after(empty_book(), executed_orders(orders_frame()), DAY)
    assert list(after.columns) == list(HOLDINGS_COLUMNS)
    assert as_records(after) == [
        {"symbol": "A", "direction": "long", "weight": 0.10, "net_weight": 0.10, "last_traded": DAY},
        {"symbol": "B", "direction": "short", "weight": 0.05, "net_weight": -0.05, "last_traded": DAY},
    ]


def test_executions_add_per_symbol_close_flip_and_keep_untraded_dates():
    before = book([("A", 0.30, "2026-11-20"), ("B", 0.20, "2026-11-21"), ("C", -0.10, "2026-11-19"),
                   ("D", 0.05, "2026-11-18")])
    # A closed (0.30 - 0.30), B flipped (0.20 - 0.50 = -0.30), C added to (-0.10 - 0.05, two fills),
    # D untouched, E opened (+0.25), F ordered and not traded (0: no position)
    trades = execs([("A", -0.30), ("B", -0.50), ("C", -0.02), ("C", -0.03), ("E", 0.25), ("F", 0.0)])
    after = book_after(before, trades, DAY)
    assert after["symbol"].tolist() == ["B", "C", "D", "E"]  # sorted, A closed, F never held
    assert after["direction"].tolist() == ["short", "short", "long", "long"]
    assert after["net_weight"].tolist() == pytest.approx([-0.30, -0.15, 0.05, 0.25], abs=1e-15)
    assert after["weight"].tolist() == pytest.approx([0.30, 0.15, 0.05, 0.25], abs=1e-15)
    assert after["last_traded"].tolist() == [DAY, DAY, "2026-11-18", DAY]


def test_a_change_below_the_dust_threshold_is_no_position_and_no_trade():
    before = book([("A", 0.2, "2026-11-20")])
    after = book_after(before, execs([("A", 1e-13), ("B", 5e-13)]), DAY)
    # A's 1e-13 is below ZERO (1e-12): A keeps its date; B's 5e-13 opens nothing
    assert after["symbol"].tolist() == ["A"]
    assert after["last_traded"].tolist() == ["2026-11-20"]
    assert after["net_weight"].tolist() == pytest.approx([0.2 + 1e-13], abs=0)


# ------------------------------------------------------------------------------ read_fills
def test_read_fills_csv_and_parquet(tmp_path: Path):
    frame = pd.DataFrame({"symbol": ["A", "B"], "delta_net_weight": [0.1, -0.25], "note": ["x", "y"]})
    csv, parquet = tmp_path / "fills.csv", tmp_path / "fills.parquet"
    frame.to_csv(csv, index=False)
    frame.to_parquet(parquet)
    for path in (csv, parquet):
        fills = read_fills(path)
        assert list(fills.columns) == ["symbol", "delta_net_weight"]  # other columns dropped
        assert as_records(fills) == [{"symbol": "A", "delta_net_weight": 0.1},
                                     {"symbol": "B", "delta_net_weight": -0.25}]
        assert fills["delta_net_weight"].dtype == float


def test_read_fills_missing_file(tmp_path: Path):
    path = tmp_path / "nope.csv"
    with pytest.raises(ValueError) as err:
        read_fills(path)
    assert str(err.value) == f"fills file {path} does not exist"


def test_read_fills_missing_column(tmp_path: Path):
    path = tmp_path / "fills.csv"
    path.write_text("symbol,weight\nA,0.1\n")
    with pytest.raises(ValueError) as err:
        read_fills(path)
    assert str(err.value) == (f"fills file {path}: missing column(s) ['delta_net_weight'] "
                              "(need symbol, delta_net_weight)")


@pytest.mark.parametrize("bad", ["abc", "inf", "-inf", ""])
def test_read_fills_non_finite_change(tmp_path: Path, bad: str):
    path = tmp_path / "fills.csv"
    path.write_text(f"symbol,delta_net_weight\nA,0.1\nB,{bad}\n")
    with pytest.raises(ValueError) as err:
        read_fills(path)
    assert str(err.value) == f"fills file {path}: delta_net_weight must be finite numbers"


def test_read_fills_duplicate_symbols(tmp_path: Path):
    path = tmp_path / "fills.csv"
    path.write_text("symbol,delta_net_weight\nB,0.1\nA,0.2\nB,0.3\nA,0.1\nC,0.0\n")
    with pytest.raises(ValueError) as err:
        read_fills(path)
    assert str(err.value) == f"fills file {path}: symbols listed twice: ['A', 'B']"
