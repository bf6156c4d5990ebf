"""TradingView as a `MarketData` source: the scanner HTTP API for scans, the chart websocket for bars.

Modules: `protocol` (wire formats, no I/O), `scanner` (presets, paged queries, stored scans),
`chart` (websocket sessions), `source` (`TradingViewSource`, the `MarketData` interface).

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

Settings
    `settings.TradingViewSettings` holds every key with its default and bounds: ``scanner_base`` and
    ``ws_url`` (the environment variables ``PA_TV_SCANNER_BASE`` / ``PA_TV_WS_URL`` win), ``origin``,
    ``token_env`` (the variable holding the auth token; unset -> ``unauthorized_user_token``),
    ``page_size``, ``max_attempts``, ``backoff_base_s``, ``backoff_max_s`` (a longer Retry-After
    fails), ``timeout_s`` (HTTP and per-symbol bars), ``concurrency``, ``max_bars``, ``stored_scans``
    (default ``<lakehouse_root>/scans``; the resources set ``lakehouse_root``), ``today`` (tests) and
    ``presets`` (per family defaults, e.g. ``{"forex": {"market": "forex"}}``).

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

from portfolio_assets.sources.settings import DEFAULT_TOKEN_ENV, TradingViewSettings
from portfolio_assets.sources.tradingview.chart import FetchManyError
from portfolio_assets.sources.tradingview.protocol import (
    ENV_SCANNER_BASE,
    ENV_WS_URL,
    bars_frame,
    encode_frame,
    encode_message,
    split_frames,
)
from portfolio_assets.sources.tradingview.scanner import ScanPreset, resolve_preset
from portfolio_assets.sources.tradingview.source import TradingViewSource, effective_settings

__all__ = [
    "DEFAULT_TOKEN_ENV", "ENV_SCANNER_BASE", "ENV_WS_URL", "FetchManyError", "ScanPreset", "TradingViewSettings",
    "TradingViewSource", "bars_frame", "effective_settings", "encode_frame", "encode_message", "resolve_preset",
    "split_frames",
]
