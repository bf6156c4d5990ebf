"""The command line on real data: `import-closes`, and `run` switched to the files source.

No graph runs here: `run` is given a weekend date, which the CLI refuses after it has resolved the
profile (resolution comes first), so the exit tells whether the settings resolved.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from portfolio_assets.sources.files import FilesSource
from portfolio_assets_tests.conftest import describe, graph_env, run_cli
from portfolio_assets_tests.realdata import BASELINE

WEEKEND = "2021-06-13"  # a Sunday: refused whatever the partitions' range


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One temporary lakehouse and Dagster home for the module (its storage is created once)."""
    base = tmp_path_factory.mktemp("real_data_cli")
    return graph_env(base / "lakehouse", base / "dagster_home", "demo")


@pytest.mark.parametrize("settings", [["--set", "source.settings.path=DIR"], ["--set", 'source.settings={"path": "DIR"}']])
def test_run_on_the_files_source_gets_past_the_manifest(realdata: Path, env: dict, settings: list[str]) -> None:
    """The issue's command (both forms of the settings) resolves; only the date is refused."""
    args = ["run", "--profile", "demo", "--date", WEEKEND, "--set", "source.kind=files",
            *(a.replace("DIR", str(realdata)) for a in settings), "--set", "selection.baseline=SP:SPX"]
    proc = run_cli(args, env)
    assert proc.returncode == 2, describe(proc)
    assert proc.stderr.strip() == f"portfolio-assets: partition {WEEKEND} is not a XNYS trading session", describe(proc)


@pytest.mark.parametrize(("command", "dates"), [("run", ["--date", "2023-03-01"]),
                                                ("backfill", ["--from", "2022-12-27", "--to", "2023-03-01"])])
def test_a_date_after_the_export_ends_exits_2_before_any_work(realdata: Path, env: dict, command: str,
                                                               dates: list[str]) -> None:
    """The export ends on 2022-12-28: on 2023-03-01 every symbol would count as delisted (its last bar
    older than max_staleness_days = 10), and the run used to fail at raw_pool with "every scan is
    empty". Refused before any run, naming the last bar and the last date it serves; for a backfill
    the range's end decides."""
    proc = run_cli([command, "--profile", "demo", *dates, "--set", "source.kind=files",
                    "--set", f"source.settings.path={realdata}", "--set", f"selection.baseline={BASELINE}"], env)
    assert proc.returncode == 2, describe(proc)
    assert proc.stderr.strip() == (
        f"portfolio-assets: partition 2023-03-01: the files source's bars of {BASELINE} end on 2022-12-28, more "
        "than 10 days before it (source.settings.max_staleness_days), so every symbol of the export would count as "
        "delisted: pick a --date on or before 2023-01-07, or export newer bars")
    assert not Path(env["PA_LAKEHOUSE"]).exists()  # nothing was written


def test_a_date_within_max_staleness_days_of_the_last_bar_passes_the_check(realdata: Path, env: dict) -> None:
    """2023-01-06 is 9 days after the last bar: past the history check, the run stops at the next
    one (a signing profile without a key), still before any work; 2023-01-09 (12 days) does not.
    (A run of 2023-01-06 would go on to fail the health gate: the baseline lags it by more than
    data.staleness_sessions; that lag is the gate's to judge.)"""
    base = ["run", "--profile", "demo", "--set", "source.kind=files", "--set", f"source.settings.path={realdata}",
            "--set", f"selection.baseline={BASELINE}", "--set", "ledger.signing=hmac"]
    env = {k: v for k, v in env.items() if k not in ("PA_LEDGER_HMAC_KEY", "PA_LEDGER_ED25519_KEY")}
    served = run_cli([*base, "--date", "2023-01-06"], env)
    assert served.returncode == 2 and "signs its ledger (hmac) but no key is set" in served.stderr, describe(served)
    ended = run_cli([*base, "--date", "2023-01-09"], env)
    assert ended.returncode == 2 and "bars of SP:SPX end on 2022-12-28, more than 10 days" in ended.stderr, \
        describe(ended)
    assert not Path(env["PA_LAKEHOUSE"]).exists()


def test_a_universe_symbol_without_bars_exits_2_before_any_work(realdata: Path, env: dict, tmp_path: Path) -> None:
    """The export's layout is checked when the source opens: the run used to start and fail at its
    equity scan, alerting every sink."""
    import shutil

    data = shutil.copytree(realdata, tmp_path / "data")
    with open(data / "universe.csv", "a") as fh:
        fh.write("NYSE:FOO,equity,,Foo Corp.,USD\n")
    proc = run_cli(["run", "--profile", "demo", "--date", "2021-06-14", "--set", "source.kind=files",
                    "--set", f"source.settings.path={data}", "--set", f"selection.baseline={BASELINE}"], env)
    assert proc.returncode == 2, describe(proc)
    assert proc.stderr.strip() == (
        f"portfolio-assets: the files source: universe.csv lists 1 symbol(s) with no bars file in {(data / 'bars').resolve()}: "
        "NYSE:FOO (expected e.g. NYSE__FOO.csv or .parquet)")
    assert not Path(env["PA_LAKEHOUSE"]).exists()


def test_run_with_a_bad_source_setting_exits_2_before_any_work(env: dict) -> None:
    # a short fixed value: the message shows at most 80 characters of it, so a value built from a
    # temporary folder made this assertion depend on the length of TMPDIR
    proc = run_cli(["run", "--profile", "demo", "--date", WEEKEND, "--set", "source.kind=files",
                    "--set", "source.settings.pathh=/data/exports"], env)
    assert proc.returncode == 2, describe(proc)
    assert proc.stderr.strip() == (
        "portfolio-assets: command line: --set source.settings.pathh=/data/exports: unknown setting "
        "source.settings.pathh; did you mean --set source.settings.path=...?")
    assert not Path(env["PA_LAKEHOUSE"]).exists()  # nothing was written


def test_import_closes_writes_the_files_layout(tmp_path: Path, env: dict) -> None:
    csv = tmp_path / "closes.csv"
    csv.write_text("date,NASDAQ:AAPL,SP:SPX\n2020-03-18,61.67,2398.1\n2020-03-19,61.2,2409.39\n"
                   "2020-03-20,57.31,2304.92\n2020-03-23,,2237.4\n")
    universe = tmp_path / "universe_in.csv"
    universe.write_text("symbol,asset_class,description\nNASDAQ:AAPL,equity,Apple Inc.\nSP:SPX,etf,S&P 500 Index\n")
    dest = tmp_path / "export"
    proc = run_cli(["import-closes", str(csv), str(dest), "--universe", str(universe)], env)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.splitlines()[0] == (
        f"wrote 2 symbol(s), 7 bars (2020-03-18 .. 2020-03-23) to {dest / 'bars'}; universe.csv from --universe")
    source = FilesSource({"path": dest})
    bars = source.bars("NASDAQ:AAPL", dt.date(2020, 3, 1), dt.date(2020, 3, 31))
    assert bars["close"].tolist() == [61.67, 61.2, 57.31] and bars["volume"].isna().all()
    assert source.metadata(["SP:SPX"]).at["SP:SPX", "asset_class"] == "etf"


def test_import_closes_refuses_a_bad_close_with_exit_2(tmp_path: Path, env: dict) -> None:
    csv = tmp_path / "closes.csv"
    csv.write_text("date,NASDAQ:AAPL\n2020-03-18,61.67\n2020-03-19,inf\n")
    proc = run_cli(["import-closes", str(csv), str(tmp_path / "export")], env)
    assert proc.returncode == 2, describe(proc)
    assert proc.stderr.strip() == ("portfolio-assets: closes: NASDAQ:AAPL on 2020-03-19: close 'inf' "
                                   "is not a finite number > 0")
    assert not (tmp_path / "export").exists()

