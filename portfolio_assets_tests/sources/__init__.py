"""Tests of portfolio_assets/sources (mirrors the package)."""
