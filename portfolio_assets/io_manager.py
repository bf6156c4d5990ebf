"""The one IO manager: it owns the lakehouse's table layout.

Every asset output is a DataFrame stored atomically as Parquet at

    <lakehouse>/<profile>/<group>/<asset key>/<partition>.parquet

(`Lakehouse.write_table`: no pandas index columns; a named index such as `session` is a column
restored as the index on read), with the standard metadata `dagster/row_count`,
`dagster/column_schema` and the file's `path`. Inputs are read back from the same place, so an
asset's upstream data arrives as a typed parameter and a misspelt dependency is a definitions
error, not a stub; a missing partition is an error naming the file and the asset to materialize.

A step that computes a range of partitions in one run (a single-run backfill policy: `holdings`,
whose book chains the dates, and `previous_target`) reads the inputs marked `by_partition: True`
(the previous session's, through a `TimeWindowPartitionMapping(-1, -1)` that may point before the
first partition or at a session never stored) as `{partition: frame}` of the stored ones, and
emits `{partition: frame}`, every partition of the range; its per-partition metadata is the
step's to add (`_step.emit_range`).

Data versions are content hashes (`content_version`): the asset's `Step` puts them on each
`Output` and checks after the write that the stored file hashes the same (the ledger records that
hash). Values between ops that are not assets (the tournament's fan-out) are stored as Parquet
under `_intermediate/<run id>/`, so every executor's workers read them from shared storage. Never
pickle.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from dagster import (
    ConfigurableIOManager,
    InputContext,
    MetadataValue,
    OutputContext,
    TableColumn,
    TableSchema,
)

from portfolio_assets.lakehouse import atomic_write_frame, read_back, stored_form
from portfolio_assets.ledger import frame_hash
from portfolio_assets.resources import PortfolioSettings

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def content_version(df: pd.DataFrame) -> str:
    """The content hash of `df` as it will be read back from its file (`ledger.file_hash` of the
    stored table): the asset's Dagster data version, and the hash its ledger outcome records."""
    return frame_hash(read_back(df))


def table_metadata(path: Path, frame: pd.DataFrame) -> dict[str, Any]:
    """The standard metadata of a stored table: its file, `dagster/row_count` and
    `dagster/column_schema` (of the stored form: what a reader gets back)."""
    stored = stored_form(frame)
    return {
        "path": MetadataValue.path(str(path)),
        "dagster/row_count": len(stored),
        "dagster/column_schema": TableSchema(columns=[
            TableColumn(name=str(name), type=str(dtype))
            for name, dtype in stored.reset_index(drop=stored.index.names == [None]).dtypes.items()
        ]),
    }


class LakehouseIOManager(ConfigurableIOManager):
    """Parquet per asset key and partition in the profile's lakehouse (see the module docstring).

    `groups` maps every asset key to its group (the folder), filled in `definitions.py` from the
    asset graph, so the group of an asset is written once: by the module that defines it."""

    settings: PortfolioSettings
    groups: dict[str, str]

    def _table(self, key: str, partition: str) -> Path:
        if key not in self.groups:
            raise KeyError(f"asset {key!r} has no group in the lakehouse IO manager (is it in the definitions?)")
        return self.settings.lakehouse().table_path(self.groups[key], key, partition)

    def _intermediate(self, context: OutputContext) -> Path:
        parts = [context.step_key, context.name, *([context.mapping_key] if context.mapping_key else [])]
        name = ".".join(_SAFE.sub("_", p) for p in parts)
        return self.settings.lakehouse().root / "_intermediate" / _SAFE.sub("_", context.run_id) / f"{name}.parquet"

    def handle_output(self, context: OutputContext, obj: pd.DataFrame | Mapping[str, pd.DataFrame]) -> None:
        """Store an asset's DataFrame as its partition's lakehouse table (with table metadata), a ranged
        output's `{partition: frame}` as one table per partition, a non-asset output under `_intermediate`;
        anything but DataFrames raises `TypeError`."""
        if isinstance(obj, Mapping) and context.has_asset_key and context.has_asset_partitions:
            self._handle_range(context, obj)
            return
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(f"{context.step_key}.{context.name}: outputs are DataFrames stored as Parquet; got "
                            f"{type(obj).__name__} (this project never pickles)")
        if not context.has_asset_key:
            atomic_write_frame(self._intermediate(context), obj)
            return
        key = context.asset_key.to_user_string()
        path = self.settings.lakehouse().write_table(self.groups[key], key, context.asset_partition_key, obj)
        context.add_output_metadata(table_metadata(path, obj))

    def _handle_range(self, context: OutputContext, frames: Mapping[str, pd.DataFrame]) -> None:
        key = context.asset_key.to_user_string()
        expected = list(context.asset_partition_keys)
        if sorted(frames) != sorted(expected):
            raise ValueError(f"{key}: a ranged output must hold every partition of the range {expected[0]}..{expected[-1]} "
                             f"({len(expected)}), got {sorted(frames)}")
        for partition in sorted(frames):
            frame = frames[partition]
            if not isinstance(frame, pd.DataFrame):
                raise TypeError(f"{key}@{partition}: outputs are DataFrames stored as Parquet; got {type(frame).__name__}")
        lake = self.settings.lakehouse()
        for partition in sorted(frames):  # in date order: a partial range is a prefix of the chain
            lake.write_table(self.groups[key], key, partition, frames[partition])

    def load_input(self, context: InputContext) -> pd.DataFrame | dict[str, pd.DataFrame]:
        """Read an upstream asset's one partition (`FileNotFoundError` when not materialized), or with
        `by_partition` metadata `{partition: frame}` of the stored ones; a non-asset input from
        `_intermediate`."""
        if not context.has_asset_key:
            upstream = context.upstream_output
            if upstream is None:
                raise ValueError(f"{context.name}: no upstream output to load")
            path = self._intermediate(upstream)
            lake = self.settings.lakehouse()
            if lake.mirror is not None:  # an object-store lakehouse: this run's values, written on any host
                lake.mirror.pull(lake.mirror.key(path.parent) + "/")
            return pd.read_parquet(path)
        key = context.asset_key.to_user_string()
        partitions = list(context.asset_partition_keys) if context.has_asset_partitions else []
        if (context.definition_metadata or {}).get("by_partition"):
            return {p: pd.read_parquet(path) for p in sorted(partitions) if (path := self._table(key, p)).exists()}
        if len(partitions) != 1:
            raise ValueError(f"{context.name}: expected one partition of {key}, got {partitions}")
        path = self._table(key, partitions[0])
        if not path.exists():
            raise FileNotFoundError(
                f"{key} has no stored partition {partitions[0]} ({path}): materialize it first, e.g. "
                f"portfolio-assets run --date {partitions[0]} --select {key}")
        return pd.read_parquet(path)
