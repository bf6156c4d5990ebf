"""The section models and their defaults (the one home of every default), the whole `Config`, the file's
shape (`ManifestFile`, `ProfileDelta`), `ResolvedManifest` and the JSON schema generated from them."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from portfolio_assets.constants import (
    DEFAULT_AGGRESSOR_BUDGET,
    DEFAULT_FALLBACK_CHAIN,
    ENGINE_NAMES,
    REGIME_LABELS,
)
from portfolio_assets.manifest.base import (
    ENV_NAME_RE,
    MAX_CLUSTERS,
    MAX_RECOVERY_WAIT_S,
    MAX_SINK_WAIT_S,
    MAX_SYMBOLS,
    MAX_VOL_ANN,
    MAX_VOL_RATIO,
    MAX_WINDOW,
    EngineName,
    _Section,
)
from portfolio_assets.sources.settings import (
    SourceConfig,
    SourceDelta,
    source_json_schema,
)
from portfolio_assets.symbols import SYMBOL_RE


class DataConfig(_Section):
    """Price history (`data`): window lengths in sessions, the health gate and the repair of gaps and stale
    bars; the backoff waits of one repair range must stay within `MAX_RECOVERY_WAIT_S`."""
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
    """One scan of a discovery family: its name, long or short direction, the source-specific `filter`,
    `sort` and `timeframes`, and at most `limit` rows."""
    name: str = Field(min_length=1, max_length=200)
    direction: Literal["long", "short"] = "long"
    market: str | None = Field(None, min_length=1, max_length=100)
    filter: list[dict[str, Any]] = Field(default_factory=list)
    sort: dict[str, Any] = Field(default_factory=lambda: {"sortBy": "Value.Traded", "sortOrder": "desc"})
    limit: int = Field(100, ge=1, le=MAX_SYMBOLS, description="most rows the preset returns")
    timeframes: list[dict[str, Any]] = Field(default_factory=list)


class ScannerFamily(_Section):
    """The presets of one asset-class scanner (at most 100); a disabled family is not scanned."""
    enabled: bool = True
    presets: list[ScannerPreset] = Field(default_factory=list, max_length=100)


class DiscoveryConfig(_Section):
    """Discovery (`discovery`): the scanner family of each asset class (equity, crypto, bond, forex,
    futures); a family left out is not scanned."""
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
    """Risk buckets (`risk`): the hierarchical-clustering cut (`threshold`, `max_clusters`) and the caps per
    bucket and per symbol that `weights_sanity` enforces within `weights_tolerance`."""
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
    """Publishing the golden bundle to a GitHub Gist (`reports.gist`), off by default; the token is read
    from the environment variable that `token_env` names."""
    enabled: bool = False
    api_base: str = Field("https://api.github.com", pattern=r"^https?://[^\s/@]+(/\S*)?$", max_length=500)
    token_env: str = Field("PA_GIST_TOKEN", pattern=ENV_NAME_RE, description="environment variable holding the token")
    gist_id: str | None = Field(None, pattern=r"^[0-9A-Za-z]{1,64}$")
    public: bool = False


class ReportsConfig(_Section):
    """Reports (`reports`): tear-sheets for the `top_engines` best engines, the golden bundle of at most
    `golden_limit` files, the QuantStats HTML pages and Gist publishing."""
    top_engines: int = Field(3, ge=1, le=len(ENGINE_NAMES))
    golden_limit: int = Field(32, ge=1, le=10_000)
    quantstats_html: bool = True
    # Which tear-sheets also get a QuantStats HTML page (most of a report's time, ~14 matplotlib
    # figures a page): the production engine's (under every simulator) or every tear-sheet's.
    quantstats_pages: Literal["production", "all"] = "production"
    gist: GistConfig = Field(default_factory=GistConfig)


class LedgerConfig(_Section):
    """The audit ledger (`ledger`): how records are signed (`none`; `hmac` with the key in
    `PA_LEDGER_HMAC_KEY`; `ed25519` with `PA_LEDGER_ED25519_KEY` to sign and
    `PA_LEDGER_ED25519_PUBLIC_KEY` to verify) and whether verification requires signatures."""
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
    """Alerts (`alerts`): up to 20 sinks (default: one `jsonl` sink) and whether failed WARN checks
    alert too (`on_warn`)."""
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
        """The Celery result backend URL: `backend`, or the broker's when unset."""
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
    """Feature flags (`features`): switches for optional behaviours (turnover penalty, partial rebalance,
    cross-sectional momentum, spectral regimes, decay audit, audit ledger, point-in-time fidelity); a flag
    the manifest does not set is on."""
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
    """The manifest file as written: `defaults`, the named `profiles` (a delta, or a string naming the
    profile it aliases) and the `default_profile`; unknown keys are refused."""
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
        """The profile, where it came from, `config_hash`, the overrides and the resolved config as one
        JSON-ready dict."""
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
