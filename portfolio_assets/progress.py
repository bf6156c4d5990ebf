"""A Dagster logger that prints one line per finished step and check evaluation (the CLI's progress).

It runs wherever a step runs (the run process, or each multiprocess step process, which inherit the
terminal), so progress appears live without polling the event log.
"""

from __future__ import annotations

import logging
import sys
import time

from dagster import logger

_T0 = time.time()


class _ProgressHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "dagster_meta", {}).get("dagster_event")
        if event is None:
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
        sys.stdout.write(f"  [{time.strftime('%H:%M:%S')}] {line}\n")
        sys.stdout.flush()


@logger(description="One line per finished step and check evaluation, on standard output.")
def progress_logger(init_context) -> logging.Logger:
    log = logging.getLogger("portfolio_assets.progress")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    if not any(isinstance(h, _ProgressHandler) for h in log.handlers):
        log.addHandler(_ProgressHandler())
    return log
