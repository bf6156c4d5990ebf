"""Enrichment (step 6): sector, industry, description, asset class — each with its provenance.

Sources in priority order: the scanner row, the source's metadata, the built-in map of well-known
instruments (`portfolio_assets.reference`), then asset-class fallbacks. The column
`<field>_source` says which one filled each field: `scanner`, `source_metadata`, `builtin_map`,
`class_fallback`.
"""

from __future__ import annotations

import pandas as pd

from portfolio_assets.reference import CLASS_FALLBACKS, KNOWN_INSTRUMENTS

FIELDS = ("asset_class", "sector", "industry", "description")


def _present(value: object) -> bool:
    return value is not None and not (isinstance(value, float) and pd.isna(value)) and str(value).strip() != ""


def enrich(winners: pd.DataFrame, scan_rows: pd.DataFrame, source_meta: pd.DataFrame) -> pd.DataFrame:
    """One row per winner (index symbol) with FIELDS and `<field>_source` columns."""
    rows = []
    for symbol in winners.index:
        scan = scan_rows.loc[symbol] if symbol in scan_rows.index else None
        meta = source_meta.loc[symbol] if symbol in source_meta.index else None
        known = KNOWN_INSTRUMENTS.get(symbol)
        out: dict[str, object] = {"symbol": symbol}
        for i, field in enumerate(FIELDS):
            value, prov = None, None
            candidates = [
                ("scanner", scan.get(field) if scan is not None else None),
                ("source_metadata", meta.get(field) if meta is not None else None),
                ("builtin_map", known[i] if known else None),
            ]
            for name, candidate in candidates:
                if _present(candidate):
                    value, prov = candidate, name
                    break
            if value is None:
                cls = out.get("asset_class") or "equity"
                fallback = {"asset_class": "equity", "description": symbol.split(":", 1)[1]}
                fallback.update(dict(zip(("sector", "industry"), CLASS_FALLBACKS.get(str(cls), CLASS_FALLBACKS["equity"]), strict=True)))
                value, prov = fallback[field], "class_fallback"
            out[field] = value
            out[f"{field}_source"] = prov
        rows.append(out)
    return pd.DataFrame(rows).set_index("symbol")
