"""The test suite. Importing the package first pins the floating-point kernels (`portfolio_assets.numerics`)
before anything in a test process loads NumPy, as the CLI and Dagster's processes do."""

import portfolio_assets  # noqa: F401
