"""Walk-forward windows and the per-engine tournament unit (SPEC §6 "Tournament (12)").

Windows. Over `n` sessions with `train`, `test`, `step` (the manifest's `backtest` section, 252 / 20 / 20), the number of
windows is `K = (n - train - test) // step + 1`. They are anchored at the most recent data: the
last test window ends at the last session, and window `j` counted back from the end has

    test_end   = n - j * step          (row positions, half-open [start, end))
    test_start = test_end - test
    train_end  = test_start            (train rows end strictly before the first test row)
    train_start = train_end - train

returned in chronological order with `k = 0 .. K-1`. The oldest `n - train - test - (K-1) * step`
rows are unused. `step < test` is refused: overlapping test windows would count days twice in
the stitched out-of-sample series.

Engine unit. `run_engine_walkforward` calls the engine's `fit(window, train_returns)` once per
window with *only* that window's train rows (`returns.iloc[train_start:train_end]`), then runs
every requested simulator (`quant.simulate`) over the resulting targets. The Dagster layer fans
this out per engine; `run_walkforward` is the plain in-process loop over engines used by the
reference path and tests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from portfolio_assets.quant.metrics import METRIC_COLUMNS, summarize
from portfolio_assets.quant.simulate import (
    SIMULATORS,
    SimulationResult,
    SimulatorParams,
    check_simulator,
    check_target_weights,
    simulate_aligned,
)


@dataclass(frozen=True)
class Window:
    """One walk-forward window: half-open row positions plus the inclusive first/last sessions."""

    k: int
    train_start: int
    train_end: int
    test_start: int
    test_end: int
    train_first: pd.Timestamp
    train_last: pd.Timestamp
    test_first: pd.Timestamp
    test_last: pd.Timestamp

    @property
    def train_rows(self) -> slice:
        """`slice(train_start, train_end)` for `DataFrame.iloc`."""
        return slice(self.train_start, self.train_end)

    @property
    def test_rows(self) -> slice:
        """`slice(test_start, test_end)` for `DataFrame.iloc`."""
        return slice(self.test_start, self.test_end)


@dataclass(frozen=True)
class WeightsDecision:
    """An engine's answer for one window: target weights plus diagnostics to keep with the window.

    `weights`: symbol -> non-negative weight summing to 1 (synthetic-long streams).
    `diagnostics`: free-form, e.g. `{"fallbacks": [...], "violations": [...]}`; stored per window.
    """

    weights: pd.Series
    diagnostics: Mapping[str, Any] = field(default_factory=dict)


FitFn = Callable[[Window, pd.DataFrame], WeightsDecision | pd.Series]
"""`fit(window, train_returns)` -> a `WeightsDecision` (or bare weights, meaning no diagnostics)."""


def _positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer number of sessions, got {value!r}")
    return value


def make_windows(sessions: pd.DatetimeIndex, train: int, test: int, step: int) -> list[Window]:
    """Walk-forward windows over `sessions`, most recent data last (formulas in the module docstring).

    `sessions` must be a strictly increasing `DatetimeIndex` (the returns matrix's index).
    Raises `ValueError` when the history is shorter than `train + test` sessions.
    """
    train, test, step = (_positive_int(v, n) for v, n in ((train, "train"), (test, "test"), (step, "step")))
    if step < test:
        raise ValueError(
            f"step ({step}) must be >= test ({test}); overlapping test windows double-count days"
        )
    if not isinstance(sessions, pd.DatetimeIndex):
        raise ValueError(f"sessions must be a pd.DatetimeIndex, got {type(sessions).__name__}")
    if not sessions.is_monotonic_increasing or not sessions.is_unique:
        raise ValueError("sessions must be strictly increasing (sorted, no duplicates)")
    n = len(sessions)
    if n < train + test:
        raise ValueError(
            f"history has {n} sessions; walk-forward needs at least train + test = {train + test}"
        )
    count = (n - train - test) // step + 1
    windows = []
    for k in range(count):
        test_end = n - (count - 1 - k) * step
        test_start = test_end - test
        train_start = test_start - train
        windows.append(
            Window(
                k=k,
                train_start=train_start,
                train_end=test_start,
                test_start=test_start,
                test_end=test_end,
                train_first=sessions[train_start],
                train_last=sessions[test_start - 1],
                test_first=sessions[test_start],
                test_last=sessions[test_end - 1],
            )
        )
    return windows


@dataclass(frozen=True)
class EngineWalkForward:
    """One engine's walk-forward: per-window decisions and, per simulator, the simulated path."""

    engine: str
    windows: tuple[Window, ...]
    decisions: tuple[WeightsDecision, ...]
    simulations: Mapping[str, SimulationResult]

    def returns_frame(self) -> pd.DataFrame:
        """Daily out-of-sample net returns, index `session`, one column per simulator."""
        return pd.DataFrame({name: sim.returns for name, sim in self.simulations.items()})

    def weights_frame(self) -> pd.DataFrame:
        """Target weights per window: index `k`, columns symbols (0 where not held)."""
        frame = pd.DataFrame([d.weights for d in self.decisions], index=[w.k for w in self.windows])
        frame.index.name = "k"
        return frame.fillna(0.0)

    def window_table(self, rf: float = 0.0) -> pd.DataFrame:
        """Per simulator x window: sessions, `METRIC_COLUMNS` of the window's returns, cost breakdown.

        Window metrics are annualized like the summary (a 20-session CAGR is an annualized rate).
        """
        rows = []
        for name, sim in self.simulations.items():
            for window, ws in zip(self.windows, sim.windows, strict=True):
                rows.append(
                    {
                        "engine": self.engine,
                        "simulator": name,
                        "k": window.k,
                        "train_first": window.train_first,
                        "train_last": window.train_last,
                        "test_first": window.test_first,
                        "test_last": window.test_last,
                        **summarize(ws.returns, ws.turnover_one_way, ws.costs_paid, rf),
                        "traded_notional": ws.traded_notional,
                        "trading_cost": ws.trading_cost,
                        "borrow_cost": ws.borrow_cost,
                        "nan_returns_held": ws.nan_returns_held,
                    }
                )
        return pd.DataFrame(rows)

    def summary(self, rf: float = 0.0) -> pd.DataFrame:
        """One row per simulator (index `simulator`): `METRIC_COLUMNS` of the stitched daily returns.

        `turnover_one_way` and `costs_paid` are totals over all windows (fractions of NAV).
        """
        rows = {
            name: {
                "engine": self.engine,
                **summarize(sim.returns, sim.turnover_one_way, sim.costs_paid, rf),
                "nan_returns_held": sim.nan_returns_held,
            }
            for name, sim in self.simulations.items()
        }
        table = pd.DataFrame.from_dict(rows, orient="index")
        table.index.name = "simulator"
        return table


def _check_windows_match(windows: Sequence[Window], sessions: pd.Index) -> None:
    if not windows:
        raise ValueError("walk-forward needs at least one window")
    for w in windows:
        if (
            w.test_end > len(sessions)
            or sessions[w.train_start] != w.train_first
            or sessions[w.test_end - 1] != w.test_last
        ):
            raise ValueError(f"window {w.k} was built for a different session index than the returns matrix")


def run_engine_walkforward(
    engine_name: str,
    returns: pd.DataFrame,
    directions: pd.Series,
    windows: Sequence[Window],
    fit: FitFn,
    params: SimulatorParams,
    simulators: Sequence[str] = SIMULATORS,
) -> EngineWalkForward:
    """Fit `engine_name` on each window's train rows and simulate its targets with each simulator.

    `returns`: synthetic-long returns matrix whose index the `windows` were built from.
    `fit` sees `returns.iloc[window.train_start:window.train_end]` (a copy) and nothing later.
    Invalid targets raise `ValueError` naming the engine and window; unknown simulator names raise
    before any fitting.
    """
    for name in simulators:
        check_simulator(name)
    _check_windows_match(windows, returns.index)
    decisions = []
    targets = []
    for window in windows:
        decision = fit(window, returns.iloc[window.train_rows].copy())
        if isinstance(decision, pd.Series):
            decision = WeightsDecision(decision)
        if not isinstance(decision, WeightsDecision):
            raise ValueError(
                f"engine {engine_name!r} window {window.k}: fit must return WeightsDecision or pd.Series, "
                f"got {type(decision).__name__}"
            )
        targets.append(check_target_weights(decision.weights, returns.columns,
                                            f"engine {engine_name!r} window {window.k}"))
        decisions.append(decision)
    simulations = {name: simulate_aligned(name, returns, directions, windows, targets, params) for name in simulators}
    return EngineWalkForward(
        engine=engine_name, windows=tuple(windows), decisions=tuple(decisions), simulations=simulations
    )


def run_walkforward(
    returns: pd.DataFrame,
    directions: pd.Series,
    windows: Sequence[Window],
    engines: Mapping[str, FitFn],
    params: SimulatorParams,
    simulators: Sequence[str] = SIMULATORS,
) -> dict[str, EngineWalkForward]:
    """The whole tournament in-process: `run_engine_walkforward` for every engine, in order."""
    return {
        name: run_engine_walkforward(name, returns, directions, windows, fit, params, simulators)
        for name, fit in engines.items()
    }


def summary_table(results: Mapping[str, EngineWalkForward], rf: float = 0.0) -> pd.DataFrame:
    """Engine x simulator summary: columns `engine`, `simulator`, `METRIC_COLUMNS`, `nan_returns_held`."""
    frames = [r.summary(rf).reset_index() for r in results.values()]
    columns = ["engine", "simulator", *METRIC_COLUMNS, "nan_returns_held"]
    return pd.concat(frames, ignore_index=True)[columns]
