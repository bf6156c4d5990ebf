"""The suite's CLI runner (`conftest.run_cli` through `forked_cli.Zygote`) against fresh processes:
a call forked from the warm zygote must give what a fresh `portfolio-assets` process gives (exit
code, stdout, stderr) with the call's environment and working directory, report the CPU it used,
and leave to a fresh interpreter the environments that change what the zygote imported."""

from __future__ import annotations

import subprocess

import pytest

from portfolio_assets_tests.conftest import CLI, PROJECT_ROOT, graph_env
from portfolio_assets_tests.forked_cli import LOAD_TIME_ENV, Zygote


@pytest.fixture(scope="module")
def zygote():
    z = Zygote()
    yield z
    z.stop()


def fresh(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), *args], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)


CASES = {
    "help": (["--help"], {}),
    "usage_error": (["run", "--no-such-option"], {}),
    "unknown_profile": (["status", "--profile", "nope"], {}),
    # read from the call's environment, not the zygote's
    "env_setting": (["run", "--date", "2026-11-25"], {"PA_LAKEHOUSE": "gs://bucket/lake"}),
    "holiday": (["run", "--date", "2026-11-26"], {}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_forked_call_gives_what_a_fresh_process_gives(case, zygote, tmp_path):
    args, extra = CASES[case]
    env = graph_env(tmp_path / "lake", tmp_path / "home", **extra)
    forked, cpu = zygote.run(args, env, PROJECT_ROOT, timeout=600)
    want = fresh(args, env)
    assert (forked.returncode, forked.stdout, forked.stderr) == (want.returncode, want.stdout, want.stderr)
    assert cpu > 0.0
    assert not (tmp_path / "lake").exists()  # refused or --help: nothing written by either


def test_a_forked_call_runs_in_the_calls_working_directory_and_environment(zygote, tmp_path):
    """`import-closes CSV DIR` with relative paths: resolved against the call's `cwd`; the files
    land there, not in the zygote's folder."""
    (tmp_path / "closes.csv").write_text("date,NYSE:XOM\n2026-11-23,100\n2026-11-24,101\n2026-11-25,102\n")
    env = graph_env(tmp_path / "lake", tmp_path / "home")
    proc, _ = zygote.run(["import-closes", "closes.csv", "files"], env, tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "files").is_dir() and not (PROJECT_ROOT / "files").exists()


def test_an_environment_that_changes_the_preloaded_libraries_is_not_forked(zygote, tmp_path):
    env = graph_env(tmp_path / "lake", tmp_path / "home")
    assert zygote.compatible(env)
    for name in LOAD_TIME_ENV:
        changed = {**env, name: "native" if name == "PA_NUMERICS" else "7"}
        assert not zygote.compatible(changed), name
    assert not zygote.compatible({**env, "FSSPEC_S3_ANON": "true"})  # a family read by fsspec at import
    assert zygote.compatible({**env, "PA_LEDGER__SIGNING": "hmac"})  # read by the call, not at import


def test_run_cli_forks_only_what_it_may(tmp_path):
    """`conftest.run_cli`: a compatible call is forked (its args name the program, not the path of
    the console script), a `PA_NUMERICS=native` one is a fresh process (the script's path)."""
    from portfolio_assets_tests import conftest

    env = graph_env(tmp_path / "lake", tmp_path / "home")
    before = conftest._FORKED_CPU[0]
    forked = conftest.run_cli(["--help"], env)
    assert forked.args[0] == "portfolio-assets" and conftest._FORKED_CPU[0] > before
    native = conftest.run_cli(["--help"], {**env, "PA_NUMERICS": "native"})
    assert native.args[0] == str(CLI)
    assert (forked.returncode, forked.stdout) == (native.returncode, native.stdout)


def test_a_call_past_its_timeout_is_killed_and_the_zygote_serves_the_next(zygote, tmp_path):
    env = graph_env(tmp_path / "lake", tmp_path / "home")
    with pytest.raises(subprocess.TimeoutExpired):
        zygote.run(["run", "--profile", "development", "--date", "2026-11-25"], env, PROJECT_ROOT, timeout=0.5)
    after, _ = zygote.run(["--help"], env, PROJECT_ROOT, timeout=600)
    assert after.returncode == 0 and "usage: portfolio-assets" in after.stdout


def test_a_call_that_cannot_start_fails_with_exit_1_and_the_zygote_serves_the_next(zygote, tmp_path):
    env = graph_env(tmp_path / "lake", tmp_path / "home")
    failed, _ = zygote.run(["--help"], env, tmp_path / "no-such-folder", timeout=600)
    assert failed.returncode == 1 and failed.stdout == ""
    after, _ = zygote.run(["--help"], env, PROJECT_ROOT, timeout=600)
    assert after.returncode == 0
