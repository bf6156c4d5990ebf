"""Local fakes of TradingView's scanner HTTP API and chart websocket (127.0.0.1, free ports).

`FakeScanner` — an `http.server` in a thread answering ``POST /<market>/scan``. It holds one
`ScannerTable` per market (a recorded answer from ``fixtures/scanner/<market>.json`` or a generated
universe) and answers like the vendor: requested columns in order, ``filter`` (greater, egreater,
less, eless, equal, nequal, in_range, not_in_range, match), ``symbols.tickers``, ``sort``,
half-open ``range``, ``totalCount``. Tests script replies (`Reply`) that are served first, in order
(429 with Retry-After, 500 with text, malformed JSON, ...), and read `requests` (every request
received, with its parsed body and arrival time).

`FakeChart` — a `websockets` server in its own thread and event loop speaking the chart protocol
(``~m~<len>~m~<payload>`` frames, several messages per websocket message). It checks the client: the
message order and parameters, and that every heartbeat it sends (``~h~<n>``, before the bars) comes
back framed identically before it continues; violations land in `errors`. Per symbol it replays a
recorded session (``fixtures/chart/<EXCH>__<TICKER>.json``), answers `symbol_errors`, stays silent
for `silent` symbols (client timeouts), sends `critical_errors`, or serves deterministic bars from
`deterministic_bars` (any other symbol). `max_concurrent` counts simultaneous connections.

`fake_tradingview(today, universe)` starts both; `.settings()` gives `TradingViewSource` settings
pointing at them. ``python -m portfolio_assets_tests.fakes.tradingview_fake`` runs both until
Ctrl-C and prints the ``PA_TV_SCANNER_BASE`` / ``PA_TV_WS_URL`` exports for a whole-graph run.

Deterministic bars: a symbol's bars are a function of the symbol alone (numpy generator seeded
with SHA-256 of the symbol, one row of draws per session from a fixed anchor date), so a session's
bar never depends on the day the fake runs; ``today`` only decides where the series ends.
Sessions: US listings on XNYS (exchange_calendars), crypto every day, forex Monday-Friday.
Timestamps are session opens like the vendor's: 09:30 New York, 00:00 UTC, forex 17:00 New York
the evening before. Generated scanner rows are computed from those bars up to ``today`` in the
vendor's units (Perf.* and Volatility.D in percent, ATR in price, Wilder ADX(14)).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import hashlib
import itertools
import json
import logging
import re
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

FIXTURES = Path(__file__).parent / "fixtures"
# The fake plays the vendor: its websockets DEBUG lines (every frame, tokens included) would be the
# vendor's server logs, not ours, so they stay out of the test's captured logs.
_SERVER_LOG = logging.getLogger(__name__ + ".chart_server")
_SERVER_LOG.setLevel(logging.WARNING)
SCAN_FIELDS = ("name", "description", "type", "exchange", "currency", "sector", "industry", "close", "volume",
               "Value.Traded", "ADX", "ATR", "Recommend.All", "Perf.W", "Perf.1M", "Perf.3M", "Perf.6M",
               "Perf.Y", "Volatility.D")
ANCHOR = dt.date(2018, 1, 2)  # first generated session
CRYPTO_EXCHANGES = frozenset({"BINANCE", "COINBASE", "KRAKEN", "BITSTAMP", "BYBIT", "OKX"})
FOREX_EXCHANGES = frozenset({"FX", "FX_IDC", "OANDA", "FOREXCOM", "SAXO"})
_FAT_TAIL_SD = float(np.sqrt(1.0 + np.sqrt(2.0 / np.pi) + 0.25))  # sd of z0 * (1 + 0.5|z5|)


# ---------------------------------------------------------------------------------------------------
# deterministic bars


@dataclass(frozen=True)
class SymbolProfile:
    """How the fake lists a symbol: kind, exchange timezone, session string, bar open time."""

    kind: str  # equity | crypto | forex
    timezone: str
    session: str
    open_time: dt.time
    open_day_offset: int  # the bar opens this many days before its session date


def symbol_profile(symbol: str) -> SymbolProfile:
    """Crypto venues trade 24/7 in UTC, FX venues 24/5 from 17:00 New York, the rest like NYSE."""
    exchange = symbol.split(":", 1)[0]
    if exchange in CRYPTO_EXCHANGES:
        return SymbolProfile("crypto", "Etc/UTC", "24x7", dt.time(0, 0), 0)
    if exchange in FOREX_EXCHANGES:
        return SymbolProfile("forex", "America/New_York", "1700-1700:23456", dt.time(17, 0), -1)
    return SymbolProfile("equity", "America/New_York", "0930-1600", dt.time(9, 30), 0)


@functools.lru_cache(maxsize=8)
def _xnys_sessions(last: dt.date) -> pd.DatetimeIndex:
    import exchange_calendars  # heavy; only generated equity bars need it

    cal = exchange_calendars.get_calendar("XNYS")
    return pd.DatetimeIndex(cal.sessions_in_range(pd.Timestamp(ANCHOR), pd.Timestamp(last)))


def session_dates(kind: str, last: dt.date) -> pd.DatetimeIndex:
    """Session dates (tz-naive midnights) from ANCHOR to `last` for a kind of symbol."""
    if kind == "crypto":
        return pd.date_range(ANCHOR, last, freq="D")
    if kind == "forex":
        return pd.bdate_range(ANCHOR, last)
    return _xnys_sessions(last)


def deterministic_bars(symbol: str, last: dt.date) -> pd.DataFrame:
    """Daily bars of `symbol` from ANCHOR to `last`: columns date, open, high, low, close, volume.

    Log returns are ``vol * z0 * (1 + 0.5|z5|) / 1.431`` (fat-tailed, unit variance), the open gaps from the previous
    close by ``0.2 vol z1``, high/low stretch the body by ``0.5 vol |z2|`` / ``0.5 vol |z3|``, volume
    is log-normal (z4). Row i of the draws belongs to session i, so earlier bars never change when
    `last` moves.
    """
    profile = symbol_profile(symbol)
    dates = session_dates(profile.kind, last)
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(symbol.encode()).digest()[:8], "big"))
    vol = {"equity": 0.018, "crypto": 0.04, "forex": 0.005}[profile.kind] * rng.uniform(0.6, 1.6)
    price0 = rng.uniform(1.0, 2.0) if profile.kind == "forex" else rng.uniform(10.0, 400.0)
    base_volume = 0.0 if profile.kind == "forex" else rng.uniform(2e5, 5e7)
    z = rng.standard_normal((len(dates), 6))
    close = price0 * np.exp(np.cumsum(vol * z[:, 0] * (1.0 + 0.5 * np.abs(z[:, 5])) / _FAT_TAIL_SD))
    prev = np.concatenate([[price0], close[:-1]])
    open_ = prev * np.exp(0.2 * vol * z[:, 1])
    high = np.maximum(open_, close) * np.exp(0.5 * vol * np.abs(z[:, 2]))
    low = np.minimum(open_, close) * np.exp(-0.5 * vol * np.abs(z[:, 3]))
    volume = np.round(base_volume * np.exp(0.3 * z[:, 4]))
    return pd.DataFrame({"date": dates, "open": open_, "high": high, "low": low, "close": close,
                         "volume": volume})


def open_timestamps(symbol: str, dates: pd.DatetimeIndex) -> np.ndarray:
    """Unix seconds of each session's open, as the vendor stamps daily bars."""
    p = symbol_profile(symbol)
    local = (pd.DatetimeIndex(dates) + pd.Timedelta(days=p.open_day_offset)
             + pd.Timedelta(hours=p.open_time.hour, minutes=p.open_time.minute))
    return local.tz_localize(p.timezone).asi8 // 10**9


# ---------------------------------------------------------------------------------------------------
# scanner tables


@dataclass
class ScannerTable:
    """What a fake market can answer: column names and per-symbol values (None = null)."""

    columns: list[str]
    rows: list[tuple[str, dict[str, Any]]]

    @classmethod
    def from_answer(cls, answer: Mapping[str, Any]) -> ScannerTable:
        """From a recorded answer ``{"columns": [...], "totalCount": n, "data": [{"s", "d"}]}``."""
        columns = list(answer["columns"])
        return cls(columns, [(row["s"], dict(zip(columns, row["d"], strict=True))) for row in answer["data"]])

    def answer(self, body: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        """(status, JSON answer) for a scan request body, like the vendor's scanner."""
        columns = body.get("columns") or []
        for name in list(columns) + [f.get("left") for f in body.get("filter") or []]:
            if name not in self.columns:
                return 400, {"totalCount": 0, "error": f'Unknown field "{name}"', "data": None}
        rows = self.rows
        tickers = (body.get("symbols") or {}).get("tickers")
        if tickers:
            wanted = set(tickers)
            rows = [r for r in rows if r[0] in wanted]
        for flt in body.get("filter") or []:
            if flt.get("operation") not in _OPERATIONS:
                return 400, {"totalCount": 0, "error": f"Unknown operation {flt.get('operation')!r}", "data": None}
            rows = [r for r in rows if _OPERATIONS[flt["operation"]](r[1][flt["left"]], flt["right"])]
        sort = body.get("sort")
        if sort:
            if sort["sortBy"] not in self.columns:
                return 400, {"totalCount": 0, "error": f'Unknown field "{sort["sortBy"]}"', "data": None}
            present = [r for r in rows if r[1][sort["sortBy"]] is not None]
            missing = [r for r in rows if r[1][sort["sortBy"]] is None]
            present.sort(key=lambda r: r[1][sort["sortBy"]], reverse=sort.get("sortOrder") == "desc")
            rows = present + missing
        start, end = body.get("range") or [0, len(rows)]
        page = rows[start:end]
        return 200, {"totalCount": len(rows),
                     "data": [{"s": sym, "d": [values[c] for c in columns]} for sym, values in page]}


def _in_range(value: Any, right: Any) -> bool:
    if (isinstance(right, list) and len(right) == 2 and all(isinstance(x, int | float) for x in right)
            and isinstance(value, int | float)):
        return right[0] <= value <= right[1]
    return isinstance(right, list) and value in right


_OPERATIONS = {
    "greater": lambda v, r: v is not None and v > r,
    "egreater": lambda v, r: v is not None and v >= r,
    "less": lambda v, r: v is not None and v < r,
    "eless": lambda v, r: v is not None and v <= r,
    "equal": lambda v, r: v == r,
    "nequal": lambda v, r: v != r,
    "in_range": lambda v, r: v is not None and _in_range(v, r),
    "not_in_range": lambda v, r: v is not None and not _in_range(v, r),
    "match": lambda v, r: v is not None and str(r).lower() in str(v).lower(),
}


def scanner_fixture(market: str) -> ScannerTable:
    """The recorded answer ``fixtures/scanner/<market>.json`` as a table."""
    return ScannerTable.from_answer(json.loads((FIXTURES / "scanner" / f"{market}.json").read_text()))


_ETFS = {
    "AMEX:SPY": "SPDR S&P 500 ETF Trust", "AMEX:TLT": "iShares 20+ Year Treasury Bond ETF",
    "AMEX:IEF": "iShares 7-10 Year Treasury Bond ETF", "AMEX:GLD": "SPDR Gold Shares",
}
_SECTORS = [("Technology Services", "Packaged Software"), ("Finance", "Major Banks"),
            ("Health Technology", "Pharmaceuticals: Major"), ("Energy Minerals", "Integrated Oil"),
            ("Consumer Non-Durables", "Beverages: Non-Alcoholic"), ("Electronic Technology", "Semiconductors"),
            ("Utilities", "Electric Utilities"), ("Retail Trade", "Specialty Stores")]
_CURRENCIES = ["EUR", "USD", "JPY", "GBP", "CHF", "AUD", "CAD", "NZD"]


def universe_symbols(market: str, n: int) -> list[str]:
    """`n` generated symbols of a market (america: ETFs then NYSE/NASDAQ names; crypto; forex)."""
    if market == "america":
        names = list(_ETFS) + [f"{'NASDAQ' if i % 2 else 'NYSE'}:GEN{i:04d}" for i in range(max(0, n - len(_ETFS)))]
    elif market == "crypto":
        names = ["BINANCE:BTCUSDT", "BINANCE:ETHUSDT"] + [f"BINANCE:GEN{i:03d}USDT" for i in range(max(0, n - 2))]
    elif market == "forex":
        names = [f"FX:{a}{b}" for a, b in itertools.combinations(_CURRENCIES, 2)]
        if n > len(names):
            raise ValueError(f"the forex universe has {len(names)} pairs, asked for {n}")
    else:
        raise ValueError(f"no generated universe for market {market!r}; known: america, crypto, forex")
    return names[:n]


def _adx(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int = 14) -> float:
    """Wilder's ADX(n): smoothed |DI+ - DI-| / (DI+ + DI-) * 100 (Wilder smoothing = EWM 1/n)."""
    up, down = np.diff(high), -np.diff(low)
    plus_dm = np.where((up > down) & (up > 0), up, 0.0)
    minus_dm = np.where((down > up) & (down > 0), down, 0.0)
    tr = np.maximum(high[1:] - low[1:], np.maximum(abs(high[1:] - close[:-1]), abs(low[1:] - close[:-1])))

    def smooth(x: np.ndarray) -> np.ndarray:
        return pd.Series(x).ewm(alpha=1 / n, adjust=False).mean().to_numpy()

    atr = smooth(tr)
    plus_di, minus_di = 100 * smooth(plus_dm) / atr, 100 * smooth(minus_dm) / atr
    dx = 100 * np.abs(plus_di - minus_di) / np.maximum(plus_di + minus_di, 1e-12)
    return float(smooth(dx)[-1])


def scanner_row(symbol: str, today: dt.date, index: int = 0) -> dict[str, Any]:
    """Scanner values of a generated symbol as of `today`, computed from its bars up to `today`."""
    bars = deterministic_bars(symbol, today)
    close, high, low = bars["close"].to_numpy(), bars["high"].to_numpy(), bars["low"].to_numpy()
    kind = symbol_profile(symbol).kind
    exchange, ticker = symbol.split(":", 1)

    def perf(k: int) -> float | None:
        return float((close[-1] / close[-1 - k] - 1) * 100) if len(close) > k else None

    tail = slice(-120, None)
    prev_close = np.concatenate([[close[0]], close[:-1]])
    true_range = np.maximum(high - low, np.maximum(abs(high - prev_close), abs(low - prev_close)))
    volume = float(bars["volume"].iloc[-1]) if kind != "forex" else None
    sector, industry = _SECTORS[index % len(_SECTORS)] if kind == "equity" and symbol not in _ETFS else (None, None)
    kind_type = {"equity": "fund" if symbol in _ETFS else "stock", "crypto": "spot", "forex": "forex"}[kind]
    return {
        "name": ticker, "description": _ETFS.get(symbol, f"{ticker} (generated {kind})"), "type": kind_type,
        "exchange": exchange, "currency": ticker[3:] if kind == "forex" else ("USDT" if kind == "crypto" else "USD"),
        "sector": sector, "industry": industry, "close": float(close[-1]), "volume": volume,
        "Value.Traded": None if volume is None else float(close[-1] * volume),
        "ADX": _adx(high[tail], low[tail], close[tail]), "ATR": float(true_range[-14:].mean()),
        "Recommend.All": float(np.tanh((perf(21) or 0.0) / 10)), "Perf.W": perf(5), "Perf.1M": perf(21),
        "Perf.3M": perf(63), "Perf.6M": perf(126), "Perf.Y": perf(252),
        "Volatility.D": float(np.std(np.diff(np.log(close[-21:]))) * 100),
    }


def generated_scanner_table(market: str, n: int, today: dt.date) -> ScannerTable:
    """A market of `n` generated symbols whose scanner values agree with the fake chart's bars."""
    return ScannerTable(list(SCAN_FIELDS),
                        [(s, scanner_row(s, today, i)) for i, s in enumerate(universe_symbols(market, n))])


# ---------------------------------------------------------------------------------------------------
# the scanner server


@dataclass(frozen=True)
class Reply:
    """A scripted scanner reply."""

    status: int = 200
    body: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Reply:
        """A JSON reply."""
        return cls(status, json.dumps(payload), {"Content-Type": "application/json", **(headers or {})})

    @classmethod
    def text(cls, status: int, text: str, headers: Mapping[str, str] | None = None) -> Reply:
        """A text/plain reply (also for malformed JSON with status 200)."""
        return cls(status, text, {"Content-Type": "text/plain", **(headers or {})})


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake scanner received."""

    market: str | None
    path: str
    body: Any  # parsed JSON, or None when the body was not JSON
    headers: Mapping[str, str]
    at: float  # time.monotonic() on arrival


class FakeScanner:
    """The scanner HTTP API on 127.0.0.1 (context manager). `base_url` goes in ``scanner_base``."""

    def __init__(self, tables: Mapping[str, ScannerTable] | None = None) -> None:
        self.tables: dict[str, ScannerTable] = dict(tables or {})
        self.requests: list[RecordedRequest] = []
        self._script: list[Reply] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` of the running server."""
        if self._httpd is None:
            raise RuntimeError("FakeScanner is not running; use it as a context manager")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def script(self, *replies: Reply) -> None:
        """Queue replies served (in order) before the tables answer again."""
        with self._lock:
            self._script.extend(replies)

    def ranges(self) -> list[list[int]]:
        """The ``range`` of every request received, in order."""
        return [r.body["range"] for r in self.requests]

    def __enter__(self) -> FakeScanner:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fake._handle(self, raw)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests read `requests` instead of stderr."""

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="fake-scanner", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._httpd is not None and self._thread is not None
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
        self._httpd = None

    def _handle(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        path = urlsplit(handler.path).path
        match = re.fullmatch(r"/([a-z0-9_]+)/scan", path)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        with self._lock:
            self.requests.append(RecordedRequest(match.group(1) if match else None, path, body,
                                                 dict(handler.headers), time.monotonic()))
            reply = self._script.pop(0) if self._script else None
        if reply is None:
            if match is None or match.group(1) not in self.tables:
                reply = Reply.text(404, f"no such market: {path}")
            elif not isinstance(body, dict):
                reply = Reply.json({"totalCount": 0, "error": "body is not a JSON object", "data": None}, 400)
            else:
                status, answer = self.tables[match.group(1)].answer(body)
                reply = Reply.json(answer, status)
        data = reply.body.encode()
        handler.send_response(reply.status)
        for key, value in reply.headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


# ---------------------------------------------------------------------------------------------------
# the chart websocket server


def frame(payload: str) -> str:
    """``~m~<len>~m~<payload>``."""
    return f"~m~{len(payload)}~m~{payload}"


def unframe(text: str) -> list[str]:
    """Payloads of a websocket message (the fake's own parser, independent of the client's)."""
    out, i = [], 0
    while i < len(text):
        if not text.startswith("~m~", i):
            raise ValueError(f"no frame marker at {i}")
        j = text.index("~m~", i + 3)
        n = int(text[i + 3:j])
        out.append(text[j + 3:j + 3 + n])
        i = j + 3 + n
    return out


def chart_fixture(symbol: str) -> list[list[Any]]:
    """The recorded session ``fixtures/chart/<EXCH>__<TICKER>.json`` (frames of messages)."""
    return json.loads((FIXTURES / "chart" / f"{symbol.replace(':', '__')}.json").read_text())["frames"]


def _substitute(obj: Any, names: Mapping[str, str]) -> Any:
    """Replace the placeholders ``$cs``, ``$symbol_id``, ``$series_id`` (values and keys)."""
    if isinstance(obj, str):
        return names.get(obj, obj)
    if isinstance(obj, list):
        return [_substitute(x, names) for x in obj]
    if isinstance(obj, dict):
        return {names.get(k, k): _substitute(v, names) for k, v in obj.items()}
    return obj


@dataclass
class ChartConnection:
    """What the fake saw on one connection."""

    id: int
    messages: list[tuple[str, list[Any]]] = field(default_factory=list)
    heartbeats_sent: list[str] = field(default_factory=list)
    heartbeats_echoed: list[str] = field(default_factory=list)
    token: str | None = None
    cs: str | None = None
    symbol: str | None = None
    symbol_id: str | None = None


class FakeChart:
    """The chart websocket on 127.0.0.1 (context manager). `ws_url` goes in ``ws_url``."""

    def __init__(self, today: dt.date, fixture_symbols: tuple[str, ...] = (), heartbeat: bool = True,
                 latency_s: float = 0.0, echo_timeout_s: float = 2.0) -> None:
        self.today = today
        self.echo_timeout_s = echo_timeout_s
        self.sessions: dict[str, list[list[Any]]] = {s: chart_fixture(s) for s in fixture_symbols}
        self.heartbeat = heartbeat
        self.latency_s = latency_s
        self.symbol_errors: dict[str, str] = {}
        self.critical_errors: dict[str, str] = {}  # "{token}" in the text is replaced by the client's token
        self.silent: set[str] = set()
        self.connections: list[ChartConnection] = []
        self.errors: list[str] = []
        self.active = 0
        self.max_concurrent = 0
        self._ids = itertools.count(1)
        self._beats = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Server | None = None
        self._port = 0

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:<port>/socket.io/websocket`` of the running server."""
        if self._server is None:
            raise RuntimeError("FakeChart is not running; use it as a context manager")
        return f"ws://127.0.0.1:{self._port}/socket.io/websocket"

    def __enter__(self) -> FakeChart:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-chart", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    async def _start(self) -> None:
        self._server = await serve(self._handle, "127.0.0.1", 0, max_size=None, logger=_SERVER_LOG)
        self._port = self._server.sockets[0].getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._thread is not None and self._server is not None
        server = self._server

        async def stop() -> None:
            server.close()
            await server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()
        self._server = None

    def wait_idle(self, timeout_s: float = 5.0) -> None:
        """Block until every connection's handler has finished (so its records are complete)."""
        deadline = time.monotonic() + timeout_s
        while self.active and time.monotonic() < deadline:
            time.sleep(0.005)
        if self.active:
            raise TimeoutError(f"{self.active} chart connection(s) still open after {timeout_s} s")

    # -- one connection ---------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        conn = ChartConnection(next(self._ids))
        self.connections.append(conn)
        self.active += 1
        self.max_concurrent = max(self.max_concurrent, self.active)
        echoes: dict[str, asyncio.Event] = {}
        tasks: list[asyncio.Task[None]] = []
        try:
            await ws.send(frame(json.dumps({"session_id": f"fake_{conn.id}", "timestamp": int(time.time()),
                                            "release": "fake"})))
            async for raw in ws:
                text = raw if isinstance(raw, str) else raw.decode()
                try:
                    payloads = unframe(text)
                except ValueError as exc:
                    await self._violation(ws, conn, f"unframeable message {text[:60]!r}: {exc}")
                    return
                for payload in payloads:
                    if payload.startswith("~h~"):
                        if text != frame(payload):
                            self.errors.append(f"connection {conn.id}: heartbeat echo {text!r} not framed alone")
                        elif payload not in echoes:
                            self.errors.append(f"connection {conn.id}: echo of a heartbeat never sent {payload!r}")
                        else:
                            conn.heartbeats_echoed.append(payload)
                            echoes[payload].set()
                        continue
                    try:
                        msg = json.loads(payload)
                        method, params = msg["m"], msg["p"]
                    except (ValueError, KeyError, TypeError):
                        await self._violation(ws, conn, f"payload is not {{'m', 'p'}} JSON: {payload[:80]!r}")
                        return
                    conn.messages.append((method, params))
                    problem = self._check(conn, method, params)
                    if problem:
                        await self._violation(ws, conn, problem)
                        return
                    if method == "create_series":
                        tasks.append(asyncio.create_task(self._serve_series(ws, conn, params, echoes)))
        except ConnectionClosed:
            pass
        finally:
            for task in tasks:
                task.cancel()
            self.active -= 1

    async def _violation(self, ws: ServerConnection, conn: ChartConnection, problem: str) -> None:
        self.errors.append(f"connection {conn.id}: {problem}")
        await ws.send(frame(json.dumps({"m": "protocol_error", "p": ["wrong data"]})))
        await ws.close()

    def _check(self, conn: ChartConnection, method: str, p: list[Any]) -> str | None:
        """What is wrong with a client message (None if it is what the vendor expects)."""
        if len(conn.messages) == 1 and method != "set_auth_token":
            return f"first message must be set_auth_token, got {method}"
        if method == "set_auth_token":
            if len(p) != 1 or not isinstance(p[0], str):
                return f"set_auth_token takes [token], got {len(p)} params"
            conn.token = p[0]
        elif method == "chart_create_session":
            if not p or not isinstance(p[0], str) or not p[0].startswith("cs_"):
                return f"chart_create_session needs a 'cs_...' id, got {p!r}"
            conn.cs = p[0]
        elif method == "resolve_symbol":
            if len(p) != 3 or p[0] != conn.cs or not isinstance(p[2], str) or not p[2].startswith("="):
                return f"resolve_symbol needs [cs, symbol_id, '={{...}}'], got {p!r}"
            spec = json.loads(p[2][1:])
            if set(spec) != {"symbol", "adjustment"} or spec["adjustment"] != "splits":
                return f"resolve_symbol spec must be {{symbol, adjustment: splits}}, got {spec!r}"
            conn.symbol, conn.symbol_id = spec["symbol"], p[1]
        elif method == "create_series":
            if (len(p) < 6 or p[0] != conn.cs or p[3] != conn.symbol_id or p[4] != "1D"
                    or not isinstance(p[5], int) or p[5] < 1):
                return f"create_series needs [cs, series_id, 's1', symbol_id, '1D', n_bars], got {p!r}"
        return None

    async def _serve_series(self, ws: ServerConnection, conn: ChartConnection, params: list[Any],
                            echoes: dict[str, asyncio.Event]) -> None:
        symbol = conn.symbol
        assert symbol is not None and conn.cs is not None and conn.symbol_id is not None
        if symbol in self.silent:
            return
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        names = {"$cs": conn.cs, "$symbol_id": conn.symbol_id, "$series_id": params[1]}
        if symbol in self.symbol_errors:
            frames: list[list[Any]] = [[{"m": "symbol_error", "p": ["$cs", "$symbol_id", self.symbol_errors[symbol]]}]]
        elif symbol in self.critical_errors:
            text = self.critical_errors[symbol].replace("{token}", conn.token or "")
            frames = [[{"m": "critical_error", "p": ["$cs", "fatal", text]}]]
        elif symbol in self.sessions:
            frames = self.sessions[symbol]
        else:
            frames = self._generated_session(symbol, params[5])
        try:
            for group in _substitute(frames, names):
                beats = [m for m in group if isinstance(m, str)]
                for beat in beats:
                    echoes[beat] = asyncio.Event()
                await ws.send("".join(frame(m if isinstance(m, str) else json.dumps(m)) for m in group))
                for beat in beats:
                    conn.heartbeats_sent.append(beat)
                    try:
                        await asyncio.wait_for(echoes[beat].wait(), self.echo_timeout_s)
                    except TimeoutError:
                        self.errors.append(f"connection {conn.id}: heartbeat {beat!r} not echoed "
                                           f"within {self.echo_timeout_s:g} s")
                        await ws.close()
                        return
        except ConnectionClosed:
            pass

    def _generated_session(self, symbol: str, n_bars: int) -> list[list[Any]]:
        """symbol_resolved (+ series_loading) | a heartbeat | timescale_update + series_completed."""
        profile = symbol_profile(symbol)
        bars = deterministic_bars(symbol, self.today).tail(n_bars)
        stamps = open_timestamps(symbol, pd.DatetimeIndex(bars["date"]))
        values = bars[["open", "high", "low", "close", "volume"]].to_numpy()
        rows = [{"i": i, "v": [int(ts), *map(float, v)]} for i, (ts, v) in enumerate(zip(stamps, values, strict=True))]
        info = {"name": symbol.split(":", 1)[1], "full_name": symbol, "timezone": profile.timezone,
                "session": profile.session, "type": profile.kind, "pricescale": 100}
        frames: list[list[Any]] = [[{"m": "symbol_resolved", "p": ["$cs", "$symbol_id", info]},
                                    {"m": "series_loading", "p": ["$cs", "$series_id", "s1"]}]]
        if self.heartbeat:
            frames.append([f"~h~{next(self._beats)}"])
        frames.append([{"m": "timescale_update", "p": ["$cs", {"$series_id": {"node": "fake", "s": rows, "t": "s1"}}]},
                       {"m": "series_completed", "p": ["$cs", "$series_id", "streaming", "s1", {}]}])
        return frames


# ---------------------------------------------------------------------------------------------------
# both, for tests and whole-graph runs


@dataclass
class FakeTradingView:
    """A running scanner + chart pair."""

    scanner: FakeScanner
    chart: FakeChart
    today: dt.date

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """`TradingViewSource` settings pointing at the fakes, with fast retries, plus `overrides`."""
        return {"scanner_base": self.scanner.base_url, "ws_url": self.chart.ws_url, "today": self.today,
                "backoff_base_s": 0.01, "backoff_max_s": 1.0, "max_attempts": 3, "timeout_s": 5.0, **overrides}


FIXTURE_MARKETS = ("america", "crypto", "forex")
FIXTURE_CHARTS = ("NASDAQ:AAPL", "FX:EURUSD", "BINANCE:BTCUSDT")


@contextmanager
def fake_tradingview(today: dt.date, universe: Mapping[str, int] | None = None, heartbeat: bool = True,
                     latency_s: float = 0.0) -> Iterator[FakeTradingView]:
    """Both fakes. `universe` (market -> size) serves generated markets; without it, the recorded
    scanner fixtures. The chart replays its recorded sessions and generates bars for any other symbol."""
    tables = ({m: generated_scanner_table(m, n, today) for m, n in universe.items()} if universe is not None
              else {m: scanner_fixture(m) for m in FIXTURE_MARKETS})
    with FakeScanner(tables) as scanner, FakeChart(today, FIXTURE_CHARTS, heartbeat, latency_s) as chart:
        yield FakeTradingView(scanner, chart, today)


def main(argv: list[str] | None = None) -> None:
    """Serve the fakes until Ctrl-C, printing the environment that points the source at them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--today", type=dt.date.fromisoformat, default=dt.datetime.now(dt.UTC).date())
    parser.add_argument("--america", type=int, default=300)
    parser.add_argument("--crypto", type=int, default=40)
    parser.add_argument("--forex", type=int, default=28)
    args = parser.parse_args(argv)
    universe = {"america": args.america, "crypto": args.crypto, "forex": args.forex}
    with fake_tradingview(args.today, universe) as fake:
        print(f"export PA_TV_SCANNER_BASE={fake.scanner.base_url}")
        print(f"export PA_TV_WS_URL={fake.chart.ws_url}")
        print(f"# serving {universe} as of {args.today}; Ctrl-C to stop", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
