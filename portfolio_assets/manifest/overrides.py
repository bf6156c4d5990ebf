"""Overrides: merging layers, `--set` values and `PA_<SECTION>__<KEY>` environment variables (unknown
`PA_*` names are refused with the nearest valid one)."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from portfolio_assets.manifest.base import ENV_PREFIX, NON_OVERRIDE_ENV, ManifestError
from portfolio_assets.manifest.models import SECTIONS, Config
from portfolio_assets.manifest_input import (
    StrictJSONError,
    loads_strict,
    nearest,
    nearest_setting,
    setting_keys,
    unknown_setting,
)


def _deep_merge(base: dict[str, Any], delta: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in delta.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _set_dotted(target: dict[str, Any], dotted: str, value: Any, origin: str) -> None:
    node = target
    for p in dotted.split(".")[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ManifestError(origin, dotted, f"{p!r} is not a section")
    node[dotted.split(".")[-1]] = value


def _shown(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _cli_origin(dotted: str, value: Any) -> str:
    """How an override was written on the command line: `--set selection.top_n=0`."""
    return f"--set {dotted}={_shown(value if isinstance(value, str) else json.dumps(value))}"


def _parse_value(text: str, origin: str) -> Any:
    """A `--set`/`PA_*` value: JSON when it parses (no NaN, Infinity or duplicate keys), else the text."""
    try:
        return loads_strict(text)
    except json.JSONDecodeError:
        return text
    except StrictJSONError as exc:
        where = "" if exc.path == "$" else f"{exc.path}: "
        raise ManifestError("command line" if origin.startswith("--set") else "environment", origin,
                            f"{where}{exc.problem}") from None


def env_name(dotted: str) -> str:
    """The environment variable of a setting: `selection.top_n` -> `PA_SELECTION__TOP_N`."""
    return ENV_PREFIX + dotted.upper().replace(".", "__")


def env_overrides(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """The `PA_<SECTION>__<KEY>=<json>` overrides in `environ`.

    Returns `({"selection.top_n": 3}, {"selection.top_n": "PA_SELECTION__TOP_N=3"}, unknown)`:
    values (parsed as JSON when they parse), their origins, and the `PA_*` names that are neither a
    setting nor in `NON_OVERRIDE_ENV` (`resolve` refuses those not named by a `*_env` setting).
    """
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    unknown: list[str] = []
    for name, text in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name in NON_OVERRIDE_ENV:
            continue
        dotted = name[len(ENV_PREFIX):].lower().replace("__", ".")
        if "__" not in name or "" in dotted.split(".") or unknown_setting(Config, dotted) is not None:
            unknown.append(name)
            continue
        origins[dotted] = f"{name}={_shown(text)}"
        values[dotted] = _parse_value(text, origins[dotted])
    return values, origins, unknown


def _named_env(node: Any) -> set[str]:
    """Every variable name a `*_env` setting gives anywhere in `node` (a manifest or a config dump)."""
    if isinstance(node, Mapping):
        found = {v for k, v in node.items() if str(k).endswith("_env") and isinstance(v, str)}
        return found.union(*(_named_env(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_named_env(v) for v in node))
    return set()


def _key_hint(dotted: str, as_env: bool) -> str:
    """`did you mean ...?` for a misspelt key, else what the section (or the manifest) holds."""
    keys = list(setting_keys(Config))
    found = nearest_setting(dotted, keys)
    show = env_name if as_env else (lambda key: f"--set {key}=...")
    if found:
        return f"did you mean {show(found)}?"
    section = dotted.split(".")[0]
    if section in SECTIONS:
        return f"{section} has: " + ", ".join(k.split(".", 1)[1] for k in keys if k.count(".") == 1 and
                                               k.startswith(section + "."))
    return "sections: " + ", ".join(SECTIONS)


def _refuse_unknown_env(unknown: list[str], allowed: set[str]) -> None:
    """An unknown `PA_*` variable is a misspelt override far more often than anything else."""
    for name in unknown:
        if name in allowed:
            continue
        dotted = name[len(ENV_PREFIX):].lower().replace("__", ".")
        if "__" in name and dotted.split(".")[0] in SECTIONS:
            hint = _key_hint(dotted, as_env=True)
        else:
            guess = nearest(name.upper(), [env_name(k) for k in setting_keys(Config)] + sorted({*NON_OVERRIDE_ENV, *allowed}))
            hint = f"did you mean {guess}?" if guess else (
                "overrides are PA_<SECTION>__<KEY> (sections: " + ", ".join(SECTIONS) + "); the other PA_* "
                "variables are " + ", ".join(NON_OVERRIDE_ENV) + " and those *_env settings name")
        raise ManifestError("environment", name, f"unknown PA_* variable (not a setting); {hint}")
