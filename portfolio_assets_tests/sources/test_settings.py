"""Typed source settings in the manifest: checked when a profile is resolved, merged per kind."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from portfolio_assets import manifest as m
from portfolio_assets.sources import make_source
from portfolio_assets.sources.files import FilesSource
from portfolio_assets.sources.settings import FilesSettings, SyntheticSettings, TradingViewSettings


def _source(config: m.Config) -> dict:
    return config.model_dump(mode="json")["source"]


@pytest.mark.parametrize("overrides", [
    {"source.kind": "files", "source.settings.path": "DIR"},
    {"source.settings.path": "DIR", "source.kind": "files"},  # the order of the --set options does not matter
    {"source.kind": "files", "source.settings": {"path": "DIR"}},
])
def test_one_set_switches_the_demo_profile_to_the_files_source(tmp_path: Path, overrides: dict) -> None:
    overrides = {k: json.loads(json.dumps(v).replace("DIR", str(tmp_path))) for k, v in overrides.items()}
    resolved = m.resolve("demo", environ={}, cli_overrides=overrides)
    assert _source(resolved.config) == {"kind": "files", "settings": {"path": str(tmp_path)}}
    settings = resolved.config.source.settings
    assert isinstance(settings, FilesSettings) and settings.max_staleness_days == 10
    assert isinstance(make_source("files", settings), FilesSource)


def test_the_environment_switches_vendors_the_same_way(tmp_path: Path) -> None:
    env = {"PA_SOURCE__KIND": "files", "PA_SOURCE__SETTINGS__PATH": str(tmp_path)}
    assert _source(m.resolve("demo", environ=env).config) == {"kind": "files", "settings": {"path": str(tmp_path)}}
    # the CLI switches back; the demo's synthetic settings come back with their kind
    back = m.resolve("demo", environ=env, cli_overrides={"source.kind": "synthetic"}).config
    assert _source(back) == _source(m.resolve("demo", environ={}).config)


def test_settings_of_another_kind_never_leak(tmp_path: Path) -> None:
    # production is TradingView over defaults that give synthetic settings: the seed stays behind
    production = m.resolve("production", environ={}).config
    assert _source(production) == {"kind": "tradingview",
                                   "settings": {"concurrency": 4, "stored_scans": "lakehouse/production/scans"}}
    assert isinstance(production.source.settings, TradingViewSettings)
    synthetic = m.resolve("production", environ={}, cli_overrides={"source.kind": "synthetic"}).config
    assert _source(synthetic) == {"kind": "synthetic", "settings": {"seed": 7}}


@pytest.mark.parametrize(("overrides", "problem"), [
    ({"source.kind": "files", "source.settings.seed": 3},
     "$.source.settings.path: Field required (from --set source.kind=files); "
     "also $.source.settings.seed: unknown key (not in the schema)"),
    ({"source.kind": "files"}, "$.source.settings.path: Field required (from --set source.kind=files)"),
    ({"source.kind": "files", "source.settings.path": "/nonexistent/bars"},
     "$.source.settings.path: '/nonexistent/bars' is not a directory (the exported bars, docs/real-data.md) "
     "(from --set source.settings.path=/nonexistent/bars)"),
    ({"source.kind": "vendor"},
     "$.source.kind: Input should be 'synthetic', 'files' or 'tradingview' (got 'vendor') (from --set source.kind=vendor)"),
    ({"source.settings.n_equities": -3},
     "$.source.settings.n_equities: Input should be greater than or equal to 0 (got -3) "
     "(from --set source.settings.n_equities=-3)"),
    ({"source.kind": "tradingview", "source.settings.backoff_max_s": 1e9},
     "$.source.settings.backoff_max_s: Input should be less than or equal to 600 (got 1000000000.0) "
     "(from --set source.settings.backoff_max_s=1000000000.0)"),
])
def test_a_bad_source_setting_is_refused_when_the_profile_is_resolved(overrides: dict, problem: str) -> None:
    with pytest.raises(m.ManifestError) as err:
        m.resolve("demo", environ={}, cli_overrides=overrides)
    assert str(err.value) == f"{m.DEFAULT_MANIFEST}: {problem}"


def _manifest(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(data))
    return path


def test_a_profile_without_kind_adds_settings_to_the_inherited_kind(tmp_path: Path) -> None:
    path = _manifest(tmp_path, {
        "default_profile": "mine",
        "defaults": {"source": {"kind": "files", "settings": {"path": str(tmp_path)}}},
        "profiles": {"mine": {"source": {"settings": {"max_staleness_days": 5}}}},
    })
    source = m.resolve(manifest_path=path, environ={}).config.source
    assert (source.kind, source.settings.path, source.settings.max_staleness_days) == ("files", tmp_path, 5)


def test_a_profile_with_kind_and_bad_settings_is_refused_when_the_file_is_read(tmp_path: Path) -> None:
    path = _manifest(tmp_path, {"default_profile": "a", "profiles": {
        "a": {"source": {"kind": "synthetic", "settings": {"seed": 7, "path": "x"}}}}})
    with pytest.raises(m.ManifestError) as err:
        m.load_manifest_file(path)
    assert str(err.value) == f"{path}: $.profiles.a.source.settings.path: unknown key (not in the schema)"


def test_the_schema_checks_settings_against_the_kind() -> None:
    schema = m.json_schema()
    raw = json.loads(m.DEFAULT_MANIFEST.read_text())
    raw.pop("$schema")
    jsonschema.validate(raw, schema)
    for source in ({"kind": "files", "settings": {"seed": 7}}, {"settings": {"path": "x"}},
                   {"kind": "tradingview", "settings": {"page_size": 0}}):
        bad = {**raw, "defaults": {**raw["defaults"], "source": source}}
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_the_recorded_config_holds_the_settings_as_given() -> None:
    """Defaults stay in the models, so the demo's config hash is what it was before typed settings."""
    raw = json.loads(m.DEFAULT_MANIFEST.read_text())
    demo = m.resolve("demo", environ={})
    assert _source(demo.config) == raw["profiles"]["demo"]["source"]
    assert isinstance(demo.config.source.settings, SyntheticSettings)
    assert demo.config.source.settings.n_equities == SyntheticSettings.model_fields["n_equities"].default
    assert demo.config.source.settings.faults_given  # the demo gives its own fault plan
