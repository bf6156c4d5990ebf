"""The IO manager for values passed between ops (the tournament's fan-out): Parquet, never pickle.

Assets write their own partitions through `assets/_step.py`; only op-to-op values travel through
here, stored under `<lakehouse>/<profile>/_intermediate/<run_id>/` so that every executor's
workers (multiprocess or dask) read them from shared storage.
"""



import re
from pathlib import Path

import pandas as pd
from dagster import ConfigurableIOManager, InputContext, OutputContext

from portfolio_assets.lakehouse import atomic_write_frame
from portfolio_assets.resources import PortfolioSettings

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


class ParquetIOManager(ConfigurableIOManager):
    settings: PortfolioSettings

    def _path(self, context: OutputContext) -> Path:
        parts = [context.step_key, context.name, *(context.mapping_key and [context.mapping_key] or [])]
        name = ".".join(_SAFE.sub("_", p) for p in parts)
        return self.settings.lakehouse().root / "_intermediate" / _SAFE.sub("_", context.run_id) / f"{name}.parquet"

    def handle_output(self, context: OutputContext, obj: object) -> None:
        if obj is None:  # assets that wrote their own partition return nothing to store
            return
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(
                f"{context.step_key}.{context.name}: only DataFrames travel between ops (Parquet); "
                f"got {type(obj).__name__} — this project never pickles"
            )
        atomic_write_frame(self._path(context), obj)

    def load_input(self, context: InputContext) -> pd.DataFrame:
        upstream = context.upstream_output
        if upstream is None:
            raise ValueError(f"{context.name}: no upstream output to load")
        return pd.read_parquet(self._path(upstream))
