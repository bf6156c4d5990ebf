"""Dagster resources: the resolved profile, its lakehouse, its market-data source, the price cache."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from functools import lru_cache
from typing import Any

import pandas as pd
from dagster import ConfigurableResource, InitResourceContext

from portfolio_assets.lakehouse import Lakehouse
from portfolio_assets.manifest import ResolvedManifest, resolve
from portfolio_assets.manifest.base import is_object_store
from portfolio_assets.sources.base import MarketData
from portfolio_assets.timestamps import utc_times


@lru_cache(maxsize=8)
def _resolve_cached(profile: str | None, manifest_path: str | None, env_key: str) -> ResolvedManifest:
    overrides = json.loads(os.environ.get("PA_CLI_OVERRIDES") or "{}")
    return resolve(profile, manifest_path=manifest_path, cli_overrides=overrides)


def _env_key() -> str:
    """Everything in the environment that resolution reads (so the cache never goes stale)."""
    return json.dumps(sorted((k, v) for k, v in os.environ.items() if k.startswith("PA_")))


@lru_cache(maxsize=8)
def _source_cached(kind: str, settings_json: str, lakehouse_root: str) -> MarketData:
    """One source per (kind, settings as given, lakehouse) and process; `settings_json` is what
    `SourceConfig` dumps, so the source validates the same keys into its typed model."""
    from portfolio_assets.sources import make_source

    settings = json.loads(settings_json)
    if kind == "tradingview":  # stored scans live in the profile's lakehouse
        settings.setdefault("lakehouse_root", lakehouse_root)
    return make_source(kind, settings)


class PortfolioSettings(ConfigurableResource):
    """The active profile. Unset fields fall back to `PA_PROFILE` / `PA_LAKEHOUSE` / the manifest.

    CLI overrides reach step processes through `PA_CLI_OVERRIDES` (JSON, set by the CLI).
    """

    profile: str | None = None
    manifest_path: str | None = None
    lakehouse_root: str | None = None

    def resolved(self) -> ResolvedManifest:
        """The resolved manifest of this profile with the CLI's `PA_CLI_OVERRIDES`; cached per (profile,
        manifest, `PA_*` environment)."""
        return _resolve_cached(self.profile, self.manifest_path, _env_key())

    def setup_for_execution(self, context: InitResourceContext) -> None:
        """On an object-store lakehouse (`s3://`), bring this host's working copy up to date once,
        as Dagster initializes the resource for a run (in-process executor) or a step process
        (multiprocess, celery): everything a step reads from other hosts was finished before it
        started, so that one pull is enough (`lake_mirror`); its own writes go to the bucket as
        they are made."""
        if is_object_store(self.lakehouse_root or os.environ.get("PA_LAKEHOUSE")):
            Lakehouse(self.lakehouse_root, self.resolved().profile)

    def lakehouse(self) -> Lakehouse:
        """The resolved profile's lakehouse under `lakehouse_root` (else `PA_LAKEHOUSE`, else
        `<project>/lakehouse`); not pulled again (`setup_for_execution` did)."""
        return Lakehouse(self.lakehouse_root, self.resolved().profile, pull=False)

    def source(self) -> MarketData:
        """The profile's market-data source (`source.kind` with its settings), one instance per process
        and settings."""
        cfg = self.resolved().config.source
        given = cfg.model_dump(mode="json")["settings"]
        return _source_cached(cfg.kind, json.dumps(given, sort_keys=True), str(self.lakehouse().root))


class RecordedCache(Lakehouse):
    """The profile's lakehouse whose price-store writes are recorded: every `write_prices` (the
    only writer of `prices/`) adds, per symbol, the bars written and their content hash."""

    def __init__(self, root: Any, profile: str):
        super().__init__(root, profile, pull=False)
        self.writes: list[dict[str, Any]] = []

    def write_prices(self, bars: dict[str, pd.DataFrame], source: str, fetched_at: dt.datetime, *,
                     start: dt.date | None = None, end: dt.date | None = None, attempt: int = 0,
                     scope: str | None = None):
        """Write the bars as `Lakehouse.write_prices` does and record, per symbol, the bar count, first and
        last day and the hash of its OHLCV columns; returns the part written."""
        from portfolio_assets.ledger import frame_hash

        part = super().write_prices(bars, source, fetched_at, start=start, end=end, attempt=attempt, scope=scope)
        for symbol, frame in bars.items():
            days = utc_times(frame["time"])
            self.writes.append({
                "symbol": symbol, "bars": len(frame), "source": source,
                "first": days.min().date().isoformat() if len(frame) else None,
                "last": days.max().date().isoformat() if len(frame) else None,
                "bars_hash": frame_hash(frame.loc[:, ["time", "open", "high", "low", "close", "volume"]].reset_index(drop=True)),
            })
        return part

    def summary(self) -> dict[str, Any]:
        """What this step wrote to the cache: counts and one hash over every write, in order
        (fetch times excluded, so the same bars give the same hash in any process)."""
        digest = hashlib.sha256(json.dumps([(w["symbol"], w["bars_hash"]) for w in self.writes]).encode())
        return {"writes": len(self.writes), "symbols": len({w["symbol"] for w in self.writes}),
                "bars": sum(w["bars"] for w in self.writes), "writes_hash": f"sha256:{digest.hexdigest()}"}


class PriceCache(ConfigurableResource):
    """Owner of the columnar price store (`prices/parts/part-*.parquet`, one table per fetch,
    the newest fetch winning per bar, never wiped). Assets that fetch bars take this resource; each step gets a
    `RecordedCache` whose writes go into the step's metadata and ledger outcome (`Step`)."""

    settings: PortfolioSettings

    def recorder(self) -> RecordedCache:
        """A new `RecordedCache` on the profile's lakehouse, for one step's price writes."""
        lake = self.settings.lakehouse()
        return RecordedCache(lake.base, lake.profile)
