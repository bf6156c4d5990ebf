"""Caps: the relaxation rule on small universes (hand-computed), its minimality, the projection."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from portfolio_assets.quant.engines.caps import (
    Caps,
    CapsInfeasibleError,
    apply_caps,
    bucket_matrix,
    capacity,
    check_caps_feasible,
    feasible_caps,
)


def _clusters(sizes: list[int]) -> pd.Series:
    labels = np.repeat(np.arange(1, len(sizes) + 1), sizes)
    return pd.Series(labels, index=[f"NYSE:X{i:02d}" for i in range(len(labels))])


def test_caps_that_hold_are_kept():
    assert feasible_caps(_clusters([2, 2, 2, 2]), 0.25, 0.25) == Caps(0.25, 0.25, ())


@pytest.mark.parametrize(("sizes", "expected", "notes"), [
    ([1], (1.0, 1.0), ["max_weight 0.25 -> 1: 1 symbol(s) x 0.25 = 0.25 < 1",
                       "cluster_cap 0.25 -> 1: 1 bucket(s) of [1] symbols hold at most 0.25 < 1"]),
    # the 2021-06-15 window: 6 symbols in 3 buckets -> 1/n_buckets
    ([2, 2, 2], (0.25, 1 / 3), ["cluster_cap 0.25 -> 0.333333: 3 bucket(s) of [2, 2, 2] symbols hold at most 0.75 < 1"]),
    # lopsided: a singleton bucket can take only max_weight, the big one takes the rest
    ([1, 5], (0.25, 0.75), ["cluster_cap 0.25 -> 0.75: 2 bucket(s) of [5, 1] symbols hold at most 0.5 < 1"]),
    # 3 symbols: max_weight to 1/3 first, then the bucket cap given it
    ([2, 1], (1 / 3, 2 / 3), ["max_weight 0.25 -> 0.333333: 3 symbol(s) x 0.25 = 0.75 < 1",
                              "cluster_cap 0.25 -> 0.666667: 2 bucket(s) of [2, 1] symbols hold at most 0.5 < 1"]),
])
def test_relaxation_rule_hand_computed(sizes, expected, notes):
    clusters = _clusters(sizes)
    caps = feasible_caps(clusters, 0.25, 0.25)
    assert (caps.max_weight, caps.cluster_cap) == pytest.approx(expected, abs=1e-12)
    assert list(caps.relaxations) == notes
    # feasible, and minimal: a slightly smaller bucket cap cannot hold the book
    assert capacity(clusters, caps.max_weight, caps.cluster_cap) == pytest.approx(1.0, abs=1e-12)
    check_caps_feasible(clusters, caps.max_weight, caps.cluster_cap)
    if caps.cluster_cap > 0.25:
        with pytest.raises(CapsInfeasibleError):
            check_caps_feasible(clusters, caps.max_weight, caps.cluster_cap - 1e-6)


@pytest.mark.parametrize("seed", range(20))
def test_relaxed_caps_are_always_feasible_and_never_looser_than_needed(seed):
    rng = np.random.default_rng(seed)
    sizes = list(rng.integers(1, 6, rng.integers(1, 8)))
    a, c = rng.uniform(0.02, 0.5), rng.uniform(0.02, 0.5)
    clusters = _clusters(sizes)
    caps = feasible_caps(clusters, a, c)
    assert caps.max_weight >= a and caps.cluster_cap >= c
    assert capacity(clusters, caps.max_weight, caps.cluster_cap) >= 1 - 1e-12
    assert caps.max_weight == pytest.approx(max(a, 1 / len(clusters)))
    assert caps.cluster_cap >= max(c, 1 / len(sizes)) - 1e-12
    assert bool(caps.relaxations) == (caps != Caps(a, c, ()))
    w = apply_caps(pd.Series(rng.dirichlet(np.ones(len(clusters))), index=clusters.index), clusters,
                   caps.max_weight, caps.cluster_cap)
    assert w.max() <= caps.max_weight + 1e-12
    assert w.groupby(clusters).sum().max() <= caps.cluster_cap + 1e-12


def test_core_target_and_bucket_matrix():
    core = feasible_caps(_clusters([2, 2]), 0.25, 0.25, target=0.9, who="barbell core: ")
    assert core.relaxations == ("barbell core: cluster_cap 0.25 -> 0.45: 2 bucket(s) of [2, 2] symbols hold "
                                "at most 0.5 < 0.9",)
    np.testing.assert_array_equal(bucket_matrix(np.array([3, 1, 3]), 3), [[0, 1, 0], [1, 0, 1], [0, 0, 0]])
    with pytest.raises(CapsInfeasibleError, match="caps: no symbol to hold"):
        feasible_caps(_clusters([]), 0.25, 0.25)
