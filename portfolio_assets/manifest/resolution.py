"""Resolution: read the manifest file, follow a profile's `extends` chain, apply the overrides, check
the semantics the models cannot (webhook URLs ...), and return a `ResolvedManifest`."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from portfolio_assets.manifest.base import DEFAULT_MANIFEST, PROFILE_RE, ManifestError, lakehouse_base_path
from portfolio_assets.manifest.models import Config, ManifestFile, ResolvedManifest
from portfolio_assets.manifest.overrides import (
    _cli_origin,
    _deep_merge,
    _key_hint,
    _named_env,
    _parse_value,
    _refuse_unknown_env,
    _set_dotted,
    _shown,
    env_overrides,
)
from portfolio_assets.manifest_input import (
    StrictJSONError,
    json_path,
    loads_strict,
    parse_webhook_url,
    unknown_setting,
)
from portfolio_assets.sources.settings import (
    FilesSettings,
    SourceLayerError,
    describe_error,
    merge_source_layers,
)


def load_manifest_file(path: Path | str = DEFAULT_MANIFEST) -> tuple[dict[str, Any], str]:
    """Read and schema-check the manifest; returns (raw dict, sha256 of the file bytes).

    Refused with the file named: unreadable files, text that is not UTF-8, invalid JSON, `NaN` or
    `Infinity` (and numbers beyond a float) and duplicate keys (with their JSON path), and anything
    the models refuse."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(path, "$", "file not found") from None
    except IsADirectoryError:
        raise ManifestError(path, "$", "is a directory, not a manifest file") from None
    except OSError as exc:
        raise ManifestError(path, "$", f"cannot be read: {exc.strerror or type(exc).__name__}") from None
    try:
        raw = loads_strict(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ManifestError(path, "$", f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                                       "the manifest is a JSON file") from None
    except json.JSONDecodeError as exc:
        raise ManifestError(path, "$", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except StrictJSONError as exc:
        raise ManifestError(path, exc.path, exc.problem) from None
    except RecursionError:
        raise ManifestError(path, "$", "nested too deeply") from None
    if not isinstance(raw, dict):
        raise ManifestError(path, "$", "the manifest must be a JSON object")
    raw.pop("$schema", None)
    try:
        ManifestFile.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        # A profile is `ProfileDelta | str`: pydantic names the union arm in the location.
        loc = [p for p in err["loc"] if p not in ("ProfileDelta", "str")]
        raise ManifestError(path, json_path(loc), _problem(err)) from None
    return raw, hashlib.sha256(data).hexdigest()


_problem = describe_error


def _related(a: list[str], b: list[str]) -> bool:
    """Whether one dotted path is the other or lies below it."""
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def _profile_chain(
    raw: dict[str, Any], name: str, file: Path, requested_by: str = "$.default_profile"
) -> tuple[list[str], list[dict[str, Any]]]:
    """Follow aliases and `extends` from `name`; returns the names visited and the deltas, base first."""
    profiles: dict[str, Any] = raw["profiles"]
    visited: list[str] = []
    deltas: list[dict[str, Any]] = []
    current: str | None = name
    while current is not None:
        if current in visited:
            cycle = " -> ".join([*visited, current])
            raise ManifestError(file, f"$.profiles.{visited[-1]}", f"profile alias cycle: {cycle}")
        if current not in profiles:
            where = requested_by if not visited else f"$.profiles.{visited[-1]}"
            known = ", ".join(sorted(profiles))
            raise ManifestError(file, where, f"unknown profile {current!r} (known: {known})")
        visited.append(current)
        body = profiles[current]
        if isinstance(body, str):
            current = body
            continue
        delta = {k: v for k, v in body.items() if k not in ("extends", "description")}
        deltas.append(delta)
        current = body.get("extends")
    return visited, list(reversed(deltas))


def _origin(loc: list[str], origins: Mapping[str, str], profile: str) -> str:
    """` (from --set selection.top_n=0)`, ` (from PA_SELECTION__TOP_N=0)` or ` (from profile 'p')`: where a refused value came from."""
    hits = [label for key, label in origins.items() if _related(loc, key.split("."))]
    if not hits and loc[:2] == ["source", "settings"] and "source.kind" in origins:
        hits = [origins["source.kind"]]  # the override switched the kind these settings are judged by
    return f" (from {', '.join(hits)})" if hits else f" (from profile {profile!r})"


def resolve(
    profile: str | None = None,
    *,
    manifest_path: Path | str | None = None,
    cli_overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ResolvedManifest:
    """Resolve the active profile: CLI > PA_* env > profile > defaults > code defaults.

    Refused (`ManifestError`) before any work: a manifest problem (file and JSON path), an unknown
    `--set` key or `PA_*` variable (with the nearest valid one), a value out of bounds (with the
    override or profile it came from), a webhook URL that cannot work, a `PA_LAKEHOUSE` that is not a
    local path or `file://` URL."""
    environ = os.environ if environ is None else environ
    path = Path(manifest_path or environ.get("PA_MANIFEST") or DEFAULT_MANIFEST)
    raw, sha = load_manifest_file(path)
    if profile:
        name, requested_by = profile, "--profile"
    elif environ.get("PA_PROFILE"):
        name, requested_by = environ["PA_PROFILE"], "PA_PROFILE"
    else:
        name, requested_by = raw["default_profile"], "$.default_profile"
    if not PROFILE_RE.fullmatch(name):
        raise ManifestError(path, requested_by, f"invalid profile name {name!r} (lower-case letters, digits, _)")
    chain, deltas = _profile_chain(raw, name, path, requested_by)
    file_layers = [raw.get("defaults", {}), *deltas]
    merged: dict[str, Any] = {}
    for delta in file_layers:
        merged = _deep_merge(merged, {k: v for k, v in delta.items() if k != "source"})
    source_layers: list[tuple[str, Mapping[str, Any]]] = [("file", layer.get("source") or {}) for layer in file_layers]
    env_values, origins, unknown_env = env_overrides(environ)
    cli = dict(cli_overrides or {})
    for dotted, value in cli.items():
        bad = unknown_setting(Config, dotted)
        if bad is not None:
            raise ManifestError("command line", _cli_origin(dotted, value),
                                f"unknown setting {bad}; {_key_hint(dotted, as_env=False)}")
        origins[dotted] = _cli_origin(dotted, value)
    overrides: dict[str, Any] = {}
    for origin, items in (("environment", env_values), ("command line", cli)):
        for dotted, value in items.items():
            if not dotted.startswith("source."):
                _set_dotted(merged, dotted, value, origin)
            overrides[dotted] = value
        source_layers.append((origin, {k: v for k, v in items.items() if k.startswith("source.")}))
    try:
        merged["source"] = merge_source_layers(source_layers)
    except SourceLayerError as exc:
        raise ManifestError(exc.origin, exc.dotted, exc.problem) from None
    try:
        config = Config.model_validate(merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err["loc"]]
        also = "".join(f"; also {json_path(list(e['loc']))}: {_problem(e)}" for e in exc.errors()[1:4]
                       if [str(p) for p in e["loc"][:2]] == loc[:2] == ["source", "settings"])
        raise ManifestError(path, json_path(list(err["loc"])),
                            f"{_problem(err)}{_origin(loc, origins, name)}{also}") from None
    try:
        _check_semantics(config, path)
    except ManifestError as exc:
        loc = re.sub(r"\[\d+\]", "", exc.path).split(".")[1:]
        raise ManifestError(exc.file, exc.path, exc.problem + _origin(loc, origins, name)) from None
    _check_webhook_urls(config, environ)
    try:
        lakehouse_base_path(environ.get("PA_LAKEHOUSE"))
    except ValueError as exc:
        raise ManifestError("environment", "PA_LAKEHOUSE", str(exc)) from None
    _refuse_unknown_env(unknown_env, _named_env(raw) | _named_env(config.model_dump(mode="json")))
    return ResolvedManifest(
        profile=name,
        resolved_from=chain,
        manifest_path=str(path),
        manifest_sha256=sha,
        overrides=overrides,
        config=config,
    )


def _check_semantics(config: Config, path: Path) -> None:
    """Cross-field rules the schema cannot express."""
    source = config.source
    if isinstance(source.settings, FilesSettings) and not source.settings.path.expanduser().is_dir():
        raise ManifestError(path, "$.source.settings.path",
                            f"{str(source.settings.path)!r} is not a directory (the exported bars, docs/real-data.md)")
    opt = config.optimization
    if opt.production_engine not in opt.engines:
        raise ManifestError(
            path, "$.optimization.production_engine", f"{opt.production_engine!r} is not in optimization.engines"
        )
    for required in ("market", "raw_pool_ew", "equal_weight"):
        if required not in opt.engines:
            raise ManifestError(path, "$.optimization.engines", f"baseline engine {required!r} must stay enabled")
    if config.data.min_days_floor > config.data.lookback_history:
        raise ManifestError(path, "$.data.min_days_floor", "must not exceed data.lookback_history")
    cal = config.calendar
    if not cal.start < cal.first_partition < cal.end:
        raise ManifestError(path, "$.calendar", f"need start < first_partition < end, got {cal.start} / "
                                                f"{cal.first_partition} / {cal.end}")
    bt = config.backtest
    if opt.min_observations > bt.train:
        raise ManifestError(
            path, "$.optimization.min_observations",
            f"{opt.min_observations} > backtest.train = {bt.train}: the engines would drop every symbol",
        )
    if bt.train + bt.test > config.data.lookback_history:
        raise ManifestError(
            path, "$.backtest.train",
            f"train + test = {bt.train + bt.test} exceeds data.lookback_history = {config.data.lookback_history}",
        )


def _check_webhook_urls(config: Config, environ: Mapping[str, str]) -> None:
    """The URL a webhook sink will POST to, judged now rather than when a run has failed. An unset
    variable is not an error here: delivery keeps the alert in the dead letter until it is set."""
    for i, sink in enumerate(config.alerts.sinks):
        url = environ.get(sink.url_env) if sink.kind == "webhook" and sink.url_env else None
        if url is not None:
            try:
                parse_webhook_url(url)
            except ValueError as exc:
                raise ManifestError("environment", str(sink.url_env),
                                    f"the webhook URL of alerts.sinks[{i}]: {exc}") from None


def parse_cli_overrides(items: list[str]) -> dict[str, Any]:
    """`--set selection.top_n=3` items -> {"selection.top_n": 3} (values as in `_parse_value`)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ManifestError("command line", item, "expected --set section.key=value")
        key, value = item.split("=", 1)
        out[key.strip()] = _parse_value(value, f"--set {_shown(item.strip())}")
    return out
