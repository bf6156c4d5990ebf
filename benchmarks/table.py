"""The bench's table: `Row`, the `Recorder` that times a block and measures its peak memory, the
text and Markdown renderings, and the machine description printed above them.

Memory (`peak MB`): the peak resident set size above the stage's starting RSS. It is exact when
the stage raised the process's high-water mark (`resource.getrusage(...).ru_maxrss`), otherwise
the maximum of `/proc/self/statm` sampled every 5 ms by a background thread. tracemalloc is not
used: its per-allocation hooks slow pandas-heavy stages unevenly and would distort the ratios.
Wall times are `time.perf_counter()`; a reference timed over several repetitions reports the
median. Ratios are only meaningful within one run (the machine is shared).
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

MIB = 1024.0 * 1024.0
COLUMNS = ("section", "stage", "size", "wall s", "peak MB", "ref s", "ref peak MB", "ratio", "agreement / note")


# ------------------------------------------------------------------------------------------ memory
def _rss_bytes() -> int | None:
    """Current resident set size from /proc/self/statm (Linux); None elsewhere."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _maxrss_bytes() -> int:
    """The process's RSS high-water mark (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class PeakRss:
    """Per-stage peak RSS above the stage's start (see the module docstring for the method)."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakRss:
        if _rss_bytes() is not None:
            self._thread = threading.Thread(target=self._sample, name="bench-rss", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            rss = _rss_bytes() or 0
            if rss > self._peak:
                self._peak = rss

    def begin(self) -> tuple[int, int]:
        start = _rss_bytes() or 0
        self._peak = start
        return start, _maxrss_bytes()

    def end(self, token: tuple[int, int]) -> float:
        """MB above the stage's starting RSS at the stage's peak."""
        start, maxrss_before = token
        peak = max(self._peak, _rss_bytes() or 0)
        maxrss = _maxrss_bytes()
        if maxrss > maxrss_before:  # the stage set a new high-water mark: that is its exact peak
            peak = max(peak, maxrss)
        return max(0.0, (peak - start) / MIB)


# ------------------------------------------------------------------------------------------ table
@dataclass
class Row:
    """One line of the table. `ratio` = ours / reference (below 1: ours is faster)."""

    section: str
    stage: str
    size: str = ""
    seconds: float | None = None
    peak_mb: float | None = None
    ref_seconds: float | None = None
    ref_peak_mb: float | None = None
    note: str = ""
    agreement: float | None = None  # max |ours - reference| of the compared numbers (ref rows)

    @property
    def ratio(self) -> float | None:
        if self.seconds is None or not self.ref_seconds:
            return None
        return self.seconds / self.ref_seconds

    def cells(self) -> list[str]:
        return [self.section, self.stage, self.size, _fmt_s(self.seconds), _fmt_mb(self.peak_mb),
                _fmt_s(self.ref_seconds), _fmt_mb(self.ref_peak_mb),
                "" if self.ratio is None else f"{self.ratio:.2f}", self.note]


def _fmt_s(x: float | None) -> str:
    if x is None:
        return ""
    return f"{x:.4f}" if x < 0.1 else f"{x:.3f}" if x < 10 else f"{x:.1f}"


def _fmt_mb(x: float | None) -> str:
    return "" if x is None else f"{x:.0f}" if x >= 10 else f"{x:.1f}"


class Recorder:
    """Collects rows; `stage(...)` times a block and measures its peak memory."""

    def __init__(self, probe: PeakRss, echo: bool = True) -> None:
        self.probe = probe
        self.rows: list[Row] = []
        self.echo = echo

    @contextlib.contextmanager
    def stage(self, section: str, stage: str, size: str = "", note: str = "") -> Iterator[Row]:
        row = Row(section, stage, size, note=note)
        token = self.probe.begin()
        t0 = time.perf_counter()
        yield row
        row.seconds = time.perf_counter() - t0
        row.peak_mb = self.probe.end(token)
        self.add(row)

    def measure(self, fn: Callable[[], Any], repeat: int = 1) -> tuple[float, float, Any]:
        """(median seconds over `repeat` calls, peak MB of the calls, last result)."""
        times, result = [], None
        token = self.probe.begin()
        for _ in range(max(1, repeat)):
            t0 = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - t0)
        return float(np.median(times)), self.probe.end(token), result

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        if self.echo:
            cells = row.cells()
            print(f"  {row.section:9s} {row.stage:58s} {cells[3]:>8s} s {cells[4]:>7s} MB"
                  + (f"  ref {cells[5]} s, ratio {cells[7]}" if row.ref_seconds else "")
                  + (f"  {row.note}" if row.note else ""), file=sys.stderr, flush=True)
        return row


def format_text(rows: Sequence[Row]) -> str:
    """The table as aligned text (numbers right-aligned)."""
    table = [list(COLUMNS)] + [r.cells() for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    numeric = {3, 4, 5, 6, 7}
    out = []
    for n, line in enumerate(table):
        cells = [c.rjust(w) if i in numeric and n else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def format_markdown(rows: Sequence[Row]) -> str:
    """The table as GitHub Markdown."""
    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(COLUMNS) + " |",
             "|" + "|".join("---:" if i in (3, 4, 5, 6, 7) else "---" for i in range(len(COLUMNS))) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in r.cells()) + " |" for r in rows]
    return "\n".join(lines)


def machine_description() -> str:
    mem = ""
    with contextlib.suppress(OSError, ValueError):
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        total = int(info["MemTotal"].split()[0]) / MIB
        avail = int(info["MemAvailable"].split()[0]) / MIB
        mem = f", memory {total:.1f} GiB ({avail:.1f} GiB available at start)"
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = ""
    with contextlib.suppress(OSError, AttributeError):
        load = ", load average {:.1f} {:.1f} {:.1f} at start (shared machine)".format(*os.getloadavg())
    from portfolio_assets import numerics

    return (f"nproc {os.cpu_count()}, {cpu}{mem}{load}; Python {platform.python_version()}, "
            f"numpy {np.__version__}, pandas {pd.__version__}; numerics {numerics.state()}")


def _meminfo_bytes(key: str) -> int | None:
    with contextlib.suppress(OSError, ValueError, StopIteration):
        line = next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith(f"{key}:"))
        return int(line.split()[1]) * 1024
    return None


def mem_available_bytes() -> int | None:
    return _meminfo_bytes("MemAvailable")


def mem_total_bytes() -> int | None:
    return _meminfo_bytes("MemTotal")
