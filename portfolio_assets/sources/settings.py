"""Typed settings of each market-data source, one pydantic model per `source.kind`.

The manifest's `SourceConfig` validates `source.settings` against `SETTINGS_MODELS[kind]` when a
profile is resolved, so a bad setting is refused (with its JSON path) before any run starts; each
source receives its model. Every default is written once, here. All models forbid unknown keys,
reject NaN/infinite numbers, and take integers strictly (no `true`, `"7"` or `7.0` for an integer).

- `SyntheticSettings` (kind "synthetic"): the embedded market's size, seed, date range, faults.
- `FilesSettings` (kind "files"): a directory of exported bars (`files.py`, `docs/real-data.md`).
- `TradingViewSettings` (kind "tradingview"): the vendor's endpoints, retries, limits and storage.

`parse_source_settings(kind, mapping)` validates a plain mapping (direct construction of a source)
and raises `SourceSettingsError` naming the key and the problem.

The manifest's `source` section lives here too: `SourceConfig` (resolved: `kind` + its typed
settings), `SourceDelta` (a profile's delta) and `merge_source_layers`, the per-kind merge of the
resolution layers (see `manifest` and the README, "Switching vendors").
"""

from __future__ import annotations

import copy
import datetime as dt
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

SourceKind = Literal["synthetic", "files", "tradingview"]
SOURCE_KINDS: tuple[str, ...] = get_args(SourceKind)
FamilyName = Literal["equity", "crypto", "bond", "forex", "futures"]  # the scanner families
BadTickKind = Literal["zero", "negative", "spike"]
BAD_TICK_KINDS: tuple[str, ...] = get_args(BadTickKind)
MAX_SEED = 2**32 - 1  # numpy legacy seeding's limit; any seed below it is valid everywhere


def _iso_date(value: object) -> object:
    """A date from a date, a datetime (its UTC date) or an ISO string `YYYY-MM-DD[...]`; anything
    else is passed on for pydantic to refuse."""
    if isinstance(value, dt.datetime):
        return (value.astimezone(dt.UTC) if value.tzinfo else value).date()
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value[:10])
        except ValueError:
            raise PydanticCustomError("iso_date", "must be a date 'YYYY-MM-DD'") from None
    if hasattr(value, "to_pydatetime"):  # a pandas Timestamp
        return _iso_date(value.to_pydatetime())
    return value


def _path(value: object) -> object:
    return Path(value) if isinstance(value, str | os.PathLike) else value


IsoDate = Annotated[dt.date, BeforeValidator(_iso_date)]
PathSetting = Annotated[Path, BeforeValidator(_path)]


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


# ------------------------------------------------------------------------------------- synthetic
class _FaultKind(_Settings):
    """Common keys of one fault kind (see `sources/synthetic/__init__.py`, "Faults")."""

    n: int | None = Field(None, ge=0, le=100_000, description="count-based picks; unset = 1 without `symbols`, else 0")
    symbols: list[str] = Field(default_factory=list, description="explicit symbols (any class)")
    heal_after: int | None = Field(1, ge=0, le=100, description="present while attempt < heal_after; null = never heals")


class MissingBarsFault(_FaultKind):
    """The `missing_bars` fault: `sessions` consecutive bars withheld every `period` bars of the
    symbol's calendar; `period` must exceed `sessions`."""

    sessions: int = Field(3, ge=1, le=10_000, description="consecutive bars withheld")
    period: int = Field(250, ge=2, le=100_000, description="bars between two gaps (> sessions)")

    @model_validator(mode="after")
    def _period_leaves_bars(self) -> MissingBarsFault:
        if self.period < self.sessions + 1:
            raise PydanticCustomError("fault_period", "period ({period}) must exceed sessions ({sessions})",
                                      {"period": self.period, "sessions": self.sessions})
        return self


class StaleFault(_FaultKind):
    """The `stale` fault: the last `bars` bars at or before the requested end are withheld."""

    bars: int = Field(3, ge=1, le=10_000, description="last bars withheld at or before the requested end")


class BadTicksFault(_FaultKind):
    """The `bad_ticks` fault: one bar every `period` bars gets a bad close (`kind` "zero",
    "negative" or "spike"; a seeded choice if unset)."""

    period: int = Field(250, ge=1, le=100_000, description="bars between two bad ticks")
    kind: BadTickKind | None = Field(None, description="unset = a seeded choice")


class FaultsSettings(_Settings):
    """The injected data faults; `{}` (no kind) disables them."""

    seed: int = Field(11, ge=0, le=MAX_SEED)
    missing_bars: MissingBarsFault | None = None
    stale: StaleFault | None = None
    bad_ticks: BadTicksFault | None = None

    @model_validator(mode="after")
    def _one_kind_per_symbol(self) -> FaultsSettings:
        seen: dict[str, str] = {}
        for kind in ("missing_bars", "stale", "bad_ticks"):
            spec = getattr(self, kind)
            for symbol in spec.symbols if spec is not None else ():
                if symbol in seen:
                    raise PydanticCustomError("fault_symbol", "{symbol} is listed under two fault kinds",
                                              {"symbol": repr(symbol)})
                seen[symbol] = kind
        return self


DEFAULT_FAULTS = FaultsSettings(
    missing_bars=MissingBarsFault(n=2, sessions=3, heal_after=1),
    stale=StaleFault(n=1, bars=3, heal_after=1),
    bad_ticks=BadTicksFault(n=1, heal_after=1),
)


class SyntheticSettings(_Settings):
    """The embedded synthetic market (`sources/synthetic`). Counts are listings per asset class."""

    seed: int = Field(7, ge=0, le=MAX_SEED, description="the market's seed")
    n_equities: int = Field(240, ge=0, le=100_000, description="US stocks")
    n_etfs: int = Field(40, ge=1, le=10_000, description="ETFs incl. bond ETFs (AMEX:SPY always)")
    n_bond_etfs: int | None = Field(None, ge=0, le=10_000, description="bond ETFs among n_etfs; unset = n_etfs // 4")
    n_crypto: int = Field(40, ge=0, le=10_000, description="crypto listings (n_crypto // 5 extra venues)")
    n_forex: int = Field(20, ge=0, le=10_000, description="forex listings (n_forex // 5 broker duplicates)")
    n_futures: int = Field(0, ge=0, le=1_000, description="continuous futures")
    start: IsoDate = Field(dt.date(2019, 1, 2), description="first generated calendar day")
    end: IsoDate = Field(dt.date(2027, 12, 31), description="last generated calendar day")
    faults: FaultsSettings = Field(default_factory=lambda: DEFAULT_FAULTS,
                                   description="injected faults; the default plan shrinks to a small universe")
    perturb_after: IsoDate | None = Field(None, description="change every return after this day (PIT tests)")

    @property
    def bond_etfs(self) -> int:
        """`n_bond_etfs`, or its default n_etfs // 4."""
        return self.n_etfs // 4 if self.n_bond_etfs is None else self.n_bond_etfs

    @property
    def faults_given(self) -> bool:
        """Whether `faults` was set (an explicit plan that asks for too many symbols is an error)."""
        return "faults" in self.model_fields_set

    @model_validator(mode="after")
    def _fits_the_market(self) -> SyntheticSettings:
        from portfolio_assets.sources.synthetic.description import CURRENCIES, FUTURES

        problems = []
        if self.bond_etfs > self.n_etfs - 1:
            problems.append(f"n_bond_etfs ({self.bond_etfs}) must leave room for AMEX:SPY within n_etfs ({self.n_etfs})")
        max_pairs = len(CURRENCIES) * (len(CURRENCIES) - 1) // 2
        if self.n_forex - self.n_forex // 5 > max_pairs:
            problems.append(f"n_forex={self.n_forex} needs more than the {max_pairs} distinct pairs available")
        if self.n_futures > len(FUTURES):
            problems.append(f"n_futures must be <= {len(FUTURES)}, got {self.n_futures}")
        if self.end <= self.start:
            problems.append(f"end ({self.end}) must be after start ({self.start})")
        if problems:
            raise PydanticCustomError("synthetic_settings", "; ".join(problems))
        return self


# ----------------------------------------------------------------------------------------- files
class FilesSettings(_Settings):
    """A directory of exported bars (`sources/files.py`; layout in `docs/real-data.md`)."""

    path: PathSetting = Field(description="the directory holding bars/ and universe.csv")
    today: IsoDate | None = Field(None, description="bars after this day are an error; unset = the UTC date")
    max_staleness_days: int = Field(10, ge=0, le=3660, description="a last bar older than this is delisted")


# ----------------------------------------------------------------------------------- tradingview
DEFAULT_SCANNER_BASE = "https://scanner.tradingview.com"
DEFAULT_WS_URL = "wss://data.tradingview.com/socket.io/websocket"
DEFAULT_ORIGIN = "https://www.tradingview.com"
DEFAULT_TOKEN_ENV = "TRADINGVIEW_TOKEN"


class TradingViewSettings(_Settings):
    """TradingView's scanner HTTP API and chart websocket (`sources/tradingview`). The token is read
    from the environment variable `token_env` at connect time, never from settings."""

    scanner_base: str = Field(DEFAULT_SCANNER_BASE, pattern=r"^https?://",
                              description="scanner URL; env PA_TV_SCANNER_BASE wins")
    ws_url: str = Field(DEFAULT_WS_URL, pattern=r"^wss?://", description="chart URL; env PA_TV_WS_URL wins")
    origin: str = Field(DEFAULT_ORIGIN, description="Origin header (the vendor checks it)")
    token_env: str = Field(DEFAULT_TOKEN_ENV, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                           description="environment variable holding the auth token")
    page_size: int = Field(150, ge=1, le=10_000, description="scanner rows per request")
    max_attempts: int = Field(4, ge=1, le=20, description="scanner attempts per page")
    backoff_base_s: float = Field(1.0, gt=0, le=60, description="first retry delay; doubles per retry")
    backoff_max_s: float = Field(30.0, gt=0, le=600, description="delay cap; a longer Retry-After fails")
    timeout_s: float = Field(30.0, gt=0, le=600, description="HTTP timeout; per-symbol bars timeout")
    concurrency: int = Field(4, ge=1, le=64, description="simultaneous chart connections")
    max_bars: int = Field(5000, ge=1, le=100_000, description="most bars asked per symbol")
    stored_scans: PathSetting | None = Field(None, description="stored scans; unset = <lakehouse_root>/scans")
    lakehouse_root: PathSetting | None = Field(None, description="the profile's lakehouse (set by the resources)")
    today: IsoDate | None = Field(None, description="the current trading date; unset = the UTC date (tests)")
    presets: dict[FamilyName, dict[str, Any]] = Field(
        default_factory=dict, description="per-family preset defaults, e.g. {'forex': {'market': 'forex'}}")

    @model_validator(mode="before")
    @classmethod
    def _no_token(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "token" in data:
            raise PydanticCustomError(
                "token_in_settings", "the TradingView token must come from the environment variable named by "
                "settings['token_env'], never from settings")
        return data


SETTINGS_MODELS: dict[str, type[BaseModel]] = {
    "synthetic": SyntheticSettings, "files": FilesSettings, "tradingview": TradingViewSettings,
}
SourceSettings = SyntheticSettings | FilesSettings | TradingViewSettings


class SourceSettingsError(ValueError):
    """Settings a source cannot use; the message names the kind, the key and the problem."""


def describe_error(err: Mapping[str, Any]) -> str:
    """One pydantic error as `problem (got value)`, unknown keys as `unknown key`."""
    if err["type"] == "extra_forbidden":
        return "unknown key (not in the schema)"
    if "input" in err and not isinstance(err["input"], dict | list):
        return f"{err['msg']} (got {err['input']!r})"
    return str(err["msg"])


def parse_source_settings(kind: str, settings: SourceSettings | Mapping[str, Any] | None) -> Any:
    """The typed settings of a `kind` source from its model or a plain mapping (validated)."""
    if kind not in SETTINGS_MODELS:
        raise ValueError(f"unknown source kind {kind!r}; expected one of {', '.join(SOURCE_KINDS)}")
    model = SETTINGS_MODELS[kind]
    if isinstance(settings, model):
        return settings
    if isinstance(settings, BaseModel):
        raise SourceSettingsError(f"{kind} source got {type(settings).__name__}, not {model.__name__}")
    try:
        return model.model_validate(dict(settings or {}))
    except ValidationError as exc:
        problems = [": ".join([*([".".join(str(p) for p in err["loc"])] if err["loc"] else []), describe_error(err)])
                    for err in exc.errors()]
        raise SourceSettingsError(f"{kind} settings: {'; '.join(problems)}") from None


# --------------------------------------------------------------------- the manifest's `source` section
def _typed_settings(value: Any, kind: str | None) -> Any:
    """`value` validated against the settings model of `kind` (errors keep their path below `settings`)."""
    if kind is None or value is None:
        return value
    model = SETTINGS_MODELS[kind]
    return value if isinstance(value, model) else model.model_validate(value)


class SourceConfig(BaseModel):
    """The market-data vendor (`kind`) and its typed settings (`SETTINGS_MODELS[kind]`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: SourceKind = "synthetic"
    settings: SourceSettings = Field(default_factory=dict, validate_default=True,  # type: ignore[arg-type]
                                     description="the settings of `kind` (see sources/settings.py)")

    @field_validator("settings", mode="before")
    @classmethod
    def _settings_of_kind(cls, value: Any, info: ValidationInfo) -> Any:
        return _typed_settings(value, info.data.get("kind"))

    @field_serializer("settings")
    def _given_settings(self, value: SourceSettings) -> dict[str, Any]:
        """The settings as given (defaults stay in the models), so the recorded config and its hash
        do not change when a model gains a default."""
        return value.model_dump(mode="json", exclude_unset=True)


class SourceDelta(BaseModel):
    """A profile's `source`: without `kind` the settings belong to the inherited kind (checked when
    the profile is resolved); with `kind` they are checked against its model when the file is read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: SourceKind | None = None
    settings: dict[str, Any] | None = None

    @field_validator("settings", mode="after")
    @classmethod
    def _settings_of_kind(cls, value: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
        _typed_settings(value, info.data.get("kind"))
        return value


def source_json_schema(schema: dict[str, Any]) -> None:
    """Make a manifest JSON schema (in place) check `settings` against the model of the `kind` given
    (and, in `SourceConfig`, of the default kind when none is given)."""
    defs = schema["$defs"]
    for name, default in (("SourceConfig", SourceConfig.model_fields["kind"].default), ("SourceDelta", None)):
        rules: list[dict[str, Any]] = [
            {"if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]},
             "then": {"properties": {"settings": {"$ref": f"#/$defs/{model.__name__}"}}}}
            for kind, model in SETTINGS_MODELS.items()]
        if default is not None:
            rules.append({"if": {"not": {"required": ["kind"]}},
                          "then": {"properties": {"settings": {"$ref": f"#/$defs/{SETTINGS_MODELS[default].__name__}"}}}})
        defs[name]["allOf"] = rules


class SourceLayerError(ValueError):
    """An override path that cannot be applied (`origin`, dotted key, problem)."""

    def __init__(self, origin: str, dotted: str, problem: str) -> None:
        self.origin, self.dotted, self.problem = origin, dotted, problem
        super().__init__(f"{origin}: {dotted}: {problem}")


def _set_path(target: dict[str, Any], path: list[str], value: Any, origin: str, dotted: str) -> None:
    node = target
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SourceLayerError(origin, dotted, f"{part!r} is not a section")
    node[path[-1]] = value


def merge_source_layers(layers: list[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """The `source` section resolved from its layers, lowest first, merged per kind.

    A layer is `("file", section)` (the `source` object of `defaults` or of a profile: its
    `settings` merge key by key) or `(origin, {"source.kind": ..., "source.settings": ...,
    "source.settings.a.b": ..., ...})` (one override origin, CLI or environment: `source.settings`
    replaces, `source.settings.a.b` sets one value). Each layer's settings belong to the kind in force
    at that layer (its own `kind`, else the one below); the result carries the final kind and only
    the settings given for that kind. Other keys pass through for validation to judge.
    """
    kind: Any = SourceConfig.model_fields["kind"].default
    by_kind: dict[Any, Any] = {}
    extra: dict[str, Any] = {}
    for origin, layer in layers:
        if origin == "file":
            kind = layer.get("kind", kind)
            if "settings" in layer:
                old, new = by_kind.get(kind, {}), copy.deepcopy(layer["settings"])
                by_kind[kind] = {**old, **new} if isinstance(old, dict) and isinstance(new, Mapping) else new
            extra.update({k: copy.deepcopy(v) for k, v in layer.items() if k not in ("kind", "settings")})
            continue
        kind = layer.get("source.kind", kind)
        if "source.settings" in layer:
            by_kind[kind] = copy.deepcopy(layer["source.settings"])
        for dotted, value in layer.items():
            parts = dotted.split(".")
            if parts[1] == "settings" and len(parts) > 2:
                settings = by_kind.setdefault(kind, {})
                if not isinstance(settings, dict):
                    raise SourceLayerError(origin, dotted, "'settings' is not a section")
                _set_path(settings, parts[2:], value, origin, dotted)
            elif parts[1] not in ("kind", "settings"):
                _set_path(extra, parts[1:], value, origin, dotted)
    return {**extra, "kind": kind, "settings": by_kind.get(kind, {})}
