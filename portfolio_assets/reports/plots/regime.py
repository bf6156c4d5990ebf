"""Regime figures: the ``market_regime`` asset's chart and the multi-decade calibration figure.

Both shade the baseline by label (QUIET green, NORMAL grey, TURBULENT orange, CRISIS red; warm-up
hatched) and draw ``vol_ann`` against the thresholds the rules use, so a reader can see *why* a
session got its label. Files are written atomically (:func:`portfolio_assets.lakehouse.atomic_write_bytes`).
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from portfolio_assets.constants import CRISIS, NORMAL, QUIET, TURBULENT
from portfolio_assets.lakehouse import atomic_write_bytes

if TYPE_CHECKING:
    from portfolio_assets.quant.regimes import RegimeResult

LABEL_COLORS = {QUIET: "#9fd89f", NORMAL: "#e6e6e6", TURBULENT: "#ffc266", CRISIS: "#ff7f7f"}
WARMUP = "WARMUP"


def _price(baseline: pd.Series, index: pd.Index, kind: Literal["auto", "prices", "returns"]) -> pd.Series:
    """Price on ``index`` from prices or simple returns (``kind="auto"``: prices when every value is
    positive and the median exceeds 0.5 — no daily return series looks like that)."""
    if kind not in ("auto", "prices", "returns"):
        raise ValueError(f"kind: expected 'auto', 'prices' or 'returns', got {kind!r}")
    series = pd.to_numeric(baseline, errors="coerce").reindex(index)
    finite = series.dropna()
    if finite.empty:
        raise ValueError("baseline: no values on the result's sessions")
    if kind == "auto":
        kind = "prices" if (finite > 0).all() and finite.median() > 0.5 else "returns"
    return series if kind == "prices" else (1.0 + series.fillna(0.0)).cumprod()


def _shade(ax: Any, frame: pd.DataFrame, legend: bool = True) -> None:
    """Shade ``ax`` by ``frame["label"]`` (warm-up hatched) across the full y range."""
    labels = frame["label"].where(~frame["warmup"].astype(bool), WARMUP)
    transform = ax.get_xaxis_transform()
    for name, color in [*LABEL_COLORS.items(), (WARMUP, "none")]:
        mask = (labels == name).to_numpy()
        if mask.any():
            ax.fill_between(frame.index, 0, 1, where=mask, transform=transform, facecolor=color,
                            edgecolor="#bbbbbb" if name == WARMUP else "none",
                            hatch="//" if name == WARMUP else None, alpha=0.8, step="mid", linewidth=0,
                            label=name.title() if legend else None)


def _volatility_panel(ax: Any, result: RegimeResult) -> None:
    """``vol_ann`` with the fixed bands and ``turbulent_vol_ratio x vol_ref`` (percent per year)."""
    frame, c = result.features, result.config
    ax.plot(frame.index, 100 * frame["vol_ann"].to_numpy(), color="black", linewidth=0.7, label="vol_ann")
    ax.plot(frame.index, 100 * c.turbulent_vol_ratio * frame["vol_ref"].to_numpy(), color="tab:orange",
            linewidth=0.8, linestyle="--", label=f"{c.turbulent_vol_ratio:g} x vol_ref")
    for value, color, name in ((c.quiet_vol_ann, "tab:green", "quiet_vol_ann"),
                               (c.turbulent_vol_ann, "tab:orange", "turbulent_vol_ann"),
                               (c.crisis_vol_ann, "tab:red", "crisis_vol_ann")):
        ax.axhline(100 * value, color=color, linewidth=0.8, linestyle=":", label=f"{name} {value:.0%}")
    ax.set_ylabel("volatility, %/yr")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", fontsize=7, ncol=5)


def _log_axis(ax: Any) -> None:
    """Log-scale y axis labelled in plain numbers (1,000 rather than 10^3)."""
    from matplotlib.ticker import FuncFormatter

    ax.set_yscale("log")
    plain = FuncFormatter(lambda value, _pos: f"{value:,.4g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.tick_params(axis="y", which="minor", labelsize=7)


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _figure(height: float, rows: int, ratios: list[float]) -> tuple[Any, Any]:
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, height), dpi=100, layout="constrained")
    return fig, fig.subplots(rows, 1, sharex=True, height_ratios=ratios)


def plot_regime(
    result: RegimeResult,
    baseline: pd.Series,
    path: str | os.PathLike[str],
    kind: Literal["auto", "prices", "returns"] = "auto",
    log_scale: bool = False,
) -> Path:
    """Write a PNG: the baseline's cumulative price shaded by label; ``vol_ann`` against the bands
    the rules use; ``vol_pct``, ``turbulence_pct`` and ``dwt_hf_share`` (with its white-noise
    expectation and threshold).

    ``baseline`` holds prices or simple returns (``kind``, see :func:`_price`); a named series is
    labelled with its name (the baseline's symbol); ``log_scale`` puts the price on a log axis.
    Returns ``path``.
    """
    import matplotlib.style

    frame = result.features
    price = _price(baseline, frame.index, kind)
    with matplotlib.style.context("default"):
        fig, (ax_price, ax_vol, ax_feat) = _figure(8.5, 3, [3, 2, 2])
        _shade(ax_price, frame)
        name = f"baseline {baseline.name}" if isinstance(baseline.name, str) and baseline.name else "baseline"
        ax_price.plot(price.index, price.to_numpy(), color="black", linewidth=1.0, label=name)
        if log_scale:
            _log_axis(ax_price)
        ax_price.set_ylabel("cumulative price")
        ax_price.set_title(f"Market regime as of {result.as_of:%Y-%m-%d}: {result.label}"
                           f"{' (warm-up)' if result.is_warmup else ''}"
                           f" — spectral {'on' if result.spectral else 'off'}")
        ax_price.legend(loc="upper left", fontsize=8, ncol=6)
        _volatility_panel(ax_vol, result)
        for col, color in (("vol_pct", "tab:blue"), ("turbulence_pct", "tab:purple"), ("dwt_hf_share", "tab:green")):
            ax_feat.plot(frame.index, frame[col].to_numpy(), color=color, linewidth=0.7, label=col)
        ax_feat.axhline(result.null.hf_share_expected, color="tab:green", linestyle=":", linewidth=0.8,
                        label="dwt_hf_share white noise")
        ax_feat.axhline(result.null.hf_share_threshold, color="tab:green", linestyle="--", linewidth=0.8,
                        label=f"dwt_hf_share noise {1 - result.null.alpha:.0%} quantile")
        ax_feat.set_ylim(0, 1.02)
        ax_feat.set_ylabel("percentile / share")
        ax_feat.legend(loc="upper left", fontsize=7, ncol=3)
        data = _png(fig)
    return atomic_write_bytes(Path(path), data)


def plot_regime_history(
    results: Mapping[str, RegimeResult],
    prices: pd.Series,
    path: str | os.PathLike[str],
    title: str,
) -> Path:
    """Write a PNG for a long history: one log-scale price panel per labelling in ``results``
    (e.g. ``{"spectral off": ..., "spectral on": ...}``), shaded by label, then ``vol_ann`` against
    the bands of the first result's configuration. ``prices`` are the baseline's closes."""
    import matplotlib.style

    if not results:
        raise ValueError("results: nothing to plot")
    first = next(iter(results.values()))
    with matplotlib.style.context("default"):
        fig, axes = _figure(3.2 * len(results) + 2.6, len(results) + 1, [3] * len(results) + [2])
        for i, (name, result) in enumerate(results.items()):
            ax = axes[i]
            frame = result.features
            price = _price(prices, frame.index, "prices")
            _shade(ax, frame, legend=i == 0)
            ax.plot(price.index, price.to_numpy(), color="black", linewidth=0.8)
            _log_axis(ax)
            shares = " · ".join(f"{k.title()} {v:.0%}" for k, v in result.fractions.items())
            ax.set_title(f"{name}: {shares}", fontsize=10)
            ax.set_ylabel("index (log)")
            if i == 0:
                ax.legend(loc="upper left", fontsize=8, ncol=5)
        _volatility_panel(axes[-1], first)
        fig.suptitle(title)
        data = _png(fig)
    return atomic_write_bytes(Path(path), data)
