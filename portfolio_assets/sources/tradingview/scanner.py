"""The scanner side: presets resolved per family, paged queries with retries, stored scans.

A live scanner only answers for today, so every live answer is stored (`store_scan`) and a past
date is answered from storage (`load_stored_scan`), refused if it was made with another preset.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import random
import re
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import requests

from portfolio_assets.sources.base import SCAN_COLUMNS, SourceError
from portfolio_assets.sources.scanner_query import FAMILIES
from portfolio_assets.sources.settings import TradingViewSettings
from portfolio_assets.sources.tradingview.protocol import (
    SCANNER_FIELDS,
    check_answer,
    check_row,
    decode_json,
    retry_after_s,
    scan_frame,
    snippet,
)
from portfolio_assets.symbols import InvalidSymbolError, validate_symbol

logger = logging.getLogger("portfolio_assets.sources.tradingview")

DEFAULT_MARKETS = {"equity": "america", "bond": "america", "crypto": "crypto", "forex": "forex",
                   "futures": "futures"}
_PRESET_KEYS = frozenset({"name", "market", "filter", "sort", "limit", "direction", "symbols", "timeframes"})
_PRESET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_MARKET_RE = re.compile(r"^[a-z0-9_]+$")
_JITTER = 0.25  # retry delays are stretched by up to 25% so concurrent clients do not retry in step


@dataclass(frozen=True)
class ScanPreset:
    """A resolved scanner preset for one family."""

    family: str
    name: str | None
    market: str
    filter: tuple[dict[str, Any], ...]
    sort: dict[str, Any] | None
    limit: int | None
    direction: str
    symbols: dict[str, Any] | None
    timeframes: tuple[dict[str, Any], ...]
    ignored_keys: tuple[str, ...]

    def canonical(self) -> str:
        """The preset as canonical JSON (compared with the one a stored scan was made with)."""
        fields = {"name": self.name, "market": self.market, "filter": list(self.filter), "sort": self.sort, "limit": self.limit,
                  "direction": self.direction, "symbols": self.symbols, "timeframes": list(self.timeframes)}
        return json.dumps(fields, sort_keys=True, default=str)


def _check_filter(value: object, where: str) -> tuple[dict[str, Any], ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise ValueError(f"{where} must be a list of {{'left', 'operation', 'right'}}, got {value!r}")
    for item in value:
        if (not isinstance(item, Mapping) or not {"left", "operation", "right"} <= set(item)
                or not isinstance(item["left"], str) or not isinstance(item["operation"], str)):
            raise ValueError(f"{where} entries need string 'left', string 'operation' and 'right', got {item!r}")
    return tuple(dict(item) for item in value)


def resolve_preset(family: str, preset: Mapping[str, Any], defaults: Mapping[str, Any] | None = None
                   ) -> ScanPreset:
    """Merge the family's market default, `defaults` (settings) and `preset` (manifest) and validate."""
    if family not in FAMILIES:
        raise ValueError(f"unknown scanner family {family!r}; expected one of {list(FAMILIES)}")
    given = {k: v for k, v in {**(defaults or {}), **preset}.items() if v is not None}
    p = {"market": DEFAULT_MARKETS[family], **given}
    where = f"{family} preset"
    name = p.get("name")
    if name is not None and (not isinstance(name, str) or not _PRESET_NAME_RE.fullmatch(name)):
        raise ValueError(f"{where}: name must be 1-64 of A-Z, a-z, 0-9, '_', '-', got {name!r}")
    if not isinstance(p["market"], str) or not _MARKET_RE.fullmatch(p["market"]):
        raise ValueError(f"{where}: market must be a scanner market name like 'america', got {p['market']!r}")
    sort = p.get("sort")
    if sort is not None and (not isinstance(sort, Mapping) or not isinstance(sort.get("sortBy"), str)
                             or sort.get("sortOrder", "desc") not in ("asc", "desc")):
        raise ValueError(f"{where}: sort must be {{'sortBy': column, 'sortOrder': 'asc'|'desc'}}, got {sort!r}")
    limit = p.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"{where}: limit must be a positive integer, got {limit!r}")
    direction = p.get("direction", "long")
    if direction not in ("long", "short"):
        raise ValueError(f"{where}: direction must be 'long' or 'short', got {direction!r}")
    symbols = p.get("symbols")
    if symbols is not None and not isinstance(symbols, Mapping):
        raise ValueError(f"{where}: symbols must be a dict like {{'tickers': [...]}}, got {symbols!r}")
    screens = []
    for i, screen in enumerate(p.get("timeframes") or ()):
        if not isinstance(screen, Mapping) or not isinstance(screen.get("name"), str):
            raise ValueError(f"{where}: timeframes[{i}] must be {{'name': str, 'filter': [...]}}, got {screen!r}")
        screens.append({"name": screen["name"],
                        "filter": list(_check_filter(screen.get("filter"), f"{where} timeframe {screen['name']!r}"))})
    return ScanPreset(
        family=family, name=name, market=p["market"], filter=_check_filter(p.get("filter"), f"{where} filter"),
        sort=None if sort is None else {"sortBy": sort["sortBy"], "sortOrder": sort.get("sortOrder", "desc")},
        limit=limit, direction=direction, symbols=None if symbols is None else dict(symbols),
        timeframes=tuple(screens), ignored_keys=tuple(sorted(set(p) - _PRESET_KEYS)),
    )


class ScannerClient:
    """POSTs scanner queries with retries and pages through the answers (one per source)."""

    def __init__(self, settings: TradingViewSettings) -> None:
        self.settings = settings
        self._http = requests.Session()
        self._http.headers.update({"Origin": settings.origin, "User-Agent": "portfolio_assets"})
        self._jitter = random.Random()  # timing only, never data: deliberately unseeded

    def scan_live(self, cfg: ScanPreset) -> pd.DataFrame:
        """Every screen of `cfg` in order (each restricted to the previous survivors); the rows of the
        symbols every screen kept, with the answer's bookkeeping in ``attrs``."""
        screens = cfg.timeframes or ({"name": None, "filter": []},)
        survivors: list[str] | None = None
        kept: set[str] = set()
        rows: list[dict[str, Any]] = []
        rejected: list[dict[str, str]] = []
        duplicates: list[str] = []
        counts = []
        total: int | None = None
        for screen in screens:
            symbols = cfg.symbols
            if survivors is not None:
                symbols = {**(cfg.symbols or {"query": {"types": []}}), "tickers": survivors}
            rows, total, rej, dup = self._scan_pages(cfg, list(cfg.filter) + screen["filter"], symbols)
            rejected += rej
            duplicates += dup
            found = [r["symbol"] for r in rows]
            kept = set(found) if survivors is None else kept & set(found)
            survivors = [s for s in found if s in kept]
            counts.append({"name": screen["name"], "rows": len(found), "kept": len(survivors)})
            if not survivors:
                break
        rows = [r for r in rows if r["symbol"] in kept]
        frame = scan_frame(rows, cfg.direction)
        frame.attrs.update({
            "source": "tradingview", "family": cfg.family, "market": cfg.market, "preset": cfg.canonical(),
            "total_count": total, "rejected": rejected, "duplicates": duplicates,
            "ignored_preset_keys": list(cfg.ignored_keys),
            "timeframes": counts if cfg.timeframes else [],
        })
        return frame

    def _scan_pages(self, cfg: ScanPreset, filters: list[dict[str, Any]], symbols: dict[str, Any] | None
                    ) -> tuple[list[dict[str, Any]], int | None, list[dict[str, str]], list[str]]:
        """All pages of one screen: (rows, totalCount, rejected symbols, duplicate symbols)."""
        url = f"{self.settings.scanner_base}/{cfg.market}/scan"
        page_size = self.settings.page_size
        rows: list[dict[str, Any]] = []
        seen: set[str] = set()
        rejected: list[dict[str, str]] = []
        duplicates: list[str] = []
        start, total = 0, None
        while True:
            end = start + page_size if cfg.limit is None else min(start + page_size, cfg.limit)
            body: dict[str, Any] = {"columns": list(SCANNER_FIELDS), "filter": filters,
                                    "options": {"lang": "en"}, "range": [start, end]}
            if cfg.sort is not None:
                body["sort"] = cfg.sort
            if symbols is not None:
                body["symbols"] = symbols
            data, total = check_answer(self._post_json(url, body), url)
            if len(data) > end - start:
                raise SourceError(f"scanner answered {len(data)} rows for range [{start}, {end}) of {url}")
            for item in data:
                symbol, values = check_row(item)
                try:
                    validate_symbol(symbol)
                except InvalidSymbolError as exc:
                    logger.warning("tradingview scanner row dropped: %s", exc)
                    rejected.append({"symbol": symbol, "reason": str(exc)})
                    continue
                if symbol in seen:  # the live ranking moved between two pages
                    duplicates.append(symbol)
                    continue
                seen.add(symbol)
                rows.append({"symbol": symbol, **dict(zip(SCANNER_FIELDS, values, strict=True))})
            if len(data) < end - start or end == cfg.limit or (total is not None and end >= total):
                return rows, total, rejected, duplicates
            start = end

    def _post_json(self, url: str, body: dict[str, Any]) -> Any:
        """POST `body`, retrying 429/5xx/network errors with backoff; the decoded JSON answer."""
        s = self.settings
        last = ""
        for attempt in range(1, s.max_attempts + 1):
            retry_after: float | None = None
            try:
                resp = self._http.post(url, json=body, timeout=s.timeout_s)
            except requests.RequestException as exc:
                last = f"{type(exc).__name__}: {snippet(exc)}"
            else:
                if resp.status_code == 200:
                    return decode_json(resp.text)
                last = f"HTTP {resp.status_code}: {snippet(resp.text)}"
                if resp.status_code != 429 and resp.status_code < 500:
                    raise SourceError(f"scanner POST {url} answered {last}")
                retry_after = retry_after_s(resp.headers.get("Retry-After"))
                if retry_after is not None and retry_after > s.backoff_max_s:
                    raise SourceError(f"scanner POST {url} answered HTTP {resp.status_code} with Retry-After "
                                      f"{retry_after:g} s, longer than backoff_max_s={s.backoff_max_s:g}; giving up")
            if attempt == s.max_attempts:
                break
            delay = self._retry_delay(attempt, retry_after)
            logger.warning("tradingview scanner attempt %d/%d failed (%s); retrying in %.2f s",
                           attempt, s.max_attempts, last, delay)
            time.sleep(delay)
        raise SourceError(f"scanner POST {url} failed after {s.max_attempts} attempts; last answer: {last}")

    def _retry_delay(self, attempt: int, retry_after: float | None) -> float:
        """Retry-After plus jitter when given, else base * 2**(attempt-1) stretched by jitter, capped."""
        s = self.settings
        if retry_after is not None:
            return retry_after + self._jitter.uniform(0.0, _JITTER * s.backoff_base_s)
        delay = s.backoff_base_s * 2 ** (attempt - 1) * (1.0 + self._jitter.uniform(0.0, _JITTER))
        return min(delay, s.backoff_max_s)


def stored_scan_path(root: Path | None, cfg: ScanPreset, as_of: dt.date) -> Path | None:
    """``<root>/<as_of>/<family>[__<preset name>].parquet`` (None without a storage root)."""
    if root is None:
        return None
    stem = cfg.family if cfg.name is None else f"{cfg.family}__{cfg.name}"
    return root / as_of.isoformat() / f"{stem}.parquet"


def load_stored_scan(path: Path, cfg: ScanPreset) -> pd.DataFrame:
    """A stored scan, refused when it lacks columns or was made with another preset."""
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as exc:  # pyarrow's read errors subclass these
        raise SourceError(f"stored scan {path} is unreadable: {type(exc).__name__}: {snippet(exc)}") from exc
    missing = [c for c in (*SCAN_COLUMNS, "direction") if c not in frame.columns]
    if missing:
        raise SourceError(f"stored scan {path} lacks columns {missing}")
    stored_preset = frame.attrs.get("preset")
    if stored_preset != cfg.canonical():
        raise SourceError(f"stored scan {path} was made with preset {stored_preset}, not the requested "
                          f"{cfg.canonical()}; a past scan cannot be redone with another preset")
    frame.attrs["stored_scan"] = str(path)
    return frame


def store_scan(frame: pd.DataFrame, path: Path) -> None:
    """Write a scan to `path` via a temp file in the same directory and `os.replace` (attrs kept)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def newer(day: dt.date, family: str, have: tuple[dt.date, str, dict[str, Any]] | None) -> bool:
    """Whether a row scanned on `day` by `family` replaces `have`: the newer day wins; on the same day
    a specialised family beats ``equity`` (a fund in the bond scan is a bond ETF, not just an ETF)."""
    return have is None or day > have[0] or (day == have[0] and have[1] == "equity" and family != "equity")
