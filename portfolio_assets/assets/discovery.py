"""Step 2: one scan table per scanner family (equity, crypto, bond, forex)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from dagster import AssetsDefinition, asset

from portfolio_assets.assets._step import Step
from portfolio_assets.assets.common import DATA_OWNERS, FAMILIES, after, attrs
from portfolio_assets.manifest import Config
from portfolio_assets.resources import PortfolioSettings
from portfolio_assets.sources.base import SCAN_COLUMNS, MarketData
from portfolio_assets.symbols import validate_symbol

PREVIEW = ["symbol", "direction", "close", "Value.Traded", "Perf.3M", "ADX"]


def scan_family(
    cfg: Config, source: MarketData, family: str, as_of: dt.date
) -> tuple[pd.DataFrame, dict[str, int]] | None:
    """Run every preset of `family` as of `as_of`; rows keep their preset and direction.

    Returns None when the family is disabled in the manifest."""
    fam = cfg.discovery.scanners.get(family)
    if fam is None or not fam.enabled:
        return None
    frames, counts = [], {}
    for preset in fam.presets:
        rows = source.scan(family, as_of, preset.model_dump())
        rows = rows.assign(direction=preset.direction, preset=preset.name)
        counts[preset.name] = len(rows)
        frames.append(rows)
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*SCAN_COLUMNS, "direction", "preset"])
    for sym in df["symbol"]:
        validate_symbol(sym)
    missing = [c for c in SCAN_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{family} scan from source {source.name!r} lacks columns {missing}")
    return df.reset_index(drop=True), counts


def make_scan_asset(family: str) -> AssetsDefinition:
    """The step-2 `<family>_scan` asset: `scan_family` as of the partition's date, stored as one
    table (empty, with a `scanner_disabled` event, when the family is disabled)."""
    extra = " Multi-timeframe: monthly -> weekly -> daily screens." if family == "forex" else ""

    @asset(
        **attrs(f"{family}_scan", 2),
        ins=after("run_manifest"),
        kinds={"python", "parquet"},
        owners=DATA_OWNERS,
        description=(
            f"Step 2. The {family} scanner as of the partition's close: symbol, direction and scanner "
            f"fields (close, volume, value traded, ADX, ATR, recommendation, Perf.W..Y, volatility, "
            f"sector), computed from data <= D.{extra}"
        ),
    )
    def _scan(context, settings: PortfolioSettings):
        with Step(context, settings, params={"family": family}) as step:
            scanned = scan_family(step.cfg, step.settings.source(), family, step.date)
            if scanned is None:
                step.event("scanner_disabled", family=family)
                scanned = pd.DataFrame(columns=[*SCAN_COLUMNS, "direction", "preset"]), {}
            df, counts = scanned
            by_dir = df["direction"].value_counts().to_dict() if len(df) else {}
            yield from step.emit(df, metrics={"rows": len(df), "by_preset": counts, "by_direction": by_dir},
                                 preview=df[[c for c in PREVIEW if c in df.columns]])

    return _scan


scan_assets = [make_scan_asset(f) for f in FAMILIES]
