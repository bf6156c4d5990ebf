"""TradingView's wire formats: chart-websocket frames and bars, scanner answer rows (no I/O here).

Chart frames are ``~m~<len>~m~<payload>`` (several per websocket message); a daily bar row is
``[unix_ts, o, h, l, c(, v)]`` whose ``unix_ts`` is the session's open instant, dated in the
exchange timezone (overnight sessions take the next local date, as TradingView labels them).
Scanner answers are ``{"totalCount", "data": [{"s": "EXCH:TICKER", "d": [...]}, ...]}`` with ``d``
in the requested column order (`SCANNER_FIELDS`).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import re
from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from portfolio_assets.sources.base import BAR_COLUMNS, SCAN_COLUMNS, SourceError

ENV_SCANNER_BASE = "PA_TV_SCANNER_BASE"
ENV_WS_URL = "PA_TV_WS_URL"
ANONYMOUS_TOKEN = "unauthorized_user_token"
# Columns requested from the scanner, in order. base.SCAN_COLUMNS already uses the scanner's names,
# so answer values map to frame columns one to one.
SCANNER_FIELDS: tuple[str, ...] = SCAN_COLUMNS[1:]
TEXT_FIELDS = frozenset({"name", "description", "type", "exchange", "currency", "sector", "industry"})
_SNIPPET_CHARS = 200
_FRAME_HEAD = re.compile(r"~m~(\d+)~m~")
_SESSION_SPAN = re.compile(r"(\d{4})-(\d{4})")


def redact(text: str, secret: str) -> str:
    """`text` with `secret` replaced by ``***``."""
    return text.replace(secret, "***") if secret else text


def as_date(value: object, name: str) -> dt.date:
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


def snippet(text: object, limit: int = _SNIPPET_CHARS) -> str:
    """`text` on one line, cut to `limit` characters (for error messages)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


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
            raise SourceError(f"malformed chart frame at character {pos}: {snippet(text[pos:], 80)!r}")
        size = int(head.group(1))
        start = head.end()
        if start + size > len(text):
            raise SourceError(f"chart frame announces {size} characters but only {len(text) - start} follow")
        payloads.append(text[start:start + size])
        pos = start + size
    return payloads


def session_rule(session: object) -> tuple[bool, dt.time | None]:
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
            raise SourceError(f"bar for {symbol} must be [time, open, high, low, close(, volume)], got {snippet(row, 80)}")
        for x in row:
            if x is not None and (isinstance(x, bool) or not isinstance(x, int | float)):
                raise SourceError(f"bar for {symbol} holds a non-numeric value {x!r}: {snippet(row, 80)}")
        if row[0] is None:
            raise SourceError(f"bar for {symbol} has no timestamp: {snippet(row, 80)}")
        values.append([np.nan if x is None else float(x) for x in row] + [np.nan] * (6 - len(row)))
    table = np.array(values, dtype=float).reshape(-1, 6)
    local = pd.to_datetime(table[:, 0], unit="s", utc=True).tz_convert(timezone)
    dates = local.tz_localize(None).normalize()
    overnight, open_time = session_rule(session)
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
# scanner answers


def decode_json(text: str) -> Any:
    """A scanner answer body parsed as JSON; `SourceError` quoting the body's start if malformed."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SourceError(f"scanner answered malformed JSON: {exc}; body starts {snippet(text, 80)!r}") from None


def retry_after_s(value: str | None) -> float | None:
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


def check_answer(answer: Any, url: str) -> tuple[list[Any], int | None]:
    """(rows, totalCount) of a scanner answer, totalCount None unless an integer; `SourceError` if
    there is no ``data`` list (quoting the vendor's ``error`` when it gives one)."""
    if not isinstance(answer, dict) or not isinstance(answer.get("data"), list):
        if isinstance(answer, dict) and answer.get("error"):
            raise SourceError(f"scanner {url} reported an error: {snippet(answer['error'])}")
        raise SourceError(f"scanner answer of {url} has no 'data' list: {snippet(json.dumps(answer), 120)}")
    total = answer.get("totalCount")
    return answer["data"], total if isinstance(total, int) and not isinstance(total, bool) else None


def check_row(item: Any) -> tuple[str, list[Any]]:
    """(symbol, values) of one answer row, with the value count and each value's type checked."""
    if not isinstance(item, dict) or not isinstance(item.get("s"), str) or not isinstance(item.get("d"), list):
        raise SourceError(f"scanner row is not {{'s': 'EXCH:TICKER', 'd': [...]}}: {snippet(json.dumps(item), 120)}")
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


def scan_frame(rows: list[dict[str, Any]], direction: str) -> pd.DataFrame:
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
