"""Local fake servers that speak vendor protocols, for tests and offline runs (127.0.0.1 only)."""
