"""Tear-sheets of one out-of-sample return series: Markdown (metrics, monthly matrix, annual
returns, worst drawdowns, walk-forward windows) and QuantStats HTML (offline).

Conventions (shared with `quant.metrics`): daily *simple* returns as fractions, `NaN` days dropped
before anything is computed, 252 sessions per year. Every metric shown comes from
`quant.metrics.summarize` on the very series that is tabulated; turnover and costs, which a return
series cannot give, come from the tournament summary.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from portfolio_assets.lakehouse import atomic_write_bytes
from portfolio_assets.quant.metrics import summarize
from portfolio_assets.reports.markdown import md_link, md_table, tidy_cells

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# Below this (relative to the running peak) wealth counts as "at the peak": float noise of a
# compounded product must not open a phantom drawdown.
DRAWDOWN_TOLERANCE = 1e-12

# Display format of every metric column (fractions shown as %, ratios with 3 decimals, turnover as
# a multiple of NAV). One table of formats so every report prints a metric the same way.
METRIC_FORMATS: dict[str, str] = {
    "total_return": ".2%",
    "cagr": ".2%",
    "ann_vol": ".2%",
    "sharpe": ".3f",
    "sortino": ".3f",
    "max_drawdown": ".2%",
    "calmar": ".3f",
    "var_95": ".2%",
    "cvar_95": ".2%",
    "win_rate": ".1%",
    "n_days": ".0f",
    "turnover_one_way": ".2f",
    "costs_paid": ".3%",
    "n_fallbacks": ".0f",
    "n_relaxed": ".0f",
    "n_violations": ".0f",
}

METRIC_LABELS: dict[str, str] = {
    "total_return": "Total return",
    "cagr": "CAGR (annualized)",
    "ann_vol": "Volatility (annualized)",
    "sharpe": "Sharpe",
    "sortino": "Sortino",
    "max_drawdown": "Max drawdown",
    "calmar": "Calmar",
    "var_95": "VaR 95% (daily, historical)",
    "cvar_95": "CVaR 95% (daily, historical)",
    "win_rate": "Win rate (non-flat days)",
    "n_days": "Sessions",
    "turnover_one_way": "Turnover (one-way, x NAV, total)",
    "costs_paid": "Costs paid (of NAV, total)",
}

# A QuantStats page links its favicon from the web; dropped so opening the file fetches nothing.
_BODY_RE = re.compile(r"<body[^>]*>", re.IGNORECASE)
_EXTERNAL_FAVICON_RE = re.compile(r"""<link[^>]*rel=["']shortcut icon["'][^>]*https?://[^>]*>\s*""", re.IGNORECASE)


def _series(returns: pd.Series, name: str) -> pd.Series:
    """`returns` as a float Series on a sorted DatetimeIndex with NaN days dropped."""
    if not isinstance(returns, pd.Series):
        raise ValueError(f"{name} must be a pd.Series of daily returns, got {type(returns).__name__}")
    if not isinstance(returns.index, pd.DatetimeIndex):
        raise ValueError(f"{name} must be indexed by session (DatetimeIndex), got {type(returns.index).__name__}")
    if not returns.index.is_monotonic_increasing or not returns.index.is_unique:
        raise ValueError(f"{name}: sessions must be strictly increasing")
    r = returns.astype(float).dropna()
    if np.isinf(r.to_numpy()).any():
        raise ValueError(f"{name} contains +/-inf; a daily simple return must be finite")
    return r


def drawdown_periods(returns: pd.Series, top: int | None = None) -> pd.DataFrame:
    """Drawdown episodes of compounded wealth, worst first.

    Wealth `W_t = prod_{s<=t}(1 + r_s)` starts at 1 before the first session, and that starting
    capital counts as a peak (as in `quant.metrics.max_drawdown`); drawdown
    `dd_t = W_t / max(1, max_{s<=t} W_s) - 1`. An episode is a maximal run of sessions with
    `dd_t < -DRAWDOWN_TOLERANCE`. Columns:

    * `start`: first session under water; `trough`: session of the lowest `dd` in the episode
      (first one on ties); `end`: first session back at the peak (the recovery), `NaT` if the
      series ends under water;
    * `depth`: the trough's `dd` (a fraction <= 0; the worst depth equals `max_drawdown`);
    * `length`: sessions under water (`start` through the session before `end`).

    Sorted by `depth` ascending, ties by `start`; `top` keeps the first `top` rows.
    """
    r = _series(returns, "returns")
    columns = ["start", "trough", "end", "depth", "length"]
    if r.empty:
        return pd.DataFrame(columns=columns)
    wealth = np.cumprod(1.0 + r.to_numpy())
    peak = np.maximum.accumulate(np.maximum(wealth, 1.0))
    dd = wealth / peak - 1.0
    edges = np.diff(np.concatenate(([0], (dd < -DRAWDOWN_TOLERANCE).astype(np.int8), [0])))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    index = r.index
    rows = []
    for s, e in zip(starts, stops, strict=True):
        t = s + int(np.argmin(dd[s:e]))
        rows.append({
            "start": index[s],
            "trough": index[t],
            "end": index[e] if e < len(index) else pd.NaT,
            "depth": float(dd[t]),
            "length": int(e - s),
        })
    frame = pd.DataFrame(rows, columns=columns)
    frame = frame.sort_values(["depth", "start"], kind="mergesort").reset_index(drop=True)
    return frame if top is None else frame.head(int(top))


def monthly_returns(returns: pd.Series) -> pd.DataFrame:
    """Compounded return per calendar month: rows `year`, columns `Jan`..`Dec` (fractions).

    A cell is `prod(1 + r_t) - 1` over the sessions of that month; months without a session are NaN.
    """
    r = _series(returns, "returns")
    grouped = (1.0 + r).groupby([r.index.year, r.index.month]).prod() - 1.0
    table = grouped.unstack() if len(grouped) else pd.DataFrame()
    table = table.reindex(columns=range(1, 13))
    table.columns = list(MONTHS)
    table.index.name = "year"
    return table.astype(float)


def annual_returns(returns: pd.Series) -> pd.Series:
    """Compounded return per calendar year `prod(1 + r_t) - 1` (fractions), index `year`."""
    r = _series(returns, "returns")
    out = (1.0 + r).groupby(r.index.year).prod() - 1.0
    out.index.name = "year"
    return out.astype(float)


def _metrics_block(
    columns: Mapping[str, pd.Series],
    turnover: Mapping[str, float],
    costs: Mapping[str, float],
    rf: float,
) -> str:
    """Metric rows x named series columns; each column is `summarize` of its series."""
    stats = {name: summarize(s, turnover.get(name, np.nan), costs.get(name, np.nan), rf) for name, s in columns.items()}
    rows = []
    for metric, label in METRIC_LABELS.items():
        spec = METRIC_FORMATS[metric]
        row: dict[str, object] = {"metric": label}
        for name in columns:
            value = stats[name][metric]
            row[name] = "" if np.isnan(value) else format(value, spec)
        rows.append(row)
    return md_table(pd.DataFrame(rows))


def _drawdown_block(returns: pd.Series, n: int) -> str:
    dd = drawdown_periods(returns, top=n)
    if dd.empty:
        return "No drawdown: wealth never fell below its running peak."
    shown = tidy_cells(dd)
    shown["end"] = ["ongoing" if v == "" else v for v in shown["end"]]
    return md_table(shown, formats={"depth": ".2%"})


def tearsheet_markdown(
    *,
    engine: str,
    simulator: str,
    partition: str,
    returns: pd.Series,
    benchmark: pd.Series,
    benchmark_label: str,
    turnover: float,
    costs: float,
    benchmark_turnover: float,
    benchmark_costs: float,
    is_production: bool,
    windows: pd.DataFrame | None = None,
    html_name: str | None = None,
    index_link: str = "../index.md",
    n_drawdowns: int = 5,
    rf: float = 0.0,
) -> str:
    """The Markdown tear-sheet of `engine` under `simulator`.

    Sections: metrics of the strategy and the benchmark (`summarize` of each series; `turnover` and
    `costs` are the tournament's totals), monthly return matrix (compounded, rows years), annual
    returns with the excess over the benchmark, the `n_drawdowns` worst drawdowns
    (`drawdown_periods`), and the walk-forward windows of this engine x simulator when `windows`
    (rows of the tournament's window table) is given. `html_name` links the QuantStats page.
    """
    strat = _series(returns, f"returns of {engine}/{simulator}")
    bench = _series(benchmark, f"benchmark returns for {engine}/{simulator}")
    if strat.empty:
        raise ValueError(f"returns of {engine}/{simulator} are empty: nothing to report")
    label = f"{engine} (production)" if is_production else engine
    parts = [
        f"# Tear-sheet: {label}, {simulator} simulator, {partition}",
        f"Out-of-sample walk-forward returns, {strat.index[0]:%Y-%m-%d} to {strat.index[-1]:%Y-%m-%d} "
        f"({len(strat)} sessions). Benchmark: {benchmark_label}, same simulator. "
        "Returns are daily simple returns compounded; annualization uses 252 sessions.",
        " · ".join(
            [md_link("Back to the index", index_link)]
            + ([md_link("QuantStats HTML tear-sheet", html_name)] if html_name else [])
        ),
        "## Metrics",
        _metrics_block(
            {engine: strat, "benchmark": bench},
            {engine: turnover, "benchmark": benchmark_turnover},
            {engine: costs, "benchmark": benchmark_costs},
            rf,
        ),
        "## Monthly returns (compounded)",
        md_table(monthly_returns(strat), floatfmt=".2%", index=True),
        "## Annual returns",
    ]
    yearly = pd.DataFrame({engine: annual_returns(strat), "benchmark": annual_returns(bench)})
    yearly["excess"] = yearly[engine] - yearly["benchmark"]
    parts += [
        md_table(yearly, floatfmt=".2%", index=True),
        f"## Worst {n_drawdowns} drawdowns",
        "Start = first session under water, end = first session back at the previous peak; "
        "length in sessions under water; depth relative to the peak.",
        _drawdown_block(strat, n_drawdowns),
    ]
    if windows is not None and not windows.empty:
        cols = [c for c in _WINDOW_COLUMNS if c in windows.columns]
        parts += [
            "## Walk-forward windows",
            md_table(tidy_cells(windows.sort_values("k")[cols]), formats=METRIC_FORMATS),
        ]
    return "\n\n".join(parts) + "\n"


_WINDOW_COLUMNS: Sequence[str] = (
    "k", "test_first", "test_last", "regime", "n_buckets", "total_return", "sharpe", "max_drawdown",
    "turnover_one_way", "costs_paid", "engine_used", "fallbacks", "relaxations", "violations",
)


def quantstats_tearsheet(
    returns: pd.Series,
    benchmark: pd.Series,
    path: Path,
    *,
    title: str,
    strategy_title: str,
    benchmark_title: str,
    banner_html: str = "",
) -> Path:
    """Write QuantStats' HTML tear-sheet of `returns` against `benchmark` to `path`, offline.

    The benchmark must be a return `pd.Series` (QuantStats would download a ticker string). The
    page is generated into a temp file beside `path`, its external favicon link is removed, its
    small percent sign (U+FE6A, "CAGR﹪", a missing glyph in Chromium's default fonts) becomes
    "%", `banner_html` (the reports' synthetic-data / look-ahead banners) is inserted at the top
    of the body, and the result replaces `path` atomically. Figures QuantStats leaves open are
    closed.
    """
    if not isinstance(benchmark, pd.Series):
        raise ValueError(
            "benchmark must be a pd.Series of returns (a ticker string would make QuantStats go online)"
        )
    strat = _series(returns, "returns").rename(strategy_title)
    bench = _series(benchmark, "benchmark").rename(benchmark_title)
    if strat.empty:
        raise ValueError(f"returns of {strategy_title!r} are empty: no tear-sheet")
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import quantstats as qs

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.html")
    open_before = set(plt.get_fignums())
    try:
        with warnings.catch_warnings(), reproducible_svg(strategy_title, strat.index.max()):
            # seaborn (inside QuantStats) announces its own deprecations; they are not ours to fix
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            qs.reports.html(
                strat,
                benchmark=bench,
                output=str(tmp),
                title=title,
                strategy_title=strategy_title,
                benchmark_title=benchmark_title,
                periods_per_year=252,
            )
        page = _EXTERNAL_FAVICON_RE.sub("", tmp.read_text(encoding="utf-8")).replace("\ufe6a", "%")
        if banner_html:
            page, n = _BODY_RE.subn(lambda m: m.group(0) + "\n" + banner_html, page, count=1)
            if n != 1:
                raise ValueError("QuantStats page has no <body> tag: cannot place the report banner")
        atomic_write_bytes(path, page.encode("utf-8"))
    finally:
        tmp.unlink(missing_ok=True)
        for num in set(plt.get_fignums()) - open_before:
            plt.close(num)
    return path


@contextlib.contextmanager
def reproducible_svg(salt: str, as_of: pd.Timestamp) -> Iterator[None]:
    """The same inputs give the same SVG bytes: matplotlib names each clip path and gradient with a
    random id unless `svg.hashsalt` is set, and stamps the current time as the figure's `dc:date`
    unless `SOURCE_DATE_EPOCH` is set. Both are set for the block: the salt to `salt`, the date to
    `as_of` (the last date of the data); the environment variable is restored afterwards."""
    import matplotlib

    before = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = str(int(pd.Timestamp(as_of).timestamp()))
    try:
        with matplotlib.rc_context({"svg.hashsalt": salt}):
            yield
    finally:
        if before is None:
            os.environ.pop("SOURCE_DATE_EPOCH", None)
        else:
            os.environ["SOURCE_DATE_EPOCH"] = before


def _render_one(job: Mapping[str, object]) -> str:
    """One QuantStats page from one job; the written path."""
    return str(quantstats_tearsheet(job["returns"], job["benchmark"], Path(str(job["path"])),  # type: ignore[arg-type]
                                    title=str(job["title"]), strategy_title=str(job["strategy_title"]),
                                    benchmark_title=str(job["benchmark_title"]),
                                    banner_html=str(job.get("banner_html") or "")))


def tearsheet_processes(n_jobs: int) -> int:
    """Processes to render `n_jobs` QuantStats pages with: one per usable core, at most one per
    page."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(n_jobs, cores))


_SERIES_KEYS = ("returns", "benchmark")
_TEXT_KEYS = ("path", "title", "strategy_title", "benchmark_title", "banner_html")


def render_quantstats(jobs: Sequence[Mapping[str, object]], processes: int | None = None,
                      say: Callable[[str], None] | None = None) -> list[Path]:
    """Write every QuantStats page of `jobs` (the keyword arguments of `quantstats_tearsheet`, plus
    `returns`, `benchmark` and `path`); returns the paths in the order of `jobs`.

    QuantStats' matplotlib rendering is most of a report's time and one page does not depend on
    another, so the pages are split round-robin over `processes` (default `tearsheet_processes`)
    child interpreters, `python -m portfolio_assets.reports.tearsheet SPEC`: each child reads its
    jobs' series from Parquet files and runs the same `quantstats_tearsheet`. Fresh interpreters,
    not `multiprocessing`: no fork of a threaded Dagster process (pyplot is not thread-safe
    either), no re-import of the caller's `__main__`, and they work inside a daemonic celery pool
    worker. A child that fails raises here with the end of its error output. `say` (a step's
    `context.log.info`) gets progress lines, "QuantStats pages: 3/8 pages written", counted from
    the pages the children have written."""
    import json
    import subprocess
    import sys
    import tempfile
    import time

    from portfolio_assets.progress import Progress

    progress = Progress(say, "QuantStats", len(jobs), "pages written")
    n = tearsheet_processes(len(jobs)) if processes is None else max(1, min(processes, len(jobs)))
    if n <= 1:
        written = []
        for job in jobs:
            written.append(Path(_render_one(job)))
            progress.advance()
        return written
    started_ns = time.time_ns()
    with tempfile.TemporaryDirectory(prefix="pa-tearsheets-") as tmp:
        work = Path(tmp)
        children = []
        for k in range(n):
            specs = []
            for i in range(k, len(jobs), n):
                spec = {key: str(jobs[i].get(key) or "") for key in _TEXT_KEYS}
                for key in _SERIES_KEYS:
                    file = work / f"{i}_{key}.parquet"
                    _series(jobs[i][key], key).to_frame("value").to_parquet(file)  # type: ignore[arg-type]
                    spec[key] = str(file)
                specs.append(spec)
            (work / f"spec_{k}.json").write_text(json.dumps(specs))
            log = (work / f"child_{k}.log").open("wb")
            children.append((subprocess.Popen([sys.executable, "-m", "portfolio_assets.reports.tearsheet",
                                               str(work / f"spec_{k}.json")], stdout=log, stderr=log), log, k))
        pending = [Path(str(job["path"])) for job in jobs]
        while any(proc.poll() is None for proc, _, _ in children):  # count pages as the children write them
            done = [p for p in pending if _written_since(p, started_ns)]
            if done:
                pending = [p for p in pending if p not in done]
                progress.advance(len(done))
            time.sleep(0.5)
        failures = []
        for proc, log, k in children:
            code = proc.wait()
            log.close()
            if code != 0:
                tail = (work / f"child_{k}.log").read_text(errors="replace").strip().splitlines()[-3:]
                failures.append(f"tear-sheet process {k + 1}/{n} exited {code}: " + " | ".join(tail))
        if failures:
            raise RuntimeError("; ".join(failures))
    if pending:  # written in the last half second
        progress.advance(len(pending))
    return [Path(str(job["path"])) for job in jobs]


def _written_since(path: Path, since_ns: int) -> bool:
    """Whether `path` exists and was (atomically) written at or after `since_ns`."""
    try:
        return path.stat().st_mtime_ns >= since_ns
    except FileNotFoundError:
        return False


def _render_spec(spec_path: str) -> None:
    """Child side of `render_quantstats`: render every job of one spec file, in order."""
    import json

    for spec in json.loads(Path(spec_path).read_text()):
        job = {key: spec[key] for key in _TEXT_KEYS}
        for key in _SERIES_KEYS:
            job[key] = pd.read_parquet(spec[key])["value"]
        _render_one(job)


if __name__ == "__main__":
    import sys
    import traceback

    # Leave with os._exit after flushing: the pages are already written atomically, and skipping the
    # interpreter's teardown keeps a library's native thread pool from aborting the exit
    # ("terminate called without an active exception", seen on a loaded machine) and hiding the code.
    try:
        _render_spec(sys.argv[1])
        code = 0
    except BaseException:  # noqa: BLE001 - reported on stderr, the parent raises with its end
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
