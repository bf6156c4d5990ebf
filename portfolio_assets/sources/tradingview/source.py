"""`TradingViewSource`: the `MarketData` interface over the scanner (`scanner`) and the chart (`chart`)."""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from portfolio_assets.sources.base import CALENDAR_24_5, CALENDAR_24_7, SourceError
from portfolio_assets.sources.scanner_query import FAMILIES
from portfolio_assets.sources.settings import TradingViewSettings, parse_source_settings
from portfolio_assets.sources.tradingview.chart import FetchManyError, fetch_all, run_coroutine
from portfolio_assets.sources.tradingview.protocol import ENV_SCANNER_BASE, ENV_WS_URL, as_date, snippet
from portfolio_assets.sources.tradingview.scanner import (
    ScannerClient,
    ScanPreset,
    load_stored_scan,
    newer,
    resolve_preset,
    store_scan,
    stored_scan_path,
)
from portfolio_assets.symbols import validate_symbol

logger = logging.getLogger("portfolio_assets.sources.tradingview")

METADATA_COLUMNS = ("asset_class", "calendar", "sector", "industry", "description", "currency")
# Scanner `type` -> our asset class (a "fund" scanned by the bond family is a bond ETF).
TYPE_ASSET_CLASS = {"stock": "equity", "dr": "equity", "fund": "etf", "spot": "crypto", "crypto": "crypto",
                    "forex": "forex", "futures": "futures"}
# Exchange -> exchange_calendars name, for the classes that trade on an exchange's calendar.
EXCHANGE_CALENDAR = {
    "NASDAQ": "XNYS", "NYSE": "XNYS", "AMEX": "XNYS", "ARCA": "XNYS", "NYSEARCA": "XNYS", "BATS": "XNYS",
    "LSE": "XLON", "TSX": "XTSE", "XETR": "XETR", "TSE": "XTKS", "HKEX": "XHKG", "ASX": "XASX",
    "CME": "CMES", "CME_MINI": "CMES", "CBOT": "CBOT", "CBOT_MINI": "CBOT", "NYMEX": "NYMEX",
    "COMEX": "COMEX", "ICEUS": "IEPA",
}
_DATE_DIR_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_URL_SCHEMES = {"scanner_base": ("http://", "https://"), "ws_url": ("ws://", "wss://")}


def effective_settings(settings: TradingViewSettings, environ: Mapping[str, str] = os.environ) -> TradingViewSettings:
    """What the source uses: the ``PA_TV_SCANNER_BASE`` / ``PA_TV_WS_URL`` environment overrides of
    the two URLs (checked here, naming the variable), ``scanner_base`` without a trailing ``/``, and
    ``stored_scans`` resolved (as given, else ``<lakehouse_root>/scans``, else None: no storage)."""
    update: dict[str, Any] = {}
    for key, env in (("scanner_base", ENV_SCANNER_BASE), ("ws_url", ENV_WS_URL)):
        value = environ.get(env)
        if value:
            if not value.startswith(_URL_SCHEMES[key]):
                raise ValueError(f"environment {env} must start with {' or '.join(_URL_SCHEMES[key])}, got {value!r}")
            update[key] = value
    update["scanner_base"] = update.get("scanner_base", settings.scanner_base).rstrip("/")
    if settings.stored_scans is None and settings.lakehouse_root is not None:
        update["stored_scans"] = settings.lakehouse_root / "scans"
    return settings.model_copy(update=update)


class TradingViewSource:
    """`MarketData` from TradingView's scanner HTTP API and chart websocket (package docstring)."""

    name = "tradingview"

    def __init__(self, settings: TradingViewSettings | Mapping[str, Any] | None = None) -> None:
        self.settings = effective_settings(parse_source_settings("tradingview", settings))
        self._scanner = ScannerClient(self.settings)
        self._seen: dict[str, tuple[dt.date, str, dict[str, Any]]] = {}

    def __repr__(self) -> str:
        s = self.settings
        return f"TradingViewSource(scanner_base={s.scanner_base!r}, ws_url={s.ws_url!r}, token_env={s.token_env!r})"

    def today(self) -> dt.date:
        """The current trading date: ``settings.today`` if given, else today's UTC date."""
        return self.settings.today or dt.datetime.now(dt.UTC).date()

    def stored_scan_path(self, cfg: ScanPreset, as_of: dt.date) -> Path | None:
        """Where the scan of a (resolved) preset for `as_of` is stored (None without ``stored_scans``)."""
        return stored_scan_path(self.settings.stored_scans, cfg, as_of)

    # -- scans ------------------------------------------------------------------------------------

    def scan(self, family: str, as_of: dt.date, preset: dict) -> pd.DataFrame:
        """Scanner rows for `family` as of `as_of`: live for today (then stored), stored otherwise."""
        cfg = resolve_preset(family, preset, self.settings.presets.get(family))
        as_of = as_date(as_of, "as_of")
        today = self.today()
        path = self.stored_scan_path(cfg, as_of)
        if as_of != today:
            if path is None or not path.exists():
                where = path.parent if path is not None else "<stored_scans not configured>"
                what = family if cfg.name is None else f"{family} preset {cfg.name}"
                raise SourceError(f"the live scanner only answers for today ({today.isoformat()}); "
                                  f"no stored scan for {what} on {as_of.isoformat()} in {where}")
            frame = load_stored_scan(path, cfg)
        else:
            frame = self._scanner.scan_live(cfg)
            frame.attrs.update({"as_of": as_of.isoformat(), "stored_scan": None if path is None else str(path)})
            if path is not None:
                store_scan(frame, path)
        self._remember(frame, family, as_of)
        logger.info("tradingview %s scan as of %s: %d rows, %d rejected%s", family, as_of, len(frame),
                    len(frame.attrs.get("rejected", [])), "" if as_of == today else " (stored)")
        return frame

    # -- metadata ---------------------------------------------------------------------------------

    def _remember(self, frame: pd.DataFrame, family: str, as_of: dt.date) -> None:
        for row in frame.to_dict("records"):
            if newer(as_of, family, self._seen.get(row["symbol"])):
                self._seen[row["symbol"]] = (as_of, family, row)

    def _latest_rows(self, symbols: set[str]) -> dict[str, tuple[dt.date, str, dict[str, Any]]]:
        """The newest scanner row per symbol among this process's scans and the stored scans."""
        found = {s: self._seen[s] for s in symbols if s in self._seen}
        root = self.settings.stored_scans
        if root is None or not root.is_dir():
            return found
        days = sorted((p for p in root.iterdir() if p.is_dir() and _DATE_DIR_RE.fullmatch(p.name)), reverse=True)
        for day_dir in days:
            day = dt.date.fromisoformat(day_dir.name)
            if all(s in found and found[s][0] > day for s in symbols):
                break
            for path in sorted(day_dir.glob("*.parquet")):
                family = path.stem.split("__", 1)[0]
                if family not in FAMILIES:
                    continue
                try:
                    frame = pd.read_parquet(path)
                except (OSError, ValueError) as exc:
                    raise SourceError(f"stored scan {path} is unreadable: {type(exc).__name__}: {snippet(exc)}") from exc
                for row in frame[frame["symbol"].isin(list(symbols))].to_dict("records"):
                    if newer(day, family, found.get(row["symbol"])):
                        found[row["symbol"]] = (day, family, row)
        return found

    def metadata(self, symbols: list[str]) -> pd.DataFrame:
        """asset_class, calendar, sector, industry, description, currency per symbol, from the newest
        scanner row seen (``attrs['as_of']`` says from which day); NaN where unknown."""
        syms = [validate_symbol(s) for s in symbols]
        latest = self._latest_rows(set(syms))
        records = []
        for sym in syms:
            if sym not in latest:
                records.append(dict.fromkeys(METADATA_COLUMNS, np.nan))
                continue
            _, family, row = latest[sym]
            asset_class = TYPE_ASSET_CLASS.get(row.get("type"))
            if asset_class == "etf" and family == "bond":
                asset_class = "bond_etf"
            exchange = row.get("exchange") or sym.split(":", 1)[0]
            calendar = {"crypto": CALENDAR_24_7, "forex": CALENDAR_24_5}.get(
                asset_class, EXCHANGE_CALENDAR.get(exchange) if asset_class else None)
            record = {"asset_class": asset_class, "calendar": calendar,
                      **{c: row.get(c) for c in ("sector", "industry", "description", "currency")}}
            records.append({k: np.nan if v is None or v != v else v for k, v in record.items()})
        frame = pd.DataFrame(records, index=pd.Index(syms, name="symbol"), columns=list(METADATA_COLUMNS))
        frame.attrs["as_of"] = {s: latest[s][0].isoformat() for s in syms if s in latest}
        return frame

    # -- bars -------------------------------------------------------------------------------------

    def bars(self, symbol: str, start: dt.date, end: dt.date, *, attempt: int = 0) -> pd.DataFrame:
        """Daily bars of one symbol (the `fetch_many` path). Every attempt is a fresh fetch: the
        vendor has no repairable faults of its own, so `attempt` is only logged."""
        symbol = validate_symbol(symbol)
        start, end = self._check_range(start, end)
        logger.debug("tradingview bars %s %s..%s attempt %d", symbol, start, end, attempt)
        results, errors = run_coroutine(fetch_all(self.settings, [symbol], start, end, 1, self.today()))
        if errors:
            raise errors[symbol]
        return results[symbol]

    def fetch_many(self, symbols: Iterable[str], start: dt.date, end: dt.date,
                   concurrency: int | None = None) -> dict[str, pd.DataFrame]:
        """Daily bars for each symbol, at most `concurrency` (default ``settings['concurrency']``)
        chart connections at a time. Raises `FetchManyError` (results + errors) if any symbol fails."""
        syms = list(dict.fromkeys(validate_symbol(s) for s in symbols))
        start, end = self._check_range(start, end)
        limit = self.settings.concurrency if concurrency is None else concurrency
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"concurrency must be a positive integer, got {limit!r}")
        results, errors = run_coroutine(fetch_all(self.settings, syms, start, end, limit, self.today()))
        if errors:
            raise FetchManyError(results, errors)
        return results

    @staticmethod
    def _check_range(start: dt.date, end: dt.date) -> tuple[dt.date, dt.date]:
        start, end = as_date(start, "start"), as_date(end, "end")
        if start > end:
            raise ValueError(f"start {start} is after end {end}")
        return start, end
