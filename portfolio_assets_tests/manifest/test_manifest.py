import json
from pathlib import Path

import jsonschema
import pytest

from portfolio_assets import manifest as m

FEATURES = {
    "feat_turnover_penalty", "feat_partial_rebalance", "feat_xs_momentum", "feat_spectral_regimes",
    "feat_decay_audit", "feat_audit_ledger", "feat_pit_fidelity",
}


def write(tmp_path: Path, data: dict) -> Path:
    p = tmp_path / "manifest.json"
    p.write_text(json.dumps(data))
    return p


def base(**profiles) -> dict:
    return {"default_profile": "a", "defaults": {"selection": {"top_n": 2}}, "profiles": profiles or {"a": {}}}


def test_shipped_profiles_resolve():
    for name in ("demo", "production", "production_v2_canary", "development"):
        r = m.resolve(name, environ={})
        assert r.profile == name
    prod = m.resolve("production", environ={})
    assert prod.resolved_from == ["production", "production_2026q4"]
    assert prod.config.source.kind == "tradingview"
    canary = m.resolve("production_v2_canary", environ={})
    assert canary.config.source.kind == "tradingview"  # extends production
    assert canary.config.features.feat_spectral_regimes and not prod.config.features.feat_spectral_regimes
    assert m.resolve(environ={}).profile == "demo"
    assert set(m.resolve("demo", environ={}).config.features.model_dump()) == FEATURES


def test_manifest_validates_against_committed_schema():
    schema = json.loads(m.DEFAULT_SCHEMA.read_text())
    assert schema == json.loads(json.dumps(m.json_schema())), "run `portfolio-assets manifest-schema`"
    raw = json.loads(m.DEFAULT_MANIFEST.read_text())
    raw.pop("$schema")
    jsonschema.validate(raw, schema)


def test_resolution_order_cli_over_env_over_profile_over_defaults_over_code(tmp_path):
    p = write(tmp_path, base(a={"selection": {"top_n": 3, "class_cap": 9}}))
    r = m.resolve(manifest_path=p, environ={})
    assert r.config.selection.top_n == 3  # profile over defaults
    assert r.config.selection.class_cap == 9
    assert r.config.selection.max_clusters == 25  # code default
    r = m.resolve(manifest_path=p, environ={"PA_SELECTION__TOP_N": "4"})
    assert r.config.selection.top_n == 4  # env over profile
    r = m.resolve(manifest_path=p, environ={"PA_SELECTION__TOP_N": "4"}, cli_overrides={"selection.top_n": 5})
    assert r.config.selection.top_n == 5  # CLI over env
    assert r.overrides == {"selection.top_n": 5}
    p2 = write(tmp_path, base(a={}))
    assert m.resolve(manifest_path=p2, environ={}).config.selection.top_n == 2  # defaults over code


def test_alias_and_extends_chain(tmp_path):
    p = write(tmp_path, base(a="b", b={"extends": "c", "selection": {"top_n": 7}}, c={"selection": {"class_cap": 3}}))
    r = m.resolve(manifest_path=p, environ={})
    assert r.resolved_from == ["a", "b", "c"]
    assert (r.config.selection.top_n, r.config.selection.class_cap) == (7, 3)


def test_alias_cycle_is_an_error(tmp_path):
    p = write(tmp_path, base(a="b", b="c", c="a"))
    with pytest.raises(m.ManifestError) as e:
        m.resolve(manifest_path=p, environ={})
    assert str(e.value) == f"{p}: $.profiles.c: profile alias cycle: a -> b -> c -> a"


def test_errors_name_file_path_and_problem(tmp_path):
    p = write(tmp_path, base(a={"selection": {"top_n": 0}}))
    with pytest.raises(m.ManifestError) as e:
        m.resolve(manifest_path=p, environ={})
    assert e.value.file == str(p) and e.value.path == "$.profiles.a.selection.top_n"
    assert "greater than or equal to 1" in e.value.problem

    p = write(tmp_path, base(a={"selection": {"top_nn": 1}}))
    with pytest.raises(m.ManifestError, match=r"\$\.profiles\.a\.selection\.top_nn: unknown key"):
        m.resolve(manifest_path=p, environ={})

    p.write_text("{ not json")
    with pytest.raises(m.ManifestError, match=r"manifest.json: \$: invalid JSON at line 1 column 3"):
        m.resolve(manifest_path=p, environ={})

    with pytest.raises(m.ManifestError, match=r"--profile: unknown profile 'nope' \(known: demo"):
        m.resolve("nope", environ={})
    with pytest.raises(m.ManifestError, match=r"PA_PROFILE: invalid profile name '\.\./etc'"):
        m.resolve(environ={"PA_PROFILE": "../etc"})
    with pytest.raises(m.ManifestError) as e:
        m.resolve("demo", environ={"PA_SELECTION__BOGUS": "1"})
    assert str(e.value) == (
        "environment: PA_SELECTION__BOGUS: unknown PA_* variable (not a setting); selection has: baseline, "
        "class_cap, threshold, max_clusters, top_n, min_momentum, min_winners, float32_min_symbols")


def test_semantic_rules(tmp_path):
    p = write(tmp_path, base(a={"optimization": {"engines": ["market", "raw_pool_ew", "equal_weight"],
                                                  "production_engine": "hrp"}}))
    with pytest.raises(m.ManifestError) as e:
        m.resolve(manifest_path=p, environ={})
    assert str(e.value) == f"{p}: $.optimization.production_engine: 'hrp' is not in optimization.engines (from profile 'a')"
    p = write(tmp_path, base(a={"optimization": {"engines": ["hrp"], "production_engine": "hrp"}}))
    with pytest.raises(m.ManifestError, match="baseline engine 'market' must stay enabled"):
        m.resolve(manifest_path=p, environ={})


def test_config_hash_changes_with_config():
    a = m.resolve("demo", environ={})
    b = m.resolve("demo", environ={"PA_SELECTION__TOP_N": "3"})
    assert a.config_hash != b.config_hash
    assert a.config_hash == m.resolve("demo", environ={}).config_hash
