"""Typed manifest and profile resolution.

`configs/manifest.json` holds `default_profile`, a `defaults` block shared by every profile, and
`profiles` (each a delta over `defaults`, optionally `extends` another profile, or a string alias
of another profile). Resolution, highest first:

    CLI overrides  >  PA_<SECTION>__<KEY>=<json> environment  >  profile (and what it extends)
    >  defaults  >  the code defaults of the models below.

`source.settings` merge per kind: a layer's settings belong to the `source.kind` in force at that
layer (its own, else the one below), and the resolved settings are those of the final kind only
(key by key over the layers that gave settings for it; a CLI/environment `source.settings=...`
replaces them). So `--set source.kind=files --set source.settings.path=DIR` drops the profile's
synthetic settings. They are validated against the kind's model (`sources.settings`).

The file is checked against `configs/manifest.schema.json` (generated from these models by
`portfolio-assets manifest-schema`), so an error names the file, the JSON path and the problem.

Nonsense is refused before any work starts: every number is finite and bounded (windows >= 1,
fractions in range, counts, backoffs and timeouts with upper limits), engine names come from
`constants.ENGINE_NAMES`; the file may not hold `NaN`/`Infinity` or a duplicate key, and any read
or decode error names it; an override that fails names its origin (`--set x.y=...` or
`PA_<SECTION>__<KEY>=...`); a `PA_*` variable that is neither a setting nor in `NON_OVERRIDE_ENV` (nor named by
a `*_env` setting) is refused with the nearest valid name; a webhook URL that cannot work is refused.
The strict readers live in `manifest_input`.

The module is long (~800 lines) because it is the one home of every section model and its
defaults (the project's rule: one place per default); resolution follows the models.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from portfolio_assets.constants import (
    DEFAULT_AGGRESSOR_BUDGET,
    DEFAULT_FALLBACK_CHAIN,
    ENGINE_NAMES,
    REGIME_LABELS,
)
from portfolio_assets.manifest_input import (
    StrictJSONError,
    json_path,
    loads_strict,
    nearest,
    nearest_setting,
    parse_webhook_url,
    setting_keys,
    unknown_setting,
)
from portfolio_assets.sources.settings import (
    FilesSettings,
    SourceConfig,
    SourceDelta,
    SourceLayerError,
    describe_error,
    merge_source_layers,
    source_json_schema,
)
from portfolio_assets.symbols import SYMBOL_RE

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MANIFEST = PROJECT_ROOT / "configs" / "manifest.json"
DEFAULT_SCHEMA = PROJECT_ROOT / "configs" / "manifest.schema.json"
PROFILE_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
ENV_PREFIX = "PA_"
NON_OVERRIDE_ENV: Final[Mapping[str, str]] = MappingProxyType({
    "PA_PROFILE": "the profile when --profile is not given",
    "PA_MANIFEST": "the manifest file (default configs/manifest.json)",
    "PA_LAKEHOUSE": "the lakehouse root (default <project>/lakehouse)",
    "PA_CLI_OVERRIDES": "the CLI's --set overrides as JSON, for the step processes (set by the CLI)",
    "PA_LOG_LEVEL": "DEBUG or INFO streams Dagster's log to the terminal",
    "PA_LEDGER_HMAC_KEY": "ledger signing: the HMAC-SHA256 secret (ledger.py)",
    "PA_LEDGER_ED25519_KEY": "ledger signing: the Ed25519 private seed, 64 hex characters",
    "PA_LEDGER_ED25519_PUBLIC_KEY": "ledger verification: the Ed25519 public key, 64 hex characters",
    "PA_TV_SCANNER_BASE": "TradingView: scanner URL, wins over source.settings.scanner_base",
    "PA_TV_WS_URL": "TradingView: chart websocket URL, wins over source.settings.ws_url",
    "PA_GIST_TOKEN": "reports.gist.token_env's default: the GitHub token for gists",
    "PA_ALERT_WEBHOOK_URL": "the production profile's webhook sink (alerts.sinks[].url_env)",
    "PA_UPDATE_SNAPSHOT": "tests: 1 rewrites the asset-graph snapshot",
    "PA_LINEAGE_PNG": "tests: where the UI test saves the lineage screenshot",
})
"""The `PA_*` environment variables that are not settings. Besides these, any variable a `*_env`
setting names (in the manifest file or the resolved config) is allowed; every other `PA_*` name
must be an override `PA_<SECTION>__<KEY>` of a known setting, or resolution refuses it."""


class ManifestError(ValueError):
    """A manifest problem: `file`, JSON `path` (e.g. `$.profiles.demo.selection.top_n`), `problem`."""

    def __init__(self, file: Path | str, path: str, problem: str):
        self.file, self.path, self.problem = str(file), path, problem
        super().__init__(f"{file}: {path}: {problem}")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# Upper bounds shared by several sections (so a typo of a few zeros is refused before any work).
MAX_WINDOW = 10_000  # sessions (~40 years)
MAX_SYMBOLS = 100_000  # symbols in one list, pool or universe
MAX_CLUSTERS = 10_000
MAX_VOL_ANN = 5.0  # annualized volatility, 500 %/yr
MAX_VOL_RATIO = 50.0  # vol_ann / vol_ref
MAX_RECOVERY_WAIT_S = 120.0  # backoff waits of one repair range
MAX_SINK_WAIT_S = 120.0  # one alert at one sink: attempts x timeout + backoff waits
ENV_NAME_RE = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
EngineName = Annotated[str, Field(json_schema_extra={"enum": list(ENGINE_NAMES)})]
"""An engine of the registry (`constants.ENGINE_NAMES`): the schema lists them; the validators of
`OptimizationConfig` refuse any other with the list."""


class DataConfig(_Section):
    lookback_prep: int = Field(60, ge=20, le=MAX_WINDOW, description="sessions of the prep window (step 4)")
    lookback_history: int = Field(500, ge=60, le=MAX_WINDOW, description="sessions of the secular history (step 7)")
    min_days_floor: int = Field(400, ge=20, le=MAX_WINDOW, description="fewer sessions than this -> INSUFFICIENT")
    min_overlap: int = Field(20, ge=5, le=MAX_WINDOW, description="minimum pairwise overlap for a correlation")
    strict_health: bool = Field(True, description="any unhealthy winner fails the gate (ERROR)")
    staleness_sessions: int = Field(1, ge=0, le=63, description="last bar may lag the calendar by this many sessions")
    recovery_attempts: int = Field(3, ge=0, le=10, description="repair fetches per gap/stale range")
    recovery_backoff_s: float = Field(0.05, ge=0, le=30, description=(
        "first backoff (s); doubles per attempt; the waits of one range, "
        "recovery_backoff_s * (2**(recovery_attempts - 1) - 1), stay within MAX_RECOVERY_WAIT_S"))
    max_abs_return: float = Field(0.6, gt=0, le=10, description="|daily return| above this is a bad tick (non-crypto)")
    max_abs_return_crypto: float = Field(0.9, gt=0, le=10, description="bad-tick threshold for crypto")

    @model_validator(mode="after")
    def _bounded_recovery(self) -> DataConfig:
        wait = self.recovery_backoff_s * (2 ** max(self.recovery_attempts - 1, 0) - 1)
        if wait > MAX_RECOVERY_WAIT_S:
            raise ValueError(f"recovery would wait {wait:g} s per range (recovery_backoff_s * "
                             f"(2**(recovery_attempts - 1) - 1)); at most {MAX_RECOVERY_WAIT_S:g} s")
        return self


class ScannerPreset(_Section):
    name: str = Field(min_length=1, max_length=200)
    direction: Literal["long", "short"] = "long"
    market: str | None = Field(None, min_length=1, max_length=100)
    filter: list[dict[str, Any]] = Field(default_factory=list)
    sort: dict[str, Any] = Field(default_factory=lambda: {"sortBy": "Value.Traded", "sortOrder": "desc"})
    limit: int = Field(100, ge=1, le=MAX_SYMBOLS, description="most rows the preset returns")
    timeframes: list[dict[str, Any]] = Field(default_factory=list)


class ScannerFamily(_Section):
    enabled: bool = True
    presets: list[ScannerPreset] = Field(default_factory=list, max_length=100)


class DiscoveryConfig(_Section):
    scanners: dict[Literal["equity", "crypto", "bond", "forex", "futures"], ScannerFamily] = Field(
        default_factory=dict
    )


class SelectionConfig(_Section):
    """Raw pool and natural selection (`quant/selection.py`, `docs/selection.md`)."""

    baseline: str = Field("AMEX:SPY", pattern=SYMBOL_RE.pattern, description="always kept, always long")
    class_cap: int = Field(30, ge=1, le=MAX_SYMBOLS, description="raw-pool cap per asset class")
    threshold: float = Field(0.45, gt=0, le=1, description="Ward cut distance")
    max_clusters: int = Field(25, ge=1, le=MAX_CLUSTERS)
    top_n: int = Field(2, ge=1, le=MAX_SYMBOLS, description="winners kept per cluster")
    min_momentum: float = Field(-0.05, ge=-1, le=10,
                                description="60-session return gate (synthetic-long, fraction; -1 = off)")
    min_winners: int = Field(10, ge=1, le=1000, description=(
        "fewest symbols in the selected universe, baseline included, capped by the symbols with data; "
        "fewer winners are filled round-robin over clusters by alpha score (outcome min_winners_fill)"))
    float32_min_symbols: int = Field(5000, ge=2, le=10_000_000, description=(
        "from this many scored symbols on, the correlation matrix is float32 (|drho| <= 1e-5)"))


class RiskConfig(_Section):
    threshold: float = Field(0.45, gt=0, le=2)
    max_clusters: int = Field(25, ge=1, le=MAX_CLUSTERS)
    cluster_cap: float = Field(0.25, gt=0, le=1, description="most weight per risk bucket (fraction of the book)")
    max_weight: float = Field(0.25, gt=0, le=1, description="most weight per symbol (fraction of the book)")
    top_pairs: int = Field(20, ge=1, le=10_000, description="most correlated pairs reported")
    weights_tolerance: float = Field(
        1e-6, gt=0, le=1e-3,
        description="weights_sanity: slack on caps, budget and the sum to 1 (solver accuracy is ~1e-8)",
    )


class RegimeConfig(_Section):
    """Regime detector (`quant/regimes`, step 10). Windows are in sessions; volatilities are
    annualized fractions (0.25 = 25 %/yr); percentiles and shares are fractions in (0, 1); drawdowns
    are fractions below the trailing high (-0.15 = 15 % below). The rules and the reasons for these
    defaults (calibrated on the S&P 500, 1995-2022) are in `docs/regimes.md`."""

    # --- level features -------------------------------------------------------------------------
    vol_window: int = Field(21, ge=2, le=MAX_WINDOW, description="realized-volatility window (vol_ann)")
    vol_history: int = Field(252, ge=1, le=MAX_WINDOW, description="trailing window of the volatility percentile (vol_pct)")
    vol_reference_window: int = Field(
        756, ge=1, le=MAX_WINDOW, description="trailing window of the long-run volatility reference vol_ref (median of vol_ann)")
    pct_min_history: int = Field(63, ge=1, le=MAX_WINDOW, description="fewest values for a percentile or for vol_ref")
    drawdown_window: int = Field(252, ge=1, le=MAX_WINDOW, description="drawdown is measured from the high of this window")
    turbulence_window: int = Field(252, ge=2, le=MAX_WINDOW, description="rows before t for the turbulence mean/covariance")
    turbulence_history: int = Field(252, ge=1, le=MAX_WINDOW, description="trailing window of the turbulence percentile")
    turbulence_min_symbols: int = Field(5, ge=1, le=MAX_SYMBOLS, description="fewest full-coverage symbols for a turbulence reading")
    # --- spectral features (feat_spectral_regimes) ----------------------------------------------
    wavelet: str = Field("haar", max_length=20, description="orthogonal discrete PyWavelets wavelet")
    wavelet_level: int = Field(4, ge=1, le=10, description="DWT decomposition levels")
    wavelet_window: int = Field(64, ge=2, le=MAX_WINDOW, description="DWT window; a multiple of 2**wavelet_level")
    hf_levels: int = Field(1, ge=1, le=10, description="finest detail levels counted as high frequency")
    burst_fraction: float = Field(0.25, gt=0, lt=1, description="most recent share of the window for dwt_hf_burst")
    perm_order: int = Field(3, ge=2, le=7, description="permutation-entropy embedding dimension")
    perm_delay: int = Field(1, ge=1, le=252, description="permutation-entropy delay")
    perm_window: int = Field(63, ge=3, le=MAX_WINDOW, description="permutation-entropy window")
    spectral_alpha: float = Field(0.05, gt=0, lt=0.5, description="white-noise false-alarm rate of each spectral test")
    # --- hysteresis -------------------------------------------------------------------------------
    persistence: int = Field(3, ge=1, le=252, description="consecutive worse raw labels needed to enter a worse state")
    min_dwell: int = Field(5, ge=1, le=252, description="sessions a state is held before any move")
    # --- QUIET ------------------------------------------------------------------------------------
    quiet_vol_pct: float = Field(0.25, gt=0, lt=1, description="QUIET: vol_pct at most this ...")
    quiet_vol_ann: float = Field(0.15, gt=0, le=MAX_VOL_ANN, description="... and vol_ann at most this")
    quiet_turbulence_pct: float = Field(0.50, gt=0, lt=1, description="... and turbulence_pct below this (or none)")
    # --- TURBULENT --------------------------------------------------------------------------------
    turbulent_vol_ann: float = Field(0.25, gt=0, le=MAX_VOL_ANN, description="TURBULENT: vol_ann at least this ...")
    turbulent_vol_ratio: float = Field(2.0, gt=1, le=MAX_VOL_RATIO, description="... or vol_ann / vol_ref at least this")
    spectral_vol_pct: float = Field(0.80, gt=0, lt=1, description="spectral TURBULENT: vol_pct at least this ...")
    spectral_turbulence_pct: float = Field(0.90, gt=0, lt=1, description="... or turbulence_pct at least this ...")
    spectral_min_vol_ratio: float = Field(
        1.25, gt=0, le=MAX_VOL_RATIO, description="... and vol_ann / vol_ref at least this, with spectral evidence")
    # --- CRISIS -----------------------------------------------------------------------------------
    crisis_drawdown: float = Field(-0.15, gt=-1, lt=0, description="CRISIS: drawdown at most this and ...")
    crisis_vol_pct: float = Field(0.90, gt=0, lt=1, description="... vol_pct at least this, or ...")
    crisis_vol_ann: float = Field(0.40, gt=0, le=MAX_VOL_ANN, description="... vol_ann at least this, or ...")
    crisis_vol_ratio: float = Field(2.5, gt=1, le=MAX_VOL_RATIO, description="... vol_ann / vol_ref at least this")
    crisis_turbulence_pct: float = Field(0.95, gt=0, lt=1, description="CRISIS: turbulence_pct at least this and ...")
    crisis_turbulence_drawdown: float = Field(-0.10, gt=-1, lt=0, description="... drawdown at most this")

    @model_validator(mode="after")
    def _consistent(self) -> RegimeConfig:
        """Windows that fit together and thresholds in severity order (the rules assume both)."""
        import pywt  # light, but only the regime section needs it

        problems = []
        if self.wavelet not in pywt.wavelist(kind="discrete") or not pywt.Wavelet(self.wavelet).orthogonal:
            problems.append(f"wavelet={self.wavelet!r} must be an orthogonal discrete PyWavelets wavelet "
                            "(e.g. 'haar', 'db4')")
        if self.wavelet_window % (2**self.wavelet_level):
            problems.append(f"wavelet_window={self.wavelet_window} must be a multiple of "
                            f"2**wavelet_level = {2**self.wavelet_level}")
        if self.hf_levels > self.wavelet_level:
            problems.append(f"hf_levels={self.hf_levels} must not exceed wavelet_level={self.wavelet_level}")
        elif math.ceil(self.burst_fraction * (self.wavelet_window >> 1)) >= self.wavelet_window >> 1:
            problems.append(f"burst_fraction={self.burst_fraction} leaves no older finest-level coefficient "
                            f"in a wavelet_window of {self.wavelet_window}")
        if self.perm_window < (self.perm_order - 1) * self.perm_delay + 2:
            problems.append(f"perm_window={self.perm_window} must hold at least two ordinal patterns "
                            f"(>= (perm_order - 1) * perm_delay + 2)")
        if self.pct_min_history > min(self.vol_history, self.turbulence_history):
            problems.append(f"pct_min_history={self.pct_min_history} must not exceed vol_history and "
                            "turbulence_history")
        if self.vol_reference_window < self.vol_history:
            problems.append(f"vol_reference_window={self.vol_reference_window} must be at least "
                            f"vol_history={self.vol_history} (the long-run reference outlasts the relative one)")
        if not self.quiet_vol_ann < self.turbulent_vol_ann <= self.crisis_vol_ann:
            problems.append("need quiet_vol_ann < turbulent_vol_ann <= crisis_vol_ann, got "
                            f"{self.quiet_vol_ann}, {self.turbulent_vol_ann}, {self.crisis_vol_ann}")
        if not self.spectral_min_vol_ratio <= self.turbulent_vol_ratio <= self.crisis_vol_ratio:
            problems.append("need spectral_min_vol_ratio <= turbulent_vol_ratio <= crisis_vol_ratio, got "
                            f"{self.spectral_min_vol_ratio}, {self.turbulent_vol_ratio}, {self.crisis_vol_ratio}")
        if not self.quiet_vol_pct < self.spectral_vol_pct <= self.crisis_vol_pct:
            problems.append("need quiet_vol_pct < spectral_vol_pct <= crisis_vol_pct, got "
                            f"{self.quiet_vol_pct}, {self.spectral_vol_pct}, {self.crisis_vol_pct}")
        if not self.quiet_turbulence_pct < self.spectral_turbulence_pct <= self.crisis_turbulence_pct:
            problems.append("need quiet_turbulence_pct < spectral_turbulence_pct <= crisis_turbulence_pct, got "
                            f"{self.quiet_turbulence_pct}, {self.spectral_turbulence_pct}, "
                            f"{self.crisis_turbulence_pct}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


Linkage = Literal["single", "complete", "average", "ward"]


class OptimizationConfig(_Section):
    """Allocation engines (`quant.engines`): which run, their parameters and fallbacks."""

    engines: list[EngineName] = Field(default_factory=lambda: list(ENGINE_NAMES), min_length=1,
                                      max_length=len(ENGINE_NAMES), description="engines run, no repeats")
    production_engine: EngineName = Field("barbell", description="the engine whose weights become orders")
    kappa: float = Field(0.001, ge=0, le=1, description="turnover penalty per unit L1 turnover (daily-return units)")
    max_sharpe_l2: float = Field(0.1, ge=0, le=100, description="max_sharpe ridge, relative to the mean asset variance")
    risk_free: float = Field(0.0, ge=-0.001, le=0.001, description="max_sharpe: daily risk-free rate")
    shrinkage: Literal["ledoit_wolf", "sample"] = Field(
        "ledoit_wolf", description="covariance of the solver engines (HRP, HERC, inverse_vol use the sample one)"
    )
    min_observations: int = Field(60, ge=2, le=MAX_WINDOW, description="returns a symbol needs to enter an estimating engine")
    hrp_linkage: Linkage = Field("single", description="HRP's linkage (Lopez de Prado: single)")
    herc_linkage: Linkage = Field("ward", description="HERC's linkage (Raffinot: ward)")
    herc_n_clusters: int | None = Field(None, ge=1, le=MAX_CLUSTERS, description="HERC's clusters; null = the risk buckets")
    barbell_top_k: int = Field(3, ge=1, le=MAX_CLUSTERS, description="barbell's aggressor buckets (fewer when buckets are few)")
    aggressor_budget: dict[str, Annotated[float, Field(ge=0, lt=1)]] = Field(
        default_factory=lambda: dict(DEFAULT_AGGRESSOR_BUDGET), description="barbell's aggressor share per regime")
    max_beta_min_variance: float = Field(1.0, gt=0, le=100, description="weights_sanity: |beta| limit for min_variance")
    fallback_chain: dict[EngineName, list[EngineName]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_FALLBACK_CHAIN.items()},
        description="engine -> the engines tried in order when it fails",
    )
    force_fail: list[EngineName] = Field(default_factory=list, max_length=len(ENGINE_NAMES),
                                         description="ops/test hook: engines made to fail")

    @field_validator("aggressor_budget")
    @classmethod
    def _budget(cls, value: dict[str, float]) -> dict[str, float]:
        if set(value) != set(REGIME_LABELS):
            raise ValueError(f"aggressor_budget needs exactly the regimes {list(REGIME_LABELS)}")
        return value

    @field_validator("engines", "force_fail", mode="before")
    @classmethod
    def _known_engines(cls, value: Any) -> Any:
        if isinstance(value, list):
            unknown = sorted({e for e in value if isinstance(e, str)} - set(ENGINE_NAMES))
            if unknown:
                raise ValueError(f"unknown engine(s) {unknown}; engines: {list(ENGINE_NAMES)}")
            repeated = sorted({e for e in value if value.count(e) > 1})
            if repeated:
                raise ValueError(f"engine(s) listed twice: {repeated}")
        return value

    @field_validator("production_engine")
    @classmethod
    def _known_production_engine(cls, value: str) -> str:
        if value not in ENGINE_NAMES:
            raise ValueError(f"not an engine of the registry {list(ENGINE_NAMES)}")
        return value

    @field_validator("fallback_chain", mode="before")
    @classmethod
    def _known_chain(cls, value: Any) -> Any:
        for name, chain in value.items() if isinstance(value, dict) else ():
            unknown = [e for e in [name, *(chain if isinstance(chain, list) else [])] if e not in ENGINE_NAMES]
            if unknown:
                raise ValueError(f"fallback_chain[{name!r}] names unknown engine(s) {unknown}")
            if name in chain:
                raise ValueError(f"fallback_chain[{name!r}] falls back to itself")
        return value


class BacktestConfig(_Section):
    """Walk-forward tournament: windows in sessions, costs in basis points (1 bp = 0.01 %)."""

    train: int = Field(252, ge=20, le=MAX_WINDOW, description="training window (sessions)")
    test: int = Field(20, ge=1, le=MAX_WINDOW, description="test window (sessions)")
    step: int = Field(20, ge=1, le=MAX_WINDOW, description="sessions between two windows")
    slippage_bps: float = Field(5.0, ge=0, le=1000, description="per unit traded (bps)")
    commission_bps: float = Field(1.0, ge=0, le=1000, description="per unit traded (bps)")
    borrow_bps_annual: float = Field(50.0, ge=0, le=10_000, description="short borrow (bps a year)")
    simulators: list[Literal["idealized", "realized"]] = Field(
        default_factory=lambda: ["idealized", "realized"], min_length=1, max_length=2)  # type: ignore[arg-type]


class GistConfig(_Section):
    enabled: bool = False
    api_base: str = Field("https://api.github.com", pattern=r"^https?://[^\s/@]+(/\S*)?$", max_length=500)
    token_env: str = Field("PA_GIST_TOKEN", pattern=ENV_NAME_RE, description="environment variable holding the token")
    gist_id: str | None = Field(None, pattern=r"^[0-9A-Za-z]{1,64}$")
    public: bool = False


class ReportsConfig(_Section):
    top_engines: int = Field(3, ge=1, le=len(ENGINE_NAMES))
    golden_limit: int = Field(32, ge=1, le=10_000)
    quantstats_html: bool = True
    gist: GistConfig = Field(default_factory=GistConfig)


class LedgerConfig(_Section):
    signing: Literal["none", "hmac", "ed25519"] = "none"
    require_signatures: bool = False


class AlertSink(_Section):
    """One alert destination. `webhook` POSTs JSON to the URL in the environment variable `url_env`
    (`user:password@` in it is sent as HTTP basic auth); `slack` posts to `channel` with the token in
    `token_env`; `jsonl` appends to `<lakehouse>/<profile>/alerts/alerts.jsonl`. A failed attempt
    (no answer within `timeout_s`, a refused connection, HTTP 5xx or 429) is retried after
    `backoff_s`, doubling, up to `max_attempts`; then the alert goes to the dead-letter file."""

    kind: Literal["jsonl", "webhook", "slack"]
    url_env: str | None = Field(None, pattern=ENV_NAME_RE, description="webhook: variable holding the URL")
    token_env: str | None = Field(None, pattern=ENV_NAME_RE, description="slack: variable holding the token")
    channel: str | None = Field(None, min_length=1, max_length=200, description="slack: the channel")
    timeout_s: float = Field(5.0, gt=0, le=60, description="per attempt (s)")
    max_attempts: int = Field(3, ge=1, le=10, description="attempts per alert before the dead letter")
    backoff_s: float = Field(0.5, ge=0, le=30, description="wait before the 2nd attempt (s); doubles per attempt")

    @model_validator(mode="after")
    def _complete(self) -> AlertSink:
        needs = {"jsonl": (), "webhook": ("url_env",), "slack": ("token_env", "channel")}[self.kind]
        missing = [k for k in needs if getattr(self, k) is None]
        extra = [k for k in ("url_env", "token_env", "channel") if k not in needs and getattr(self, k) is not None]
        if missing or extra:
            raise ValueError(f"a {self.kind} sink " + "; ".join(
                ([f"needs {', '.join(missing)}"] if missing else []) + ([f"takes no {', '.join(extra)}"] if extra else [])))
        if self.worst_case_s > MAX_SINK_WAIT_S:
            raise ValueError(f"max_attempts x timeout_s plus the backoff waits is {self.worst_case_s:g} s per alert; "
                             f"at most {MAX_SINK_WAIT_S:g} s")
        return self

    @property
    def worst_case_s(self) -> float:
        """Longest one alert can take at this sink: every attempt timing out, every wait taken."""
        return self.max_attempts * self.timeout_s + self.backoff_s * (2 ** (self.max_attempts - 1) - 1)

    @property
    def key(self) -> str:
        """The sink's identity for idempotent delivery (names only, never a secret)."""
        return ":".join(str(p) for p in (self.kind, self.url_env or self.token_env, self.channel) if p)


class AlertsConfig(_Section):
    sinks: list[AlertSink] = Field(default_factory=lambda: [AlertSink(kind="jsonl")], max_length=20)
    on_warn: bool = True


class CeleryConfig(_Section):
    """`executor.kind: celery` (dagster-celery): the Redis broker the run submits steps to and the
    workers (`dagster-celery worker start`) listen on; results go back through `backend` (the
    broker's Redis when unset). docs/deployment.md has the commands."""

    broker: str = Field("redis://127.0.0.1:6379/0", pattern=r"^rediss?://\S+$", max_length=500,
                        description="Redis URL of the Celery broker")
    backend: str | None = Field(None, pattern=r"^rediss?://\S+$", max_length=500,
                                description="Redis URL of the Celery result backend (default: the broker)")

    @property
    def result_backend(self) -> str:
        return self.backend or self.broker


class ExecutorConfig(_Section):
    """Where the steps of one run execute. In-process is the default: on a 2-core machine it
    measured 25 s for the demo graph against 68-76 s multiprocess (step start-up dominates).
    `celery` submits each step to dagster-celery workers through a Redis broker (one host or many)."""

    kind: Literal["multiprocess", "in_process", "celery"] = "in_process"
    max_concurrent: int = Field(2, ge=1, le=256,
                                description="parallel step processes (multiprocess) or tournament batches (multiprocess, celery)")
    celery: CeleryConfig = Field(default_factory=CeleryConfig)


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

    source: SourceDelta = Field(default_factory=SourceDelta)  # type: ignore[assignment]
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
    source_json_schema(schema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "portfolio_assets manifest"
    return schema


def _deep_merge(base: dict[str, Any], delta: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in delta.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _set_dotted(target: dict[str, Any], dotted: str, value: Any, origin: str) -> None:
    node = target
    for p in dotted.split(".")[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ManifestError(origin, dotted, f"{p!r} is not a section")
    node[dotted.split(".")[-1]] = value


def _shown(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _cli_origin(dotted: str, value: Any) -> str:
    """How an override was written on the command line: `--set selection.top_n=0`."""
    return f"--set {dotted}={_shown(value if isinstance(value, str) else json.dumps(value))}"


def _parse_value(text: str, origin: str) -> Any:
    """A `--set`/`PA_*` value: JSON when it parses (no NaN, Infinity or duplicate keys), else the text."""
    try:
        return loads_strict(text)
    except json.JSONDecodeError:
        return text
    except StrictJSONError as exc:
        where = "" if exc.path == "$" else f"{exc.path}: "
        raise ManifestError("command line" if origin.startswith("--set") else "environment", origin,
                            f"{where}{exc.problem}") from None


def env_name(dotted: str) -> str:
    """The environment variable of a setting: `selection.top_n` -> `PA_SELECTION__TOP_N`."""
    return ENV_PREFIX + dotted.upper().replace(".", "__")


def env_overrides(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """The `PA_<SECTION>__<KEY>=<json>` overrides in `environ`.

    Returns `({"selection.top_n": 3}, {"selection.top_n": "PA_SELECTION__TOP_N=3"}, unknown)`:
    values (parsed as JSON when they parse), their origins, and the `PA_*` names that are neither a
    setting nor in `NON_OVERRIDE_ENV` (`resolve` refuses those not named by a `*_env` setting).
    """
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    unknown: list[str] = []
    for name, text in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name in NON_OVERRIDE_ENV:
            continue
        dotted = name[len(ENV_PREFIX):].lower().replace("__", ".")
        if "__" not in name or "" in dotted.split(".") or unknown_setting(Config, dotted) is not None:
            unknown.append(name)
            continue
        origins[dotted] = f"{name}={_shown(text)}"
        values[dotted] = _parse_value(text, origins[dotted])
    return values, origins, unknown


def _named_env(node: Any) -> set[str]:
    """Every variable name a `*_env` setting gives anywhere in `node` (a manifest or a config dump)."""
    if isinstance(node, Mapping):
        found = {v for k, v in node.items() if str(k).endswith("_env") and isinstance(v, str)}
        return found.union(*(_named_env(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_named_env(v) for v in node))
    return set()


def _key_hint(dotted: str, as_env: bool) -> str:
    """`did you mean ...?` for a misspelt key, else what the section (or the manifest) holds."""
    keys = list(setting_keys(Config))
    found = nearest_setting(dotted, keys)
    show = env_name if as_env else (lambda key: f"--set {key}=...")
    if found:
        return f"did you mean {show(found)}?"
    section = dotted.split(".")[0]
    if section in SECTIONS:
        return f"{section} has: " + ", ".join(k.split(".", 1)[1] for k in keys if k.count(".") == 1 and
                                               k.startswith(section + "."))
    return "sections: " + ", ".join(SECTIONS)


def _refuse_unknown_env(unknown: list[str], allowed: set[str]) -> None:
    """An unknown `PA_*` variable is a misspelt override far more often than anything else."""
    for name in unknown:
        if name in allowed:
            continue
        dotted = name[len(ENV_PREFIX):].lower().replace("__", ".")
        if "__" in name and dotted.split(".")[0] in SECTIONS:
            hint = _key_hint(dotted, as_env=True)
        else:
            guess = nearest(name.upper(), [env_name(k) for k in setting_keys(Config)] + sorted({*NON_OVERRIDE_ENV, *allowed}))
            hint = f"did you mean {guess}?" if guess else (
                "overrides are PA_<SECTION>__<KEY> (sections: " + ", ".join(SECTIONS) + "); the other PA_* "
                "variables are " + ", ".join(NON_OVERRIDE_ENV) + " and those *_env settings name")
        raise ManifestError("environment", name, f"unknown PA_* variable (not a setting); {hint}")


def load_manifest_file(path: Path | str = DEFAULT_MANIFEST) -> tuple[dict[str, Any], str]:
    """Read and schema-check the manifest; returns (raw dict, sha256 of the file bytes).

    Refused with the file named: unreadable files, text that is not UTF-8, invalid JSON, `NaN` or
    `Infinity` (and numbers beyond a float) and duplicate keys (with their JSON path), and anything
    the models refuse."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(path, "$", "file not found") from None
    except IsADirectoryError:
        raise ManifestError(path, "$", "is a directory, not a manifest file") from None
    except OSError as exc:
        raise ManifestError(path, "$", f"cannot be read: {exc.strerror or type(exc).__name__}") from None
    try:
        raw = loads_strict(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ManifestError(path, "$", f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                                       "the manifest is a JSON file") from None
    except json.JSONDecodeError as exc:
        raise ManifestError(path, "$", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except StrictJSONError as exc:
        raise ManifestError(path, exc.path, exc.problem) from None
    except RecursionError:
        raise ManifestError(path, "$", "nested too deeply") from None
    if not isinstance(raw, dict):
        raise ManifestError(path, "$", "the manifest must be a JSON object")
    raw.pop("$schema", None)
    try:
        ManifestFile.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        # A profile is `ProfileDelta | str`: pydantic names the union arm in the location.
        loc = [p for p in err["loc"] if p not in ("ProfileDelta", "str")]
        raise ManifestError(path, json_path(loc), _problem(err)) from None
    return raw, hashlib.sha256(data).hexdigest()


_problem = describe_error


def _related(a: list[str], b: list[str]) -> bool:
    """Whether one dotted path is the other or lies below it."""
    n = min(len(a), len(b))
    return a[:n] == b[:n]


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


def _origin(loc: list[str], origins: Mapping[str, str], profile: str) -> str:
    """` (from --set selection.top_n=0)`, ` (from PA_SELECTION__TOP_N=0)` or ` (from profile 'p')`: where a refused value came from."""
    hits = [label for key, label in origins.items() if _related(loc, key.split("."))]
    if not hits and loc[:2] == ["source", "settings"] and "source.kind" in origins:
        hits = [origins["source.kind"]]  # the override switched the kind these settings are judged by
    return f" (from {', '.join(hits)})" if hits else f" (from profile {profile!r})"


def resolve(
    profile: str | None = None,
    *,
    manifest_path: Path | str | None = None,
    cli_overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ResolvedManifest:
    """Resolve the active profile: CLI > PA_* env > profile > defaults > code defaults.

    Refused (`ManifestError`) before any work: a manifest problem (file and JSON path), an unknown
    `--set` key or `PA_*` variable (with the nearest valid one), a value out of bounds (with the
    override or profile it came from), a webhook URL that cannot work."""
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
    file_layers = [raw.get("defaults", {}), *deltas]
    merged: dict[str, Any] = {}
    for delta in file_layers:
        merged = _deep_merge(merged, {k: v for k, v in delta.items() if k != "source"})
    source_layers: list[tuple[str, Mapping[str, Any]]] = [("file", layer.get("source") or {}) for layer in file_layers]
    env_values, origins, unknown_env = env_overrides(environ)
    cli = dict(cli_overrides or {})
    for dotted, value in cli.items():
        bad = unknown_setting(Config, dotted)
        if bad is not None:
            raise ManifestError("command line", _cli_origin(dotted, value),
                                f"unknown setting {bad}; {_key_hint(dotted, as_env=False)}")
        origins[dotted] = _cli_origin(dotted, value)
    overrides: dict[str, Any] = {}
    for origin, items in (("environment", env_values), ("command line", cli)):
        for dotted, value in items.items():
            if not dotted.startswith("source."):
                _set_dotted(merged, dotted, value, origin)
            overrides[dotted] = value
        source_layers.append((origin, {k: v for k, v in items.items() if k.startswith("source.")}))
    try:
        merged["source"] = merge_source_layers(source_layers)
    except SourceLayerError as exc:
        raise ManifestError(exc.origin, exc.dotted, exc.problem) from None
    try:
        config = Config.model_validate(merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err["loc"]]
        also = "".join(f"; also {json_path(list(e['loc']))}: {_problem(e)}" for e in exc.errors()[1:4]
                       if [str(p) for p in e["loc"][:2]] == loc[:2] == ["source", "settings"])
        raise ManifestError(path, json_path(list(err["loc"])),
                            f"{_problem(err)}{_origin(loc, origins, name)}{also}") from None
    try:
        _check_semantics(config, path)
    except ManifestError as exc:
        loc = re.sub(r"\[\d+\]", "", exc.path).split(".")[1:]
        raise ManifestError(exc.file, exc.path, exc.problem + _origin(loc, origins, name)) from None
    _check_webhook_urls(config, environ)
    _refuse_unknown_env(unknown_env, _named_env(raw) | _named_env(config.model_dump(mode="json")))
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
    source = config.source
    if isinstance(source.settings, FilesSettings) and not source.settings.path.expanduser().is_dir():
        raise ManifestError(path, "$.source.settings.path",
                            f"{str(source.settings.path)!r} is not a directory (the exported bars, docs/real-data.md)")
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
    if opt.min_observations > bt.train:
        raise ManifestError(
            path, "$.optimization.min_observations",
            f"{opt.min_observations} > backtest.train = {bt.train}: the engines would drop every symbol",
        )
    if bt.train + bt.test > config.data.lookback_history:
        raise ManifestError(
            path, "$.backtest.train",
            f"train + test = {bt.train + bt.test} exceeds data.lookback_history = {config.data.lookback_history}",
        )


def _check_webhook_urls(config: Config, environ: Mapping[str, str]) -> None:
    """The URL a webhook sink will POST to, judged now rather than when a run has failed. An unset
    variable is not an error here: delivery keeps the alert in the dead letter until it is set."""
    for i, sink in enumerate(config.alerts.sinks):
        url = environ.get(sink.url_env) if sink.kind == "webhook" and sink.url_env else None
        if url is not None:
            try:
                parse_webhook_url(url)
            except ValueError as exc:
                raise ManifestError("environment", str(sink.url_env),
                                    f"the webhook URL of alerts.sinks[{i}]: {exc}") from None


def parse_cli_overrides(items: list[str]) -> dict[str, Any]:
    """`--set selection.top_n=3` items -> {"selection.top_n": 3} (values as in `_parse_value`)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ManifestError("command line", item, "expected --set section.key=value")
        key, value = item.split("=", 1)
        out[key.strip()] = _parse_value(value, f"--set {_shown(item.strip())}")
    return out
