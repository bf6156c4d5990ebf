"""Progress lines from inside long steps (`portfolio_assets.progress`, issue 18 #9)."""

from __future__ import annotations

import logging

import pytest

from portfolio_assets.progress import BAR_WIDTH, Progress, _ProgressHandler, progress_bar


def test_first_and_last_count_always_and_at_most_one_line_per_interval_between():
    said: list[str] = []
    ticks = iter([0.0, 0.5, 1.9, 2.5, 3.0, 3.1])
    p = Progress(said.append, "tournament", 6, "windows", every_s=2.0, clock=lambda: next(ticks))
    for _ in range(6):
        p.advance()
    # t=0 first; 0.5 and 1.9 within 2 s of it; 2.5 is due; 3.0 within 2 s of 2.5; 3.1 is the last count
    assert said == ["progress tournament: 1/6 windows", "progress tournament: 4/6 windows",
                    "progress tournament: 6/6 windows"]


def test_counts_in_steps_with_a_note_and_never_past_the_total():
    said: list[str] = []
    p = Progress(said.append, "recovery attempt 1/3", 4, "symbols", every_s=0.0, clock=lambda: 0.0)
    p.advance(3, note="NYSE:XOM GAPS -> OK")
    p.advance(3)
    assert said == ["progress recovery attempt 1/3: 3/4 symbols (NYSE:XOM GAPS -> OK)",
                    "progress recovery attempt 1/3: 4/4 symbols"]
    assert p.done == 4


def test_silent_without_a_sink_and_a_negative_total_is_refused():
    Progress(None, "x", 2, "things").advance()  # nothing to say to: no error
    with pytest.raises(ValueError, match=r"^progress fetch: total must be >= 0, got -1$"):
        Progress(print, "fetch", -1, "symbols")


def _record(message: str) -> logging.LogRecord:
    record = logging.LogRecord("dagster", logging.INFO, __file__, 1, message, None, None)
    record.dagster_meta = {"orig_message": message, "step_key": "history_500d", "dagster_event": None}
    return record


def test_the_cli_logger_prints_progress_messages_with_their_step_and_nothing_else(capsys):
    handler = _ProgressHandler()
    handler.emit(_record("progress fetch 2025-09-07..2026-11-25: 27/27 symbols"))
    handler.emit(_record("AMEX:SPY: 500 sessions"))  # an ordinary log message stays in Dagster's log
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert lines[0].endswith("] history_500d: fetch 2025-09-07..2026-11-25: 27/27 symbols")


class _Terminal:
    """A stand-in for a terminal's standard output (what `isatty()` says decides the form)."""

    def __init__(self, tty: bool) -> None:
        self.tty, self.text = tty, ""

    def isatty(self) -> bool:
        return self.tty

    def write(self, s: str) -> int:
        self.text += s
        return len(s)

    def flush(self) -> None:
        pass


def test_progress_bar_fills_in_proportion_and_leaves_other_text_alone():
    assert progress_bar("tournament: 12/48 engine windows", width=8) == "tournament [##......] 12/48 engine windows"
    assert progress_bar("fetch a..b: 27/27 symbols (done)", width=4) == "fetch a..b [####] 27/27 symbols (done)"
    assert progress_bar("QuantStats: 0/0 pages written", width=4) == "QuantStats [####] 0/0 pages written"
    assert progress_bar("no count here") == "no count here"


def test_on_a_terminal_progress_is_one_bar_redrawn_in_place(monkeypatch):
    out = _Terminal(tty=True)
    monkeypatch.setattr("sys.stdout", out)
    handler = _ProgressHandler()
    handler.emit(_record("progress tournament: 1/4 engine windows"))
    handler.emit(_record("progress tournament: 2/4 engine windows"))
    handler.emit(_record("progress recovery attempt 1/3: 1/2 symbols"))  # interrupted by another bar
    handler.emit(_record("progress recovery attempt 1/3: 2/2 symbols"))
    text = out.text
    assert text.count("\r\x1b[K") == 4
    assert "\n" not in text.split("recovery attempt")[0]  # the tournament bar redrawn in place, no new line
    assert text.endswith(f"history_500d: recovery attempt 1/3 [{'#' * BAR_WIDTH}] 2/2 symbols\n")
    assert f"tournament [{'#' * (BAR_WIDTH // 2)}{'.' * (BAR_WIDTH // 2)}] 2/4 engine windows" in text


def test_an_open_bar_is_ended_before_an_ordinary_line_and_a_pipe_gets_plain_lines(monkeypatch):
    out = _Terminal(tty=True)
    monkeypatch.setattr("sys.stdout", out)
    handler = _ProgressHandler()
    handler.emit(_record("progress tournament: 1/4 engine windows"))
    handler._write("  [12:00:00] tournament: ok")  # what a step line goes through
    assert out.text.endswith("1/4 engine windows\n  [12:00:00] tournament: ok\n")

    pipe = _Terminal(tty=False)
    monkeypatch.setattr("sys.stdout", pipe)
    handler = _ProgressHandler()
    handler.emit(_record("progress tournament: 1/4 engine windows"))
    handler.emit(_record("progress tournament: 4/4 engine windows"))
    lines = pipe.text.splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == ["history_500d: tournament: 1/4 engine windows",
                                                         "history_500d: tournament: 4/4 engine windows"]
    assert "\r" not in pipe.text
