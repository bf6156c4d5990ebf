"""A Dagster logger that prints one line per finished step and check evaluation (the CLI's progress),
and the progress lines long steps log from inside (`Progress`: "tournament: 24/48 windows").

It runs wherever a step runs (the run process, or each multiprocess step process, which inherit the
terminal), so progress appears live without polling the event log.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable

from dagster import logger

PROGRESS_PREFIX = "progress "  # a step's log message that the CLI shows (the rest stays in Dagster's log)
PROGRESS_EVERY_S = 2.0


class Progress:
    """Counts of a long loop, said as `progress LABEL: DONE/TOTAL UNIT` through `say` (a step's
    `context.log.info`): the first and the last count always, in between at most one line every
    `every_s` seconds. Dagster-free: plain code takes `say` as a callable (or None: silent)."""

    def __init__(self, say: Callable[[str], None] | None, label: str, total: int, unit: str,
                 every_s: float = PROGRESS_EVERY_S, clock: Callable[[], float] = time.monotonic) -> None:
        if total < 0:
            raise ValueError(f"progress {label}: total must be >= 0, got {total}")
        self.say, self.label, self.total, self.unit = say, label, total, unit
        self.every_s, self.clock, self.done = every_s, clock, 0
        self._last: float | None = None

    def advance(self, n: int = 1, note: str = "") -> None:
        """Count `n` more done; say the count when it is due."""
        self.done = min(self.total, self.done + n)
        now = self.clock()
        due = self._last is None or self.done == self.total or now - self._last >= self.every_s
        if self.say is not None and due:
            self._last = now
            self.say(f"{PROGRESS_PREFIX}{self.label}: {self.done}/{self.total} {self.unit}" + (f" ({note})" if note else ""))


BAR_WIDTH = 24
_COUNT_RE = re.compile(r"^(?P<label>.+): (?P<done>\d+)/(?P<total>\d+) (?P<rest>.+)$")


def progress_bar(text: str, width: int = BAR_WIDTH) -> str:
    """`LABEL: DONE/TOTAL UNIT` as `LABEL [#####.....] DONE/TOTAL UNIT` (the terminal form of a
    progress line); text that is not a count is returned as it is."""
    m = _COUNT_RE.match(text)
    if m is None:
        return text
    done, total = int(m["done"]), int(m["total"])
    filled = width if total == 0 else min(width, done * width // total)
    return f"{m['label']} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {m['rest']}"


class _ProgressHandler(logging.Handler):
    """Writes the CLI's lines to standard output. On a terminal a step's progress is one bar redrawn
    in place (carriage return) until its count is complete or another line is written; otherwise
    (a pipe, a CI log) every progress message is a plain line."""

    def __init__(self) -> None:
        super().__init__()
        self._bar_open = False

    def _write(self, line: str, *, bar: bool = False, complete: bool = True) -> None:
        out = sys.stdout
        if bar:  # redraw in place; end the line only when the count is complete
            out.write(f"\r\x1b[K{line}" + ("\n" if complete else ""))
            self._bar_open = not complete
        else:
            out.write(("\n" if self._bar_open else "") + line + "\n")
            self._bar_open = False
        out.flush()

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", {})
        event = meta.get("dagster_event")
        if event is None:
            message = str(meta.get("orig_message") or "")
            if message.startswith(PROGRESS_PREFIX):
                step = meta.get("step_key") or ""
                text = message[len(PROGRESS_PREFIX):]
                prefix = f"  [{time.strftime('%H:%M:%S')}] {step}: "
                tty = sys.stdout.isatty()
                m = _COUNT_RE.match(text)
                if tty and m is not None:
                    self._write(prefix + progress_bar(text), bar=True, complete=m["done"] == m["total"])
                else:
                    self._write(prefix + text)
            return
        kind = event.event_type_value
        if kind == "ASSET_CHECK_EVALUATION":
            data = event.event_specific_data
            mark = "passed" if data.passed else f"FAILED ({data.severity.value})"
            line = f"check {data.asset_key.to_user_string()}:{data.check_name}: {mark}"
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE"):
            line = f"{event.step_key}: {'ok' if kind == 'STEP_SUCCESS' else 'FAILED'}"
        else:
            return
        self._write(f"  [{time.strftime('%H:%M:%S')}] {line}")


@logger(config_schema=None, description="One line per finished step and check evaluation, on standard output.")
def progress_logger(init_context) -> logging.Logger:
    """The CLI's logger: step and check lines, and the progress lines of long steps."""
    log = logging.getLogger("portfolio_assets.progress")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    if not any(isinstance(h, _ProgressHandler) for h in log.handlers):
        log.addHandler(_ProgressHandler())
    return log
