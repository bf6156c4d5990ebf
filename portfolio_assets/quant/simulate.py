"""Out-of-sample simulators of the walk-forward tournament (SPEC §6 "Tournament (12)").

Both simulators run on *synthetic-long* return streams (`quant.convention.synthetic_long`), so
every weight is a non-negative long position in a stream; `directions` is passed separately only
so that positions in short-direction streams can be charged borrow.

Book mechanics, shared by both simulators. At the start of test window `k` (the close of its last
train session) the book is rebalanced to the target weights `w*`. Within the window the weights
drift with prices (buy and hold):

    r_p,t = sum_i w_i,t-1 * r_i,t
    w_i,t = w_i,t-1 * (1 + r_i,t) / (1 + r_p,t)

computed in closed form per window: with `G_i,t = prod_{s<=t}(1 + r_i,s)` and `V_t = sum_i w*_i G_i,t`
(`V_0 = 1`), `r_p,t = V_t / V_t-1 - 1` and `w_i,t = w*_i G_i,t / V_t`.

* `idealized`: zero friction.
* `realized`: the same drift, plus costs deducted from the daily return (fractions of NAV):
    - trading: `(slippage_bps + commission_bps) / 1e4 * traded_notional` on the first test day of
      each window, with `traded_notional = sum_i |w*_i - w_i^drifted|`;
    - borrow: `borrow_bps_annual / 1e4 / 252 * sum_{i short} w_i,t-1` every test day (start-of-day
      weights of short-direction streams).
  Costs are paid pro rata from all positions, so they lower NAV but leave the weights, and
  therefore the drift and the turnover, identical to `idealized`. A cost is subtracted from the
  day's return (`r_net = r_p - cost`; the second-order `cost * r_p` term is ignored).

Holdings are carried between windows: the drifted end-of-window weights are the book the next
window trades from. The first window always starts from an *empty* book (100% cash), so its
traded notional is 1.0 -- never from today's holdings. Turnover is reported one-way,
`turnover_one_way = 0.5 * (sum_i |w*_i - w_i^drifted| + |cash* - cash^drifted|)`; the cash leg is
zero between fully invested books (then it is `0.5 * sum_i |dw_i|`) and makes the initial build
from cash count as 1.0. Both simulators report the same turnover; only `realized` pays for it.

Missing data: a `NaN` return of a held stream inside a test window is booked as a 0% return for
that day (the position is carried at its last price) and counted in `nan_returns_held`, so reports
can flag it; it is never dropped silently.

Windows are expected to tile the test rows without overlap (`step >= test`); with `step > test`
the sessions between two test windows are not simulated and the book is carried unchanged across
them.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from portfolio_assets.constants import PERIODS_PER_YEAR, SIMULATORS
from portfolio_assets.quant.convention import _check_directions

if TYPE_CHECKING:
    from portfolio_assets.manifest import BacktestConfig
    from portfolio_assets.quant.walkforward import Window

WEIGHT_SUM_TOLERANCE = 1e-6


@dataclass(frozen=True)
class SimulatorParams:
    """Friction of the `realized` simulator, all in basis points (1 bp = 1e-4).

    `slippage_bps` and `commission_bps` are charged per unit of traded notional (per side);
    `borrow_bps_annual` is an annual rate on short-direction positions, charged daily as
    `borrow_bps_annual / 1e4 / 252`. The manifest's `backtest` section holds the values
    (:func:`simulator_params`); no defaults here.
    """

    slippage_bps: float
    commission_bps: float
    borrow_bps_annual: float

    def __post_init__(self) -> None:
        for name in ("slippage_bps", "commission_bps", "borrow_bps_annual"):
            value = getattr(self, name)
            if not (isinstance(value, numbers.Real) and math.isfinite(value) and float(value) >= 0):
                raise ValueError(f"SimulatorParams.{name} must be a finite number >= 0, got {value!r}")

    @property
    def trade_cost_rate(self) -> float:
        """Cost per unit of traded notional, `(slippage_bps + commission_bps) / 1e4` (fraction)."""
        return (self.slippage_bps + self.commission_bps) / 1e4

    @property
    def borrow_rate_daily(self) -> float:
        """Daily borrow cost per unit of short weight, `borrow_bps_annual / 1e4 / 252` (fraction)."""
        return self.borrow_bps_annual / 1e4 / PERIODS_PER_YEAR


def simulator_params(backtest: BacktestConfig) -> SimulatorParams:
    """The one mapping from the manifest's `backtest` section onto :class:`SimulatorParams`."""
    return SimulatorParams(slippage_bps=backtest.slippage_bps, commission_bps=backtest.commission_bps,
                           borrow_bps_annual=backtest.borrow_bps_annual)


@dataclass(frozen=True)
class WindowSimulation:
    """One simulated test window. Costs are fractions of NAV, summed over the window's days."""

    k: int
    returns: pd.Series
    """Daily net portfolio returns over the window's test sessions (index `session`)."""
    target_weights: pd.Series
    """Book right after the rebalance at the window start (the engine's target)."""
    end_weights: pd.Series
    """Drifted book at the last test close; the next window trades from it."""
    traded_notional: float
    """`sum_i |w*_i - w_i^drifted|` at the window's rebalance."""
    turnover_one_way: float
    """Half the traded notional including the cash leg (1.0 for the build from cash)."""
    trading_cost: float
    """`trade_cost_rate * traded_notional` (0 for `idealized`)."""
    borrow_cost: float
    """Sum over the window's days of `borrow_rate_daily * sum_{i short} w_i,t-1` (0 for `idealized`)."""
    nan_returns_held: int
    """Number of (day, held stream) cells whose return was NaN and was booked as 0%."""

    @property
    def costs_paid(self) -> float:
        """`trading_cost + borrow_cost` (fraction of NAV)."""
        return self.trading_cost + self.borrow_cost


@dataclass(frozen=True)
class SimulationResult:
    """One simulator's path over all windows of one engine."""

    simulator: str
    params: SimulatorParams
    windows: tuple[WindowSimulation, ...]
    returns: pd.Series
    """Daily net returns of all test windows, stitched in order (index `session`)."""

    @property
    def turnover_one_way(self) -> float:
        """Total one-way turnover over all rebalances, including the build from cash (fraction of NAV)."""
        return float(sum(w.turnover_one_way for w in self.windows))

    @property
    def costs_paid(self) -> float:
        """Total trading + borrow costs (sum of daily deductions, fractions of NAV)."""
        return float(sum(w.costs_paid for w in self.windows))

    @property
    def nan_returns_held(self) -> int:
        """Total count of held-stream NaN returns booked as 0%."""
        return int(sum(w.nan_returns_held for w in self.windows))


def check_simulator(name: str) -> str:
    """Return `name` if it is one of `SIMULATORS`; otherwise raise (never fall back to another)."""
    if name not in SIMULATORS:
        raise ValueError(f"unknown simulator {name!r}; expected one of {SIMULATORS}")
    return name


def check_target_weights(weights: pd.Series, columns: pd.Index, where: str) -> np.ndarray:
    """Validate target weights and return them aligned to `columns` (absent symbols -> 0).

    Targets must be finite, non-negative, name only symbols of the returns matrix and sum to 1
    (within `WEIGHT_SUM_TOLERANCE`): the tournament is fully invested and long-only on
    synthetic-long streams. Nothing is renormalized here -- a bad target is an engine bug.
    """
    if not isinstance(weights, pd.Series):
        raise ValueError(f"{where}: target weights must be a pd.Series symbol -> weight, got {type(weights)}")
    if not weights.index.is_unique:
        raise ValueError(f"{where}: target weights have duplicate symbols")
    unknown = weights.index.difference(columns)
    if len(unknown):
        raise ValueError(
            f"{where}: target weights name symbols not in the returns matrix: {list(unknown[:3])}"
        )
    w = weights.to_numpy(dtype=float)
    if not np.isfinite(w).all():
        raise ValueError(f"{where}: target weights contain NaN or inf")
    if (w < 0).any():
        raise ValueError(f"{where}: target weights must be non-negative (synthetic-long), min {w.min():.6g}")
    if abs(w.sum() - 1.0) > WEIGHT_SUM_TOLERANCE:
        raise ValueError(f"{where}: target weights must sum to 1 (fully invested), sum {w.sum():.9g}")
    return weights.reindex(columns, fill_value=0.0).to_numpy(dtype=float)


def _drift_window(test_returns: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Buy-and-hold drift of `target` over a (days x streams) block of returns without NaN.

    Returns `(gross daily portfolio returns [T], start-of-day weights [T x N], end weights [N])`.
    A book wiped out to zero value earns 0% afterwards and ends empty.
    """
    growth = np.cumprod(1.0 + test_returns, axis=0)
    value = growth @ target
    value_prev = np.concatenate(([target.sum()], value[:-1]))
    alive = value_prev > 0
    gross = np.divide(value, value_prev, out=np.ones_like(value), where=alive) - 1.0
    growth_prev = np.vstack((np.ones((1, target.size)), growth[:-1]))
    start_weights = np.divide(
        growth_prev * target, value_prev[:, None], out=np.zeros_like(growth_prev), where=alive[:, None]
    )
    end_weights = growth[-1] * target / value[-1] if value[-1] > 0 else np.zeros_like(target)
    return gross, start_weights, end_weights


def simulate(
    simulator: str,
    returns: pd.DataFrame,
    directions: pd.Series,
    windows: Sequence[Window],
    targets: Sequence[pd.Series],
    params: SimulatorParams,
) -> SimulationResult:
    """Simulate one engine's targets over its walk-forward test windows.

    `returns` is the full synthetic-long returns matrix (index sessions, columns symbols); only
    rows `window.test_start:window.test_end` of each window are read. `targets[k]` is the target
    book for `windows[k]`. `idealized` ignores `params`.
    See the module docstring for the formulas.
    """
    check_simulator(simulator)
    if len(windows) != len(targets):
        raise ValueError(f"got {len(windows)} windows but {len(targets)} target weight vectors")
    aligned = [check_target_weights(w, returns.columns, f"window {win.k}")
               for win, w in zip(windows, targets, strict=True)]
    return simulate_aligned(simulator, returns, directions, windows, aligned, params)


def simulate_aligned(
    simulator: str,
    returns: pd.DataFrame,
    directions: pd.Series,
    windows: Sequence[Window],
    targets: Sequence[np.ndarray],
    params: SimulatorParams,
) -> SimulationResult:
    """:func:`simulate` with targets already checked by :func:`check_target_weights` (arrays
    aligned to ``returns.columns``): the walk-forward checks each target once for every simulator."""
    check_simulator(simulator)
    if len(windows) != len(targets):
        raise ValueError(f"got {len(windows)} windows but {len(targets)} target weight vectors")
    if not windows:
        raise ValueError("simulate needs at least one window")
    for prev, cur in zip(windows, windows[1:], strict=False):
        if cur.test_start < prev.test_end:
            raise ValueError(
                f"test windows overlap or are out of order: window {prev.k} ends at row {prev.test_end}, "
                f"window {cur.k} starts at row {cur.test_start}"
            )
    if windows[-1].test_end > len(returns):
        raise ValueError(
            f"window {windows[-1].k} ends at row {windows[-1].test_end}, returns have {len(returns)}"
        )

    columns = returns.columns
    short = (_check_directions(directions, columns) == "short").to_numpy()
    friction = simulator == "realized"
    trade_rate = params.trade_cost_rate if friction else 0.0
    borrow_rate = params.borrow_rate_daily if friction else 0.0
    values = returns.to_numpy(dtype=float)

    book = np.zeros(len(columns))  # the first window trades from cash, never from today's holdings
    results: list[WindowSimulation] = []
    for window, target in zip(windows, targets, strict=True):
        block = values[window.test_start : window.test_end]
        missing = np.isnan(block)
        nan_held = int(missing[:, target > 0].sum())
        gross, start_weights, end_weights = _drift_window(np.where(missing, 0.0, block), target)

        traded = float(np.abs(target - book).sum())
        cash_leg = abs((1.0 - target.sum()) - (1.0 - book.sum()))
        borrow = borrow_rate * start_weights[:, short].sum(axis=1)
        net = gross - borrow
        net[0] -= trade_rate * traded

        index = returns.index[window.test_start : window.test_end]
        results.append(
            WindowSimulation(
                k=window.k,
                returns=pd.Series(net, index=index, name=simulator),
                target_weights=pd.Series(target, index=columns),
                end_weights=pd.Series(end_weights, index=columns),
                traded_notional=traded,
                turnover_one_way=0.5 * (traded + cash_leg),
                trading_cost=trade_rate * traded,
                borrow_cost=float(borrow.sum()),
                nan_returns_held=nan_held,
            )
        )
        book = end_weights

    stitched = pd.concat([w.returns for w in results])
    stitched.index.name = "session"
    return SimulationResult(simulator=simulator, params=params, windows=tuple(results), returns=stitched)
