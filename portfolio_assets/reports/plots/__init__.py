"""Figures for the reports (matplotlib, imported lazily by the callers)."""
