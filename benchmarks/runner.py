"""`python -m benchmarks` (`make bench`): what to run, in which order, and the printed table.

Sections (`--sections`, comma-separated; default all):

- `graph`: one in-process materialization of the partition; a row per step from Dagster's event
  log (`graph.py`). Run first whenever `run`, `tournament`, `hrp` or `celery` is requested: they
  read its result, lakehouse and instance.
- `run`: the CLI run (`make run` without the install) vs the in-process compute (`graph.py`);
  without `--quick`, the same CLI run on an `s3://` lakehouse against it (`object_store.py`).
- `tournament`, `hrp`, `correlation`: ours vs skfolio, riskfolio-lib, pandas (`references.py`).
- `scale`: scan to selected universe at 5,000 and 20,000 symbols (`scale.py`).
- `backfill`: 20 development dates through the CLI (`backfill.py`).
- `celery`: the tournament asset on in_process, multiprocess and 2 celery workers, then the whole
  daily graph through the CLI on 2 celery workers against the in-process graph (`executors.py`).

`--quick`: smaller sizes (scale 500 and 2,000, correlation 500, a 2-date backfill, HRP timed over
3 calls) and, without `--sections`, no backfill and no celery. A section that raises becomes an
ERROR row; the exit code is 1 when any row failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.table import PeakRss, Recorder, Row, format_markdown, format_text, machine_description

SECTIONS = ("graph", "run", "tournament", "hrp", "scale", "correlation", "backfill", "celery")
NEEDS_GRAPH = frozenset({"graph", "run", "tournament", "hrp", "celery"})
QUICK_DEFAULT = ("graph", "run", "tournament", "hrp", "scale", "correlation")
FULL_SCALES = (5_000, 20_000)
QUICK_SCALES = (500, 2_000)
FULL_CORRELATION = (500, 5_000)
QUICK_CORRELATION = (500,)


@dataclass(frozen=True)
class BenchPlan:
    """What to run and at which sizes."""

    profile: str = "demo"
    date: dt.date | None = None
    sections: tuple[str, ...] = SECTIONS
    quick: bool = False
    scale_sizes: tuple[int, ...] | None = None  # overrides of the sizes below (tests use tiny ones)
    correlation_n: tuple[int, ...] | None = None
    backfill_n: int | None = None  # override of the backfill's number of dates (tests use 1)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.sections) - set(SECTIONS))
        if unknown or not self.sections:
            raise ValueError(f"unknown or no sections {unknown or ''}: choose from {', '.join(SECTIONS)}")

    @property
    def scales(self) -> tuple[int, ...]:
        if self.scale_sizes is not None:
            return self.scale_sizes
        return QUICK_SCALES if self.quick else FULL_SCALES

    @property
    def correlation_sizes(self) -> tuple[int, ...]:
        if self.correlation_n is not None:
            return self.correlation_n
        return QUICK_CORRELATION if self.quick else FULL_CORRELATION

    @property
    def backfill_dates(self) -> int:
        from benchmarks.backfill import BACKFILL_DATES

        if self.backfill_n is not None:
            return self.backfill_n
        return 2 if self.quick else BACKFILL_DATES

    @property
    def hrp_repeat(self) -> int:
        return 3 if self.quick else 20

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> BenchPlan:
        quick = bool(args.quick)
        if args.sections:
            sections = tuple(s.strip() for s in args.sections.split(",") if s.strip())
        else:
            sections = QUICK_DEFAULT if quick else SECTIONS
        return cls(profile=args.profile or "demo", date=dt.date.fromisoformat(args.date) if args.date else None,
                   sections=sections, quick=quick)


def warm_imports() -> None:
    """Import what the steps import lazily, so that the first step to use a library is not charged
    for loading it and the in-process compute is the compute."""
    import clarabel  # noqa: F401
    import matplotlib  # noqa: F401
    import scipy.cluster.hierarchy  # noqa: F401
    import scipy.spatial.distance  # noqa: F401

    import portfolio_assets.definitions  # noqa: F401
    import portfolio_assets.quant.regimes  # noqa: F401
    import portfolio_assets.reports.builder  # noqa: F401


def _guarded(rec: Recorder, section: str, fn: Callable[[], object]) -> None:
    """Run one section; an exception becomes an ERROR row (and a traceback on stderr)."""
    try:
        fn()
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        rec.add(Row(section, "section failed", note=f"ERROR {type(exc).__name__}: {str(exc)[:300]}"))


def run_bench(plan: BenchPlan, root: Path, echo: bool = True) -> list[Row]:
    """Every requested section, in the documented order; returns the rows."""
    from benchmarks import backfill, executors, graph, references, scale
    from portfolio_assets.partitions import latest_closed_session

    date = plan.date or latest_closed_session()
    wanted = set(plan.sections)
    with PeakRss() as probe:
        rec = Recorder(probe, echo=echo)
        skipped = [s for s in SECTIONS if s not in wanted and not (s == "graph" and wanted & NEEDS_GRAPH)]
        if skipped:
            rec.add(Row("plan", "sections not run", note=", ".join(skipped)))
        run = None
        if wanted & NEEDS_GRAPH:
            with rec.stage("setup", "lazy imports (definitions, scipy.cluster, clarabel, matplotlib)") as row:
                warm_imports()
                row.note = "paid once per process; kept out of the step rows"
            try:
                run = graph.materialize_graph(rec, plan.profile, date.isoformat(), root / "graph")
            except Exception as exc:
                traceback.print_exc(file=sys.stderr)
                rec.add(Row("graph", "section failed", note=f"ERROR {type(exc).__name__}: {str(exc)[:300]}"))
        try:
            for section in ("run", "tournament", "hrp", "celery"):
                if section not in wanted:
                    continue
                if run is None or not run.result.success:
                    rec.add(Row(section, "not run", note="the graph section failed (see its row)"))
                    continue
                steps: dict[str, Callable[[], object]] = {
                    "run": lambda: graph.cli_run_section(rec, run, root / "cli", object_store=not plan.quick),
                    "tournament": lambda: references.compare_tournament(rec, run),
                    "hrp": lambda: references.compare_hrp(rec, run, repeat=plan.hrp_repeat),
                    "celery": lambda: executors.celery_section(rec, run, root / "executors"),
                }
                _guarded(rec, section, steps[section])
        finally:
            if run is not None:
                run.instance.dispose()
        if "scale" in wanted:
            _guarded(rec, "scale", lambda: scale.scale_section(rec, plan.scales, plan.profile, date, root / "scale"))
        if "correlation" in wanted:
            for n in plan.correlation_sizes:
                _guarded(rec, "correlation", lambda n=n: references.compare_correlation(
                    rec, n, date, root / "correlation", plan.profile))
        if "backfill" in wanted:
            _guarded(rec, "backfill", lambda: backfill.backfill_section(rec, date, root / "backfill",
                                                                      plan.backfill_dates))
    return rec.rows


def failed(rows: Sequence[Row]) -> list[Row]:
    """Rows that report a failure (FAILED or ERROR notes)."""
    return [r for r in rows if re.search(r"\b(FAILED|ERROR)\b", r.note)]


def render(rows: Sequence[Row], plan: BenchPlan, started: dt.datetime, elapsed: float,
           machine: str | None = None) -> tuple[str, str]:
    """(aligned text, Markdown), each with a header: mode, sections, duration, machine, methods."""
    head = (f"python -m benchmarks ({'quick' if plan.quick else 'full'}; profile {plan.profile}; sections "
            f"{','.join(plan.sections)}), {started:%Y-%m-%d %H:%M} UTC, {elapsed:.0f} s\n"
            f"machine: {machine or machine_description()}\n"
            "peak MB = peak RSS above the stage's start (getrusage ru_maxrss high-water mark, else "
            "/proc/self/statm sampled every 5 ms); ratio = ours / reference (< 1: ours faster)")
    return f"{head}\n\n{format_text(rows)}", f"{head.replace(chr(10), '  ' + chr(10))}\n\n{format_markdown(rows)}"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes; without --sections: no backfill, no celery")
    p.add_argument("--sections", help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)")
    p.add_argument("--profile", help="profile of the graph and CLI run (default demo)")
    p.add_argument("--date", help="partition date (default: the latest closed XNYS session)")
    p.add_argument("--markdown", metavar="PATH", help="also write the Markdown table to PATH")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table (text, then Markdown); 0 when no row failed, else 1."""
    args = parser().parse_args(argv)
    plan = BenchPlan.from_args(args)
    started = dt.datetime.now(dt.UTC)
    machine = machine_description()
    t0 = time.perf_counter()
    print(f"bench: {'quick' if plan.quick else 'full'} run of {', '.join(plan.sections)}; progress on stderr",
          file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="pa-bench-") as tmp:
        rows = run_bench(plan, Path(tmp))
    text, markdown = render(rows, plan, started, time.perf_counter() - t0, machine)
    print(text)
    print("\nMarkdown:\n")
    print(markdown)
    if args.markdown:
        out = Path(args.markdown)
        tmp_out = out.with_name(out.name + ".tmp")
        tmp_out.write_text(markdown + "\n")
        tmp_out.replace(out)
        print(f"\nwrote {out}")
    bad = failed(rows)
    if bad:
        print(f"\n{len(bad)} row(s) failed: {', '.join(f'{r.section}/{r.stage}' for r in bad)}", file=sys.stderr)
    return 1 if bad else 0
