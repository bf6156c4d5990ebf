"""Hierarchical allocations: HRP and HERC (own implementations, cross-checked in the tests against
riskfolio-lib and skfolio to 1e-10), then the cap projection.

Both use the pairwise *sample* covariance, as their papers do, and the correlation distance
``d_ij = sqrt(0.5 (1 - rho_ij))``; the caps (relaxed on small universes, see
:mod:`~portfolio_assets.quant.engines.caps`) are applied by projection.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.cluster import hierarchy
from scipy.spatial.distance import squareform

from portfolio_assets.quant.engines.base import EngineInputs, EngineOutput, Universe, universe
from portfolio_assets.quant.engines.caps import apply_caps
from portfolio_assets.quant.engines.params import EngineParams
from portfolio_assets.quant.moments import Covariance, correlation_from_covariance, sample_covariance


def _ivp_variance(cov: np.ndarray, idx: np.ndarray) -> float:
    """Variance of the inverse-variance portfolio of ``idx``: w = (1/s_ii) / sum(1/s_jj)."""
    sub = cov[np.ix_(idx, idx)]
    ivp = 1.0 / np.diag(sub)
    ivp /= ivp.sum()
    return float(ivp @ sub @ ivp)


def _linkage(corr: pd.DataFrame, method: str) -> np.ndarray:
    """Linkage on the correlation distance d_ij = sqrt(0.5 (1 - rho_ij)) (condensed form)."""
    dist = np.sqrt(np.clip(0.5 * (1.0 - corr.to_numpy()), 0.0, 1.0))
    dist = 0.5 * (dist + dist.T)
    np.fill_diagonal(dist, 0.0)
    return hierarchy.linkage(squareform(dist, checks=False), method=method, optimal_ordering=False)


def hrp_weights(cov: pd.DataFrame, corr: pd.DataFrame, linkage: str) -> pd.Series:
    """Hierarchical Risk Parity (Lopez de Prado 2016), uncapped.

    1. distance d_ij = sqrt(0.5 (1 - rho_ij)); ``linkage`` (single in the paper) on the condensed
       distances (the paper's code passed the square matrix, which scipy reads as observations;
       we cluster the distances themselves, as riskfolio-lib and skfolio do);
    2. quasi-diagonalization: order = the dendrogram's leaves, no optimal leaf reordering;
    3. recursive bisection: split each list in halves L | R; V_X = w_X' Sigma_X w_X for the
       inverse-variance weights w_X within X; alpha = 1 - V_L / (V_L + V_R); weights in L are
       multiplied by alpha, in R by 1 - alpha.
    Matches riskfolio ``HCPortfolio.optimization(model='HRP', codependence='pearson', rm='MV',
    linkage='single', leaf_order=False)``.
    """
    n = cov.shape[0]
    if n == 1:
        return pd.Series(1.0, index=cov.index)
    c = cov.to_numpy()
    order = hierarchy.leaves_list(_linkage(corr, linkage))
    w = np.ones(n)
    items = [order]
    while items:
        items = [i[a:b] for i in items for a, b in ((0, len(i) // 2), (len(i) // 2, len(i))) if len(i) > 1]
        for left, right in zip(items[::2], items[1::2], strict=True):
            v_left, v_right = _ivp_variance(c, left), _ivp_variance(c, right)
            alpha = 1.0 - v_left / (v_left + v_right)
            w[left] *= alpha
            w[right] *= 1.0 - alpha
    return pd.Series(w / w.sum(), index=cov.index)


def herc_weights(cov: pd.DataFrame, corr: pd.DataFrame, n_clusters: int, linkage: str) -> pd.Series:
    """Hierarchical Equal Risk Contribution (Raffinot 2018) with variance as the risk measure.

    1. linkage (ward) on d_ij = sqrt(0.5 (1 - rho_ij)); cut into k = ``n_clusters`` clusters;
    2. cluster risk V_c = variance of cluster c's inverse-variance portfolio;
    3. top-down over the k - 1 highest merges of the dendrogram: with V_L, V_R the summed risks
       of the clusters under the left and right child, the left child's weight is multiplied by
       alpha = V_R / (V_L + V_R) and the right child's by 1 - alpha, so that
       alpha * V_L = (1 - alpha) * V_R (equal risk contribution of the two children);
    4. within each cluster, inverse-variance weights.
    Matches riskfolio ``HCPortfolio.optimization(model='HERC', codependence='pearson', rm='MV',
    linkage='ward', k=k, leaf_order=False)``. Raffinot picks k by the gap statistic; the engine
    uses the number of risk buckets instead (see :func:`herc`).
    """
    n = cov.shape[0]
    k = int(min(max(n_clusters, 1), n))
    if n == 1:
        return pd.Series(1.0, index=cov.index)
    c = cov.to_numpy()
    link = _linkage(corr, linkage)
    labels = hierarchy.fcluster(link, k, criterion="maxclust")
    members = {lab: np.flatnonzero(labels == lab) for lab in np.unique(labels)}
    risk = {lab: _ivp_variance(c, idx) for lab, idx in members.items()}
    _, nodes = hierarchy.to_tree(link, rd=True)
    merges = sorted((nd for nd in nodes if not nd.is_leaf()), key=lambda nd: nd.dist, reverse=True)
    w = np.ones(n)
    for node in merges[: len(members) - 1]:
        left, right = set(node.get_left().pre_order()), set(node.get_right().pre_order())
        v_left = sum(risk[lab] for lab, idx in members.items() if set(idx) <= left)
        v_right = sum(risk[lab] for lab, idx in members.items() if set(idx) <= right)
        alpha = v_right / (v_left + v_right)
        w[sorted(left)] *= alpha
        w[sorted(right)] *= 1.0 - alpha
    for idx in members.values():
        ivp = 1.0 / np.diag(c)[idx]
        w[idx] *= ivp / ivp.sum()
    return pd.Series(w / w.sum(), index=cov.index)


def hierarchical_inputs(returns: pd.DataFrame, params: EngineParams) -> tuple[Covariance, pd.DataFrame]:
    """Pairwise sample covariance and its correlation."""
    cov = sample_covariance(returns, params.min_overlap)
    return cov, correlation_from_covariance(cov.matrix)


def capped(raw: pd.Series, uni: Universe) -> tuple[pd.Series, dict[str, Any]]:
    """:func:`apply_caps` at the universe's caps, and whether it changed anything."""
    out = apply_caps(raw, uni.clusters, uni.caps.max_weight, uni.caps.cluster_cap)
    return out, {"caps_applied": "projection", "cap_binding": bool(np.abs(out - raw).max() > 1e-12)}


def hrp(inputs: EngineInputs, params: EngineParams) -> EngineOutput:
    """Lopez de Prado's HRP (:func:`hrp_weights`, sample covariance), then :func:`apply_caps`."""
    uni = universe(inputs, params)
    cov, corr = hierarchical_inputs(uni.returns, params)
    w, diag = capped(hrp_weights(cov.matrix, corr, params.hrp_linkage), uni)
    return EngineOutput(w, {**diag, "linkage": params.hrp_linkage, "dropped_symbols": uni.dropped,
                            **cov.diagnostics}, uni.caps)


def herc(inputs: EngineInputs, params: EngineParams) -> EngineOutput:
    """Raffinot's HERC (:func:`herc_weights`, sample covariance), then :func:`apply_caps`.

    k = ``params.herc_n_clusters`` or, by default, the number of risk buckets among the kept
    symbols (the project's clustering decision, SPEC section 9) in place of Raffinot's gap
    statistic. The clusters are cut from HERC's own tree on the train returns.
    """
    uni = universe(inputs, params)
    cov, corr = hierarchical_inputs(uni.returns, params)
    k = params.herc_n_clusters or int(uni.clusters.nunique())
    w, diag = capped(herc_weights(cov.matrix, corr, k, params.herc_linkage), uni)
    return EngineOutput(w, {**diag, "n_clusters": k, "linkage": params.herc_linkage,
                            "dropped_symbols": uni.dropped, **cov.diagnostics}, uni.caps)
