"""Asset selections: `--select` in Dagster's syntax, and the upstream tables a selection needs but lacks."""

from __future__ import annotations

import os
import shlex
from typing import Any


# ---- selections ------------------------------------------------------------------------------------
def selection_keys(selection: str | None) -> list[Any]:
    """Asset keys of a Dagster selection string within the daily job (default: the whole daily
    graph), widened to whole multi-table steps; a one-line error for a bad or empty selection."""
    from dagster import AssetSelection

    from portfolio_assets.definitions import defs
    from portfolio_assets.jobs import DAILY_SELECTION

    graph = defs.resolve_asset_graph()
    if selection is None:
        chosen: AssetSelection = DAILY_SELECTION
    else:
        if not selection.strip():
            raise ValueError("--select is empty")
        try:
            chosen = AssetSelection.from_string(selection)
            keys = chosen.resolve(graph)
        except Exception as exc:  # Dagster's parser raises several types; the message is what matters
            raise ValueError(f"--select {selection!r}: {str(exc).splitlines()[0]}") from None
        if not keys:
            raise ValueError(f"--select {selection!r} matches no asset")
    keys = (chosen | chosen.required_multi_asset_neighbors()).resolve(graph)
    return sorted(keys, key=lambda k: k.to_user_string())


def missing_upstream(instance: Any, keys: list[Any], partitions: list[str]) -> list[str]:
    """`asset@partition` of every upstream partition outside the selection that Dagster has no
    materialization of (the book's own chain is checked by `holdings`' rule)."""
    from portfolio_assets.assets.implementation import missing_book
    from portfolio_assets.definitions import defs
    from portfolio_assets.lakehouse import Lakehouse

    graph = defs.resolve_asset_graph()
    selected = set(keys)
    missing = []
    # Upstream of the selection, and on upward through every asset that is missing a partition (its
    # own inputs must then be there too), so that materializing what is listed is enough.
    frontier, seen = {p for k in keys for p in graph.get(k).parent_keys} - selected, set()
    while frontier:
        parent = frontier.pop()
        seen.add(parent)
        if parent.to_user_string() == "executions":  # optional: a session nobody traded has none
            continue  # (holdings' own chain, the previous session's book, is checked below)
        have = instance.get_materialized_partitions(parent)
        lacking = [f"{parent.to_user_string()}@{p}" for p in partitions if p not in have]
        if lacking:
            missing += lacking
            frontier |= set(graph.get(parent).parent_keys) - selected - seen
    missing.sort()
    holdings = [k for k in keys if k.to_user_string() == "holdings"]
    if holdings and partitions:
        from portfolio_assets.partitions import master_sessions

        first = partitions[0]
        before = master_sessions(end=first)
        previous = before[-2].date().isoformat() if len(before) > 1 else None
        lake = Lakehouse(profile=os.environ["PA_PROFILE"])
        stored = lake.stored_partitions("implementation", "holdings")
        if previous and previous not in stored and missing_book(stored, first, previous):
            missing.append(f"holdings@{previous}")
    return missing


def missing_upstream_message(missing: list[str], profile: str, selection: str | None) -> str:
    """One line: the missing upstream partitions per asset, and the backfill that materializes
    them first (their assets, widened to whole steps by the CLI, over the dates they miss)."""
    by_asset: dict[str, list[str]] = {}
    for item in missing:
        asset, part = item.rsplit("@", 1)
        by_asset.setdefault(asset, []).append(part)
    # One table of a multi-table step names the whole step (the CLI selects all of its tables).
    steps = sorted({a for a in by_asset if a.split("__")[0] == a or a.split("__")[0] not in by_asset})
    parts = sorted({p for ps in by_asset.values() for p in ps})
    by_dates: dict[tuple[str, ...], list[str]] = {}
    for asset in steps:
        by_dates.setdefault(tuple(sorted(by_asset[asset])), []).append(asset)
    listed = "; ".join(f"{', '.join(assets)} at {', '.join(dates)}" for dates, assets in sorted(by_dates.items()))
    first = (f"portfolio-assets backfill --profile {profile} --from {parts[0]} --to {parts[-1]} "
             f"--select {shlex.quote(' or '.join(f'key:{a}' for a in steps))}")
    return (f"upstream partitions outside --select {selection!r} are not materialized: {listed}. "
            f"Materialize them first: {first}")


def _key(name: str) -> Any:
    from dagster import AssetKey

    return AssetKey(name)
