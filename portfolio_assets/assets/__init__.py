"""The Dagster assets and asset checks of the runbook, one module per group (run, discovery, universe,
history, risk, allocation, validation, reporting, audit, implementation)."""
