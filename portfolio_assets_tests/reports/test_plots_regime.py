"""Tests for portfolio_assets.reports.plots.regime: the asset's chart and the long-history figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from portfolio_assets.quant.regimes import detect_regime
from portfolio_assets.reports.plots.regime import plot_regime, plot_regime_history

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def crash() -> tuple[pd.Series, object, object]:
    rng = np.random.default_rng(0)
    r = rng.normal(0.0, 0.01, 720)
    r[600:620] = -0.03 + 0.04 * rng.standard_normal(20)
    baseline = pd.Series(r, index=pd.bdate_range("2015-01-02", periods=720, name="session"))
    return baseline, detect_regime(baseline, None, spectral=False), detect_regime(baseline, None, spectral=True)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_plot_regime_writes_png_from_returns_or_prices(tmp_path, crash) -> None:
    baseline, _, result = crash
    from_returns = plot_regime(result, baseline, tmp_path / "regime.png")
    prices = 100 * (1 + baseline).cumprod()
    from_prices = plot_regime(result, prices, tmp_path / "sub" / "regime_prices.png", log_scale=True)
    for path in (from_returns, from_prices):
        data = path.read_bytes()
        assert _png_size(data) == (1100, 850) and len(data) > 20_000
    # atomic writes leave no temp file behind
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["regime.png", "regime_prices.png"]
    with pytest.raises(ValueError, match="kind: expected 'auto', 'prices' or 'returns', got 'price'"):
        plot_regime(result, baseline, tmp_path / "x.png", kind="price")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="baseline: no values on the result's sessions"):
        plot_regime(result, baseline.shift(3000, freq="D"), tmp_path / "x.png")


def test_plot_regime_history_one_panel_per_labelling(tmp_path, crash) -> None:
    baseline, off, on = crash
    prices = 100 * (1 + baseline).cumprod()
    path = plot_regime_history({"spectral off": off, "spectral on": on}, prices, tmp_path / "h.png", "test")
    width, height = _png_size(path.read_bytes())
    assert width == 1100 and height == round(100 * (3.2 * 2 + 2.6))
    with pytest.raises(ValueError, match="results: nothing to plot"):
        plot_regime_history({}, prices, tmp_path / "h.png", "test")
