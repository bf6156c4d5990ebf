"""The project's benchmarks (outside the package; run from the project root).

`python -m benchmarks` (`make bench`) prints one table timing the real assets through Dagster and
comparing ours with reference libraries: `runner.py` (plan, order, output), `table.py` (rows,
timing, memory, rendering), `graph.py` (one materialization's step timings from the event log, the
CLI run), `references.py` (skfolio, riskfolio-lib, pandas), `scale.py` (5,000 and 20,000 symbols),
`backfill.py` (CLI backfill), `executors.py` (in_process / multiprocess / celery). The other
modules are standalone scripts (`python benchmarks/NAME.py`): `tournament_vs_skfolio.py`,
`selection_scale.py`, `convex_formulations.py`, `regimes_report.py`.
"""

import portfolio_assets  # noqa: F401  (first: pins the floating-point kernels before NumPy loads, numerics.py)
