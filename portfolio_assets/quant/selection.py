"""Natural selection (step 5): from the raw pool to the filtered universe.

Steps, in order (`select_universe`; the reader's guide with the crash-day case is
`docs/selection.md`):

1. Synthetic-long streams: short candidates are negated once (`convention.synthetic_long`), so a
   falling short scores like a rising long.
2. Data gate: a candidate with fewer than `min_overlap` non-NaN returns in the window loses
   ("insufficient data"); it is neither clustered nor scored.
3. Clusters: `clustering.hierarchical_clusters` on the synthetic-long streams of the candidates
   with data (and the baseline): pairwise correlation (min overlap), angular distance
   sqrt(0.5 * (1 - rho)), Ward, cut at `threshold` (or `max_clusters`); the correlation matrix is
   float32 from `float32_min_symbols` scored symbols on.
4. Alpha score (`alpha_components`, `alpha_scores`): four equal-weighted components — return,
   inverse volatility, antifragility, liquidity — as global percentile ranks
   (`xs_momentum=True`) or within-cluster min-max (`xs_momentum=False`).
5. Momentum gate: a 60-session synthetic-long return below `min_momentum` loses.
6. One venue per identity: among the candidates still eligible, the highest score per identity
   wins (the baseline always wins its identity).
7. Top n_c per cluster and direction (`keep_count`), n_c scaled by the cluster's diversity.
8. The baseline is always kept.
9. Minimum winners (`fill_min_winners`): if fewer than min(`min_winners`, symbols with data incl.
   the baseline) are selected, the `below_top_n` losers fill the gap round-robin over clusters
   (round r takes each cluster's r-th best remaining candidate, best score first); a candidate
   that failed the momentum gate, lacks data or lost its identity never fills. A remaining gap
   is the funnel's `min_winners_shortfall`.

Every candidate gets a row in the audit with its cluster, components, score, rank and the reason
it won or lost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from portfolio_assets.manifest import Config, SelectionConfig
from portfolio_assets.quant.clustering import ClusterResult, hierarchical_clusters, mean_intra_corr
from portfolio_assets.quant.convention import DIRECTIONS, synthetic_long
from portfolio_assets.symbols import validate_symbol

COMPONENTS = ("ret", "inv_vol", "antifragility", "liquidity")
CANDIDATE_COLUMNS = ("direction", "identity", "asset_class", "value_traded")

# Outcome codes (the `outcome` column and the funnel keys).
BASELINE = "baseline"
SELECTED = "selected"
MIN_WINNERS_FILL = "min_winners_fill"
INSUFFICIENT_DATA = "insufficient_data"
MOMENTUM_GATE = "momentum_gate"
IDENTITY_DUPLICATE = "identity_duplicate"
BELOW_TOP_N = "below_top_n"
OUTCOMES = (
    BASELINE, SELECTED, INSUFFICIENT_DATA, MOMENTUM_GATE, IDENTITY_DUPLICATE, BELOW_TOP_N, MIN_WINNERS_FILL,
)  # fmt: skip
WINNING = (BASELINE, SELECTED, MIN_WINNERS_FILL)


@dataclass(frozen=True)
class SelectionParams:
    """Natural selection's parameters: a frozen view of the manifest with no defaults of its own.

    Built by `from_config` (the one place that maps the manifest to it):
    - `selection`: the manifest section `selection` (`SelectionConfig`: baseline, threshold,
      max_clusters, top_n, min_momentum, min_winners, float32_min_symbols; bounds and defaults
      live there);
    - `min_overlap`: `data.min_overlap`, sessions required both for a pairwise correlation and
      for a candidate to be scored at all;
    - `xs_momentum`: the flag `feat_xs_momentum` (global percentile ranks, else within-cluster
      min-max).
    """

    selection: SelectionConfig
    min_overlap: int
    xs_momentum: bool

    @classmethod
    def from_config(cls, cfg: Config) -> SelectionParams:
        """The selection parameters of a resolved manifest."""
        return cls(selection=cfg.selection, min_overlap=cfg.data.min_overlap,
                   xs_momentum=cfg.features.feat_xs_momentum)

    def record(self) -> dict[str, Any]:
        """Flat, JSON-ready parameters for the step's metadata and ledger entry."""
        return {**self.selection.model_dump(exclude={"class_cap"}), "min_overlap": self.min_overlap,
                "xs_momentum": self.xs_momentum}


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
      outcome, liquidity_missing (scored symbols with NaN value_traded), baseline_added (0/1),
      min_winners (the target after the cap), min_winners_shortfall (target - winners, >= 0).
    """

    audit: pd.DataFrame
    winners: pd.DataFrame
    clusters: ClusterResult
    funnel: dict[str, int]


def antifragility(streams: pd.DataFrame) -> pd.Series:
    """Antifragility per column: the project's one score,
    `quant.engines.moments.antifragility_scores` (skewness + right-tail gain, dimensionless)."""
    from portfolio_assets.quant.moments import antifragility_scores

    return antifragility_scores(streams)


def alpha_components(streams: pd.DataFrame, value_traded: pd.Series) -> pd.DataFrame:
    """Raw alpha components per symbol (rows = columns of `streams`), on synthetic-long streams.

    - `ret`: compounded window return prod(1 + r) - 1 over the available sessions (fraction;
      NaN without any return);
    - `inv_vol`: 1 / std(r, ddof=1) of daily returns (1 / daily-return units; NaN for a
      zero-variance, e.g. stale, stream so it cannot win by being flat);
    - `antifragility`: see `antifragility`;
    - `liquidity`: log1p(value_traded) (value traded in the scanner's currency units; NaN stays
      NaN: unknown, left out of the score in `alpha_scores`).
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
    cluster (a singleton included). A NaN component scores 0 (lowest), except an unknown liquidity
    (no value traded, e.g. closes-only data): its `liquidity_score` stays NaN and the symbol's score
    is the mean of its three other components (neutral; counted as `liquidity_missing`). The
    components are *equal-weighted*: score = mean(ret_score, inv_vol_score, antifragility_score,
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
        out[f"{c}_score"] = s if c == "liquidity" else s.fillna(0.0)
    out["score"] = out[[f"{c}_score" for c in COMPONENTS]].mean(axis=1)  # skips an unknown liquidity
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


def _top_n(audit: pd.DataFrame) -> None:
    """Top n_c per (cluster, direction) among the survivors (outcome ""); the baseline takes no
    slot. Rank = position by score descending, ties by symbol; writes rank, outcome, reason."""
    competing = audit.loc[audit["outcome"] == "", ["cluster", "direction", "score", "n_keep_cluster"]]
    if competing.empty:
        return
    order = competing.assign(_sym=competing.index).sort_values(
        ["cluster", "direction", "score", "_sym"], ascending=[True, True, False, True], kind="mergesort"
    )
    rank = order.groupby(["cluster", "direction"], sort=False).cumcount().to_numpy() + 1
    keep = order["n_keep_cluster"].to_numpy(dtype=int)
    won = rank <= keep
    audit.loc[order.index, "rank_in_cluster"] = rank
    audit.loc[order.index, "outcome"] = np.where(won, SELECTED, BELOW_TOP_N)
    audit.loc[order.index, "reason"] = [
        f"top {n} of cluster {k} ({d}): rank {r}" if w else f"rank {r} in cluster {k} ({d}); cluster keeps top {n}"
        for k, d, r, n, w in zip(order["cluster"], order["direction"], rank, keep, won, strict=True)
    ]


def fill_min_winners(audit: pd.DataFrame, target: int) -> int:
    """Fill the selection up to `target` winners from the `below_top_n` losers; returns how many.

    Ranking across clusters, round-robin: within each cluster the remaining candidates are
    ordered by alpha score (descending, ties by symbol); round r holds every cluster's r-th
    candidate, and rounds are taken in order, best score first within a round — so the first
    extra symbols come from distinct clusters (diversification) and each is the best one left
    in its cluster. Taken rows get outcome `min_winners_fill` and a reason naming the fill
    order, round, cluster, direction, rank and score.

    Never taken: candidates that failed the momentum gate (the gate is a statement about the
    direction — a falling long or a rising short — which a count target does not overrule; their
    reason records that they were passed over), that lack data, or that lost their identity to
    another venue. Modifies `audit` (indexed by symbol) in place.
    """
    n_before = int(audit["outcome"].isin(WINNING).sum())
    deficit = target - n_before
    if deficit <= 0:
        return 0
    pool = audit.loc[audit["outcome"] == BELOW_TOP_N, ["cluster", "direction", "score", "rank_in_cluster"]]
    pool = pool.assign(_sym=pool.index).sort_values(
        ["cluster", "score", "_sym"], ascending=[True, False, True], kind="mergesort"
    )
    pool["_round"] = pool.groupby("cluster", sort=False).cumcount() + 1
    take = pool.sort_values(["_round", "score", "_sym"], ascending=[True, False, True], kind="mergesort").head(deficit)
    for i, (s, row) in enumerate(take.iterrows(), start=1):
        audit.at[s, "outcome"] = MIN_WINNERS_FILL
        audit.at[s, "reason"] = (
            f"min_winners fill {i} of {len(take)}: {n_before} winners < min_winners {target}; "
            f"round {row['_round']} over clusters, cluster {row['cluster']} ({row['direction']}) "
            f"rank {row['rank_in_cluster']}, score {row['score']:.3f}"
        )
    gated = audit.index[audit["outcome"] == MOMENTUM_GATE]
    audit.loc[gated, "reason"] = audit.loc[gated, "reason"] + "; not taken by the min_winners fill (momentum gate)"
    return len(take)


def select_universe(candidates: pd.DataFrame, returns: pd.DataFrame, params: SelectionParams) -> SelectionResult:
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
    not among the candidates it is added as a long with identity = its symbol. The minimum
    number of winners is min(`min_winners`, scored symbols), filled by `fill_min_winners`.

    Raises ValueError if the baseline is not a column of `returns`.
    """
    if not isinstance(params, SelectionParams):
        raise ValueError(f"params must be a SelectionParams (SelectionParams.from_config), got {type(params).__name__}")
    sel, min_overlap = params.selection, params.min_overlap
    baseline = validate_symbol(sel.baseline)
    frame = _validate_candidates(candidates)
    if not isinstance(returns, pd.DataFrame):
        raise ValueError(
            f"returns must be a pandas DataFrame (sessions x symbols), got {type(returns).__name__}"
        )
    if baseline not in returns.columns:
        raise ValueError(
            f"baseline {baseline!r} is not in returns; the 60-session prep must include the baseline"
        )
    n_raw = len(frame)
    baseline_added = baseline not in frame.index
    if baseline_added:
        frame.loc[baseline] = {
            "direction": "long",
            "identity": baseline,
            "asset_class": "unknown",
            "value_traded": np.nan,
        }
    n_sessions = len(returns.index)

    present = [s for s in frame.index if s in returns.columns]
    streams = synthetic_long(returns[present], frame.loc[present, "direction"])
    n_obs = streams.count().reindex(frame.index).fillna(0).astype(int)
    has_data = n_obs >= min_overlap
    scored = [s for s in frame.index if has_data[s] or s == baseline]

    dtype = np.float32 if len(scored) >= sel.float32_min_symbols else np.float64
    cres = hierarchical_clusters(streams[scored], sel.threshold, sel.max_clusters, min_overlap, dtype)
    comps = alpha_components(streams[scored], frame.loc[scored, "value_traded"])
    scores = alpha_scores(comps, cres.clusters, params.xs_momentum)

    audit = frame.copy()
    audit["cluster"] = cres.clusters.reindex(audit.index).astype("Int64")
    audit["n_obs"] = n_obs
    audit = audit.join(comps).join(scores)
    audit["n_keep_cluster"] = pd.array([pd.NA] * len(audit), dtype="Int64")
    audit["rank_in_cluster"] = pd.array([pd.NA] * len(audit), dtype="Int64")
    audit["outcome"] = ""
    audit["reason"] = ""

    for members in cres.clusters.groupby(cres.clusters).groups.values():
        n_keep = keep_count(len(members), mean_intra_corr(cres.corr, list(members)), sel.top_n)
        audit.loc[list(members), "n_keep_cluster"] = n_keep

    audit.at[baseline, "outcome"] = BASELINE
    audit.at[baseline, "reason"] = "baseline (always kept)"
    no_data = audit.index[~has_data.reindex(audit.index).to_numpy() & (audit.index != baseline)]
    audit.loc[no_data, "outcome"] = INSUFFICIENT_DATA
    audit.loc[no_data, "reason"] = [
        f"insufficient data: {n_obs[s]} of {n_sessions} sessions with returns < min_overlap {min_overlap}"
        for s in no_data
    ]
    gated = audit.index[(audit["outcome"] == "") & (audit["ret"] < sel.min_momentum)]
    audit.loc[gated, "outcome"] = MOMENTUM_GATE
    audit.loc[gated, "reason"] = [
        f"momentum gate: {n_sessions}-session return {audit.at[s, 'ret']:.1%} < {sel.min_momentum:.1%}"
        for s in gated
    ]

    # One venue per identity among the still-eligible (and the baseline, which always wins).
    alive = audit[audit["outcome"].isin(["", BASELINE])]
    alive = alive[alive["identity"].duplicated(keep=False)]
    for identity, grp in alive.groupby("identity", sort=True):
        if baseline in grp.index:
            winner = baseline
        else:
            order = grp.assign(_liq=grp["liquidity"].fillna(-np.inf), _sym=grp.index).sort_values(
                ["score", "_liq", "_sym"], ascending=[False, False, True], kind="mergesort"
            )
            winner = order.index[0]
        for s in grp.index.drop(winner):
            if winner == baseline:
                detail = f"baseline {winner} kept"
            else:
                detail = f"{winner} kept (score {grp.at[winner, 'score']:.3f} vs {grp.at[s, 'score']:.3f})"
            audit.at[s, "outcome"] = IDENTITY_DUPLICATE
            audit.at[s, "reason"] = f"duplicate identity {identity!r}: {detail}"

    _top_n(audit)
    target = min(sel.min_winners, len(scored))
    fill_min_winners(audit, target)

    audit["selected"] = audit["outcome"].isin(WINNING)
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
    n_winners = int(audit["selected"].sum())
    funnel = {
        "raw": n_raw,
        "with_data": int(has_data.drop(baseline).sum() if baseline_added else has_data.sum()),
        "clusters": cres.n_clusters,
        "winners": n_winners,
        **{o: int(counts.get(o, 0)) for o in OUTCOMES},
        "liquidity_missing": int(comps["liquidity"].isna().sum()),
        "baseline_added": int(baseline_added),
        "min_winners": int(target),
        "min_winners_shortfall": max(0, int(target) - n_winners),
    }
    return SelectionResult(audit=audit, winners=winners, clusters=cres, funnel=funnel)
