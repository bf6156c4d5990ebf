"""The whole graph on real history: skfolio's S&P 500 closes (the session fixture `realdata`) run
end to end at crash and calm dates with the command line of issue 13.

One module fixture runs the four dates, newest first (after 2021-06-14, the session before the
newest, so one index has a previous session to compare with), into one lakehouse (a book is refused when an
earlier partition's holdings exist but the previous session's do not, so a later date is never run
after an earlier one) in one Python process that calls the CLI's `main` once per date (no
subprocess start-up per date). QuantStats HTML is rendered for one date only (2021-06-15, where the
tests read its title); the others add `--set reports.quantstats_html=false`. Every test below reads
what the runs stored.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from portfolio_assets_tests.conftest import PROJECT_ROOT, GraphRun, check_lines, graph_env
from portfolio_assets_tests.realdata import BASELINE

CRASH = ("2008-10-15", "2020-03-20")
CALM = ("2017-06-15", "2021-06-15")
DATES = ("2021-06-15", "2020-03-20", "2017-06-15", "2008-10-15")  # newest first (see the docstring)
# Run first, so that 2021-06-15's index compares with a stored previous session.
PREVIOUS = "2021-06-14"
RUNS = (PREVIOUS, *DATES)
WITH_QUANTSTATS = "2021-06-15"
STRESSED, CALM_LABELS = {"TURBULENT", "CRISIS"}, {"QUIET", "NORMAL"}

# Calls the CLI's entry point once per date in this one process; prints a JSON line per run.
DRIVER = """
import contextlib, io, json, os, sys
from portfolio_assets.cli import main
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    print(json.dumps({"date": argv[argv.index("--date") + 1], "code": code, "stdout": out.getvalue(),
                      "stderr": err.getvalue()[-4000:]}), flush=True)
sys.stderr.flush()
os._exit(0)  # as `cli.run_program`: no interpreter teardown (Arrow's thread pool can abort it, exit -6)
"""


def command(date: str, data: Path) -> list[str]:
    """The issue's command for `date` (QuantStats only for WITH_QUANTSTATS)."""
    argv = ["run", "--profile", "demo", "--date", date, "--set", "source.kind=files",
            "--set", f"source.settings.path={data}", "--set", f"selection.baseline={BASELINE}"]
    return argv if date == WITH_QUANTSTATS else [*argv, "--set", "reports.quantstats_html=false"]


@pytest.fixture(scope="module")
def real_runs(realdata: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[GraphRun, dict[str, dict]]:
    base = tmp_path_factory.mktemp("real_history")
    run = GraphRun(base / "lakehouse", base / "dagster_home", "demo")
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps([command(d, realdata) for d in RUNS])],
                          env=graph_env(run.lakehouse, run.dagster_home, "demo"), cwd=PROJECT_ROOT,
                          capture_output=True, text=True)
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            rec = json.loads(line)
            results[rec["date"]] = rec
    assert proc.returncode == 0 and set(results) == set(RUNS), (
        f"driver exit {proc.returncode}, runs {sorted(results)}\n{proc.stderr[-4000:]}")
    return run, results


def table(run: GraphRun, group: str, asset: str, date: str) -> pd.DataFrame:
    return pd.read_parquet(run.root / group / asset / f"{date}.parquet")


def index_md(run: GraphRun, date: str) -> str:
    return (run.root / "reports" / date / "index.md").read_text()


def decision(text: str) -> dict[str, str]:
    """The index's Decision table as {item: value}."""
    block = text.split("## Decision", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in block.splitlines() if line.startswith("| ") and not line.startswith("| item")]
    return {cells[0]: cells[1] for cells in ([c.strip() for c in r.strip("|").split(" | ")] for r in rows)}


@pytest.mark.parametrize("date", RUNS)
def test_every_run_succeeds_with_its_gates_decided_and_orders_when_they_pass(real_runs, date):
    run, results = real_runs
    rec = results[date]
    assert rec["code"] == 0, f"{date}: exit {rec['code']}\n{rec['stdout'][-3000:]}\n{rec['stderr']}"
    assert re.search(r"^run id: \S+ \(success\)$", rec["stdout"], re.M), rec["stdout"][-3000:]
    checks = check_lines(rec["stdout"])
    gates = ("history_500d:health_gate", "target_weights:weights_sanity", "audit_ledger:ledger_integrity")
    assert set(gates) <= set(checks), checks
    for gate in gates:  # passed, or failed with its reason recorded
        assert re.match(r"^(passed|FAILED) \S", checks[gate]), f"{date} {gate}: {checks[gate]!r}"
    orders_path = run.root / "implementation" / "implementation_orders" / f"{date}.parquet"
    if all(checks[g].startswith("passed") for g in gates):
        orders = pd.read_parquet(orders_path)
        assert (orders["action"] != "HOLD").any(), f"{date}: gates passed but no order was proposed"
        target = table(run, "allocation", "target_weights", date)
        prod = target[target["is_production"]].set_index("symbol")["net_weight"]
        # The first book is empty, so the orders open exactly the production target.
        assert orders.set_index("symbol")["target_net_weight"].reindex(prod.index).tolist() == pytest.approx(prod.tolist())
    else:
        assert not orders_path.exists(), f"{date}: a gate failed yet orders were stored"


def test_stored_regime_labels_agree_with_market_history(real_runs):
    run, _ = real_runs
    labels = {d: str(table(run, "risk", "market_regime", d)["label"].iloc[-1]) for d in DATES}
    assert {d: labels[d] for d in CRASH} == {d: labels[d] for d in CRASH if labels[d] in STRESSED}, labels
    assert {d: labels[d] for d in CALM} == {d: labels[d] for d in CALM if labels[d] in CALM_LABELS}, labels
    for date in DATES:  # the index states the stored label and today's rule
        reg = table(run, "risk", "market_regime", date)
        row = decision(index_md(run, date))["Regime"]
        assert row.startswith(f"**{labels[date]}** since "), row
        assert f"Today's rule: `{reg['raw_rule'].iloc[-1]}`" in row, row


def test_every_tournament_window_records_its_fallbacks_and_relaxations(real_runs):
    run, _ = real_runs
    for date in DATES:
        win = table(run, "validation", "tournament__windows", date)
        summary = table(run, "validation", "tournament", date)
        per_window = win.drop_duplicates(["engine", "simulator", "k"])
        # A window whose weights came from another engine names the fallback that produced them.
        fell_back = per_window[per_window["engine_used"] != per_window["engine"]]
        assert (fell_back["fallbacks"].fillna("").str.strip() != "").all(), fell_back[["engine", "k", "engine_used"]]
        counted = per_window.groupby(["engine", "simulator"]).agg(
            n_relaxed=("relaxations", lambda s: int((s.fillna("").str.strip() != "").sum())))
        stored = summary.set_index(["engine", "simulator"])["n_relaxed"].astype(int)
        assert stored.sort_index().to_dict() == counted["n_relaxed"].sort_index().to_dict(), date


def test_reports_read_correctly_on_real_data(real_runs):
    run, _ = real_runs
    for date in DATES:
        text = index_md(run, date)
        assert "SYNTHETIC" not in text and "look-ahead." not in text, date  # real data, point-in-time
        rows = decision(text)
        assert rows["Data"].startswith(f"`files` source; baseline {BASELINE}; point-in-time tournament"), rows["Data"]
        # The funnel is the run's own counts: scanned rows, raw pool and its directions, selected.
        rp = table(run, "universe", "raw_pool__audit", date)
        audit = table(run, "universe", "selected_universe__audit", date)
        raw = rp[rp["stage"] == "raw_pool"].groupby("direction")["count"].sum()
        scanned = int(rp.loc[rp["stage"] == "scanned", "count"].sum())
        split = ", ".join(f"{d} {int(raw[d])}" for d in ("long", "short") if d in raw.index)
        funnel = text.split("## 1. Universe funnel", 1)[1].strip().splitlines()[0]
        assert funnel.startswith(f"scanned {scanned} "), funnel
        assert f"→ raw pool {len(audit)} ({split}) →" in funnel, funnel
        assert funnel.endswith(f"→ selected {int(audit['selected'].sum())} (incl. the baseline {BASELINE})."), funnel
        # Tear-sheets and comparisons are against the configured baseline.
        sheet = (run.root / "reports" / date / "tearsheets" / "barbell__realized.md").read_text()
        assert f"Benchmark: `market` engine ({BASELINE} held)" in sheet
        assert f"Market hold ({BASELINE})" in (run.root / "reports" / date / "backtest_comparison.md").read_text()
        # The index's proposed orders are the orders implementation_orders stored (the gates passed).
        orders = table(run, "implementation", "implementation_orders", date)
        trades = orders[orders["action"] != "HOLD"].sort_values(["size", "symbol"], ascending=[False, True])
        block = text.split("## Today's proposed orders", 1)[1].split("\n## ", 1)[0]
        shown = [line.split(" | ")[:4] for line in block.splitlines() if line.startswith("| ") and "symbol" not in line]
        assert [[c.strip("| ") for c in r] for r in shown] == [
            [t.symbol, t.action, t.direction, f"{t.size:.2%}"] for t in trades.itertuples()]
    html = (run.root / "reports" / WITH_QUANTSTATS / "tearsheets" / "barbell__realized.html").read_text()
    assert f"barbell (realized) vs {BASELINE}, {WITH_QUANTSTATS}" in html and "\ufe6a" not in html


def test_the_production_engine_row_says_when_it_fell_back_or_relaxed_caps(real_runs):
    run, _ = real_runs
    for date in DATES:
        summary = table(run, "validation", "tournament", date)
        prod = summary[(summary["engine"] == "barbell") & (summary["simulator"] == "realized")].iloc[0]
        flags = decision(index_md(run, date))["Flags"]
        n_windows = table(run, "validation", "tournament__windows", date)["k"].nunique()
        assert (f"FELL BACK in {int(prod['n_fallbacks'])} of {n_windows} tournament windows" in flags) == (
            prod["n_fallbacks"] > 0), (date, flags)
        assert (f"RELAXED CAPS in {int(prod['n_relaxed'])} of {n_windows} tournament windows" in flags) == (
            prod["n_relaxed"] > 0), (date, flags)
        realized = summary[summary["simulator"] == "realized"].sort_values(
            ["sharpe", "engine"], ascending=[False, True], na_position="last", kind="mergesort")
        rank = list(realized["engine"]).index("barbell") + 1
        assert decision(index_md(run, date))["Rank (realized, by Sharpe)"].startswith(
            f"{rank} of {len(realized)} engines"), date


def test_the_index_compares_with_the_stored_previous_session(real_runs):
    run, results = real_runs
    assert results[PREVIOUS]["code"] == 0
    text = index_md(run, "2021-06-15")
    before, now = (table(run, "allocation", "target_weights", d) for d in (PREVIOUS, "2021-06-15"))
    prev = before[before["is_production"]].set_index("symbol")["net_weight"]
    cur = now[now["is_production"]].set_index("symbol")["net_weight"]
    both = prev.index.intersection(cur.index)
    moved = (cur[both] - prev[both]).abs() > 1e-12
    change = (cur.reindex(cur.index.union(prev.index), fill_value=0.0)
              - prev.reindex(cur.index.union(prev.index), fill_value=0.0)).abs().sum() / 2
    up = int(((cur[both] - prev[both]) > 1e-12).sum())
    assert (f"Production target against {PREVIOUS}: added {len(cur.index.difference(prev.index))}, "
            f"removed {len(prev.index.difference(cur.index))}, up {up}, down {int(moved.sum()) - up}, "
            f"unchanged {len(both) - int(moved.sum())}; one-way change {change:.2%} of NAV.") in text
    # Nothing was accepted on 2021-06-14, so the book is still empty: the orders open the whole target.
    assert table(run, "implementation", "holdings", "2021-06-15").empty
    for date in (PREVIOUS, *DATES[1:]):  # no previous session stored for the others
        assert "the previous session's target weights are not stored" in index_md(run, date), date
