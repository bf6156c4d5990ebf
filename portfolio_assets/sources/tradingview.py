"""TradingView as a `MarketData` source: the scanner HTTP API for scans, the chart websocket for bars.

Scans
    ``POST <scanner_base>/<market>/scan`` with ``{"columns", "filter", "sort", "range", "options",
    ["symbols"]}``; pages of ``page_size`` rows (``range`` is half-open ``[start, end)``) until a short
    page, ``limit`` rows, or the answer's ``totalCount``. Each answer row ``{"s": "EXCH:TICKER",
    "d": [...]}`` is zipped with the requested columns (the scanner's own names, which are
    `base.SCAN_COLUMNS`), type-checked, and gets the preset's ``direction``. Nulls stay NaN/None.
    429 and 5xx (and network errors) are retried with exponential backoff and jitter, honouring
    ``Retry-After``; anything else is a `SourceError` that names the status and the start of the body.

    Symbols that fail `symbols.validate_symbol` are *dropped and recorded*, not fatal: the vendor's
    universe holds thousands of rows and one odd ticker must not abort discovery, but nothing is
    dropped silently — ``df.attrs["rejected"]`` lists ``{"symbol", "reason"}`` (also logged).

    A live scanner only answers for today. ``scan(family, as_of, preset)`` for ``as_of`` other than
    the current trading date (``settings["today"]``, else the UTC date) loads the stored scan
    ``<stored_scans>/<as_of>/<family>.parquet`` (``<family>__<preset name>.parquet`` for a named
    preset: a family may run several presets a day) or raises; a scan for today always asks the live
    scanner and stores its answer there (temp file + ``os.replace``), so later runs for that date
    reuse it. A stored scan made with a different preset is refused (the past cannot be re-scanned).

    Forex is multi-timeframe: ``preset["timeframes"]`` is a list of screens ``{"name", "filter"}``
    (e.g. monthly, weekly, daily), run in order, each restricted to the survivors of the previous ones
    (``symbols.tickers``); the result is the last screen's rows for the symbols every screen kept.

Bars
    One chart websocket connection per symbol, at most ``concurrency`` at a time (an asyncio
    semaphore), each bounded by ``timeout_s``. Frames are ``~m~<len>~m~<payload>`` (several per
    websocket message); a ``~h~<n>`` heartbeat is echoed framed identically. Client messages:
    ``set_auth_token``, ``chart_create_session``, ``resolve_symbol`` (``={"symbol": ...,
    "adjustment": "splits"}``), ``create_series(..., "1D", n_bars)``; the server answers
    ``symbol_resolved`` | ``symbol_error``, ``timescale_update`` rows ``{"i", "v": [unix_ts, o, h, l,
    c(, v)]}``, ``series_completed``; ``critical_error`` / ``protocol_error`` / ``series_error`` fail.

    Session dates: a daily bar's ``unix_ts`` is the session's *open* instant. It is converted to the
    exchange timezone given in ``symbol_resolved`` and the local date is the session date — except for
    overnight sessions (``session`` like ``1700-1700`` or ``1800-1700``: start not before end), whose
    bars open the evening before and are labelled with the next local date (the day they close, as
    TradingView labels them). ``time`` is that session date at midnight UTC (tz-aware), so
    ``time.date()`` is the session. Bars are kept for ``start <= session <= end``.

Settings (a dict; every key optional, unknown keys are an error)
    ================  ==============================================  ===================================
    key               default                                         meaning
    ================  ==============================================  ===================================
    scanner_base      ``https://scanner.tradingview.com``             scanner URL; env PA_TV_SCANNER_BASE wins
    ws_url            ``wss://data.tradingview.com/socket.io/websocket``  chart URL; env PA_TV_WS_URL wins
    origin            ``https://www.tradingview.com``                 Origin header (the vendor checks it)
    token_env         ``TRADINGVIEW_TOKEN``                           env var holding the auth token;
                                                                      unset -> ``unauthorized_user_token``
    page_size         150                                             scanner rows per request
    max_attempts      4                                               scanner attempts per page (>= 1)
    backoff_base_s    1.0                                             first retry delay; doubles per retry
    backoff_max_s     30.0                                            delay cap; a longer Retry-After fails
    timeout_s         30.0                                            HTTP timeout; per-symbol bars timeout
    concurrency       4                                               simultaneous chart connections
    max_bars          5000                                            most bars asked per symbol
    stored_scans      ``<lakehouse_root>/scans`` if that is given     directory of stored scans
    lakehouse_root    None                                            the profile's lakehouse (resources)
    today             None (UTC date)                                 the current trading date (tests)
    presets           {}                                              per family defaults, e.g.
                                                                      ``{"forex": {"market": "forex"}}``
    ================  ==============================================  ===================================

    The token is read from the environment at connect time and is never stored on the source, logged,
    or put in an error (server text is scrubbed of it; websockets' per-frame debug log is disabled
    because frames carry it).

Presets (``settings["presets"][family]`` merged under the ``preset`` argument; keys whose value is
None count as absent): ``name`` (names the stored file), ``market``
(default per family: equity/bond ``america``, crypto ``crypto``, forex ``forex``, futures
``futures``), ``filter`` (list of ``{"left", "operation", "right"}``), ``sort`` (``{"sortBy",
"sortOrder"}``), ``limit`` (rows, default: all), ``direction`` (``long`` | ``short``, default
``long``), ``symbols`` (passed through), ``timeframes`` (see above). Other keys are ignored and listed
in ``df.attrs["ignored_preset_keys"]``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import email.utils
import json
import logging
import os
import random
import re
import secrets
import string
import tempfile
import time
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
import requests
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException
from websockets.typing import Origin

from portfolio_assets.sources.base import (
    BAR_COLUMNS,
    CALENDAR_24_5,
    CALENDAR_24_7,
    SCAN_COLUMNS,
    SourceError,
)
from portfolio_assets.symbols import InvalidSymbolError, validate_symbol

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_SCANNER_BASE = "https://scanner.tradingview.com"
DEFAULT_WS_URL = "wss://data.tradingview.com/socket.io/websocket"
DEFAULT_ORIGIN = "https://www.tradingview.com"
ENV_SCANNER_BASE = "PA_TV_SCANNER_BASE"
ENV_WS_URL = "PA_TV_WS_URL"
DEFAULT_TOKEN_ENV = "TRADINGVIEW_TOKEN"
ANONYMOUS_TOKEN = "unauthorized_user_token"

FAMILIES = ("equity", "crypto", "bond", "forex", "futures")
DEFAULT_MARKETS = {"equity": "america", "bond": "america", "crypto": "crypto", "forex": "forex",
                   "futures": "futures"}
# Columns requested from the scanner, in order. base.SCAN_COLUMNS already uses the scanner's names,
# so answer values map to frame columns one to one.
SCANNER_FIELDS: tuple[str, ...] = SCAN_COLUMNS[1:]
TEXT_FIELDS = frozenset({"name", "description", "type", "exchange", "currency", "sector", "industry"})
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

_DEFAULTS: dict[str, Any] = {
    "scanner_base": DEFAULT_SCANNER_BASE, "ws_url": DEFAULT_WS_URL, "origin": DEFAULT_ORIGIN,
    "token_env": DEFAULT_TOKEN_ENV, "page_size": 150, "max_attempts": 4, "backoff_base_s": 1.0,
    "backoff_max_s": 30.0, "timeout_s": 30.0, "concurrency": 4, "max_bars": 5000, "stored_scans": None,
    "today": None, "presets": {}, "lakehouse_root": None,
}
_PRESET_KEYS = frozenset({"name", "market", "filter", "sort", "limit", "direction", "symbols", "timeframes"})
_PRESET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_JITTER = 0.25  # retry delays are stretched by up to 25% so concurrent clients do not retry in step
_MAX_MESSAGE_BYTES = 64 * 2**20  # a 5000-bar timescale_update is ~0.5 MB; websockets' default is 1 MB
_SNIPPET_CHARS = 200
_FRAME_HEAD = re.compile(r"~m~(\d+)~m~")
_SESSION_SPAN = re.compile(r"(\d{4})-(\d{4})")
_MARKET_RE = re.compile(r"^[a-z0-9_]+$")
_DATE_DIR_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# ---------------------------------------------------------------------------------------------------
# settings


@dataclass(frozen=True)
class TradingViewSettings:
    """Validated settings of a `TradingViewSource` (see the module docstring for each key)."""

    scanner_base: str
    ws_url: str
    origin: str
    token_env: str
    page_size: int
    max_attempts: int
    backoff_base_s: float
    backoff_max_s: float
    timeout_s: float
    concurrency: int
    max_bars: int
    stored_scans: Path | None
    today: dt.date | None
    presets: Mapping[str, Mapping[str, Any]]

    @classmethod
    def from_dict(cls, settings: Mapping[str, Any], environ: Mapping[str, str] = os.environ
                  ) -> TradingViewSettings:
        """Defaults, then `settings`, then the PA_TV_* environment overrides; validates every value."""
        if "token" in settings:
            raise ValueError("the TradingView token must come from the environment variable named by "
                             "settings['token_env'], never from settings")
        unknown = sorted(set(settings) - set(_DEFAULTS))
        if unknown:
            raise ValueError(f"unknown tradingview settings {unknown}; known: {sorted(_DEFAULTS)}")
        s = {**_DEFAULTS, **settings}
        s["scanner_base"] = environ.get(ENV_SCANNER_BASE) or s["scanner_base"]
        s["ws_url"] = environ.get(ENV_WS_URL) or s["ws_url"]
        _check_url("scanner_base", s["scanner_base"], ("http://", "https://"))
        _check_url("ws_url", s["ws_url"], ("ws://", "wss://"))
        for key in ("page_size", "max_attempts", "concurrency", "max_bars"):
            if isinstance(s[key], bool) or not isinstance(s[key], int) or s[key] < 1:
                raise ValueError(f"tradingview setting {key!r} must be a positive integer, got {s[key]!r}")
        for key in ("backoff_base_s", "backoff_max_s", "timeout_s"):
            if isinstance(s[key], bool) or not isinstance(s[key], int | float) or s[key] <= 0:
                raise ValueError(f"tradingview setting {key!r} must be a positive number, got {s[key]!r}")
        if not isinstance(s["token_env"], str) or not s["token_env"]:
            raise ValueError(f"tradingview setting 'token_env' must be a variable name, got {s['token_env']!r}")
        presets = s["presets"]
        if not isinstance(presets, Mapping) or any(not isinstance(v, Mapping) for v in presets.values()):
            raise ValueError("tradingview setting 'presets' must map family -> preset dict")
        bad_families = sorted(set(presets) - set(FAMILIES))
        if bad_families:
            raise ValueError(f"tradingview presets for unknown families {bad_families}; known: {list(FAMILIES)}")
        return cls(
            scanner_base=s["scanner_base"].rstrip("/"), ws_url=s["ws_url"], origin=s["origin"],
            token_env=s["token_env"], page_size=s["page_size"], max_attempts=s["max_attempts"],
            backoff_base_s=float(s["backoff_base_s"]), backoff_max_s=float(s["backoff_max_s"]),
            timeout_s=float(s["timeout_s"]), concurrency=s["concurrency"], max_bars=s["max_bars"],
            stored_scans=_stored_scans_dir(s["stored_scans"], s["lakehouse_root"]),
            today=None if s["today"] is None else _as_date(s["today"], "today"),
            presets={k: dict(v) for k, v in presets.items()},
        )


def _stored_scans_dir(stored_scans: str | os.PathLike[str] | None,
                      lakehouse_root: str | os.PathLike[str] | None) -> Path | None:
    """``stored_scans`` as given, else ``<lakehouse_root>/scans``, else None (no storage)."""
    if stored_scans is not None:
        return Path(stored_scans)
    return None if lakehouse_root is None else Path(lakehouse_root) / "scans"


def _check_url(key: str, url: object, schemes: tuple[str, ...]) -> None:
    if not isinstance(url, str) or not url.startswith(schemes):
        raise ValueError(f"tradingview setting {key!r} must start with {' or '.join(schemes)}, got {url!r}")


def _as_date(value: object, name: str) -> dt.date:
    """A `date` from a date, datetime/Timestamp (its date) or ISO string."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"{name} must be a date or 'YYYY-MM-DD', got {value!r}")


def _snippet(text: object, limit: int = _SNIPPET_CHARS) -> str:
    """`text` on one line, cut to `limit` characters (for error messages)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# ---------------------------------------------------------------------------------------------------
# presets


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


# ---------------------------------------------------------------------------------------------------
# chart protocol: framing and bar parsing


def encode_frame(payload: str) -> str:
    """One chart-protocol frame: ``~m~<len>~m~<payload>`` (len counts the payload's characters)."""
    return f"~m~{len(payload)}~m~{payload}"


def encode_message(method: str, params: list[Any]) -> str:
    """A framed ``{"m": method, "p": params}`` message."""
    return encode_frame(json.dumps({"m": method, "p": params}, separators=(",", ":")))


def split_frames(text: str) -> list[str]:
    """The payloads of every ``~m~<len>~m~<payload>`` frame in one websocket message, in order."""
    payloads: list[str] = []
    pos = 0
    while pos < len(text):
        head = _FRAME_HEAD.match(text, pos)
        if head is None:
            raise SourceError(f"malformed chart frame at character {pos}: {_snippet(text[pos:], 80)!r}")
        size = int(head.group(1))
        start = head.end()
        if start + size > len(text):
            raise SourceError(f"chart frame announces {size} characters but only {len(text) - start} follow")
        payloads.append(text[start:start + size])
        pos = start + size
    return payloads


def _session_rule(session: object) -> tuple[bool, dt.time | None]:
    """(overnight, local start time) of a TradingView session string such as ``0930-1600:23456``."""
    if not isinstance(session, str):
        return False, None
    spans = _SESSION_SPAN.findall(session.split("|")[0])
    if not spans:
        return False, None
    start, end = spans[0][0], spans[-1][1]
    overnight = start > end or (start == end and start != "0000")
    return overnight, dt.time(int(start[:2]) % 24, int(start[2:]))


def bars_frame(symbol: str, rows: Iterable[list[Any]], timezone: str, session: object,
               start: dt.date, end: dt.date) -> pd.DataFrame:
    """BAR_COLUMNS frame from ``[unix_ts, o, h, l, c(, v)]`` rows: session dates (see the module
    docstring) at midnight UTC, start <= session <= end, sorted, one bar per session (the last wins)."""
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise SourceError(f"chart server gave {symbol} an unknown timezone {timezone!r}") from None
    values = []
    for row in rows:
        if not isinstance(row, list) or len(row) not in (5, 6):
            raise SourceError(f"bar for {symbol} must be [time, open, high, low, close(, volume)], got {_snippet(row, 80)}")
        for x in row:
            if x is not None and (isinstance(x, bool) or not isinstance(x, int | float)):
                raise SourceError(f"bar for {symbol} holds a non-numeric value {x!r}: {_snippet(row, 80)}")
        if row[0] is None:
            raise SourceError(f"bar for {symbol} has no timestamp: {_snippet(row, 80)}")
        values.append([np.nan if x is None else float(x) for x in row] + [np.nan] * (6 - len(row)))
    table = np.array(values, dtype=float).reshape(-1, 6)
    local = pd.to_datetime(table[:, 0], unit="s", utc=True).tz_convert(timezone)
    dates = local.tz_localize(None).normalize()
    overnight, open_time = _session_rule(session)
    if overnight and open_time is not None:
        opens_evening = (local.hour * 60 + local.minute) >= open_time.hour * 60 + open_time.minute
        dates = dates + pd.to_timedelta(np.where(opens_evening, 1, 0), unit="D")
    frame = pd.DataFrame(table[:, 1:], columns=list(BAR_COLUMNS[1:]))
    frame.insert(0, "time", pd.DatetimeIndex(dates).tz_localize("UTC"))
    day = frame["time"].dt.tz_localize(None)
    keep = (day >= pd.Timestamp(start)) & (day <= pd.Timestamp(end))
    frame = frame[keep].sort_values("time", kind="stable").drop_duplicates("time", keep="last")
    frame = frame.reset_index(drop=True)
    frame["time"] = frame["time"].astype("datetime64[ns, UTC]")
    frame.attrs.update({"source": "tradingview", "symbol": symbol, "timezone": timezone,
                        "session": session if isinstance(session, str) else None})
    return frame


# ---------------------------------------------------------------------------------------------------
# errors and logging helpers


class FetchManyError(SourceError):
    """Some symbols of a `fetch_many` failed. Nothing is lost: `results` holds the frames of the
    symbols that succeeded, `errors` the `SourceError` of each symbol that failed."""

    def __init__(self, results: dict[str, pd.DataFrame], errors: dict[str, SourceError]) -> None:
        shown = "; ".join(f"{sym}: {err}" for sym, err in list(errors.items())[:10])
        more = f"; ... and {len(errors) - 10} more" if len(errors) > 10 else ""
        super().__init__(f"{len(errors)} of {len(errors) + len(results)} symbols failed: {shown}{more}")
        self.results = results
        self.errors = errors


class _RedactingLogger(logging.LoggerAdapter):
    """The logger handed to websockets: INFO and above only (its DEBUG lines print frames, and the
    first frame carries the token), with the token scrubbed from whatever is logged."""

    def __init__(self, base: logging.Logger, secret: str) -> None:
        super().__init__(base, {})
        self._secret = secret

    def isEnabledFor(self, level: int) -> bool:
        return level >= logging.INFO and self.logger.isEnabledFor(level)

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            text = str(msg) % args if args else str(msg)
            self.logger.log(level, "%s", _redact(text, self._secret), **kwargs)


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def _run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion from synchronous code, also when this thread already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


# ---------------------------------------------------------------------------------------------------
# the source


class TradingViewSource:
    """`MarketData` from TradingView's scanner HTTP API and chart websocket (module docstring)."""

    name = "tradingview"

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        self.settings = TradingViewSettings.from_dict(settings or {})
        self._http = requests.Session()
        self._http.headers.update({"Origin": self.settings.origin, "User-Agent": "portfolio_assets"})
        self._jitter = random.Random()  # timing only, never data: deliberately unseeded
        self._seen: dict[str, tuple[dt.date, str, dict[str, Any]]] = {}

    def __repr__(self) -> str:
        s = self.settings
        return f"TradingViewSource(scanner_base={s.scanner_base!r}, ws_url={s.ws_url!r}, token_env={s.token_env!r})"

    # -- dates ------------------------------------------------------------------------------------

    def today(self) -> dt.date:
        """The current trading date: ``settings['today']`` if given, else today's UTC date."""
        return self.settings.today or dt.datetime.now(dt.UTC).date()

    def stored_scan_path(self, cfg: ScanPreset, as_of: dt.date) -> Path | None:
        """Where the scan of a (resolved) preset for `as_of` is stored (None without ``stored_scans``)."""
        root = self.settings.stored_scans
        if root is None:
            return None
        stem = cfg.family if cfg.name is None else f"{cfg.family}__{cfg.name}"
        return root / as_of.isoformat() / f"{stem}.parquet"

    # -- scans ------------------------------------------------------------------------------------

    def scan(self, family: str, as_of: dt.date, preset: dict) -> pd.DataFrame:
        """Scanner rows for `family` as of `as_of`: live for today (then stored), stored otherwise."""
        cfg = resolve_preset(family, preset, self.settings.presets.get(family))
        as_of = _as_date(as_of, "as_of")
        today = self.today()
        path = self.stored_scan_path(cfg, as_of)
        if as_of != today:
            if path is None or not path.exists():
                where = path.parent if path is not None else "<stored_scans not configured>"
                what = family if cfg.name is None else f"{family} preset {cfg.name}"
                raise SourceError(f"the live scanner only answers for today ({today.isoformat()}); "
                                  f"no stored scan for {what} on {as_of.isoformat()} in {where}")
            frame = self._load_stored(path, cfg)
        else:
            frame = self._scan_live(cfg)
            frame.attrs.update({"as_of": as_of.isoformat(), "stored_scan": None if path is None else str(path)})
            if path is not None:
                _atomic_write_parquet(frame, path)
        self._remember(frame, family, as_of)
        logger.info("tradingview %s scan as of %s: %d rows, %d rejected%s", family, as_of, len(frame),
                    len(frame.attrs.get("rejected", [])), "" if as_of == today else " (stored)")
        return frame

    def _scan_live(self, cfg: ScanPreset) -> pd.DataFrame:
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
        frame = _scan_frame(rows, cfg.direction)
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
            data, total = _check_answer(self._post_json(url, body), url)
            if len(data) > end - start:
                raise SourceError(f"scanner answered {len(data)} rows for range [{start}, {end}) of {url}")
            for item in data:
                symbol, values = _check_row(item)
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
                last = f"{type(exc).__name__}: {_snippet(exc)}"
            else:
                if resp.status_code == 200:
                    return _decode_json(resp.text)
                last = f"HTTP {resp.status_code}: {_snippet(resp.text)}"
                if resp.status_code != 429 and resp.status_code < 500:
                    raise SourceError(f"scanner POST {url} answered {last}")
                retry_after = _retry_after_s(resp.headers.get("Retry-After"))
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

    def _load_stored(self, path: Path, cfg: ScanPreset) -> pd.DataFrame:
        try:
            frame = pd.read_parquet(path)
        except (OSError, ValueError) as exc:  # pyarrow's read errors subclass these
            raise SourceError(f"stored scan {path} is unreadable: {type(exc).__name__}: {_snippet(exc)}") from exc
        missing = [c for c in (*SCAN_COLUMNS, "direction") if c not in frame.columns]
        if missing:
            raise SourceError(f"stored scan {path} lacks columns {missing}")
        stored_preset = frame.attrs.get("preset")
        if stored_preset != cfg.canonical():
            raise SourceError(f"stored scan {path} was made with preset {stored_preset}, not the requested "
                              f"{cfg.canonical()}; a past scan cannot be redone with another preset")
        frame.attrs["stored_scan"] = str(path)
        return frame

    # -- metadata ---------------------------------------------------------------------------------

    def _remember(self, frame: pd.DataFrame, family: str, as_of: dt.date) -> None:
        for row in frame.to_dict("records"):
            if _newer(as_of, family, self._seen.get(row["symbol"])):
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
                    raise SourceError(f"stored scan {path} is unreadable: {type(exc).__name__}: {_snippet(exc)}") from exc
                for row in frame[frame["symbol"].isin(list(symbols))].to_dict("records"):
                    if _newer(day, family, found.get(row["symbol"])):
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
        results, errors = _run_coroutine(self._fetch_all([symbol], start, end, 1))
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
        results, errors = _run_coroutine(self._fetch_all(syms, start, end, limit))
        if errors:
            raise FetchManyError(results, errors)
        return results

    @staticmethod
    def _check_range(start: dt.date, end: dt.date) -> tuple[dt.date, dt.date]:
        start, end = _as_date(start, "start"), _as_date(end, "end")
        if start > end:
            raise ValueError(f"start {start} is after end {end}")
        return start, end

    async def _fetch_all(self, symbols: list[str], start: dt.date, end: dt.date, concurrency: int
                         ) -> tuple[dict[str, pd.DataFrame], dict[str, SourceError]]:
        gate = asyncio.Semaphore(concurrency)
        n_bars = min(self.settings.max_bars, max(1, (self.today() - start).days + 10))  # calendar days >= sessions

        async def one(symbol: str) -> pd.DataFrame:
            async with gate:
                return await self._fetch_symbol(symbol, start, end, n_bars)

        outcomes = await asyncio.gather(*(one(s) for s in symbols), return_exceptions=True)
        results: dict[str, pd.DataFrame] = {}
        errors: dict[str, SourceError] = {}
        for symbol, outcome in zip(symbols, outcomes, strict=True):
            if isinstance(outcome, SourceError):
                errors[symbol] = outcome
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                results[symbol] = outcome
        return results, errors

    async def _fetch_symbol(self, symbol: str, start: dt.date, end: dt.date, n_bars: int) -> pd.DataFrame:
        """One chart session over its own connection, bounded by ``timeout_s``."""
        s = self.settings
        token = os.environ.get(s.token_env) or ANONYMOUS_TOKEN
        began = time.perf_counter()
        try:
            async with asyncio.timeout(s.timeout_s):
                async with connect(s.ws_url, origin=Origin(s.origin), max_size=_MAX_MESSAGE_BYTES,
                                   open_timeout=None, close_timeout=min(s.timeout_s, 5.0), logger=_RedactingLogger(logger, token)) as ws:
                    frame = await _ChartSession(ws, symbol, token).run(n_bars, start, end)
        except TimeoutError:
            raise SourceError(f"no bars for {symbol} from the chart websocket within "
                              f"timeout_s={s.timeout_s:g} s") from None
        except (OSError, WebSocketException) as exc:
            raise SourceError(f"chart websocket {s.ws_url} failed for {symbol}: "
                              f"{_redact(f'{type(exc).__name__}: {exc}', token)}") from None
        logger.debug("tradingview bars %s: %d bars in %.3f s", symbol, len(frame), time.perf_counter() - began)
        return frame


class _ChartSession:
    """The client side of one chart session on an open connection."""

    SYMBOL_ID = "sds_sym_1"
    SERIES_ID = "sds_1"

    def __init__(self, ws: ClientConnection, symbol: str, token: str) -> None:
        self.ws = ws
        self.symbol = symbol
        self.token = token
        self.cs = "cs_" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(12))
        self.resolved: dict[str, Any] | None = None
        self.rows: dict[float, list[Any]] = {}

    def _fail(self, message: str) -> SourceError:
        return SourceError(_redact(message, self.token))

    async def run(self, n_bars: int, start: dt.date, end: dt.date) -> pd.DataFrame:
        """Send the session's requests, read until ``series_completed``, return the bars frame."""
        resolve = "=" + json.dumps({"symbol": self.symbol, "adjustment": "splits"}, separators=(",", ":"))
        for method, params in (
            ("set_auth_token", [self.token]),
            ("chart_create_session", [self.cs, ""]),
            ("resolve_symbol", [self.cs, self.SYMBOL_ID, resolve]),
            ("create_series", [self.cs, self.SERIES_ID, "s1", self.SYMBOL_ID, "1D", n_bars]),
        ):
            await self.ws.send(encode_message(method, params))
        async for raw in self.ws:
            text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
            for payload in split_frames(text):
                if payload.startswith("~h~"):
                    await self.ws.send(encode_frame(payload))
                elif await self._handle(payload):
                    return self._frame(start, end)
        raise self._fail(f"chart websocket closed before series_completed for {self.symbol}")

    async def _handle(self, payload: str) -> bool:
        """Apply one JSON message; True once the series is complete."""
        try:
            msg = json.loads(payload)
        except ValueError:
            raise self._fail(f"chart server sent a payload that is not JSON for {self.symbol}: "
                             f"{_snippet(payload, 80)!r}") from None
        if not isinstance(msg, dict) or "m" not in msg:
            return False  # the session greeting ({"session_id": ...}) and the like
        method, params = msg["m"], msg.get("p") or []
        if method == "symbol_resolved" and len(params) >= 3 and isinstance(params[2], dict):
            self.resolved = params[2]
        elif method == "symbol_error":
            reason = params[2] if len(params) >= 3 else params
            raise self._fail(f"TradingView could not resolve {self.symbol}: {reason}")
        elif method in ("series_error", "critical_error", "protocol_error"):
            raise self._fail(f"chart server sent {method} for {self.symbol}: {_snippet(json.dumps(params), 160)}")
        elif method == "timescale_update" and len(params) >= 2 and isinstance(params[1], dict):
            series = params[1].get(self.SERIES_ID) or {}
            for entry in series.get("s") or []:
                values = entry.get("v") if isinstance(entry, dict) else None
                if not isinstance(values, list) or not values:
                    raise self._fail(f"timescale_update for {self.symbol} holds a malformed bar: {_snippet(entry, 80)}")
                self.rows[values[0]] = values
        elif method == "series_completed":
            return True
        return False

    def _frame(self, start: dt.date, end: dt.date) -> pd.DataFrame:
        if self.resolved is None:
            raise self._fail(f"series_completed for {self.symbol} came without symbol_resolved")
        timezone = self.resolved.get("timezone")
        if not isinstance(timezone, str):
            raise self._fail(f"symbol_resolved for {self.symbol} has no timezone; cannot date its sessions")
        return bars_frame(self.symbol, self.rows.values(), timezone, self.resolved.get("session"), start, end)


# ---------------------------------------------------------------------------------------------------
# scanner answer checks and storage


def _newer(day: dt.date, family: str, have: tuple[dt.date, str, dict[str, Any]] | None) -> bool:
    """Whether a row scanned on `day` by `family` replaces `have`: the newer day wins; on the same day
    a specialised family beats ``equity`` (a fund in the bond scan is a bond ETF, not just an ETF)."""
    return have is None or day > have[0] or (day == have[0] and have[1] == "equity" and family != "equity")


def _decode_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SourceError(f"scanner answered malformed JSON: {exc}; body starts {_snippet(text, 80)!r}") from None


def _retry_after_s(value: str | None) -> float | None:
    """Seconds asked by a Retry-After header (delta-seconds or HTTP date); None if absent/unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def _check_answer(answer: Any, url: str) -> tuple[list[Any], int | None]:
    if not isinstance(answer, dict) or not isinstance(answer.get("data"), list):
        if isinstance(answer, dict) and answer.get("error"):
            raise SourceError(f"scanner {url} reported an error: {_snippet(answer['error'])}")
        raise SourceError(f"scanner answer of {url} has no 'data' list: {_snippet(json.dumps(answer), 120)}")
    total = answer.get("totalCount")
    return answer["data"], total if isinstance(total, int) and not isinstance(total, bool) else None


def _check_row(item: Any) -> tuple[str, list[Any]]:
    """(symbol, values) of one answer row, with the value count and each value's type checked."""
    if not isinstance(item, dict) or not isinstance(item.get("s"), str) or not isinstance(item.get("d"), list):
        raise SourceError(f"scanner row is not {{'s': 'EXCH:TICKER', 'd': [...]}}: {_snippet(json.dumps(item), 120)}")
    symbol, values = item["s"], item["d"]
    if len(values) != len(SCANNER_FIELDS):
        raise SourceError(f"scanner row for {symbol!r} has {len(values)} values for {len(SCANNER_FIELDS)} columns")
    for column, value in zip(SCANNER_FIELDS, values, strict=True):
        if value is None:
            continue
        if column in TEXT_FIELDS:
            if not isinstance(value, str):
                raise SourceError(f"scanner row for {symbol!r}: column {column!r} should be text, "
                                  f"got {type(value).__name__} {value!r}")
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise SourceError(f"scanner row for {symbol!r}: column {column!r} should be a number, "
                              f"got {type(value).__name__} {value!r}")
    return symbol, values


def _scan_frame(rows: list[dict[str, Any]], direction: str) -> pd.DataFrame:
    """SCAN_COLUMNS (+ direction) frame: numbers as float64 (None -> NaN), text as object (None kept)."""
    frame = pd.DataFrame(rows, columns=list(SCAN_COLUMNS))
    for column in SCANNER_FIELDS:
        if column in TEXT_FIELDS:
            frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
        else:
            frame[column] = pd.to_numeric(frame[column], errors="raise").astype("float64")
    frame["symbol"] = frame["symbol"].astype(object)
    frame["direction"] = direction
    return frame


def _atomic_write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Write `frame` to `path` via a temp file in the same directory and `os.replace`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
