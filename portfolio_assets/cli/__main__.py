"""`python -m portfolio_assets.cli`: the `portfolio-assets` command."""

from portfolio_assets.cli import run_program

run_program()
