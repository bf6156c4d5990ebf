"""Tests of the command-line interface (portfolio_assets/cli)."""
