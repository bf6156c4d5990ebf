"""Caps: the per-symbol and per-bucket limits, their relaxation on small universes, the projection.

The optimizing engines hold a fully invested long-only book with at most ``max_weight`` per
symbol and ``cluster_cap`` per risk bucket. Such a book exists iff
``sum_b min(cluster_cap, n_b * max_weight) >= 1`` (bucket b holds n_b symbols).

Relaxation rule (:func:`feasible_caps`), for a universe where the caps cannot hold a fully
invested book (few symbols, few buckets, lopsided buckets):

1. per symbol: ``max_weight' = max(max_weight, 1/N)`` (N symbols: 1/N is the least cap that can
   hold the book);
2. per bucket: ``cluster_cap'`` = the least value >= ``cluster_cap`` with
   ``sum_b min(cluster_cap', n_b * max_weight') >= 1`` (water-filling over the bucket
   capacities). It is ``max(cluster_cap, 1/n_buckets)`` when every bucket has enough members to
   reach that, and higher when small buckets cannot take their share.

Each relaxation is a sentence in ``Caps.relaxations``; the engines record it in their
diagnostics, the tournament per window, and the weights audit recomputes the same rule from the
universe (so a cap looser than this minimum is a violation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

CAP_TOL = 1e-6
"""Slack on caps and on the budget after a solve (Clarabel's accuracy is ~1e-8)."""


class CapsInfeasibleError(ValueError):
    """No fully invested long-only portfolio satisfies the per-asset and bucket caps."""


@dataclass(frozen=True)
class Caps:
    """The caps an engine enforced: the manifest's, or relaxed by :func:`feasible_caps`."""

    max_weight: float
    cluster_cap: float
    relaxations: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The caps as a JSON-ready mapping (for diagnostics)."""
        return {"max_weight": self.max_weight, "cluster_cap": self.cluster_cap,
                "relaxations": list(self.relaxations)}


def _sizes(clusters: pd.Series) -> np.ndarray:
    """Members per bucket (n_b), in bucket-id order."""
    return np.unique(clusters.to_numpy(), return_counts=True)[1]


def capacity(clusters: pd.Series, max_weight: float, cluster_cap: float) -> float:
    """Most a capped long-only book can hold: ``sum_b min(cluster_cap, n_b * max_weight)``."""
    return float(np.minimum(cluster_cap, _sizes(clusters) * max_weight).sum())


def check_caps_feasible(clusters: pd.Series, max_weight: float, cluster_cap: float) -> None:
    """Raise CapsInfeasibleError unless some fully invested long-only book meets both caps."""
    held = capacity(clusters, max_weight, cluster_cap)
    if held < 1 - 1e-12:
        n, m = len(clusters), len(_sizes(clusters))
        raise CapsInfeasibleError(
            f"caps infeasible: {n} symbols x max_weight {max_weight} = {n * max_weight:.4g}, "
            f"{m} buckets x cluster_cap {cluster_cap} = {m * cluster_cap:.4g}; "
            f"the most a capped book can hold is {held:.4g} < 1"
        )


def _least_bucket_cap(limits: np.ndarray, target: float) -> float:
    """Least C with ``sum_b min(C, limits_b) >= target`` (water-filling; needs sum(limits) >= target)."""
    s = np.sort(limits)
    below = 0.0
    for j, level in enumerate(s):
        rest = len(s) - j
        if below + rest * level >= target:
            return (target - below) / rest
        below += level
    return float(s[-1])


def feasible_caps(clusters: pd.Series, max_weight: float, cluster_cap: float, target: float = 1.0,
                  who: str = "") -> Caps:
    """The manifest caps, or the least relaxation that lets the universe hold ``target``.

    ``clusters``: bucket per symbol of the universe the engine holds. ``target``: the fraction
    of the book these symbols must hold (1; barbell's core holds 1 - budget). Rule in the module
    docstring; ``who`` prefixes the relaxation sentences (e.g. ``"core: "``).
    """
    n = len(clusters)
    if n == 0:
        raise CapsInfeasibleError("caps: no symbol to hold")
    sizes = np.sort(_sizes(clusters))[::-1]
    notes: list[str] = []
    a = max_weight
    if n * a < target - 1e-12:
        a = target / n
        notes.append(f"{who}max_weight {max_weight:g} -> {a:.6g}: {n} symbol(s) x {max_weight:g} "
                     f"= {n * max_weight:.4g} < {target:.4g}")
    c = cluster_cap
    held = float(np.minimum(c, sizes * a).sum())
    if held < target - 1e-12:
        c = max(cluster_cap, float(_least_bucket_cap(sizes * a, target)))
        notes.append(f"{who}cluster_cap {cluster_cap:g} -> {c:.6g}: {len(sizes)} bucket(s) of "
                     f"{sizes.tolist()} symbols hold at most {held:.4g} < {target:.4g}")
    return Caps(min(a, 1.0), min(c, 1.0), tuple(notes))


def cap_status(weights: pd.Series, clusters: pd.Series, max_weight: float, cluster_cap: float) -> dict[str, Any]:
    """Which caps the weights meet: max asset and bucket weight, violations, names at a cap."""
    buckets = weights.groupby(clusters.reindex(weights.index)).sum()
    tol = CAP_TOL
    return {
        "max_asset_weight": float(weights.max()),
        "max_bucket_weight": float(buckets.max()),
        "asset_cap_violations": {k: float(v) for k, v in weights[weights > max_weight + tol].items()},
        "bucket_cap_violations": {int(k): float(v) for k, v in buckets[buckets > cluster_cap + tol].items()},
        "assets_at_cap": int((weights >= max_weight - tol).sum()),
        "buckets_at_cap": int((buckets >= cluster_cap - tol).sum()),
    }


def within_caps(w: np.ndarray, labels: np.ndarray, max_weight: float, cluster_cap: float, tol: float = CAP_TOL) -> bool:
    """True when every weight <= max_weight + tol and every bucket total <= cluster_cap + tol."""
    if (w > max_weight + tol).any():
        return False
    _, inverse = np.unique(labels, return_inverse=True)
    return bool((np.bincount(inverse, weights=w) <= cluster_cap + tol).all())


def bucket_matrix(labels: np.ndarray, size: int) -> np.ndarray:
    """0/1 incidence (``size`` x n): row b has ones on bucket b's members, unused rows are zero.

    ``size >= n_buckets``; padding to a fixed size (n) lets one compiled problem serve every
    bucket structure on n symbols (``A @ w <= cap`` as one matrix constraint).
    """
    _, inverse = np.unique(labels, return_inverse=True)
    out = np.zeros((size, len(labels)))
    out[inverse, np.arange(len(labels))] = 1.0
    return out


def apply_caps(weights: pd.Series, clusters: pd.Series, max_weight: float, cluster_cap: float) -> pd.Series:
    """Project weights onto the caps by clipping and pro-rata redistribution.

    Repeat until no cap is violated: set every symbol above ``max_weight`` to ``max_weight``
    and scale every bucket above ``cluster_cap`` down to ``cluster_cap``; those symbols and
    buckets are frozen; the excess goes to the not-frozen symbols in not-frozen buckets in
    proportion to their current weights (equally if all are zero). Each round freezes at least
    one symbol or bucket, so it ends within N + n_buckets rounds; when the caps are feasible
    (:func:`check_caps_feasible`) free capacity never runs out. Weights that never hit a cap keep
    their relative proportions; weights already within the caps are returned unchanged.
    """
    check_caps_feasible(clusters.reindex(weights.index), max_weight, cluster_cap)
    w = weights.to_numpy(dtype=float).copy()
    if (w < 0).any() or abs(w.sum() - 1) > 1e-9:
        raise ValueError("apply_caps needs non-negative weights summing to 1")
    labels = clusters.reindex(weights.index).to_numpy()
    _, inverse = np.unique(labels, return_inverse=True)
    frozen = np.zeros(len(w), dtype=bool)
    tol = 1e-12
    for _ in range(len(w) + inverse.max() + 2):
        over = w > max_weight + tol
        excess = float((w[over] - max_weight).sum())
        w[over] = max_weight
        frozen |= over
        totals = np.bincount(inverse, weights=w)
        heavy = totals > cluster_cap + tol
        if heavy.any():
            members = heavy[inverse]
            w[members] *= (cluster_cap / totals)[inverse][members]
            excess += float((totals[heavy] - cluster_cap).sum())
            frozen |= members
        if excess <= tol:
            return pd.Series(w / w.sum(), index=weights.index)
        free = ~frozen
        if not free.any():
            raise CapsInfeasibleError("apply_caps: no free capacity left for the excess weight")
        base = w[free].sum()
        w[free] += excess * (w[free] / base if base > 0 else 1.0 / free.sum())
    raise CapsInfeasibleError("apply_caps did not converge")  # unreachable for feasible caps
