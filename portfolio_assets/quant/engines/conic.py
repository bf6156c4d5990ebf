"""A small conic program, assembled as matrices and solved by Clarabel directly.

    minimize    0.5 x'Px + q'x
    subject to  A x + s = b,  s in K  (K a product of zero, non-negative, second-order and
                exponential cones, in the order the rows were added)

The convex engines write their programs here instead of through cvxpy. Measured per window
of capped minimum variance (``benchmarks/convex_formulations.py``, Clarabel at 1e-10 in all
three): at N = 60, 3.5-6 ms here vs 8-12 ms re-solving one parameterized (DPP) cvxpy problem
vs 37-42 ms rebuilding and re-compiling a cvxpy problem per window; at N = 200, 43-45 ms vs
255-300 ms (DPP) vs 102-116 ms (rebuild). It also keeps cvxpy's import (seconds) out of every
step process. Every program is cross-checked against the same program in cvxpy, and the
engines against skfolio / riskfolio-lib, in the tests.

Row helpers take ``A`` as a dense or sparse block over all variables (use :meth:`Program.cols`
to place a block) and follow Clarabel's convention ``s = b - A x``:

- ``eq(A, b)``: A x = b (zero cone);
- ``le(A, b)``: A x <= b (non-negative cone);
- ``soc(A, b)``: b - A x in the second-order cone, i.e. ``(b - A x)[0] >= ||(b - A x)[1:]||``;
- ``exp_le_log(t, y)``: ``x_t <= log(x_y)`` for index vectors t, y: the 3-d exponential cone
  ``{(u, v, w): v exp(u / v) <= w}`` on ``(x_t, 1, x_y)``.

Solve (:func:`solve`): Clarabel at tight tolerances (1e-10); when that does not end
``optimal``, a fresh solver at Clarabel's default tolerances (1e-8, written out). The status
string records every attempt; an infeasible or unbounded answer is final.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from portfolio_assets.quant.engines.base import EngineFailure

TIGHT = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}
"""Tighter than Clarabel's defaults: min-variance weights (flat objective near the optimum) are
then stable to ~1e-6."""
DEFAULT = {"tol_gap_abs": 1e-8, "tol_gap_rel": 1e-8, "tol_feas": 1e-8}
"""Clarabel's default tolerances, written out: the retry after a tight solve that did not end
``optimal``."""
ATTEMPTS: tuple[tuple[str, dict[str, float]], ...] = (("1e-10", TIGHT), ("1e-8", DEFAULT))

# Clarabel's statuses in the vocabulary of cvxpy (what the diagnostics have always said).
_STATUS = {
    "Solved": "optimal", "AlmostSolved": "optimal_inaccurate", "PrimalInfeasible": "infeasible",
    "AlmostPrimalInfeasible": "infeasible_inaccurate", "DualInfeasible": "unbounded",
    "AlmostDualInfeasible": "unbounded_inaccurate", "MaxIterations": "user_limit (max iterations)",
    "MaxTime": "user_limit (time)", "NumericalError": "solver_error (numerical)",
    "InsufficientProgress": "solver_error (insufficient progress)",
}
_FINAL = ("infeasible", "unbounded")


class Program:
    """Variables ``x`` of size ``n``; objective and cone rows added in order (see module doc)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.P = sp.csc_array((n, n))
        self.q = np.zeros(n)
        self._blocks: list[tuple[str, Any, np.ndarray, int]] = []

    def cols(self, block: Any, start: int) -> sp.csr_array:
        """``block`` (rows x k) placed at variable columns ``start .. start + k`` of a full row block."""
        b = sp.csr_array(block if sp.issparse(block) else np.atleast_2d(np.asarray(block, dtype=float)))
        left = sp.csr_array((b.shape[0], start))
        right = sp.csr_array((b.shape[0], self.n - start - b.shape[1]))
        return sp.hstack([left, b, right], format="csr")

    def _add(self, kind: str, a: Any, b: Any, dim: int = 0) -> None:
        a = sp.csr_array(a if sp.issparse(a) else np.atleast_2d(np.asarray(a, dtype=float)))
        if a.shape[1] != self.n:
            raise ValueError(f"constraint block has {a.shape[1]} columns, program has {self.n} variables")
        self._blocks.append((kind, a, np.atleast_1d(np.asarray(b, dtype=float)), dim))

    def eq(self, a: Any, b: Any) -> None:
        """Add `a @ x == b` (Clarabel's zero cone)."""
        self._add("zero", a, b)

    def le(self, a: Any, b: Any) -> None:
        """Add `a @ x <= b` (nonnegative cone on `b - a @ x`)."""
        self._add("nonneg", a, b)

    def soc(self, a: Any, b: Any) -> None:
        """Add `b - a @ x` in the second-order cone (first entry >= the norm of the rest)."""
        self._add("soc", a, b)

    def exp_le_log(self, t: Sequence[int] | np.ndarray, y: Sequence[int] | np.ndarray) -> None:
        """Add `x[t_i] <= log(x[y_i])` for each pair: `(x[t_i], 1, x[y_i])` in the exponential cone."""
        t, y = np.asarray(t), np.asarray(y)
        m = len(t)
        rows = np.arange(m) * 3
        a = sp.csr_array((np.r_[-np.ones(m), -np.ones(m)], (np.r_[rows, rows + 2], np.r_[t, y])),
                         shape=(3 * m, self.n))
        b = np.zeros(3 * m)
        b[rows + 1] = 1.0
        self._add("exp", a, b, m)

    def assemble(self) -> tuple[sp.csc_array, np.ndarray, sp.csc_array, np.ndarray, list[Any]]:
        """The stacked constraint matrix, right-hand side and Clarabel cones, in the order added."""
        import clarabel

        cones: list[Any] = []
        for kind, a, _, dim in self._blocks:
            if kind == "zero":
                cones.append(clarabel.ZeroConeT(a.shape[0]))
            elif kind == "nonneg":
                cones.append(clarabel.NonnegativeConeT(a.shape[0]))
            elif kind == "soc":
                cones.append(clarabel.SecondOrderConeT(a.shape[0]))
            else:
                cones += [clarabel.ExponentialConeT() for _ in range(dim)]
        a = sp.vstack([blk for _, blk, _, _ in self._blocks], format="csc")
        b = np.concatenate([rhs for _, _, rhs, _ in self._blocks])
        return sp.csc_array(sp.triu(self.P)), self.q, a, b, cones


def solve(program: Program, engine: str,
          attempts: tuple[tuple[str, dict[str, float]], ...] = ATTEMPTS) -> tuple[np.ndarray, str]:
    """Solve with Clarabel at each attempt's tolerances until one ends ``optimal``.

    Returns (x, status) with e.g. ``"optimal (tol 1e-10)"`` or
    ``"optimal (tol 1e-8; 1e-10: optimal_inaccurate)"``. Raises EngineFailure listing every
    attempt when none is optimal (an infeasible or unbounded status ends the attempts).
    """
    import clarabel

    p, q, a, b, cones = program.assemble()
    history: list[str] = []
    status = "not solved"
    for label, tolerances in attempts:
        settings = clarabel.DefaultSettings()
        settings.verbose = False
        for key, value in tolerances.items():
            setattr(settings, key, value)
        solution = clarabel.DefaultSolver(p, q, a, b, cones, settings).solve()
        status = _STATUS.get(str(solution.status), str(solution.status))
        if status == "optimal":
            x = np.asarray(solution.x, dtype=float)
            return x, f"optimal (tol {label}{'; ' + '; '.join(history) if history else ''})"
        history.append(f"{label}: {status}")
        if status in _FINAL:
            break
    raise EngineFailure(f"{engine}: solver status {status!r} ({'; '.join(history)})")
