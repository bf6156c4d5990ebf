"""`portfolio_assets.assets.history`: the health gate's message (the gate itself runs in
`test_graph.py`'s strict and non-strict runs)."""

from __future__ import annotations

import pandas as pd

from portfolio_assets.assets.history import GATE_LISTED, health_gate_description


def _health(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["symbol", "status", "issues"])


def test_every_symbol_ok():
    assert health_gate_description(_health([("NYSE:A", "OK", ""), ("NYSE:B", "OK", "")]), True) == "all 2 symbols OK"


def test_each_unhealthy_symbol_is_named_with_what_its_row_found():
    health = _health([("NYSE:A", "OK", ""), ("NYSE:XOM", "BAD_TICKS", "BAD_TICKS: 1 bar(s), first 2020-08-31"),
                      ("NYSE:C", "MISSING", "")])
    assert health_gate_description(health, True) == (
        "2 unhealthy symbol(s) after recovery: NYSE:XOM (BAD_TICKS: 1 bar(s), first 2020-08-31), NYSE:C MISSING")
    assert health_gate_description(health, False).endswith("NYSE:C MISSING (non-strict: dropped downstream)")


def test_past_ten_symbols_the_message_counts_the_rest():
    rows = [(f"NYSE:S{i:02d}", "STALE", f"STALE: last bar 2024-01-0{i % 9 + 1}, 3 bar(s) behind 2024-01-12")
            for i in range(GATE_LISTED + 2)]
    text = health_gate_description(_health(rows), True)
    assert text.startswith(f"{GATE_LISTED + 2} unhealthy symbol(s) after recovery: NYSE:S00 (STALE: ")
    assert "NYSE:S09 (STALE:" in text and "NYSE:S10" not in text
    assert text.endswith(", and 2 more (all in history_500d__health)")
