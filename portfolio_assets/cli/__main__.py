"""`python -m portfolio_assets.cli`: the `portfolio-assets` command."""

import sys

from portfolio_assets.cli import main

sys.exit(main())
