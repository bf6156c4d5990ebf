"""Every `portfolio-assets ...` command the README shows works as written (issue 18: docs cannot drift).

The commands are read from README.md itself: fenced lines and inline code spans that start with
`portfolio-assets` (or `.venv/bin/portfolio-assets`). Their placeholders (`P`, `D`, `D1`, `ID`,
`PATH`, ...) are filled with real values and optional groups (`[--date D]`) are kept, so every
option the README names is checked against the CLI's parser. The slow test then runs them in the
README's order on a fresh `development` lakehouse: the run, `status`, the resume with the run id
that `status` printed (only what `status` prints), audit, verify-ledger, the SQL example, ...;
the few that need a daemon, a browser or minutes of benchmarking are named with the test that
runs them.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from portfolio_assets import cli
from portfolio_assets_tests.conftest import (
    DEV_DATE,
    DEV_PROFILE,
    PREV_DATE,
    PROJECT_ROOT,
    GraphRun,
    describe,
    run_cli,
)

README = PROJECT_ROOT / "README.md"
SQL_EXAMPLE = 'sql "SELECT engine, simulator, sharpe FROM tournament ORDER BY sharpe DESC"'

# Commands the slow test below does not run, with the test that runs them (a daemon, a browser, a
# benchmark, or an input file it has no use for here). A README command in neither list fails.
RUN_ELSEWHERE = {
    "backfill --from": "cli/test_cli.py::test_backfill_is_a_dagster_backfill_with_a_temporary_daemon",
    "backfill --stale": "assets/test_staleness.py (the stale pairs a backfill --stale re-materializes)",
    "accept": "cli/test_cli.py::test_run_then_reexecute_from_step_12_status_verify_audit_and_accept",
    "ui": "cli/test_ui.py (the UI, and its stop on one SIGTERM)",
    "bench": "benchmarks/test_bench.py",
    "run --profile demo --date D --set source.kind=files": "cli/test_real_data_cli.py",
}
# Subcommands the README need not show (maintenance tools, listed in `portfolio-assets --help`).
UNDOCUMENTED_OK = {"manifest-schema"}


def readme_commands(text: str) -> list[str]:
    """Every `portfolio-assets ...` command in `text`, in order, without the program name."""
    found = []
    for line in text.splitlines():
        stripped = line.strip()
        head = re.match(r"^(?:\.venv/bin/)?portfolio-assets\s+(.*)$", stripped)
        if head:  # a fenced command line
            found.append(head.group(1).strip())
            continue
        for span in re.findall(r"`([^`]+)`", line):
            m = re.match(r"^(?:\.venv/bin/)?portfolio-assets\s+(.*)$", span.strip())
            if m:
                found.append(m.group(1).strip())
    return found


def fill(command: str, values: dict[str, str]) -> list[str]:
    """The argv of a README command: optional groups kept (brackets dropped), placeholders filled."""
    argv = shlex.split(command.replace("[", " ").replace("]", " "))
    out = []
    for word in argv:
        if word in values:
            out.append(values[word])
        elif word == "SYM,...":
            out.append(values["SYM"])
        elif word == "section.key=value":
            out.append("selection.top_n=5")
        else:
            out.append(word)
    return out


def placeholder_values(tmp: Path, run_id: str = "00000000-0000-0000-0000-000000000000") -> dict[str, str]:
    return {"P": DEV_PROFILE, "D": DEV_DATE, "D1": PREV_DATE, "D2": DEV_DATE, "N": "12", "ID": run_id,
            "S": "risk_buckets+", "PATH": str(tmp / "lakehouse" / DEV_PROFILE / "ledger" / DEV_DATE / "audit.jsonl"),
            "CSV": str(tmp / "closes.csv"), "DIR": str(tmp / "files"), "FILE": str(tmp / "fills.csv"),
            "QUERY": "SELECT 1", "SYM": "NYSE:XOM"}


COMMANDS = readme_commands(README.read_text())


def test_the_readme_shows_every_subcommand_and_the_extraction_finds_them():
    shown = {c.split()[0] for c in COMMANDS}
    parser_commands = set(cli.build_parser()._subparsers._group_actions[0].choices)  # noqa: SLF001 (argparse)
    assert parser_commands - UNDOCUMENTED_OK <= shown, f"not in README.md: {parser_commands - UNDOCUMENTED_OK - shown}"
    assert shown <= parser_commands, f"README.md shows commands the CLI does not have: {shown - parser_commands}"
    assert SQL_EXAMPLE in COMMANDS  # the fenced example is found, not only the table


@pytest.mark.parametrize("command", COMMANDS)
def test_every_readme_command_parses_with_every_option_it_names(command: str, tmp_path: Path):
    argv = fill(command, placeholder_values(tmp_path))
    try:
        args = cli.build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: unknown option, missing value, ...
        pytest.fail(f"README command `portfolio-assets {command}` does not parse ({exc.code}): {argv}")
    assert args.command == argv[0]


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_cli(argv, env, timeout=None)


@pytest.mark.slow
def test_the_readme_commands_run_in_order_on_a_fresh_lakehouse(dev_run_copy: GraphRun, tmp_path: Path):
    """`make run` first (the session's shared run: this very command on a fresh lakehouse; here a
    copy of its lakehouse and Dagster instance), then every other README command in order."""
    env = dev_run_copy.env()
    (tmp_path / "closes.csv").write_text("date,NYSE:XOM,NASDAQ:AAPL\n2026-11-23,100,200\n2026-11-24,101,198\n"
                                         "2026-11-25,102,199\n")
    values = {**placeholder_values(tmp_path), "PATH": str(dev_run_copy.ledger(DEV_DATE))}
    ran: list[str] = []

    def expect_ok(command: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
        proc = _run(argv, env)
        assert proc.returncode == 0, f"README command `portfolio-assets {command}` failed: {describe(proc)}"
        assert "Traceback" not in proc.stderr
        ran.append(command)
        return proc

    # The README's first command: `make run` = `portfolio-assets run --profile demo` (here development,
    # the date fixed), which everything after it reads.
    made = dev_run_copy  # `run --profile development --date DEV_DATE` (conftest.materialize_dev)
    assert re.search(r"^run id: [0-9a-f-]{36} \(success\)$", made.stdout, flags=re.M), made.stdout
    # Progress from inside the long steps, with counts (issue 18 #9).
    # (the run's first fetch of every window is market_bars', read back by the later steps)
    assert re.search(r"\] market_bars: fetch \S+: (\d+)/\1 symbols$", made.stdout, flags=re.M), made.stdout
    assert re.search(r"\] tournament\.tournament_engines\[batch_1\]: tournament: (\d+)/\1 engine windows ",
                     made.stdout, flags=re.M), made.stdout

    for command in COMMANDS:
        first = command.split()[0]
        if any(command.startswith(prefix) for prefix in RUN_ELSEWHERE):
            continue
        if first == "run" and "--start-step" in command:
            # The runbook's resume, with only what `status` printed.
            status = _run(["status", "--date", DEV_DATE], env)
            ids = re.findall(r"^  ([0-9a-f-]{36})  SUCCESS .*$", status.stdout, flags=re.M)
            whole = [line.split()[0] for line in status.stdout.splitlines()
                     if re.match(r"^  [0-9a-f-]{36}  SUCCESS ", line) and "selection of" not in line]
            assert ids and whole, f"status printed no run id to resume from: {describe(status)}"
            # The README's own `run --select S` is marked as a selection; resuming it is refused.
            subset = [i for i in ids if i not in whole]
            assert subset, status.stdout
            refused = _run(fill(command, {**values, "ID": subset[0]}), env)
            assert refused.returncode == 2 and f"--run-id {subset[0]} ran a selection of " in refused.stderr, \
                describe(refused)
            proc = expect_ok(command, fill(command, {**values, "ID": whole[0]}))
            assert f"re-executing run {whole[0]} from step 12" in proc.stdout
            continue
        if first == "run":  # with every option it names; the selection (S) is the reports step
            proc = expect_ok(command, fill(command, {**values, "S": "reports"}))
            assert re.search(r"^run id: [0-9a-f-]{36} \(success\)$", proc.stdout, flags=re.M), proc.stdout
            continue
        if first in ("status", "audit", "recover"):
            argv = fill(command, values)
        elif first == "stale":  # `--check-market-data` re-runs market_bars: covered by test_staleness
            argv = fill(command.replace("[--check-market-data]", ""), values)
        elif first == "import-closes":  # the two-symbol CSV has no universe file to go with it
            argv = fill(command.replace("[--universe CSV]", ""), values)
        elif first == "versions":
            argv = ["versions"]  # `--refresh` would rewrite the snapshot of the tree under test
        else:
            argv = fill(command, values)
        proc = expect_ok(command, argv)
        if command == SQL_EXAMPLE:
            assert proc.stdout.split()[:3] == ["engine", "simulator", "sharpe"], proc.stdout
        if first == "verify-ledger":
            assert "FAIL" not in proc.stdout, proc.stdout

    shown = {c for c in COMMANDS if not any(c.startswith(p) for p in RUN_ELSEWHERE)}
    assert set(ran) == shown, f"README commands neither run nor covered elsewhere: {shown - set(ran)}"
