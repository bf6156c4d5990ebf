"""The ledger's intent/outcome pair around one asset step, and the outputs it emits.

    @multi_asset(outs=outs("raw_pool", 3, {"audit": ...}, ...), ...)
    def raw_pool(context, settings: PortfolioSettings, equity_scan: pd.DataFrame, ...):
        with Step(context, settings) as step:
            ...
            yield from step.emit({"raw_pool": pool, "raw_pool__audit": audit}, metrics={...}, preview=pool)

* entering writes the ledger's `intent` (before any compute): parameters, profile and the data
  version of every upstream partition the step reads;
* `emit` yields one `Output` per table with its content hash as the Dagster data version; the IO
  manager stores it; when the generator resumes, the stored file is hashed again (what the
  verifier will see) and must equal that data version;
* leaving writes the `outcome` after every output is stored: status, metrics, events, final
  parameters, the hash of every stored file and folder, and the price-cache writes. An exception
  in the block, or a step stopped before its outputs were all stored, writes a `failed` outcome.

Files besides tables (images, Markdown) go into a folder the asset owns, published atomically
(`publish`), and are recorded as one output with the folder's hash.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import traceback
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from dagster import AssetKey, AssetRecordsFilter, DataVersion, GraphDefinition, MetadataValue, Output

from portfolio_assets.fetch import compact_store
from portfolio_assets.io_manager import content_version, table_metadata
from portfolio_assets.lakehouse import Lakehouse, publish_dir
from portfolio_assets.ledger import Ledger, file_hash, signer_from_env
from portfolio_assets.manifest import Config, ResolvedManifest
from portfolio_assets.partitions import validate_partition_date
from portfolio_assets.resources import PortfolioSettings, PriceCache, RecordedCache

T = TypeVar("T")
DATA_VERSION_TAG = "dagster/data_version"


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


def upstream_versions(context: Any, partition: str) -> dict[str, str]:
    """`{upstream asset: data version}` of the partitions this step reads, from Dagster's records
    (the content hash the upstream's ledger outcome recorded), `missing` when never stored."""
    assets_def = context.assets_def
    # An op inside a graph-backed asset (the tournament) does not own the asset's inputs, all of
    # which read the step's own partition.
    graph_backed = isinstance(assets_def.node_def, GraphDefinition)
    out: dict[str, str] = {}
    for name, key in sorted(assets_def.keys_by_input_name.items(), key=lambda kv: kv[1].to_user_string()):
        partitions = [partition] if graph_backed else list(context.asset_partition_keys_for_input(name))
        for part in partitions:
            out[f"{key.to_user_string()}@{part}" if part != partition else key.to_user_string()] = \
                stored_version(context.instance, key, part)
    return out


def stored_version(instance: Any, key: AssetKey, partition: str) -> str:
    """The data version of `key`'s latest materialization of `partition`, `missing` when never stored."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1).records
    version = records[0].asset_materialization.tags.get(DATA_VERSION_TAG) if records else None
    return version or "missing"


def previous_sessions(context: Any, shifted_input: str) -> dict[str, str | None]:
    """`{partition: previous session}` for every partition a step computes, in date order (None
    before the first partition of the calendar), read off the previous-session mapping of its
    input `shifted_input`: the range [D1..Dn] maps to [D0..Dn-1], D0 dropped before the calendar."""
    partitions = sorted(context.partition_keys)
    upstream: list[str | None] = list(sorted(context.asset_partition_keys_for_input(shifted_input)))
    upstream = [None] * (len(partitions) - len(upstream)) + upstream
    return dict(zip(partitions, upstream, strict=True))


def range_inputs(context: Any, partition: str, previous: str | None, *, shifted: Collection[str],
                 computed: Collection[str]) -> dict[str, str]:
    """`upstream_versions` of one date of a ranged step (a single-run backfill policy): inputs
    named in `shifted` read the previous session (`key@previous`; `computed in this run` for the
    asset's own previous partition when the range computes it), the others the date itself."""
    out: dict[str, str] = {}
    for name, key in sorted(context.assets_def.keys_by_input_name.items(), key=lambda kv: kv[1].to_user_string()):
        if name not in shifted:
            out[key.to_user_string()] = stored_version(context.instance, key, partition)
        elif previous is not None:
            own = key == context.assets_def.key and previous in computed
            out[f"{key.to_user_string()}@{previous}"] = (
                "computed in this run" if own else stored_version(context.instance, key, previous))
    return out


@contextlib.contextmanager
def range_steps(context: Any, settings: PortfolioSettings, sessions: Mapping[str, str | None], *,
                shifted: Collection[str], computed: Collection[str] = ()) -> Iterator[dict[str, Step]]:
    """One entered `Step` per date of a ranged step (`previous_sessions`): each date's intent is
    written on entering (its inputs from `range_inputs`), each date's outcome on leaving, `failed`
    for every date when the block raises."""
    steps = {p: Step(context, settings, partition=p,
                     inputs=range_inputs(context, p, prev, shifted=shifted, computed=computed))
             for p, prev in sessions.items()}
    with contextlib.ExitStack() as stack:
        for step in steps.values():
            stack.enter_context(step)
        yield steps


def range_version(versions: Mapping[str, str]) -> str:
    """The Dagster data version of a range's tables. One date (a daily run): its content hash, as
    every other table's. A range: Dagster puts one data version on every partition a step
    materializes, so it is the sha256 of the sorted `{date: content hash}` list; each date's own
    content hash is its `content_hash` metadata and its ledger outcome's `hash`."""
    if len(versions) == 1:
        return next(iter(versions.values()))
    return hashlib.sha256(json.dumps(sorted(versions.items())).encode()).hexdigest()


def emit_range(context: Any, steps: Mapping[str, Step], frames: Mapping[str, pd.DataFrame]) -> Iterator[Output]:
    """The one output of a ranged single-table step (`{date: frame}`, stored by the IO manager
    date by date): each date's metadata (its step's metrics, preview and events, content hash,
    file, row count and schema) on that date's materialization; then each date's stored file is
    checked against its content hash and recorded for its ledger outcome."""
    key = context.assets_def.key
    group = context.assets_def.group_names_by_key[key]
    versions = {p: content_version(f) for p, f in frames.items()}
    for partition, frame in frames.items():
        step = steps[partition]
        path = step.lake.table_path(group, key.to_user_string(), partition)
        context.add_asset_metadata({**step.metadata(preview=frame), "content_hash": versions[partition],
                                    **table_metadata(path, frame)}, partition_key=partition)
    yield Output(dict(frames), data_version=DataVersion(range_version(versions)),
                 metadata={"partitions": len(frames)} if len(frames) > 1 else {})
    for partition, step in steps.items():
        step.record_table(key, versions[partition])


SCOPE_SEP = "@"


def scope_finished(instance: Any) -> Callable[[str], bool]:
    """A price-store part's scope (`Step.fetch_scope`) -> whether Dagster's run storage holds its
    run as finished (success, failure or canceled). A run the instance does not know is not
    finished: its parts stay for `fetch.COMPACT_KEEP_RECENT_S`. One lookup per run."""
    seen: dict[str, bool] = {}

    def finished(scope: str) -> bool:
        run_id = scope.split(SCOPE_SEP, 1)[0]
        if run_id not in seen:
            run = instance.get_run_by_id(run_id)
            seen[run_id] = run is not None and run.is_finished
        return seen[run_id]

    return finished


class Step:
    """One asset step for one partition: ledger records, outputs, metadata (module docstring)."""

    def __init__(
        self,
        context: Any,
        settings: PortfolioSettings,
        *,
        asset: str | None = None,
        price_cache: PriceCache | None = None,
        params: dict[str, Any] | None = None,
        partition: str | None = None,
        inputs: dict[str, str] | None = None,
    ):
        self.context = context
        self.settings = settings
        self.asset = asset or context.op_def.name
        # A ranged step (`holdings` under its single-run backfill policy) has one Step per partition.
        self.partition: str = partition or context.partition_key
        self._inputs = inputs
        self.date: dt.date = validate_partition_date(self.partition)
        self.as_of = pd.Timestamp(self.date)
        self.resolved: ResolvedManifest = settings.resolved()
        self.cfg: Config = self.resolved.config
        self.lake: Lakehouse = price_cache.recorder() if price_cache is not None else settings.lakehouse()
        self.run_id: str = context.run_id
        self.params = dict(params or {})
        self.outputs: dict[str, dict[str, str]] = {}
        self.events: list[dict[str, Any]] = []
        self.metrics: dict[str, Any] = {}
        self.ledger = ledger_for(settings, self.partition)

    @property
    def fetch_scope(self) -> str:
        """The scope the run's first fetches of this partition are shared in (`fetch.first_fetch`)
        and its price-store parts are written under: `<run id>@<partition>` (`scope_finished`)."""
        return f"{self.run_id}{SCOPE_SEP}{self.partition}"

    # ---- the ledger's intent/outcome pair -------------------------------------------------
    def __enter__(self) -> Step:
        if self.ledger is not None:
            # The first record of a run that did not start at step 1 (backfill, re-execution):
            # a genesis if the partition has no chain yet, else a resume record — never a second genesis.
            self.ledger.ensure_started(self.run_id, {**genesis_payload(self.resolved), "started_by": self.asset})
            self.ledger.intent(self.run_id, self.asset, {
                "params": jsonable(self.params), "profile": self.resolved.profile,
                "inputs": self._inputs if self._inputs is not None else upstream_versions(self.context, self.partition)})
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is None and isinstance(self.lake, RecordedCache) and self.lake.writes:
            # The parts of finished runs merge (a backfill keeps the store small; reads unchanged).
            compact_store(self.lake, finished=scope_finished(self.context.instance))
        if self.ledger is None:
            return
        payload: dict[str, Any] = {"params": jsonable(self.params), "outputs": self.outputs, "events": self.events}
        if isinstance(self.lake, RecordedCache) and self.lake.writes:
            payload["price_cache"] = self.lake.summary()
        if exc is None:
            payload.update(status="ok", metrics=jsonable(self.metrics))
        elif exc_type is GeneratorExit:
            payload.update(status="failed", error="the step stopped before all its outputs were stored")
        else:
            payload.update(status="failed", error=f"{exc_type.__name__}: {exc}"[:2000],
                           where=traceback.format_tb(tb)[-1][:500] if tb else "")
        self.ledger.outcome(self.run_id, self.asset, payload)

    # ---- outputs --------------------------------------------------------------------------
    def emit(
        self,
        tables: pd.DataFrame | Mapping[str, pd.DataFrame],
        *,
        metrics: dict[str, Any] | None = None,
        preview: pd.DataFrame | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Iterator[Output]:
        """Yield each table as an `Output` (output name -> frame; a bare frame is the single
        output `result`), the step's metadata on the first; record each stored file's hash."""
        named = {"result": tables} if isinstance(tables, pd.DataFrame) else dict(tables)
        self.metrics = dict(metrics or {})
        for i, (name, df) in enumerate(named.items()):
            version = content_version(df)
            metadata = self.metadata(preview, extra) if i == 0 else {}
            yield Output(df, output_name=name, data_version=DataVersion(version), metadata=metadata)
            self.record_table(self.context.asset_key_for_output(name), version)

    def record_table(self, key: AssetKey, version: str) -> None:
        """Check that the stored table of this step's partition hashes `version`; record it for the outcome."""
        name = key.to_user_string()
        group = self.context.assets_def.group_names_by_key[key]
        path = self.lake.table_path(group, name, self.partition)
        stored = file_hash(path)
        if stored != version:
            raise RuntimeError(f"{name}: the stored table hashes {stored}, not its data version {version} "
                               f"(a Parquet round trip changed the content: fix the column types)")
        self.outputs[name] = {"path": self.lake.relative(path), "hash": stored}

    def publish(self, build: Callable[[Path], T], target: Path | None = None) -> tuple[Path, T]:
        """Build the asset's folder (default `files/<asset>/<date>`) in a staging folder and
        publish it atomically; recorded as one output with the folder's hash. Returns the
        folder and what `build` returned."""
        target = target or self.lake.files_dir(self.asset, self.partition)
        result = publish_dir(target, build)
        self.outputs[self.lake.relative(target)] = {"path": self.lake.relative(target), "hash": file_hash(target)}
        return target, result

    def event(self, kind: str, **details: Any) -> None:
        """A recorded event (fallback, dropped symbol, recovery ...): ledger + UI metadata + log."""
        item = {"kind": kind, **jsonable(details)}
        self.events.append(item)
        self.context.log.warning(f"{self.asset}: {kind}: {json.dumps(item, default=str)[:400]}")

    def metadata(self, preview: pd.DataFrame | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        md: dict[str, Any] = {"profile": self.resolved.profile, "partition": self.partition}
        for key, value in self.metrics.items():
            md[key] = value if isinstance(value, int | float | str | bool) else MetadataValue.json(jsonable(value))
        if preview is not None:
            md["preview"] = preview_md(preview)
        if self.events:
            md["events"] = MetadataValue.json(self.events)
        if isinstance(self.lake, RecordedCache) and self.lake.writes:
            md["price_cache_writes"] = MetadataValue.json(self.lake.summary())
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
