"""Market regime detection (SPEC §6, step 10): QUIET / NORMAL / TURBULENT / CRISIS.

Everything is computed from the baseline's daily simple returns (e.g. ``AMEX:SPY``) and, optionally,
the universe's return matrix, with **causal** windows only: the features and the label at session
``t`` use rows ``<= t`` and nothing else, so the label for partition ``D`` depends on data ``<= D``.
Parameters come from the manifest's ``regime`` section (:class:`~portfolio_assets.manifest.RegimeConfig`);
``spectral`` is the ``feat_spectral_regimes`` flag.

Where things are
----------------
``features.py``
    the level features (``vol_ann``, ``vol_pct``, long-run ``vol_ref`` and ``vol_ratio``,
    ``drawdown``, turbulence percentile), input checks, and :func:`history_sessions` (how much
    history a caller must hold for complete features).
``spectral.py``
    DWT energy shares and burst, wavelet and permutation entropy, and their white-noise null
    (every spectral threshold is a noise quantile, not a hand-set number).
``turbulence.py``
    Kritzman–Li turbulence of the universe's cross-section (Ledoit–Wolf covariance).
``labels.py``
    the rules (with their thresholds and the reasons for them) and the hysteresis state machine —
    **change the regime rule there**.

``docs/regimes.md`` has the rules, the calibration on the S&P 500 1995-2022 (per-year label table,
both with and without the spectral features) and a figure; ``benchmarks/regimes_report.py``
regenerates them. The chart of the ``market_regime`` asset is drawn by
:mod:`portfolio_assets.reports.plots.regime`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from portfolio_assets.constants import CRISIS, NORMAL, QUIET, REGIME_LABELS, TURBULENT
from portfolio_assets.manifest import RegimeConfig
from portfolio_assets.quant.regimes.features import FEATURE_COLUMNS, history_sessions, regime_features
from portfolio_assets.quant.regimes.labels import (
    RULES,
    SEVERITY,
    apply_hysteresis,
    classify,
    label_regimes,
    raw_regimes,
    rule_flags,
    warmup_mask,
)
from portfolio_assets.quant.regimes.spectral import (
    SpectralNull,
    expected_energy_shares,
    permutation_entropy,
    spectral_evidence,
    spectral_null,
    wavelet_energy_shares,
)

__all__ = [
    "CRISIS", "FEATURE_COLUMNS", "NORMAL", "QUIET", "REGIME_LABELS", "RULES", "SEVERITY", "TURBULENT",
    "RegimeConfig", "RegimeResult", "SpectralNull", "apply_hysteresis", "classify", "detect_regime",
    "expected_energy_shares", "history_sessions", "label_regimes", "permutation_entropy", "raw_regimes",
    "regime_features", "rule_flags", "spectral_evidence", "spectral_null", "warmup_mask",
    "wavelet_energy_shares",
]


@dataclass(frozen=True)
class RegimeResult:
    """Output of :func:`detect_regime`.

    ``features``: the feature columns plus ``spectral_evidence``, ``warmup``, ``raw_label``,
    ``raw_rule`` (the rule that set the raw label) and ``label`` per session. ``label``: the label of
    the last session (the partition's regime). ``counts``: sessions per label over non-warm-up
    sessions (all four labels, zeros included).
    """

    features: pd.DataFrame
    label: str
    as_of: pd.Timestamp
    is_warmup: bool
    counts: pd.Series
    spectral: bool
    config: RegimeConfig
    null: SpectralNull

    @property
    def fractions(self) -> pd.Series:
        """Share of non-warm-up sessions per label (sums to 1, or all zero if nothing is labelled)."""
        total = self.counts.sum()
        return self.counts / total if total else self.counts.astype(float)

    def metadata(self) -> dict[str, Any]:
        """JSON-ready summary: label, rule, as-of session, warm-up flag, counts, last features, null
        thresholds and the configuration."""
        last = self.features.iloc[-1]
        return {
            "label": self.label,
            "raw_rule": str(last["raw_rule"]),
            "as_of": self.as_of.strftime("%Y-%m-%d"),
            "is_warmup": self.is_warmup,
            "spectral": self.spectral,
            "counts": {k: int(v) for k, v in self.counts.items()},
            "features": {c: (None if pd.isna(last[c]) else float(last[c])) for c in FEATURE_COLUMNS},
            "noise_null": asdict(self.null),
            "config": self.config.model_dump(),
        }


def detect_regime(
    baseline_returns: pd.Series,
    universe_returns: pd.DataFrame | None = None,
    config: RegimeConfig | None = None,
    spectral: bool = False,
) -> RegimeResult:
    """Features, raw and smoothed labels for every session, and the current regime (last session).

    ``config``: the manifest's ``regime`` section (its defaults when None). ``spectral`` is the
    ``feat_spectral_regimes`` flag: it adds the spectral route into TURBULENT (``labels.py``).
    """
    config = config or RegimeConfig()
    feats = regime_features(baseline_returns, universe_returns, config)
    warm = warmup_mask(feats, spectral)
    raw = classify(feats, config, spectral)
    label = apply_hysteresis(raw["raw_label"], config.persistence, config.min_dwell, warm)
    frame = feats.assign(spectral_evidence=spectral_evidence(feats, config), warmup=warm,
                         raw_label=raw["raw_label"], raw_rule=raw["raw_rule"], label=label)
    counts = label[~warm].value_counts().reindex(list(REGIME_LABELS), fill_value=0).astype(int)
    return RegimeResult(
        features=frame,
        label=str(label.iloc[-1]),
        as_of=pd.Timestamp(feats.index[-1]),
        is_warmup=bool(warm.iloc[-1]),
        counts=counts.rename("sessions"),
        spectral=spectral,
        config=config,
        null=spectral_null(config),
    )
