"""Regime rules and hysteresis: features per session -> QUIET / NORMAL / TURBULENT / CRISIS.

Volatility is judged on two scales at once: *relative* (``vol_pct``, its percentile in the trailing
year) and *absolute* (fixed annualized bands, and ``vol_ratio``, volatility over the baseline's own
3-year median ``vol_ref``). The relative scale sees an onset early but absorbs a long crisis (after
a few months of 50 % volatility, 40 % ranks as ordinary); the absolute scale keeps a sustained crisis
flagged while volatility stays extreme, and keeps a calm year's small bump from reading as stress.
Defaults (``RegimeConfig``) are calibrated on the S&P 500 1995-2022, whose 21-session volatility has
median ≈ 14 %, 90th percentile ≈ 27 %, 98th ≈ 44 % (``docs/regimes.md``: tables and figure).

Raw rules, first match wins (``raw_rule`` names the one that fired)
--------------------------------------------------------------------
1. ``crisis_level`` -> CRISIS: ``drawdown <= crisis_drawdown`` (-15 %) **and** extreme volatility on
   either scale: ``vol_pct >= crisis_vol_pct`` (0.90, the onset), or ``vol_ann >= crisis_vol_ann``
   (40 %/yr, ≈ the 97th percentile of the S&P: only crashes get there), or
   ``vol_ratio >= crisis_vol_ratio`` (2.5 x the 3-year median). *Why*: a crisis is a deep loss with
   violent moves; either alone is a bear market or a scare. The absolute arms are what keep
   2008-11..2009-03 and 2020-04 CRISIS after ``vol_pct`` has decayed.
2. ``crisis_turbulence`` -> CRISIS: ``turbulence_pct >= crisis_turbulence_pct`` (0.95) and
   ``drawdown <= crisis_turbulence_drawdown`` (-10 %): the cross-section breaks down (unusual sizes
   and co-movements) while the market is already falling.
3. ``turbulent_level`` -> TURBULENT (every profile): ``vol_ann >= turbulent_vol_ann`` (25 %/yr,
   ≈ the 88th percentile of the S&P, about 1.8 x its long-run median) **or**
   ``vol_ratio >= turbulent_vol_ratio`` (2 x: volatility has doubled against the last three years,
   e.g. 2018-Q4 at 24 % after two years near 9 %). *Why*: stress is a level that is high in absolute
   terms or against the market's own norm, not a high rank in a calm year.
4. ``turbulent_spectral`` -> TURBULENT (only with ``spectral``, i.e. ``feat_spectral_regimes``):
   relative stress (``vol_pct >= spectral_vol_pct`` 0.80 or ``turbulence_pct >=
   spectral_turbulence_pct`` 0.90) **and** ``vol_ratio >= spectral_min_vol_ratio`` (1.25: above the
   long-run norm, so a calm year's bump does not count) **and** spectral evidence
   (:func:`~portfolio_assets.quant.regimes.spectral.spectral_evidence`: a DWT high-frequency share or
   burst above, or an entropy below, its white-noise quantile). *Why*: a burst of high-frequency
   energy or ordered (low-entropy) moves at a relatively high volatility announces turbulence before
   the level crosses its band: on the S&P it enters earlier on 1998-08, 2007-02, 2018-02 and 2018-10.
5. ``quiet`` -> QUIET: ``vol_pct <= quiet_vol_pct`` (0.25) **and** ``vol_ann <= quiet_vol_ann``
   (15 %/yr, ≈ the long-run median) **and** (``turbulence_pct < quiet_turbulence_pct`` 0.50 or no
   turbulence). *Why*: calm for the last year *and* calm in absolute terms — the months after a
   crash rank low against the crash but are not quiet at 20 % volatility.
6. ``normal`` -> NORMAL otherwise.

A NaN feature (no universe, early history, a zero ``vol_ref``) never fires a rule and does not block
QUIET. **Warm-up**: until ``vol_pct`` and ``drawdown`` (with ``spectral`` also the four spectral
features) exist, ``raw_label`` and ``label`` are NORMAL, ``raw_rule`` is ``warmup`` and the
``warmup`` column is True.

Hysteresis (:func:`apply_hysteresis`)
-------------------------------------
A move to a *worse* state needs the last ``persistence`` (3) raw labels all worse than the current
state, and goes to the mildest of them (NORMAL -> TURBULENT -> CRISIS as evidence builds); a move to
a better state follows the raw label at once; either move only after the current state has been
held ``min_dwell`` (5) sessions. *Why*: one wild session is not a regime (3 in a row are), and a
label that is held at least a week keeps the barbell budget from flapping; leaving a stressed state
is not delayed further because the absolute bands already keep a sustained crisis stressed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from portfolio_assets.constants import CRISIS, NORMAL, QUIET, REGIME_LABELS, TURBULENT
from portfolio_assets.manifest import RegimeConfig
from portfolio_assets.quant.regimes.features import check_features
from portfolio_assets.quant.regimes.spectral import SPECTRAL_COLUMNS, spectral_evidence

SEVERITY: dict[str, int] = {label: i for i, label in enumerate(REGIME_LABELS)}

RULES: tuple[tuple[str, str], ...] = (
    ("crisis_level", CRISIS),
    ("crisis_turbulence", CRISIS),
    ("turbulent_level", TURBULENT),
    ("turbulent_spectral", TURBULENT),
    ("quiet", QUIET),
)
"""(rule, label) in priority order; no match is ``normal`` -> NORMAL."""


def warmup_mask(features: pd.DataFrame, spectral: bool) -> pd.Series:
    """True where a feature the rules need is not yet available (``vol_pct``, ``drawdown``; with
    ``spectral`` also the DWT and permutation-entropy features). Turbulence and ``vol_ratio`` are
    optional evidence."""
    check_features(features)
    needed = ["vol_pct", "drawdown"] + (list(SPECTRAL_COLUMNS) if spectral else [])
    return features[needed].isna().any(axis=1).rename("warmup")


def rule_flags(features: pd.DataFrame, config: RegimeConfig | None = None, spectral: bool = False) -> pd.DataFrame:
    """One boolean column per rule of :data:`RULES` (the module docstring's conditions), before
    priority and warm-up. ``turbulent_spectral`` is all False without ``spectral``."""
    c = config or RegimeConfig()
    check_features(features)
    f = features
    vp, va, vr, tp, dd = f["vol_pct"], f["vol_ann"], f["vol_ratio"], f["turbulence_pct"], f["drawdown"]
    extreme = (vp >= c.crisis_vol_pct) | (va >= c.crisis_vol_ann) | (vr >= c.crisis_vol_ratio)
    relative_stress = (vp >= c.spectral_vol_pct) | (tp >= c.spectral_turbulence_pct)
    spectral_rule = (relative_stress & (vr >= c.spectral_min_vol_ratio) & spectral_evidence(f, c)
                     if spectral else pd.Series(False, index=f.index))
    return pd.DataFrame({
        "crisis_level": (dd <= c.crisis_drawdown) & extreme,
        "crisis_turbulence": (tp >= c.crisis_turbulence_pct) & (dd <= c.crisis_turbulence_drawdown),
        "turbulent_level": (va >= c.turbulent_vol_ann) | (vr >= c.turbulent_vol_ratio),
        "turbulent_spectral": spectral_rule,
        "quiet": (vp <= c.quiet_vol_pct) & (va <= c.quiet_vol_ann) & (tp.isna() | (tp < c.quiet_turbulence_pct)),
    }, index=f.index)


def classify(features: pd.DataFrame, config: RegimeConfig | None = None, spectral: bool = False) -> pd.DataFrame:
    """Per-session ``raw_label`` and ``raw_rule`` (the first rule of :data:`RULES` that fires;
    ``normal`` if none, ``warmup`` during warm-up, where the label is NORMAL)."""
    flags = rule_flags(features, config, spectral)
    names = np.array([name for name, _ in RULES] + ["normal"], dtype=object)
    labels = np.array([label for _, label in RULES] + [NORMAL], dtype=object)
    hits = flags.to_numpy(dtype=bool)
    first = np.where(hits.any(axis=1), hits.argmax(axis=1), len(RULES))
    rule, label = names[first], labels[first]
    warm = warmup_mask(features, spectral).to_numpy()
    rule[warm], label[warm] = "warmup", NORMAL
    return pd.DataFrame({"raw_label": label, "raw_rule": rule}, index=features.index)


def raw_regimes(features: pd.DataFrame, config: RegimeConfig | None = None, spectral: bool = False) -> pd.Series:
    """Per-session label from the rules of the module docstring, before hysteresis (warm-up: NORMAL)."""
    return classify(features, config, spectral)["raw_label"]


def apply_hysteresis(raw: pd.Series, persistence: int, min_dwell: int,
                     warmup: pd.Series | None = None) -> pd.Series:
    """Smooth raw labels: worse moves need ``persistence`` consecutive worse raw labels; dwell >= ``min_dwell``.

    State machine, per session ``t`` (causal: uses ``raw[<= t]``): with ``s`` the current state and
    ``h`` the sessions it has been held, if ``h >= min_dwell`` then (a) if the last ``persistence``
    non-warm-up raw labels are all worse than ``s``, move to the mildest of them; (b) else if
    ``raw_t`` is better than ``s``, move to ``raw_t``. Warm-up sessions are ``NORMAL`` and restart
    the machine at ``NORMAL`` with the dwell satisfied.
    """
    if persistence < 1 or min_dwell < 1:
        raise ValueError(f"persistence={persistence} and min_dwell={min_dwell} must be >= 1")
    unknown = sorted(set(raw.dropna().unique()) - set(REGIME_LABELS)) if len(raw) else []
    if unknown or raw.isna().any():
        raise ValueError(f"raw: labels must be one of {REGIME_LABELS}, got {unknown or ['NaN']}")
    warm = np.zeros(len(raw), dtype=bool) if warmup is None else warmup.reindex(raw.index).fillna(True).to_numpy(bool)
    sev = raw.map(SEVERITY).to_numpy()
    out = np.empty(len(raw), dtype=object)
    state, held = SEVERITY[NORMAL], min_dwell
    recent: list[int] = []
    for t in range(len(sev)):
        if warm[t]:
            out[t] = NORMAL
            state, held, recent = SEVERITY[NORMAL], min_dwell, []
            continue
        recent = (recent + [int(sev[t])])[-persistence:]
        target = state
        if held >= min_dwell:
            if len(recent) == persistence and min(recent) > state:
                target = min(recent)
            elif sev[t] < state:
                target = int(sev[t])
        if target != state:
            state, held = target, 1
        else:
            held += 1
        out[t] = REGIME_LABELS[state]
    return pd.Series(out, index=raw.index, name="label", dtype=object)


def label_regimes(features: pd.DataFrame, config: RegimeConfig | None = None, spectral: bool = False) -> pd.Series:
    """Final regime label per session: :func:`raw_regimes` smoothed by :func:`apply_hysteresis`."""
    config = config or RegimeConfig()
    raw = raw_regimes(features, config, spectral)
    return apply_hysteresis(raw, config.persistence, config.min_dwell, warmup_mask(features, spectral))
