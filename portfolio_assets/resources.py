"""Dagster resources: the resolved profile, its lakehouse and its market-data source."""

from __future__ import annotations

import json
import os
from functools import lru_cache

from dagster import ConfigurableResource

from portfolio_assets.lakehouse import Lakehouse
from portfolio_assets.manifest import ResolvedManifest, resolve
from portfolio_assets.sources.base import MarketData


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
        return _resolve_cached(self.profile, self.manifest_path, _env_key())

    def lakehouse(self) -> Lakehouse:
        return Lakehouse(self.lakehouse_root, self.resolved().profile)

    def source(self) -> MarketData:
        cfg = self.resolved().config.source
        given = cfg.model_dump(mode="json")["settings"]
        return _source_cached(cfg.kind, json.dumps(given, sort_keys=True), str(self.lakehouse().root))
