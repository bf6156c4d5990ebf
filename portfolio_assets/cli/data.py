"""`import-closes`: a CSV of closes into the files-source layout."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from portfolio_assets.cli.common import EXIT_OK


def cmd_import_closes(args: argparse.Namespace) -> int:
    """A CSV of closes (+ optional universe CSV) into the files-source layout (docs/real-data.md)."""
    from portfolio_assets.sources.files_export import export_closes, read_closes_csv, read_universe_csv

    closes = read_closes_csv(Path(args.csv))
    universe = read_universe_csv(Path(args.universe)) if args.universe else None
    dest = export_closes(closes, Path(args.dest), universe)
    counts = closes.notna().sum()
    classes = "every symbol an equity (no --universe)" if universe is None else "universe.csv from --universe"
    print(f"wrote {len(counts)} symbol(s), {int(counts.sum())} bars ({closes.index[0]} .. {closes.index[-1]}) "
          f"to {dest / 'bars'}; {classes}")
    print("closes only: open = high = low = close, volume unknown (liquidity filters are skipped and recorded)")
    print("run on it (D: a trading date your data covers): portfolio-assets run --date D "
          f"--set source.kind=files --set source.settings.path={shlex.quote(str(dest))}")
    return EXIT_OK
