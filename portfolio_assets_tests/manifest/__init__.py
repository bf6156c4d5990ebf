"""Tests of portfolio_assets/manifest.py and manifest_input.py (mirrors the package)."""
