"""Names and numbers shared by the manifest, `quant/`, the assets and the reports: one place each.

Nothing here depends on Dagster or on any other module of the package, so `quant/` can import it.
Mappings are read-only views; a caller that needs a mutable copy makes one (`dict(...)`).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

# --- time --------------------------------------------------------------------------------------
PERIODS_PER_YEAR: Final = 252
"""Master-calendar (XNYS) sessions per year: every annualization (volatility, CAGR, Sharpe, borrow)."""

# --- regimes -----------------------------------------------------------------------------------
QUIET: Final = "QUIET"
NORMAL: Final = "NORMAL"
TURBULENT: Final = "TURBULENT"
CRISIS: Final = "CRISIS"
REGIME_LABELS: Final[tuple[str, ...]] = (QUIET, NORMAL, TURBULENT, CRISIS)
"""Regime labels, mildest first (the order is the severity used by hysteresis)."""

# --- engines -----------------------------------------------------------------------------------
ENGINE_NAMES: Final[tuple[str, ...]] = (
    "market",
    "raw_pool_ew",
    "equal_weight",
    "inverse_vol",
    "min_variance",
    "risk_parity",
    "hrp",
    "herc",
    "max_sharpe",
    "barbell",
)
"""Every allocation engine, in report order."""

BENCHMARK_ENGINES: Final = frozenset({"market", "raw_pool_ew", "equal_weight"})
"""Honest baselines: they hold what their name says, so no cap applies to them."""

SOLVER_ENGINES: Final = frozenset({"min_variance", "risk_parity", "max_sharpe"})
"""Engines that solve a convex program (Clarabel, `quant.engines.conic`)."""

DEFAULT_AGGRESSOR_BUDGET: Final = MappingProxyType({QUIET: 0.15, NORMAL: 0.10, TURBULENT: 0.08, CRISIS: 0.05})
"""Barbell's aggressor budget per regime (fraction of the book)."""

DEFAULT_FALLBACK_CHAIN: Final = MappingProxyType({
    "max_sharpe": ("min_variance", "inverse_vol"),
    "min_variance": ("inverse_vol",),
    "risk_parity": ("inverse_vol",),
    "hrp": ("inverse_vol",),
    "herc": ("inverse_vol",),
    "barbell": ("hrp", "inverse_vol"),
})
"""Engine -> the engines tried in order when it fails (every fallback is recorded)."""

TERMINAL_ENGINE: Final = "equal_weight"
"""Tried after every fallback chain is exhausted: 1/N over the universe needs no estimate, so it
runs when no symbol has enough data for any estimating engine (recorded like any fallback)."""

# --- simulators and scanners -------------------------------------------------------------------
SIMULATORS: Final[tuple[str, ...]] = ("idealized", "realized")
"""Tournament simulators: zero friction, and slippage + commission + borrow."""

SCANNER_FAMILIES: Final[tuple[str, ...]] = ("equity", "crypto", "bond", "forex")
"""Discovery's scanner families (one `<family>_scan` asset each)."""

# One writer per partition: the lock file beside its ledger (`cli.partition_lock`, `Lakehouse.writer_lock_holder`).
WRITER_LOCK = "writer.lock"
