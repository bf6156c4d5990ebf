"""Tests of portfolio_assets/reports (mirrors the package)."""
