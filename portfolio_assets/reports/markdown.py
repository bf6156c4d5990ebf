"""Markdown building blocks and the data-health report."""

from __future__ import annotations

import math

import pandas as pd


def fmt(value: object, spec: str = ".4f") -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else format(value, spec)
    return "" if value is None else str(value).replace("|", "\\|")


def md_table(df: pd.DataFrame, floatfmt: str = ".4f", index: bool = False) -> str:
    """A GitHub-flavoured Markdown table of `df` (every row)."""
    frame = df.reset_index() if index else df
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(fmt(v, floatfmt) for v in row) + " |")
    return "\n".join(lines)


def health_markdown(health: pd.DataFrame, partition: str, strict: bool) -> str:
    """`data_health.md`: status per symbol before and after recovery."""
    before = health["status_before"].value_counts().to_dict()
    after = health["status"].value_counts().to_dict()
    cols = ["symbol", "calendar", "status_before", "status", "attempts", "n_sessions", "first_bar", "last_bar", "issues"]
    order = health.assign(_ok=health["status"] == "OK").sort_values(["_ok", "symbol"])
    return "\n\n".join([
        f"# Data health — {partition}",
        f"Mode: {'strict (any unhealthy symbol blocks the run)' if strict else 'non-strict (unhealthy symbols are dropped)'}.",
        f"Before recovery: {before}. After recovery: {after}.",
        md_table(order[[c for c in cols if c in order.columns]]),
    ]) + "\n"
