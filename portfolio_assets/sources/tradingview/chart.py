"""The chart side: one websocket chart session per symbol, many at once, the token kept secret.

Client messages: ``set_auth_token``, ``chart_create_session``, ``resolve_symbol``
(``={"symbol": ..., "adjustment": "splits"}``), ``create_series(..., "1D", n_bars)``; the server
answers ``symbol_resolved`` | ``symbol_error``, ``timescale_update`` rows, ``series_completed``;
``critical_error`` / ``protocol_error`` / ``series_error`` fail. Heartbeats ``~h~<n>`` are echoed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import json
import logging
import os
import secrets
import string
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import pandas as pd
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException
from websockets.typing import Origin

from portfolio_assets.sources.base import SourceError
from portfolio_assets.sources.settings import TradingViewSettings
from portfolio_assets.sources.tradingview.protocol import (
    ANONYMOUS_TOKEN,
    bars_frame,
    encode_frame,
    encode_message,
    redact,
    snippet,
    split_frames,
)

logger = logging.getLogger("portfolio_assets.sources.tradingview")

T = TypeVar("T")
_MAX_MESSAGE_BYTES = 64 * 2**20  # a 5000-bar timescale_update is ~0.5 MB; websockets' default is 1 MB


class FetchManyError(SourceError):
    """Some symbols of a `fetch_many` failed. Nothing is lost: `results` holds the frames of the
    symbols that succeeded, `errors` the `SourceError` of each symbol that failed."""

    def __init__(self, results: dict[str, pd.DataFrame], errors: dict[str, SourceError]) -> None:
        shown = "; ".join(f"{sym}: {err}" for sym, err in list(errors.items())[:10])
        more = f"; ... and {len(errors) - 10} more" if len(errors) > 10 else ""
        super().__init__(f"{len(errors)} of {len(errors) + len(results)} symbols failed: {shown}{more}")
        self.results = results
        self.errors = errors


class RedactingLogger(logging.LoggerAdapter):
    """The logger handed to websockets: INFO and above only (its DEBUG lines print frames, and the
    first frame carries the token), with the token scrubbed from whatever is logged."""

    def __init__(self, base: logging.Logger, secret: str) -> None:
        super().__init__(base, {})
        self._secret = secret

    def isEnabledFor(self, level: int) -> bool:
        """True for INFO and above when the base logger emits `level`; DEBUG is always off."""
        return level >= logging.INFO and self.logger.isEnabledFor(level)

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        """Log `msg % args` through the base logger with the token replaced by ``***``, if enabled."""
        if self.isEnabledFor(level):
            text = str(msg) % args if args else str(msg)
            self.logger.log(level, "%s", redact(text, self._secret), **kwargs)


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion from synchronous code, also when this thread already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


class ChartSession:
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
        return SourceError(redact(message, self.token))

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
                             f"{snippet(payload, 80)!r}") from None
        if not isinstance(msg, dict) or "m" not in msg:
            return False  # the session greeting ({"session_id": ...}) and the like
        method, params = msg["m"], msg.get("p") or []
        if method == "symbol_resolved" and len(params) >= 3 and isinstance(params[2], dict):
            self.resolved = params[2]
        elif method == "symbol_error":
            reason = params[2] if len(params) >= 3 else params
            raise self._fail(f"TradingView could not resolve {self.symbol}: {reason}")
        elif method in ("series_error", "critical_error", "protocol_error"):
            raise self._fail(f"chart server sent {method} for {self.symbol}: {snippet(json.dumps(params), 160)}")
        elif method == "timescale_update" and len(params) >= 2 and isinstance(params[1], dict):
            series = params[1].get(self.SERIES_ID) or {}
            for entry in series.get("s") or []:
                values = entry.get("v") if isinstance(entry, dict) else None
                if not isinstance(values, list) or not values:
                    raise self._fail(f"timescale_update for {self.symbol} holds a malformed bar: {snippet(entry, 80)}")
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


async def fetch_all(settings: TradingViewSettings, symbols: list[str], start: dt.date, end: dt.date,
                    concurrency: int, today: dt.date) -> tuple[dict[str, pd.DataFrame], dict[str, SourceError]]:
    """Bars of every symbol, at most `concurrency` connections at a time: (results, per-symbol errors).
    A `SourceError` of one symbol is collected; any other exception propagates."""
    gate = asyncio.Semaphore(concurrency)
    n_bars = min(settings.max_bars, max(1, (today - start).days + 10))  # calendar days >= sessions

    async def one(symbol: str) -> pd.DataFrame:
        async with gate:
            return await fetch_symbol(settings, symbol, start, end, n_bars)

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

async def fetch_symbol(settings: TradingViewSettings, symbol: str, start: dt.date, end: dt.date,
                       n_bars: int) -> pd.DataFrame:
    """One chart session over its own connection, bounded by ``timeout_s``."""
    s = settings
    token = os.environ.get(s.token_env) or ANONYMOUS_TOKEN
    began = time.perf_counter()
    try:
        async with asyncio.timeout(s.timeout_s):
            async with connect(s.ws_url, origin=Origin(s.origin), max_size=_MAX_MESSAGE_BYTES,
                               open_timeout=None, close_timeout=min(s.timeout_s, 5.0), logger=RedactingLogger(logger, token)) as ws:
                frame = await ChartSession(ws, symbol, token).run(n_bars, start, end)
    except TimeoutError:
        raise SourceError(f"no bars for {symbol} from the chart websocket within "
                          f"timeout_s={s.timeout_s:g} s") from None
    except (OSError, WebSocketException) as exc:
        raise SourceError(f"chart websocket {s.ws_url} failed for {symbol}: "
                          f"{redact(f'{type(exc).__name__}: {exc}', token)}") from None
    logger.debug("tradingview bars %s: %d bars in %.3f s", symbol, len(frame), time.perf_counter() - began)
    return frame
