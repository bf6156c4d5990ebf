"""Tests of portfolio_assets/quant (mirrors the package)."""
