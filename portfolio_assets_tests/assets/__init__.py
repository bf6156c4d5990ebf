"""Tests of portfolio_assets/assets (mirrors the package)."""
