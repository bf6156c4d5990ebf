"""QuantStats pages rendered over several processes are the pages one process writes.

`reports.tearsheet.render_quantstats` spreads the HTML tear-sheets (most of a report's time) over
child interpreters. Each page must be byte-identical to the page the same job writes in this
process (matplotlib's SVG ids and dates are pinned: `tearsheet.reproducible_svg`), come back in
the order of the jobs, and an error in one page must reach the caller.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from portfolio_assets.reports.tearsheet import render_quantstats, tearsheet_processes


def _jobs(out, n: int) -> list[dict]:
    idx = pd.bdate_range("2024-01-02", periods=320)
    rng = np.random.default_rng(7)
    bench = pd.Series(rng.normal(0.0003, 0.01, len(idx)), index=idx)
    return [{"returns": pd.Series(rng.normal(0.0004 + 0.0001 * i, 0.012, len(idx)), index=idx),
             "benchmark": bench, "path": out / f"engine{i}.html", "title": f"engine{i} vs SPY",
             "strategy_title": f"engine{i}", "benchmark_title": "SPY"} for i in range(n)]


@pytest.mark.slow
def test_pages_from_two_processes_equal_the_pages_of_one(tmp_path):
    said_one: list[str] = []
    said_two: list[str] = []
    serial = render_quantstats(_jobs(tmp_path / "one", 3), processes=1, say=said_one.append)
    parallel = render_quantstats(_jobs(tmp_path / "two", 3), processes=2, say=said_two.append)
    # Progress counted from the pages written: the first count and the last always said.
    assert said_one[0] == "progress QuantStats: 1/3 pages written"
    for said in (said_one, said_two):
        assert said[-1] == "progress QuantStats: 3/3 pages written", said
        counts = [int(line.split(": ")[1].split("/")[0]) for line in said]
        assert counts == sorted(set(counts)) and all(0 < c <= 3 for c in counts), said
    assert [p.name for p in parallel] == ["engine0.html", "engine1.html", "engine2.html"]  # order of the jobs
    for a, b in zip(serial, parallel, strict=True):
        assert b.parent == tmp_path / "two"
        page = b.read_text()
        assert "engine" in page and len(page) > 50_000
        assert a.read_bytes() == b.read_bytes(), f"{b.name} differs from the single-process page"
        # The SVG date is the data's last session (matplotlib would stamp the time of rendering).
        last = pd.bdate_range("2024-01-02", periods=320)[-1]
        assert set(re.findall(r"<dc:date>([^<]*)</dc:date>", page)) == {f"{last.date()}T00:00:00+00:00"}, b.name
    assert serial[0].read_bytes() != serial[1].read_bytes()
    assert not list(tmp_path.glob("**/*.tmp*"))


def test_an_error_in_one_page_reaches_the_caller(tmp_path):
    jobs = _jobs(tmp_path, 2)
    jobs[1]["returns"] = jobs[1]["returns"].iloc[:0]  # empty: quantstats_tearsheet refuses it
    with pytest.raises(RuntimeError, match=r"tear-sheet process 2/2 exited 1: .*"
                                           r"ValueError: returns of 'engine1' are empty: no tear-sheet"):
        render_quantstats(jobs, processes=2)
    assert (tmp_path / "engine0.html").stat().st_size > 50_000  # the other process's page is written


def test_process_count_is_bounded_by_pages_and_cores():
    assert tearsheet_processes(1) == 1
    assert 1 <= tearsheet_processes(50) <= 50
    assert tearsheet_processes(0) == 1
