"""Typed manifest and profile resolution.

`configs/manifest.json` holds `default_profile`, a `defaults` block shared by every profile, and
`profiles` (each a delta over `defaults`, optionally `extends` another profile, or a string alias
of another profile). Resolution, highest first:

    CLI overrides  >  PA_<SECTION>__<KEY>=<json> environment  >  profile (and what it extends)
    >  defaults  >  the code defaults of the models below.

The file is checked against `configs/manifest.schema.json` (generated from these models by
`portfolio-assets manifest-schema`), so an error names the file, the JSON path and the problem.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from portfolio_assets.constants import DEFAULT_AGGRESSOR_BUDGET, DEFAULT_FALLBACK_CHAIN, ENGINE_NAMES

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MANIFEST = PROJECT_ROOT / "configs" / "manifest.json"
DEFAULT_SCHEMA = PROJECT_ROOT / "configs" / "manifest.schema.json"
PROFILE_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
ENV_PREFIX = "PA_"
# Environment variables with the PA_ prefix that are not config overrides.
RESERVED_ENV = {"PA_PROFILE", "PA_MANIFEST", "PA_LAKEHOUSE", "PA_CLI_OVERRIDES"}


class ManifestError(ValueError):
    """A manifest problem: `file`, JSON `path` (e.g. `$.profiles.demo.selection.top_n`), `problem`."""

    def __init__(self, file: Path | str, path: str, problem: str):
        self.file, self.path, self.problem = str(file), path, problem
        super().__init__(f"{file}: {path}: {problem}")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Section):
    lookback_prep: int = Field(60, ge=20, description="sessions of the prep window (step 4)")
    lookback_history: int = Field(500, ge=60, description="sessions of the secular history (step 7)")
    min_days_floor: int = Field(400, ge=20, description="fewer sessions than this -> INSUFFICIENT")
    min_overlap: int = Field(20, ge=5, description="minimum pairwise overlap for a correlation")
    strict_health: bool = Field(True, description="any unhealthy winner fails the gate (ERROR)")
    staleness_sessions: int = Field(1, ge=0, description="last bar may lag the calendar by this many sessions")
    recovery_attempts: int = Field(3, ge=0, description="repair fetches per gap/stale range")
    recovery_backoff_s: float = Field(0.05, ge=0, description="first backoff; doubles per attempt")
    max_abs_return: float = Field(0.6, gt=0, description="|daily return| above this is a bad tick (non-crypto)")
    max_abs_return_crypto: float = Field(0.9, gt=0, description="bad-tick threshold for crypto")


class SourceConfig(_Section):
    kind: Literal["synthetic", "files", "tradingview"] = "synthetic"
    settings: dict[str, Any] = Field(default_factory=dict)


class ScannerPreset(_Section):
    name: str
    direction: Literal["long", "short"] = "long"
    market: str | None = None
    filter: list[dict[str, Any]] = Field(default_factory=list)
    sort: dict[str, Any] = Field(default_factory=lambda: {"sortBy": "Value.Traded", "sortOrder": "desc"})
    limit: int = Field(100, ge=1)
    timeframes: list[dict[str, Any]] = Field(default_factory=list)


class ScannerFamily(_Section):
    enabled: bool = True
    presets: list[ScannerPreset] = Field(default_factory=list)


class DiscoveryConfig(_Section):
    scanners: dict[Literal["equity", "crypto", "bond", "forex", "futures"], ScannerFamily] = Field(
        default_factory=dict
    )


class SelectionConfig(_Section):
    baseline: str = "AMEX:SPY"
    class_cap: int = Field(30, ge=1, description="raw-pool cap per asset class")
    threshold: float = Field(0.45, gt=0, le=1, description="Ward cut distance")
    max_clusters: int = Field(25, ge=1)
    top_n: int = Field(2, ge=1)
    min_momentum: float = Field(-0.05, description="60-session return gate (synthetic-long)")


class RiskConfig(_Section):
    threshold: float = Field(0.45, gt=0, le=2)
    max_clusters: int = Field(25, ge=1)
    cluster_cap: float = Field(0.25, gt=0, le=1)
    max_weight: float = Field(0.25, gt=0, le=1)
    top_pairs: int = Field(20, ge=1)


class RegimeConfig(_Section):
    vol_window: int = 21
    vol_history: int = 252
    turbulence_window: int = 252
    drawdown_window: int = 252
    wavelet: str = "haar"
    wavelet_level: int = 4
    wavelet_window: int = 64
    perm_order: int = 3
    perm_delay: int = 1
    perm_window: int = 63
    persistence: int = 3
    min_dwell: int = 5


class OptimizationConfig(_Section):
    engines: list[str] = Field(default_factory=lambda: list(ENGINE_NAMES))
    production_engine: str = "barbell"
    kappa: float = Field(0.001, ge=0, description="turnover penalty per unit L1 turnover")
    max_sharpe_l2: float = Field(0.1, ge=0)
    barbell_top_k: int = Field(3, ge=1)
    aggressor_budget: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_AGGRESSOR_BUDGET))
    max_beta_min_variance: float = Field(1.0, gt=0, description="weights_sanity: |beta| limit for min_variance")
    fallback_chain: dict[str, list[str]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_FALLBACK_CHAIN.items()}
    )
    force_fail: list[str] = Field(default_factory=list, description="ops/test hook: engines made to fail")


class BacktestConfig(_Section):
    train: int = Field(252, ge=20)
    test: int = Field(20, ge=1)
    step: int = Field(20, ge=1)
    slippage_bps: float = Field(5.0, ge=0)
    commission_bps: float = Field(1.0, ge=0)
    borrow_bps_annual: float = Field(50.0, ge=0)
    simulators: list[Literal["idealized", "realized"]] = Field(default_factory=lambda: ["idealized", "realized"])


class GistConfig(_Section):
    enabled: bool = False
    api_base: str = "https://api.github.com"
    token_env: str = "PA_GIST_TOKEN"
    gist_id: str | None = None
    public: bool = False


class ReportsConfig(_Section):
    top_engines: int = Field(3, ge=1)
    golden_limit: int = Field(32, ge=1)
    quantstats_html: bool = True
    gist: GistConfig = Field(default_factory=GistConfig)


class LedgerConfig(_Section):
    signing: Literal["none", "hmac", "ed25519"] = "none"
    require_signatures: bool = False


class AlertSink(_Section):
    kind: Literal["jsonl", "webhook", "slack"]
    url_env: str | None = None
    token_env: str | None = None
    channel: str | None = None
    timeout_s: float = 5.0


class AlertsConfig(_Section):
    sinks: list[AlertSink] = Field(default_factory=lambda: [AlertSink(kind="jsonl")])
    on_warn: bool = True


class DaskConfig(_Section):
    scheduler_address: str | None = None
    n_workers: int = Field(2, ge=1)
    threads_per_worker: int = Field(1, ge=1)


class ExecutorConfig(_Section):
    """Where the steps of one run execute. In-process is the default: on a 2-core machine it
    measured 25 s for the demo graph against 68-76 s multiprocess (step start-up dominates)."""

    kind: Literal["multiprocess", "in_process", "dask"] = "in_process"
    max_concurrent: int = Field(2, ge=1, description="parallel step processes (multiprocess) or tournament batches")
    dask: DaskConfig = Field(default_factory=DaskConfig)


class CalendarConfig(_Section):
    """The master calendar (XNYS) and the partitions built on it.

    `first_partition` is the first trading date offered as a partition; `start` is where the
    calendar (and therefore every session window) begins, so `start` must leave room for the
    longest lookback before `first_partition`. `end` bounds the holiday list of the calendar."""

    first_partition: dt.date = Field(dt.date(1995, 1, 3), description="first partition (an XNYS session)")
    start: dt.date = Field(dt.date(1990, 1, 2), description="first session of the master calendar")
    end: dt.date = Field(dt.date(2030, 12, 31), description="last day the master calendar covers")


class FeaturesConfig(_Section):
    feat_turnover_penalty: bool = True
    feat_partial_rebalance: bool = True
    feat_xs_momentum: bool = True
    feat_spectral_regimes: bool = True
    feat_decay_audit: bool = True
    feat_audit_ledger: bool = True
    feat_pit_fidelity: bool = True


class Config(_Section):
    """One resolved profile: every section, every field typed."""

    data: DataConfig = Field(default_factory=DataConfig)
    source: SourceConfig = Field(default_factory=SourceConfig)
    discovery: DiscoveryConfig = Field(default_factory=DiscoveryConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    risk: RiskConfig = Field(default_factory=RiskConfig)
    regime: RegimeConfig = Field(default_factory=RegimeConfig)
    optimization: OptimizationConfig = Field(default_factory=OptimizationConfig)
    backtest: BacktestConfig = Field(default_factory=BacktestConfig)
    reports: ReportsConfig = Field(default_factory=ReportsConfig)
    ledger: LedgerConfig = Field(default_factory=LedgerConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    calendar: CalendarConfig = Field(default_factory=CalendarConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)


class ProfileDelta(Config):
    """A profile object: a delta over `defaults`, optionally extending another profile."""

    extends: str | None = None
    description: str | None = None


class ManifestFile(_Section):
    default_profile: str
    defaults: Config = Field(default_factory=Config)
    profiles: dict[str, ProfileDelta | str]


SECTIONS = tuple(Config.model_fields)


class ResolvedManifest(BaseModel):
    """The active profile after resolution, with where it came from."""

    model_config = ConfigDict(frozen=True)

    profile: str
    resolved_from: list[str]  # alias/extends chain, e.g. ["production", "production_2026q4"]
    manifest_path: str
    manifest_sha256: str
    overrides: dict[str, Any]
    config: Config

    @property
    def config_hash(self) -> str:
        """SHA-256 of the resolved config's canonical JSON (what the ledger genesis records)."""
        blob = json.dumps(self.config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def snapshot(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "resolved_from": self.resolved_from,
            "manifest_path": self.manifest_path,
            "manifest_sha256": self.manifest_sha256,
            "config_hash": self.config_hash,
            "overrides": self.overrides,
            "config": self.config.model_dump(mode="json"),
        }


def json_schema() -> dict[str, Any]:
    """The JSON schema of the manifest file, generated from the models (committed as a file)."""
    schema = ManifestFile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "portfolio_assets manifest"
    return schema


def _json_path(parts: list[Any] | tuple[Any, ...]) -> str:
    out = "$"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def _deep_merge(base: dict[str, Any], delta: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in delta.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict) and key != "settings":
            out[key] = _deep_merge(out[key], value)
        elif isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **copy.deepcopy(dict(value))}
        else:
            out[key] = copy.deepcopy(value)
    return out


def _set_dotted(target: dict[str, Any], dotted: str, value: Any, origin: str) -> None:
    parts = dotted.split(".")
    if parts[0] not in SECTIONS or len(parts) < 2:
        raise ManifestError(origin, dotted, f"unknown setting; sections are {', '.join(SECTIONS)}")
    node = target
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ManifestError(origin, dotted, f"{p!r} is not a section")
    node[parts[-1]] = value


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """`PA_SELECTION__TOP_N=3` -> {"selection.top_n": 3}; values parsed as JSON when they parse."""
    out: dict[str, Any] = {}
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name in RESERVED_ENV or "__" not in name:
            continue
        dotted = name[len(ENV_PREFIX):].lower().replace("__", ".")
        if dotted.split(".")[0] in SECTIONS:
            out[dotted] = _parse_value(value)
    return out


def load_manifest_file(path: Path | str = DEFAULT_MANIFEST) -> tuple[dict[str, Any], str]:
    """Read and schema-check the manifest; returns (raw dict, sha256 of the file bytes)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(path, "$", "file not found") from None
    try:
        raw = json.loads(data)
    except json.JSONDecodeError as exc:
        raise ManifestError(path, "$", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if not isinstance(raw, dict):
        raise ManifestError(path, "$", "the manifest must be a JSON object")
    raw.pop("$schema", None)
    try:
        ManifestFile.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        # A profile is `ProfileDelta | str`: pydantic names the union arm in the location.
        loc = [p for p in err["loc"] if p not in ("ProfileDelta", "str")]
        raise ManifestError(path, _json_path(loc), _problem(err)) from None
    return raw, hashlib.sha256(data).hexdigest()


def _problem(err: Mapping[str, Any]) -> str:
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        return "unknown key (not in the schema)"
    if "input" in err and not isinstance(err["input"], dict | list):
        return f"{msg} (got {err['input']!r})"
    return msg


def _profile_chain(
    raw: dict[str, Any], name: str, file: Path, requested_by: str = "$.default_profile"
) -> tuple[list[str], list[dict[str, Any]]]:
    """Follow aliases and `extends` from `name`; returns the names visited and the deltas, base first."""
    profiles: dict[str, Any] = raw["profiles"]
    visited: list[str] = []
    deltas: list[dict[str, Any]] = []
    current: str | None = name
    while current is not None:
        if current in visited:
            cycle = " -> ".join([*visited, current])
            raise ManifestError(file, f"$.profiles.{visited[-1]}", f"profile alias cycle: {cycle}")
        if current not in profiles:
            where = requested_by if not visited else f"$.profiles.{visited[-1]}"
            known = ", ".join(sorted(profiles))
            raise ManifestError(file, where, f"unknown profile {current!r} (known: {known})")
        visited.append(current)
        body = profiles[current]
        if isinstance(body, str):
            current = body
            continue
        delta = {k: v for k, v in body.items() if k not in ("extends", "description")}
        deltas.append(delta)
        current = body.get("extends")
    return visited, list(reversed(deltas))


def resolve(
    profile: str | None = None,
    *,
    manifest_path: Path | str | None = None,
    cli_overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ResolvedManifest:
    """Resolve the active profile: CLI > PA_* env > profile > defaults > code defaults."""
    environ = os.environ if environ is None else environ
    path = Path(manifest_path or environ.get("PA_MANIFEST") or DEFAULT_MANIFEST)
    raw, sha = load_manifest_file(path)
    if profile:
        name, requested_by = profile, "--profile"
    elif environ.get("PA_PROFILE"):
        name, requested_by = environ["PA_PROFILE"], "PA_PROFILE"
    else:
        name, requested_by = raw["default_profile"], "$.default_profile"
    if not PROFILE_RE.fullmatch(name):
        raise ManifestError(path, requested_by, f"invalid profile name {name!r} (lower-case letters, digits, _)")
    chain, deltas = _profile_chain(raw, name, path, requested_by)
    merged: dict[str, Any] = copy.deepcopy(raw.get("defaults", {}))
    for delta in deltas:
        merged = _deep_merge(merged, delta)
    overrides: dict[str, Any] = {}
    for origin, items in (("environment (PA_*)", env_overrides(environ)), ("CLI", dict(cli_overrides or {}))):
        for dotted, value in items.items():
            _set_dotted(merged, dotted, value, origin)
            overrides[dotted] = value
    try:
        config = Config.model_validate(merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        dotted = ".".join(str(p) for p in err["loc"])
        origin = "CLI/environment override" if dotted in overrides else f"profile {name!r}"
        raise ManifestError(path, _json_path(list(err["loc"])), f"{_problem(err)} (from {origin})") from None
    _check_semantics(config, path)
    return ResolvedManifest(
        profile=name,
        resolved_from=chain,
        manifest_path=str(path),
        manifest_sha256=sha,
        overrides=overrides,
        config=config,
    )


def _check_semantics(config: Config, path: Path) -> None:
    """Cross-field rules the schema cannot express."""
    opt = config.optimization
    if opt.production_engine not in opt.engines:
        raise ManifestError(
            path, "$.optimization.production_engine", f"{opt.production_engine!r} is not in optimization.engines"
        )
    for required in ("market", "raw_pool_ew", "equal_weight"):
        if required not in opt.engines:
            raise ManifestError(path, "$.optimization.engines", f"baseline engine {required!r} must stay enabled")
    if config.data.min_days_floor > config.data.lookback_history:
        raise ManifestError(path, "$.data.min_days_floor", "must not exceed data.lookback_history")
    cal = config.calendar
    if not cal.start < cal.first_partition < cal.end:
        raise ManifestError(path, "$.calendar", f"need start < first_partition < end, got {cal.start} / "
                                                f"{cal.first_partition} / {cal.end}")
    bt = config.backtest
    if bt.train + bt.test > config.data.lookback_history:
        raise ManifestError(
            path, "$.backtest.train",
            f"train + test = {bt.train + bt.test} exceeds data.lookback_history = {config.data.lookback_history}",
        )


def parse_cli_overrides(items: list[str]) -> dict[str, Any]:
    """`--set selection.top_n=3` items -> {"selection.top_n": 3}."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ManifestError("command line", item, "expected --set section.key=value")
        key, value = item.split("=", 1)
        out[key.strip()] = _parse_value(value)
    return out
