"""Tests of portfolio_assets/ledger (mirrors the package)."""
