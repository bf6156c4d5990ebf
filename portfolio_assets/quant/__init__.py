"""The science as plain functions of numpy/pandas objects (no Dagster import here; docs/ARCHITECTURE.md)."""
