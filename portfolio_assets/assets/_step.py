"""The one piece of wiring every asset shares: read stored inputs, write outputs atomically,
record metadata and the ledger's intent/outcome pair.

    with Step(context, settings, "raw_pool", "universe", params={...}) as step:
        scans = step.read("discovery", "equity_scan")
        ...
        step.write(pool)
        return step.result(metrics={...}, preview=pool)

An exception inside the block writes a `failed` outcome (with the error) and re-raises.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, OpExecutionContext

from portfolio_assets.lakehouse import Lakehouse
from portfolio_assets.ledger import Ledger, file_hash, frame_hash, signer_from_env
from portfolio_assets.manifest import Config, ResolvedManifest
from portfolio_assets.partitions import validate_partition_date
from portfolio_assets.resources import PortfolioSettings


def preview_md(df: pd.DataFrame, n: int = 15, floatfmt: str = ".4f") -> MetadataValue:
    """A Markdown preview table for the UI."""
    if df.empty:
        return MetadataValue.md("_(empty)_")
    head = df.head(n)
    cols = [str(c) for c in head.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in head.iterrows():
        cells = [("" if v != v else format(v, floatfmt)) if isinstance(v, float) else ("" if v is None else str(v))
                 for v in row.tolist()]
        lines.append("| " + " | ".join(cells) + " |")
    if len(df) > n:
        lines.append(f"\n_{len(df) - n} more rows_")
    return MetadataValue.md("\n".join(lines))


def ledger_for(settings: PortfolioSettings, partition: str) -> Ledger | None:
    resolved = settings.resolved()
    if not resolved.config.features.feat_audit_ledger:
        return None
    signer = signer_from_env()
    signing = resolved.config.ledger.signing
    if signing != "none" and signer is None:
        raise ValueError(
            f"profile {resolved.profile!r} signs its ledger ({signing}) but no key is set: "
            f"export PA_LEDGER_HMAC_KEY or PA_LEDGER_ED25519_KEY"
        )
    return Ledger(settings.lakehouse().ledger_path(partition), partition, signer)


def genesis_payload(resolved: ResolvedManifest) -> dict[str, Any]:
    from portfolio_assets.versions import code_version, package_versions

    return {
        "profile": resolved.profile,
        "resolved_from": resolved.resolved_from,
        "manifest_sha256": resolved.manifest_sha256,
        "config_hash": resolved.config_hash,
        "overrides": resolved.overrides,
        "code_version": code_version(),
        "package_versions": package_versions(),
    }


class Step:
    """One asset materialization for one partition."""

    def __init__(
        self,
        context: AssetExecutionContext | OpExecutionContext,
        settings: PortfolioSettings,
        asset: str,
        group: str,
        params: dict[str, Any] | None = None,
    ):
        self.context = context
        self.settings = settings
        self.asset = asset
        self.group = group
        self.partition: str = context.partition_key
        self.date: dt.date = validate_partition_date(self.partition)
        self.as_of = pd.Timestamp(self.date)
        self.resolved: ResolvedManifest = settings.resolved()
        self.cfg: Config = self.resolved.config
        self.lake: Lakehouse = settings.lakehouse()
        self.run_id: str = context.run_id
        self.params = params or {}
        self.inputs: dict[str, str] = {}
        self.outputs: dict[str, dict[str, str]] = {}
        self.events: list[dict[str, Any]] = []
        self.metadata: dict[str, Any] = {}
        self.ledger = ledger_for(settings, self.partition)

    # ---- context manager: the ledger's intent/outcome pair -------------------------------
    def __enter__(self) -> Step:
        if self.ledger is not None:
            # The first record of a run that did not start at step 1 (backfill, resume, recover):
            # a genesis if the partition has no chain yet, else a resume record — never a second genesis.
            self.ledger.ensure_started(self.run_id, {**genesis_payload(self.resolved), "started_by": self.asset})
            self.ledger.intent(self.run_id, self.asset, {"params": self.params, "profile": self.resolved.profile})
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.ledger is None:
            return
        payload: dict[str, Any] = {"inputs": self.inputs, "outputs": self.outputs, "events": self.events}
        if exc is None:
            payload.update(status="ok", metrics=jsonable(self.metadata.get("_metrics", {})))
        else:
            payload.update(status="failed", error=f"{exc_type.__name__}: {exc}"[:2000],
                           where=traceback.format_tb(tb)[-1][:500] if tb else "")
        self.ledger.outcome(self.run_id, self.asset, payload)

    # ---- inputs ---------------------------------------------------------------------------
    def read(self, group: str, asset: str, part: str | None = None) -> pd.DataFrame:
        df = self.lake.read_table(group, asset, self.partition, part)
        key = asset + (f"__{part}" if part else "")
        self.inputs[key] = frame_hash(df)
        return df

    # ---- outputs --------------------------------------------------------------------------
    def write(self, df: pd.DataFrame, part: str | None = None, asset: str | None = None) -> Path:
        path = self.lake.write_table(self.group, asset or self.asset, self.partition, df, part)
        name = (asset or self.asset) + (f"__{part}" if part else "")
        # Hash what a reader gets back from the file (the verifier's view), not the in-memory frame,
        # whose dtypes a Parquet round trip may normalize (e.g. int32 -> Int64).
        self.outputs[name] = {"path": self.lake.relative(path), "hash": file_hash(path)}
        return path

    def write_file(self, relative: str, data: bytes | str) -> Path:
        from portfolio_assets.lakehouse import atomic_write_bytes

        path = self.lake.report_path(self.partition, relative)
        atomic_write_bytes(path, data.encode() if isinstance(data, str) else data)
        self.outputs[relative] = {"path": self.lake.relative(path), "hash": file_hash(path)}
        return path

    def write_with(self, relative: str, writer: Callable[[Path], object]) -> Path:
        """Let a library write a report file (e.g. a PNG) to a temp path, then rename it into place."""
        path = self.lake.report_path(self.partition, relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
        try:
            writer(tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        self.outputs[relative] = {"path": self.lake.relative(path), "hash": file_hash(path)}
        return path

    def event(self, kind: str, **details: Any) -> None:
        """A recorded event (fallback, dropped symbol, recovery ...): ledger + UI log."""
        item = {"kind": kind, **jsonable(details)}
        self.events.append(item)
        self.context.log.warning(f"{self.asset}: {kind}: {json.dumps(item, default=str)[:400]}")

    # ---- result ---------------------------------------------------------------------------
    def result(
        self,
        metrics: dict[str, Any] | None = None,
        preview: pd.DataFrame | None = None,
        extra: dict[str, Any] | None = None,
    ) -> MaterializeResult:
        self.metadata["_metrics"] = metrics or {}
        return MaterializeResult(metadata=self.dagster_metadata(metrics, preview, extra))

    def dagster_metadata(
        self, metrics: dict[str, Any] | None = None, preview: pd.DataFrame | None = None, extra: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        self.metadata["_metrics"] = metrics or {}
        md: dict[str, Any] = {"profile": self.resolved.profile, "partition": self.partition}
        main = self.outputs.get(self.asset)
        if main:
            md["path"] = MetadataValue.path(str(self.lake.root / main["path"]))
            md["data_hash"] = main["hash"]
        for key, value in (metrics or {}).items():
            md[key] = value if isinstance(value, int | float | str | bool) else MetadataValue.json(jsonable(value))
        if preview is not None:
            md["preview"] = preview_md(preview)
        if self.events:
            md["events"] = MetadataValue.json(self.events)
        md.update(extra or {})
        return md


def jsonable(obj: Any) -> Any:
    """Plain JSON types: NaN/inf -> None, numpy scalars -> Python, dates -> ISO strings."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set):
        return [jsonable(v) for v in obj]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if np.isfinite(obj) else None
    if obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, dt.date | pd.Timestamp):
        return obj.isoformat()
    return str(obj)
