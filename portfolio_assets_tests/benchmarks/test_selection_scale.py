"""benchmarks/selection_scale.py at a tiny size: the table is complete, the memory probe measures
what it claims, and the reference comparisons agree."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from benchmarks import selection_scale as S


def test_peak_above_start_sees_a_known_allocation():
    def allocate() -> float:
        a = np.ones(25_000_000)  # 200 MB, touched
        return float(a[-1])

    out, seconds, peak_mb, process_mb = S.peak_above_start(allocate)
    assert out == 1.0 and seconds > 0
    assert 185 <= peak_mb <= 260, peak_mb
    assert process_mb >= peak_mb
    _, _, idle_mb, _ = S.peak_above_start(lambda: None)
    assert idle_mb < 20, idle_mb  # the mark was reset: the earlier 200 MB is not counted again


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return S.selection_scale([40], date=dt.date(2026, 11, 25), cache=tmp_path_factory.mktemp("scale"),
                             reference_max=40)


def test_tiny_table_is_complete_and_agrees_with_the_references(table):
    assert list(table.columns) == list(S.COLUMNS) and len(table) == 1
    row = table.iloc[0]
    assert row["n_equities"] == 40 and row["symbols"] > 40  # + ETFs, crypto, forex and the baseline
    assert row["build s"] > 0 and row["select s"] > 0 and row["select warm s"] > 0
    assert 0 < row["select peak MB"] < row["process peak MB"]
    assert row["dtype"] == "float64"  # far below selection.float32_min_symbols
    assert bool(row["same clusters other dtype"]) and row["max |dheight|"] < 1e-5
    assert row["max |drho|"] <= 1e-10
    for c in ("corr / pandas", "gappy corr / pandas"):
        assert np.isfinite(row[c]) and row[c] > 0
    assert row["winners"] >= 10 and row["clusters"] >= 1
    text = S.format_table(table)
    assert text.splitlines()[0].split()[:3] == ["n_equities", "symbols", "build"]


def test_inputs_are_cached(table, tmp_path_factory):
    cache = tmp_path_factory.mktemp("scale_cache")
    first = S.build_inputs(40, dt.date(2026, 11, 25), cache)
    again = S.build_inputs(40, dt.date(2026, 11, 25), cache)
    assert first[:2] == again[:2] and first[2] > 0 and again[2] == 0.0
