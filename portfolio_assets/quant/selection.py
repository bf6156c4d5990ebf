"""Natural selection (step 5): from the raw pool to the filtered universe.

Steps, in order (`select_universe`):

1. Synthetic-long streams: short candidates are negated once (`convention.synthetic_long`), so a
   falling short scores like a rising long.
2. Data gate: a candidate with fewer than `min_overlap` non-NaN returns in the window loses
   ("insufficient data"); it is neither clustered nor scored.
3. Clusters: `clustering.hierarchical_clusters` on the synthetic-long streams of the candidates
   with data (and the baseline): pairwise correlation (min overlap), angular distance
   sqrt(0.5 * (1 - rho)), Ward, cut at `threshold` (or `max_clusters`).
4. Alpha score (`alpha_components`, `alpha_scores`): four equal-weighted components — return,
   inverse volatility, antifragility, liquidity — as global percentile ranks
   (`xs_momentum=True`) or within-cluster min-max (`xs_momentum=False`).
5. Momentum gate: a 60-session synthetic-long return below `min_momentum` loses.
6. One venue per identity: among the candidates still eligible, the highest score per identity
   wins (the baseline always wins its identity).
7. Top n_c per cluster and direction (`keep_count`), n_c scaled by the cluster's diversity.
8. The baseline is always kept.

Every candidate gets a row in the audit with its cluster, components, score, rank and the reason
it won or lost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from portfolio_assets.quant.clustering import ClusterResult, hierarchical_clusters, mean_intra_corr
from portfolio_assets.quant.convention import DIRECTIONS, synthetic_long
from portfolio_assets.symbols import validate_symbol

COMPONENTS = ("ret", "inv_vol", "antifragility", "liquidity")
CANDIDATE_COLUMNS = ("direction", "identity", "asset_class", "value_traded")
TAIL_QUANTILE = 0.05

# Outcome codes (the `outcome` column and the funnel keys).
BASELINE = "baseline"
SELECTED = "selected"
INSUFFICIENT_DATA = "insufficient_data"
MOMENTUM_GATE = "momentum_gate"
IDENTITY_DUPLICATE = "identity_duplicate"
BELOW_TOP_N = "below_top_n"
OUTCOMES = (BASELINE, SELECTED, INSUFFICIENT_DATA, MOMENTUM_GATE, IDENTITY_DUPLICATE, BELOW_TOP_N)


@dataclass(frozen=True)
class SelectionParams:
    """Parameters of natural selection (manifest section `selection`, flag `feat_xs_momentum`).

    - `threshold`: Ward cut height on the angular distance (0.45);
    - `max_clusters`: cap on the number of clusters (25);
    - `top_n`: base number of winners per cluster and direction before diversity scaling (2);
    - `min_momentum`: momentum gate on the window's compounded synthetic-long return, a
      fraction (-0.05 = -5 %);
    - `min_overlap`: sessions required both for a pairwise correlation and for a candidate to be
      scored at all (20);
    - `xs_momentum`: global percentile ranks (True) or within-cluster min-max (False);
    - `baseline`: symbol always kept; must be a column of the returns.
    """

    threshold: float = 0.45
    max_clusters: int = 25
    top_n: int = 2
    min_momentum: float = -0.05
    min_overlap: int = 20
    xs_momentum: bool = True
    baseline: str = "AMEX:SPY"

    def __post_init__(self) -> None:
        if not self.threshold > 0:
            raise ValueError(f"SelectionParams.threshold must be > 0, got {self.threshold}")
        if int(self.max_clusters) < 1:
            raise ValueError(f"SelectionParams.max_clusters must be >= 1, got {self.max_clusters}")
        if int(self.top_n) < 1:
            raise ValueError(f"SelectionParams.top_n must be >= 1, got {self.top_n}")
        if int(self.min_overlap) < 3:
            raise ValueError(f"SelectionParams.min_overlap must be >= 3 sessions, got {self.min_overlap}")
        if not np.isfinite(self.min_momentum):
            raise ValueError(f"SelectionParams.min_momentum must be finite, got {self.min_momentum}")
        validate_symbol(self.baseline)


@dataclass(frozen=True)
class SelectionResult:
    """Output of `select_universe`.

    - `audit`: one row per candidate (plus the baseline if it was not a candidate), columns
      symbol, direction, identity, asset_class, cluster (nullable int; NA when not clustered),
      n_obs, ret, inv_vol, antifragility, liquidity, ret_score, inv_vol_score,
      antifragility_score, liquidity_score, score, rank_in_cluster, n_keep_cluster, selected,
      outcome (one of `OUTCOMES`), reason (human-readable, for winners too);
    - `winners`: the selected rows of `audit`;
    - `clusters`: the `ClusterResult` over the scored symbols;
    - `funnel`: counts — raw (candidates given), with_data, clusters, winners, one key per
      outcome, liquidity_missing (scored symbols with NaN value_traded), baseline_added (0/1).
    """

    audit: pd.DataFrame
    winners: pd.DataFrame
    clusters: ClusterResult
    funnel: dict[str, int]


def antifragility(streams: pd.DataFrame) -> pd.Series:
    """Antifragility per column: the project's one score,
    `quant.engines.moments.antifragility_scores` (skewness + right-tail gain, dimensionless)."""
    from portfolio_assets.quant.engines.moments import antifragility_scores

    return antifragility_scores(streams)


def alpha_components(streams: pd.DataFrame, value_traded: pd.Series) -> pd.DataFrame:
    """Raw alpha components per symbol (rows = columns of `streams`), on synthetic-long streams.

    - `ret`: compounded window return prod(1 + r) - 1 over the available sessions (fraction;
      NaN without any return);
    - `inv_vol`: 1 / std(r, ddof=1) of daily returns (1 / daily-return units; NaN for a
      zero-variance, e.g. stale, stream so it cannot win by being flat);
    - `antifragility`: see `antifragility`;
    - `liquidity`: log1p(value_traded) (value traded in the scanner's currency units; NaN stays
      NaN and ranks lowest in `alpha_scores`).
    """
    std = streams.std(ddof=1)
    out = pd.DataFrame(
        {
            "ret": ((1.0 + streams).prod(skipna=True) - 1.0).where(streams.count() > 0),
            "inv_vol": 1.0 / std.where(std > 0),
            "antifragility": antifragility(streams),
            "liquidity": np.log1p(value_traded.reindex(streams.columns).astype(float)),
        }
    )
    out.index.name = "symbol"
    return out


def _minmax(x: pd.Series) -> pd.Series:
    lo, hi = x.min(), x.max()
    if not np.isfinite(hi - lo) or hi - lo <= 0:
        return pd.Series(np.where(x.notna(), 0.5, np.nan), index=x.index)
    return (x - lo) / (hi - lo)


def alpha_scores(components: pd.DataFrame, clusters: pd.Series, xs_momentum: bool) -> pd.DataFrame:
    """Normalized component scores and the alpha score, all in [0, 1].

    With `xs_momentum`, each component c becomes its global percentile rank over all rows,
    `c.rank(pct=True)` (average ties); otherwise within each cluster k,
    (c - min_k c) / (max_k c - min_k c), and 0.5 when the component is constant within the
    cluster (a singleton included). A NaN component scores 0 (lowest). The four components are
    *equal-weighted*: score = mean(ret_score, inv_vol_score, antifragility_score,
    liquidity_score). Returns columns `<component>_score` and `score`.
    """
    missing = [c for c in COMPONENTS if c not in components.columns]
    if missing:
        raise ValueError(f"components lacks columns {missing}")
    out = pd.DataFrame(index=components.index)
    for c in COMPONENTS:
        x = components[c].astype(float).replace([np.inf, -np.inf], np.nan)
        if xs_momentum:
            s = x.rank(pct=True, method="average")
        else:
            groups = clusters.reindex(components.index)
            if groups.isna().any():
                raise ValueError("every scored symbol needs a cluster id for within-cluster scaling")
            s = x.groupby(groups).transform(_minmax)
        out[f"{c}_score"] = s.fillna(0.0)
    out["score"] = out[[f"{c}_score" for c in COMPONENTS]].mean(axis=1)
    return out


def keep_count(size: int, intra_corr: float, top_n: int) -> int:
    """Winners per cluster and direction: n_c = max(1, min(size, round(top_n * (0.5 + diversity)))).

    diversity = 1 - mean intra-cluster correlation, clipped to [0, 1]; a singleton, or a cluster
    with no known pairwise correlation (`intra_corr` NaN), has diversity 1. `round` is half-up.
    E.g. top_n = 2: a tight cluster (rho 0.9) keeps round(1.2) = 1, a loose one (rho 0.3) keeps
    round(2.4) = 2, a diverse one (rho 0) keeps 3 if it has 3 members.
    """
    diversity = (
        1.0 if size <= 1 or not np.isfinite(intra_corr) else float(np.clip(1.0 - intra_corr, 0.0, 1.0))
    )
    return max(1, min(int(size), math.floor(top_n * (0.5 + diversity) + 0.5)))


def _validate_candidates(candidates: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(candidates, pd.DataFrame):
        raise ValueError(
            f"candidates must be a pandas DataFrame indexed by symbol, got {type(candidates).__name__}"
        )
    missing = [c for c in CANDIDATE_COLUMNS if c not in candidates.columns]
    if missing:
        raise ValueError(f"candidates lacks columns {missing}")
    if candidates.index.has_duplicates:
        dup = candidates.index[candidates.index.duplicated()].unique().tolist()
        raise ValueError(f"candidates has duplicate symbols: {dup[:3]}")
    for s in candidates.index:
        validate_symbol(s)
    bad = sorted(set(candidates["direction"].dropna().unique()) - set(DIRECTIONS))
    if bad or candidates["direction"].isna().any():
        raise ValueError(f"candidates.direction must be 'long' or 'short', got {bad or ['NaN']}")
    if candidates["identity"].isna().any():
        raise ValueError("candidates.identity must be set for every candidate")
    frame = candidates.loc[:, list(CANDIDATE_COLUMNS)].copy()
    frame["value_traded"] = pd.to_numeric(frame["value_traded"], errors="raise").astype(float)
    frame.index.name = "symbol"
    return frame


def select_universe(
    candidates: pd.DataFrame, returns: pd.DataFrame, params: SelectionParams | None = None
) -> SelectionResult:
    """Run natural selection (see the module docstring for the order of the steps).

    `candidates`: indexed by symbol, columns direction ('long'|'short'), identity (str),
    asset_class (str), value_traded (float, NaN allowed). `returns`: raw simple returns,
    sessions x symbols, NaN = no bar (not yet synthetic-long: this function applies the
    convention once). Returns columns that are not candidates (other than the baseline) are
    ignored; candidates without a returns column have no data.

    Scoring pool: every symbol with at least `min_overlap` returns, the baseline included; the
    momentum gate and identity dedup are applied after scoring, before the top-n cut, so gated
    candidates never take a slot. The baseline is clustered and scored like the others but
    does not compete for a slot (its `rank_in_cluster` is NA) and is always selected; if it is
    not among the candidates it is added as a long with identity = its symbol.

    Raises ValueError if the baseline is not a column of `returns`.
    """
    p = params or SelectionParams()
    frame = _validate_candidates(candidates)
    if not isinstance(returns, pd.DataFrame):
        raise ValueError(
            f"returns must be a pandas DataFrame (sessions x symbols), got {type(returns).__name__}"
        )
    if p.baseline not in returns.columns:
        raise ValueError(
            f"baseline {p.baseline!r} is not in returns; the 60-session prep must include the baseline"
        )
    n_raw = len(frame)
    baseline_added = p.baseline not in frame.index
    if baseline_added:
        frame.loc[p.baseline] = {
            "direction": "long",
            "identity": p.baseline,
            "asset_class": "unknown",
            "value_traded": np.nan,
        }
    n_sessions = len(returns.index)

    present = [s for s in frame.index if s in returns.columns]
    streams = synthetic_long(returns[present], frame.loc[present, "direction"])
    n_obs = streams.count().reindex(frame.index).fillna(0).astype(int)
    has_data = n_obs >= p.min_overlap
    scored = [s for s in frame.index if has_data[s] or s == p.baseline]

    cres = hierarchical_clusters(
        streams[scored], threshold=p.threshold, max_clusters=p.max_clusters, min_overlap=p.min_overlap
    )
    comps = alpha_components(streams[scored], frame.loc[scored, "value_traded"])
    scores = alpha_scores(comps, cres.clusters, p.xs_momentum)

    audit = frame.copy()
    audit["cluster"] = cres.clusters.reindex(audit.index).astype("Int64")
    audit["n_obs"] = n_obs
    audit = audit.join(comps).join(scores)
    audit["n_keep_cluster"] = pd.array([pd.NA] * len(audit), dtype="Int64")
    audit["rank_in_cluster"] = pd.array([pd.NA] * len(audit), dtype="Int64")
    audit["outcome"] = ""
    audit["reason"] = ""

    for members in cres.clusters.groupby(cres.clusters).groups.values():
        n_keep = keep_count(len(members), mean_intra_corr(cres.corr, list(members)), p.top_n)
        audit.loc[list(members), "n_keep_cluster"] = n_keep

    def lose(sym: str, outcome: str, reason: str) -> None:
        audit.at[sym, "outcome"] = outcome
        audit.at[sym, "reason"] = reason

    audit.at[p.baseline, "outcome"] = BASELINE
    audit.at[p.baseline, "reason"] = "baseline (always kept)"
    for s in audit.index:
        if s != p.baseline and not has_data[s]:
            lose(
                s,
                INSUFFICIENT_DATA,
                f"insufficient data: {n_obs[s]} of {n_sessions} sessions with returns < min_overlap {p.min_overlap}",
            )
    for s in audit.index[(audit["outcome"] == "") & (audit["ret"] < p.min_momentum)]:
        lose(
            s,
            MOMENTUM_GATE,
            f"momentum gate: {n_sessions}-session return {audit.at[s, 'ret']:.1%} < {p.min_momentum:.1%}",
        )

    # One venue per identity among the still-eligible (and the baseline, which always wins).
    alive = audit[audit["outcome"].isin(["", BASELINE])]
    for identity, grp in alive.groupby("identity", sort=True):
        if len(grp) < 2:
            continue
        if p.baseline in grp.index:
            winner = p.baseline
        else:
            order = grp.assign(_liq=grp["liquidity"].fillna(-np.inf), _sym=grp.index).sort_values(
                ["score", "_liq", "_sym"], ascending=[False, False, True], kind="mergesort"
            )
            winner = order.index[0]
        for s in grp.index.drop(winner):
            if winner == p.baseline:
                detail = f"baseline {winner} kept"
            else:
                detail = f"{winner} kept (score {grp.at[winner, 'score']:.3f} vs {grp.at[s, 'score']:.3f})"
            lose(s, IDENTITY_DUPLICATE, f"duplicate identity {identity!r}: {detail}")

    # Top n_c per (cluster, direction) among the survivors; the baseline takes no slot.
    competing = audit[audit["outcome"] == ""]
    for (k, direction), grp in competing.groupby(["cluster", "direction"], sort=True):
        order = grp.assign(_sym=grp.index).sort_values(
            ["score", "_sym"], ascending=[False, True], kind="mergesort"
        )
        n_keep = int(grp["n_keep_cluster"].iloc[0])
        for rank, s in enumerate(order.index, start=1):
            audit.at[s, "rank_in_cluster"] = rank
            if rank <= n_keep:
                audit.at[s, "outcome"] = SELECTED
                audit.at[s, "reason"] = f"top {n_keep} of cluster {k} ({direction}): rank {rank}"
            else:
                lose(s, BELOW_TOP_N, f"rank {rank} in cluster {k} ({direction}); cluster keeps top {n_keep}")

    audit["selected"] = audit["outcome"].isin([SELECTED, BASELINE])
    audit = audit.reset_index()
    audit = audit.sort_values("symbol", kind="mergesort").sort_values(
        ["cluster", "direction", "score"], ascending=[True, True, False], na_position="last", kind="mergesort"
    )
    columns = [
        "symbol", "direction", "identity", "asset_class", "cluster", "n_obs",
        *COMPONENTS, *(f"{c}_score" for c in COMPONENTS), "score",
        "rank_in_cluster", "n_keep_cluster", "selected", "outcome", "reason",
    ]  # fmt: skip
    audit = audit[columns].reset_index(drop=True)
    winners = audit[audit["selected"]].reset_index(drop=True)

    counts = audit["outcome"].value_counts()
    funnel = {
        "raw": n_raw,
        "with_data": int(has_data.drop(p.baseline).sum() if baseline_added else has_data.sum()),
        "clusters": cres.n_clusters,
        "winners": int(audit["selected"].sum()),
        **{o: int(counts.get(o, 0)) for o in OUTCOMES},
        "liquidity_missing": int(comps["liquidity"].isna().sum()),
        "baseline_added": int(baseline_added),
    }
    return SelectionResult(audit=audit, winners=winners, clusters=cres, funnel=funnel)
