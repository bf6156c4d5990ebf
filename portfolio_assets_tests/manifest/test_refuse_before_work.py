"""Issue 18, items 5 and 6: bad settings are refused when the profile is resolved, before any work,
with messages that name the file and JSON path, or the override (`--set` / `PA_*`) they came from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from portfolio_assets import manifest as m
from portfolio_assets.constants import ENGINE_NAMES
from portfolio_assets.manifest_input import StrictJSONError, loads_strict, parse_webhook_url, unknown_setting

M = m.DEFAULT_MANIFEST
ENGINES = str(list(ENGINE_NAMES))


def refused(cli: dict | None = None, env: dict | None = None, profile: str = "development",
            path: Path | None = None) -> str:
    with pytest.raises(m.ManifestError) as err:
        m.resolve(profile, manifest_path=path, environ=env or {}, cli_overrides=cli)
    return str(err.value)


def set_items(*items: str) -> dict:
    return m.parse_cli_overrides(list(items))


# ----------------------------------------------------------------------------------- numbers
def _numbers(node, path="#"):
    if isinstance(node, dict):
        if node.get("type") in ("integer", "number"):
            yield path, node
        for key, value in node.items():
            yield from _numbers(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _numbers(value, f"{path}/{i}")


def test_every_number_of_every_section_has_both_bounds():
    numbers = list(_numbers(m.json_schema()))
    assert len(numbers) > 100  # every section, the source settings included
    unbounded = [path for path, node in numbers
                 if not ({"minimum", "exclusiveMinimum"} & node.keys() and {"maximum", "exclusiveMaximum"} & node.keys())]
    assert unbounded == []


def test_the_shipped_manifest_is_within_the_bounds():
    for name in json.loads(M.read_text())["profiles"]:
        assert m.resolve(name, environ={}).profile


BOUND_CASES = {
    # issue 18 item 5, as replayed: accepted before, a hung run for the first one
    "backoff_1e9": (set_items("data.recovery_backoff_s=1e9"), None,
                    f"{M}: $.data.recovery_backoff_s: Input should be less than or equal to 30 (got 1000000000.0) "
                    "(from --set data.recovery_backoff_s=1000000000.0)"),
    "recovery_wait": ({"data.recovery_attempts": 10, "data.recovery_backoff_s": 1}, None,
                      f"{M}: $.data: Value error, recovery would wait 511 s per range (recovery_backoff_s * "
                      "(2**(recovery_attempts - 1) - 1)); at most 120 s (from --set data.recovery_attempts=10, "
                      "--set data.recovery_backoff_s=1)"),
    "vol_window_negative": (set_items("regime.vol_window=-5"), None,
                            f"{M}: $.regime.vol_window: Input should be greater than or equal to 2 (got -5) "
                            "(from --set regime.vol_window=-5)"),
    "vol_window_env": (None, {"PA_REGIME__VOL_WINDOW": "-5"},
                       f"{M}: $.regime.vol_window: Input should be greater than or equal to 2 (got -5) "
                       "(from PA_REGIME__VOL_WINDOW=-5)"),
    "min_momentum_nan_text": (set_items("selection.min_momentum=nan"), None,
                              f"{M}: $.selection.min_momentum: Input should be a finite number (got 'nan') "
                              "(from --set selection.min_momentum=nan)"),
    "top_n_huge": ({"selection.top_n": 10**9}, None,
                   f"{M}: $.selection.top_n: Input should be less than or equal to 100000 (got 1000000000) "
                   "(from --set selection.top_n=1000000000)"),
    "aggressor_share": ({"optimization.aggressor_budget": {"QUIET": 1.5, "NORMAL": 0.1, "TURBULENT": 0.1,
                                                           "CRISIS": 0.1}}, None,
                        f"{M}: $.optimization.aggressor_budget.QUIET: Input should be less than 1 (got 1.5) "
                        '(from --set optimization.aggressor_budget={"QUIET": 1.5, "NORMAL": 0.1, "TURBULENT": 0.1, '
                        '"CRISIS": 0.1})'),
    "top_engines": ({"reports.top_engines": 11}, None,
                    f"{M}: $.reports.top_engines: Input should be less than or equal to 10 (got 11) "
                    "(from --set reports.top_engines=11)"),
    "executor_huge": (None, {"PA_EXECUTOR__MAX_CONCURRENT": "100000"},
                      f"{M}: $.executor.max_concurrent: Input should be less than or equal to 256 (got 100000) "
                      "(from PA_EXECUTOR__MAX_CONCURRENT=100000)"),
    "source_seed": ({"source.settings.seed": 2**40}, None,
                    f"{M}: $.source.settings.seed: Input should be less than or equal to 4294967295 "
                    "(got 1099511627776) (from --set source.settings.seed=1099511627776)"),
    # engine names from the registry
    "production_engine": ({"optimization.production_engine": "nco"}, None,
                          f"{M}: $.optimization.production_engine: Value error, not an engine of the registry "
                          f"{ENGINES} (got 'nco') (from --set optimization.production_engine=nco)"),
    "engines": ({"optimization.engines": ["market", "raw_pool_ew", "equal_weight", "nco"]}, None,
                f"{M}: $.optimization.engines: Value error, unknown engine(s) ['nco']; engines: {ENGINES} "
                '(from --set optimization.engines=["market", "raw_pool_ew", "equal_weight", "nco"])'),
    "engines_twice": ({"optimization.engines": ["market", "raw_pool_ew", "equal_weight", "hrp", "hrp"]}, None,
                      f"{M}: $.optimization.engines: Value error, engine(s) listed twice: ['hrp'] "
                      '(from --set optimization.engines=["market", "raw_pool_ew", "equal_weight", "hrp", "hrp"])'),
    "fallback_key": ({"optimization.fallback_chain": {"nco": ["hrp"]}}, None,
                     f"{M}: $.optimization.fallback_chain: Value error, fallback_chain['nco'] names unknown engine(s) "
                     "['nco'] (from --set optimization.fallback_chain={\"nco\": [\"hrp\"]})"),
    "fallback_value": (None, {"PA_OPTIMIZATION__FALLBACK_CHAIN": '{"hrp": ["nco"]}'},
                       f"{M}: $.optimization.fallback_chain: Value error, fallback_chain['hrp'] names unknown engine(s) "
                       "['nco'] (from PA_OPTIMIZATION__FALLBACK_CHAIN={\"hrp\": [\"nco\"]})"),
    "fallback_itself": ({"optimization.fallback_chain": {"hrp": ["hrp"]}}, None,
                        f"{M}: $.optimization.fallback_chain: Value error, fallback_chain['hrp'] falls back to itself "
                        "(from --set optimization.fallback_chain={\"hrp\": [\"hrp\"]})"),
    "force_fail": ({"optimization.force_fail": ["nco"]}, None,
                   f"{M}: $.optimization.force_fail: Value error, unknown engine(s) ['nco']; engines: {ENGINES} "
                   '(from --set optimization.force_fail=["nco"])'),
    # alert sinks
    "sink_timeout": ({"alerts.sinks": [{"kind": "webhook", "url_env": "HOOK", "timeout_s": 1e9}]}, None,
                     f"{M}: $.alerts.sinks[0].timeout_s: Input should be less than or equal to 60 (got 1000000000.0) "
                     '(from --set alerts.sinks=[{"kind": "webhook", "url_env": "HOOK", "timeout_s": 1000000000.0}])'),
    "sink_worst_case": ({"alerts.sinks": [{"kind": "webhook", "url_env": "HOOK", "max_attempts": 10,
                                           "timeout_s": 30}]}, None,
                        f"{M}: $.alerts.sinks[0]: Value error, max_attempts x timeout_s plus the backoff waits is "
                        "555.5 s per alert; at most 120 s (from --set alerts.sinks=[{\"kind\": \"webhook\", "
                        "\"url_env\": \"HOOK\", \"max_attempts\": 10, \"timeout_s\": 30}])"),
    "webhook_without_url": ({"alerts.sinks": [{"kind": "webhook"}]}, None,
                            f"{M}: $.alerts.sinks[0]: Value error, a webhook sink needs url_env "
                            '(from --set alerts.sinks=[{"kind": "webhook"}])'),
    "jsonl_with_url": ({"alerts.sinks": [{"kind": "jsonl", "url_env": "HOOK"}]}, None,
                       f"{M}: $.alerts.sinks[0]: Value error, a jsonl sink takes no url_env "
                       '(from --set alerts.sinks=[{"kind": "jsonl", "url_env": "HOOK"}])'),
}


@pytest.mark.parametrize("case", list(BOUND_CASES))
def test_a_value_out_of_bounds_is_refused_naming_its_origin(case):
    cli, env, message = BOUND_CASES[case]
    assert refused(cli, env) == message


def test_a_profile_value_out_of_bounds_names_the_profile(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"default_profile": "a", "profiles": {"a": {"regime": {"vol_window": -5}}}}))
    assert refused(profile="a", path=path) == (
        f"{path}: $.profiles.a.regime.vol_window: Input should be greater than or equal to 2 (got -5)")


@pytest.mark.parametrize(("item", "message"), [
    ("selection.min_momentum=NaN", "--set selection.min_momentum=NaN: NaN is not a finite number (settings are finite)"),
    ("optimization.kappa=Infinity", "--set optimization.kappa=Infinity: Infinity is not a finite number (settings are finite)"),
    ("optimization.kappa=-Infinity", "--set optimization.kappa=-Infinity: -Infinity is not a finite number "
                                     "(settings are finite)"),
    ("optimization.kappa=1e999", "--set optimization.kappa=1e999: 1e999 is not a finite number (settings are finite)"),
    ('optimization.aggressor_budget={"QUIET": NaN}', '--set optimization.aggressor_budget={"QUIET": NaN}: $.QUIET: '
                                                     "NaN is not a finite number (settings are finite)"),
    ('optimization.fallback_chain={"hrp": [], "hrp": ["x"]}', '--set optimization.fallback_chain={"hrp": [], '
     '"hrp": ["x"]}: duplicate key \'hrp\' (JSON keys must be unique)'),
    ("selection", "selection: expected --set section.key=value"),
])
def test_a_non_finite_or_ambiguous_cli_value_is_refused(item, message):
    with pytest.raises(m.ManifestError) as err:
        m.parse_cli_overrides([item])
    assert str(err.value) == f"command line: {message}"


def test_a_non_finite_environment_value_is_refused():
    assert refused(env={"PA_SELECTION__MIN_MOMENTUM": "NaN"}) == (
        "environment: PA_SELECTION__MIN_MOMENTUM=NaN: NaN is not a finite number (settings are finite)")


@pytest.mark.parametrize(("key", "message"), [
    ("selection.topn", "unknown setting selection.topn; did you mean --set selection.top_n=...?"),
    ("selecton.top_n", "unknown setting selecton; did you mean --set selection.top_n=...?"),
    ("source.settings.pth", "unknown setting source.settings.pth; did you mean --set source.settings.path=...?"),
    ("selection.top_n.x", "unknown setting selection.top_n.x; did you mean --set selection.top_n=...?"),
    ("selection.bogus", "unknown setting selection.bogus; selection has: baseline, class_cap, threshold, max_clusters, "
                        "top_n, min_momentum, min_winners, float32_min_symbols"),
    ("bogus", "unknown setting bogus; sections: data, source, discovery, selection, risk, regime, optimization, "
              "backtest, reports, ledger, alerts, executor, calendar, features"),
])
def test_an_unknown_cli_key_is_refused_with_the_nearest_valid_key(key, message):
    assert refused({key: 3}) == f"command line: --set {key}=3: {message}"


def test_a_long_value_is_shown_clipped_to_80_characters_in_the_message():
    value = "/" + "d" * 99  # e.g. a deep folder: the message keeps its first 79 characters and "…"
    shown = value[:79] + "…"
    assert len(shown) == 80
    assert refused(set_items(f"source.settings.pathh={value}")) == (f"command line: --set source.settings.pathh={shown}: unknown setting "
                              "source.settings.pathh; did you mean --set source.settings.path=...?")


def test_free_form_mappings_accept_keys_below_them():
    assert unknown_setting(m.Config, "optimization.fallback_chain.hrp") is None
    assert unknown_setting(m.Config, "discovery.scanners.equity") is None
    assert unknown_setting(m.Config, "source.settings.faults.stale.bars") is None
    assert unknown_setting(m.Config, "source.settings.faults.stale.barz") == "source.settings.faults.stale.barz"


# -------------------------------------------------------------------------------- the file
def _file(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "manifest.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


FILE_CASES = {
    "nan_literal": ('{"default_profile": "a", "profiles": {"a": {"selection": {"min_momentum": NaN}}}}',
                    "$.profiles.a.selection.min_momentum: NaN is not a finite number (settings are finite)"),
    "infinity_in_a_list": ('{"default_profile": "a", "profiles": {"a": {"x": [1, -Infinity]}}}',
                           "$.profiles.a.x[1]: -Infinity is not a finite number (settings are finite)"),
    "overflow": ('{"default_profile": "a", "profiles": {"a": {"data": {"max_abs_return": 1e400}}}}',
                 "$.profiles.a.data.max_abs_return: 1e400 is not a finite number (settings are finite)"),
    "duplicate_top": ('{"default_profile": "a", "default_profile": "b", "profiles": {"a": {}}}',
                      "$: duplicate key 'default_profile' (JSON keys must be unique)"),
    "duplicate_nested": ('{"default_profile": "a", "profiles": {"a": {"selection": {"top_n": 2, "top_n": 3}}}}',
                         "$.profiles.a.selection: duplicate key 'top_n' (JSON keys must be unique)"),
    "binary": (b"\x89PNG\r\n\x1a\n\xff\xfe\x00binary", "$: not UTF-8 text (byte 0x89 at offset 0); the manifest is a JSON file"),
    "latin1": ('{"default_profile": "é"}'.encode("latin-1"),
               "$: not UTF-8 text (byte 0xe9 at offset 21); the manifest is a JSON file"),
    "not_an_object": ("[1, 2]", "$: the manifest must be a JSON object"),
    "deep": ("[" * 100_000 + "]" * 100_000, "$: nested too deeply"),
}


@pytest.mark.parametrize("case", list(FILE_CASES))
def test_a_bad_manifest_file_is_refused_naming_the_file_and_path(case, tmp_path):
    text, problem = FILE_CASES[case]
    path = _file(tmp_path, text)
    with pytest.raises(m.ManifestError) as err:
        m.load_manifest_file(path)
    assert str(err.value) == f"{path}: {problem}"


def test_a_directory_or_missing_file_is_refused(tmp_path):
    with pytest.raises(m.ManifestError) as err:
        m.resolve(manifest_path=tmp_path, environ={})
    assert str(err.value) == f"{tmp_path}: $: is a directory, not a manifest file"
    with pytest.raises(m.ManifestError) as err:
        m.resolve(environ={"PA_MANIFEST": str(tmp_path / "none.json")})
    assert str(err.value) == f"{tmp_path / 'none.json'}: $: file not found"


def test_a_utf8_byte_order_mark_is_read(tmp_path):
    path = _file(tmp_path, b"\xef\xbb\xbf" + M.read_bytes())
    assert m.load_manifest_file(path)[0] == m.load_manifest_file(M)[0]


def test_strict_json_keeps_what_plain_json_keeps():
    text = '{"a": [1, 2.5, -3e2, true, null, "NaN"], "b": {"c": {}}}'
    assert loads_strict(text) == json.loads(text)
    with pytest.raises(StrictJSONError) as err:
        loads_strict('{"a": {"b": [0, {"c": 1, "c": 2}]}}')
    assert (err.value.path, err.value.problem) == ("$.a.b[1]", "duplicate key 'c' (JSON keys must be unique)")


# ------------------------------------------------------------------------------ environment
ENV_CASES = {
    "PA_SELECTON__TOP_N": "did you mean PA_SELECTION__TOP_N?",
    "PA_SELECTION_TOP_N": "did you mean PA_SELECTION__TOP_N?",
    "PA_SELECTION__TOPN": "did you mean PA_SELECTION__TOP_N?",
    "PA_LOGLEVEL": "did you mean PA_LOG_LEVEL?",
    "PA_LEDGER_HMAC": "did you mean PA_LEDGER_HMAC_KEY?",
    "PA_SOURCE__SETTINGS__PTH": "did you mean PA_SOURCE__SETTINGS__PATH?",
}


@pytest.mark.parametrize("name", list(ENV_CASES))
def test_a_misspelt_environment_override_is_refused_with_the_nearest_name(name):
    assert refused(env={name: "3"}) == f"environment: {name}: unknown PA_* variable (not a setting); {ENV_CASES[name]}"


def test_an_unknown_environment_variable_without_a_near_name_lists_the_valid_ones():
    assert refused(env={"PA_ZZZ": "1"}) == (
        "environment: PA_ZZZ: unknown PA_* variable (not a setting); overrides are PA_<SECTION>__<KEY> (sections: "
        + ", ".join(m.SECTIONS) + "); the other PA_* variables are " + ", ".join(m.NON_OVERRIDE_ENV)
        + " and those *_env settings name")


def test_variables_that_are_not_overrides_stay_allowed():
    from portfolio_assets import ledger
    from portfolio_assets.sources.tradingview import ENV_SCANNER_BASE, ENV_WS_URL

    for name in (ledger.ENV_HMAC_KEY, ledger.ENV_ED25519_KEY, ledger.ENV_ED25519_PUBLIC_KEY, ENV_SCANNER_BASE,
                 ENV_WS_URL, m.GistConfig().token_env):
        assert name in m.NON_OVERRIDE_ENV
    every = {name: "x" for name in m.NON_OVERRIDE_ENV if name not in ("PA_PROFILE", "PA_MANIFEST")}
    every["PA_ALERT_WEBHOOK_URL"] = "http://127.0.0.1:9/hook"
    every["PA_CLI_OVERRIDES"] = "{}"
    assert m.resolve("demo", environ=every).profile == "demo"
    # a variable a *_env setting names is allowed, here one named by an override itself
    sinks = json.dumps([{"kind": "webhook", "url_env": "PA_MY_HOOK"}])
    resolved = m.resolve("demo", environ={"PA_ALERTS__SINKS": sinks, "PA_MY_HOOK": "https://hooks.example/x"})
    assert resolved.config.alerts.sinks[0].url_env == "PA_MY_HOOK"
    assert refused(env={"PA_MY_HOOK": "https://hooks.example/x"}) == (
        "environment: PA_MY_HOOK: unknown PA_* variable (not a setting); overrides are PA_<SECTION>__<KEY> (sections: "
        + ", ".join(m.SECTIONS) + "); the other PA_* variables are " + ", ".join(m.NON_OVERRIDE_ENV)
        + " and those *_env settings name")


def test_every_pa_variable_the_code_reads_is_allowed_or_an_override():
    """Scan the package for PA_* names: each is in NON_OVERRIDE_ENV or a valid override."""
    import re

    import portfolio_assets

    root = Path(portfolio_assets.__file__).parent  # the whole package (manifest is a subpackage)
    names = {n for f in root.rglob("*.py") for n in re.findall(r"\bPA_[A-Z0-9_]+\b", f.read_text())}
    names.discard("PA_")
    for name in sorted(names):
        dotted = name[3:].lower().replace("__", ".")
        assert name in m.NON_OVERRIDE_ENV or ("__" in name and unknown_setting(m.Config, dotted) is None), name


# ------------------------------------------------------------------------------ webhook URLs
@pytest.mark.parametrize(("url", "problem"), [
    ("http://127.0.0.1:99999/x", "port '99999' is not a number in 1-65535"),
    ("http://127.0.0.1:abc/x", "port 'abc' is not a number in 1-65535"),
    ("http://127.0.0.1:0/x", "port '0' is not a number in 1-65535"),
    ("http://127.0.0.1:/x", "has an empty port after ':'"),
    ("ftp://127.0.0.1/x", "scheme ftp:// is not http:// or https://"),
    ("127.0.0.1:8080/x", "scheme (none) is not http:// or https://"),
    ("hooks.example/x", "scheme (none) is not http:// or https://"),
    ("http:///x", "has no host"),
    ("http://user:s3cret@host/a b", "is empty or has spaces or control characters"),
    ("", "is empty or has spaces or control characters"),
])
def test_a_webhook_url_that_cannot_work_is_refused_without_echoing_it(url, problem):
    with pytest.raises(ValueError) as err:
        parse_webhook_url(url)
    assert str(err.value) == problem
    assert "s3cret" not in str(err.value)


def test_webhook_userinfo_becomes_basic_auth_and_leaves_the_url():
    hook = parse_webhook_url("https://al%40ce:p%3Ass@hooks.example:8443/services/T0K3N?x=1")
    assert hook.url == "https://hooks.example:8443/services/T0K3N?x=1"
    assert hook.auth == ("al@ce", "p:ss")
    assert hook.display == "https://hooks.example:8443"
    assert parse_webhook_url("http://[::1]:8080").url == "http://[::1]:8080/"
    assert parse_webhook_url("http://u@h/x").auth == ("u", "")


def test_a_bad_webhook_url_is_refused_when_the_profile_is_resolved():
    for url, problem in (("http://127.0.0.1:99999/x", "port '99999' is not a number in 1-65535"),
                         ("ftp://h/x", "scheme ftp:// is not http:// or https://")):
        assert refused(profile="production", env={"PA_ALERT_WEBHOOK_URL": url}) == (
            f"environment: PA_ALERT_WEBHOOK_URL: the webhook URL of alerts.sinks[1]: {problem}")
    # unset: not an error here (delivery keeps the alerts in the dead letter until it is set)
    assert m.resolve("production", environ={}).profile == "production"


# ------------------------------------------------------------------------------ the CLI
def _cli(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PA_")}
    base.update(PA_LAKEHOUSE=str(tmp_path / "lake"), DAGSTER_HOME=str(tmp_path / "dagster_home"), **env)
    exe = Path(sys.executable).with_name("portfolio-assets")
    return subprocess.run([str(exe), *args], env=base, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--set", "data.recovery_backoff_s=1e9"], {},
     f"{M}: $.data.recovery_backoff_s: Input should be less than or equal to 30 (got 1000000000.0) "
     "(from --set data.recovery_backoff_s=1000000000.0)"),
    (["--set", "selection.min_momentum=NaN"], {},
     "command line: --set selection.min_momentum=NaN: NaN is not a finite number (settings are finite)"),
    ([], {"PA_SELECTON__TOP_N": "3"},
     "environment: PA_SELECTON__TOP_N: unknown PA_* variable (not a setting); did you mean PA_SELECTION__TOP_N?"),
])
def test_the_cli_refuses_before_any_work(args, env, message, tmp_path):
    proc = _cli(["run", "--profile", "development", "--date", "2026-11-25", *args], tmp_path, **env)
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", f"portfolio-assets: {message}\n")
    assert not (tmp_path / "lake").exists() and not (tmp_path / "dagster_home").exists()


def test_the_cli_names_a_binary_manifest(tmp_path):
    path = _file(tmp_path, b"\x00\x01\xff binary")
    proc = _cli(["status", "--profile", "development"], tmp_path, PA_MANIFEST=str(path))
    assert (proc.returncode, proc.stderr) == (
        2, f"portfolio-assets: {path}: $: not UTF-8 text (byte 0xff at offset 2); the manifest is a JSON file\n")
