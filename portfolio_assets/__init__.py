"""portfolio_assets: the daily portfolio runbook as a Dagster asset graph (README.md, docs/ARCHITECTURE.md).

Importing the package pins the floating-point kernels before NumPy loads (`numerics.py`), so the
same inputs give the same tables and hashes on every x86-64 machine.
"""

from portfolio_assets.numerics import pin as _pin_numerics

_pin_numerics()
