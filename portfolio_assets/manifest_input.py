"""What an operator hands the manifest, read strictly: the JSON file, `--set` items, `PA_*` variables
and webhook URLs. Every function here judges input and says what is wrong with it; `manifest`
turns the problems into `ManifestError`s that name the file or the origin.

- `loads_strict(text)`: JSON without `NaN`/`Infinity` literals, numbers that overflow to infinity,
  or duplicate keys (Python's `json` accepts all three silently); the error carries the JSON path.
- `setting_keys(model)` / `unknown_setting(model, dotted)`: the dotted settings a model accepts, so a
  misspelt `--set` or `PA_<SECTION>__<KEY>` is refused with the nearest valid key.
- `parse_webhook_url(url)`: scheme, host and port checked; `user:password@` taken out of the URL and
  returned for HTTP basic auth, so neither ever reaches a log line.
"""

from __future__ import annotations

import difflib
import json
import math
import types
import typing
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import BaseModel


class StrictJSONError(ValueError):
    """JSON that parses but is refused: `path` (e.g. `$.profiles.demo`) and `problem`."""

    def __init__(self, path: str, problem: str) -> None:
        self.path, self.problem = path, problem
        super().__init__(f"{path}: {problem}")


def json_path(parts: Iterable[Any]) -> str:
    """`["profiles", "demo", "alerts", "sinks", 0]` -> `$.profiles.demo.alerts.sinks[0]`."""
    out = "$"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


class _Object(dict):
    """A JSON object that remembers the keys it was given more than once."""

    duplicates: tuple[str, ...] = ()


class _NonFinite:
    """Stands in for `NaN`, `Infinity`, `-Infinity` or a number too large for a float."""

    def __init__(self, text: str) -> None:
        self.text = text


def _pairs(items: list[tuple[str, Any]]) -> _Object:
    obj = _Object()
    seen: list[str] = []
    for key, value in items:
        if key in obj and key not in seen:
            seen.append(key)
        obj[key] = value
    obj.duplicates = tuple(seen)
    return obj


def _number(text: str) -> float | _NonFinite:
    value = float(text)
    return value if math.isfinite(value) else _NonFinite(text)


def _plain(node: Any, parts: list[Any]) -> Any:
    """The parsed tree as plain dicts/lists; the first refused node (document order) raises."""
    if isinstance(node, _NonFinite):
        raise StrictJSONError(json_path(parts), f"{node.text} is not a finite number (settings are finite)")
    if isinstance(node, _Object):
        if node.duplicates:
            raise StrictJSONError(json_path(parts), f"duplicate key {node.duplicates[0]!r} (JSON keys must be unique)")
        return {k: _plain(v, [*parts, k]) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v, [*parts, i]) for i, v in enumerate(node)]
    return node


def loads_strict(text: str) -> Any:
    """`json.loads` that refuses non-finite numbers and duplicate keys (`StrictJSONError` with the
    JSON path of the first one); syntax errors raise `json.JSONDecodeError` as usual."""
    return _plain(json.loads(text, object_pairs_hook=_pairs, parse_constant=_NonFinite, parse_float=_number), [])


# ------------------------------------------------------------------------------ setting keys
def _models_in(annotation: Any) -> tuple[list[type[BaseModel]], bool]:
    """The pydantic models an annotation can hold, and whether it also holds free-form mappings
    (a `dict[...]`, `Any`): below those any key is accepted here and judged by validation."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models_in(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        models, free = [], False
        for arg in typing.get_args(annotation):
            m, f = _models_in(arg)
            models += m
            free |= f
        return models, free
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation], False
    return [], annotation is Any or origin is dict or annotation is dict


def setting_keys(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    """Every dotted key of `model`, sections and leaves (`selection`, `selection.top_n`, ...)."""
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        yield key
        for sub in _models_in(field.annotation)[0]:
            yield from setting_keys(sub, f"{key}.")


def unknown_setting(model: type[BaseModel], dotted: str) -> str | None:
    """None when `dotted` names a setting of `model` (or lies below a free-form mapping), else the
    first part that is unknown, e.g. `selection.topn`."""
    models: list[type[BaseModel]] = [model]
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        fields = [m.model_fields[part] for m in models if part in m.model_fields]
        if not fields:
            return ".".join(parts[: i + 1])
        models, free = [], False
        for field in fields:
            m, f = _models_in(field.annotation)
            models += m
            free |= f
        if free:
            return None
        if not models and i < len(parts) - 1:
            return ".".join(parts[: i + 2])
    return None


def nearest(name: str, candidates: Iterable[str]) -> str | None:
    """The closest candidate by `difflib` similarity (at least 0.6), or None."""
    found = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def nearest_setting(dotted: str, keys: Iterable[str]) -> str | None:
    """The valid key closest to a misspelt one. Within a known section only the rest of the key is
    compared (`selection.bogus` is like no key of `selection`, although it shares the section)."""
    keys = list(keys)
    head, _, rest = dotted.partition(".")
    same = [k[len(head) + 1:] for k in keys if k.startswith(head + ".")]
    if rest and same:
        found = nearest(rest, same)
        return f"{head}.{found}" if found else None
    return nearest(dotted, keys)


# ------------------------------------------------------------------------------ webhook URLs
class WebhookURL(NamedTuple):
    """A checked webhook URL: `url` without userinfo, `auth` (user, password) or None, and
    `display` (scheme, host and port only: paths of webhook URLs often carry a token)."""

    url: str
    auth: tuple[str, str] | None
    display: str


def parse_webhook_url(url: str) -> WebhookURL:
    """Check and split a webhook URL; `ValueError` names the problem without repeating the URL."""
    if not url or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise ValueError("is empty or has spaces or control characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"scheme {parts.scheme + '://' if parts.scheme else '(none)'} is not http:// or https://")
    host = parts.hostname
    if not host:
        raise ValueError("has no host")
    hostport = parts.netloc.rpartition("@")[2]
    raw_port = hostport.rpartition("]")[2] if hostport.startswith("[") else hostport
    raw_port = raw_port.partition(":")[2] if ":" in raw_port else ""
    if ":" in hostport and not hostport.startswith("[") and not raw_port:
        raise ValueError("has an empty port after ':'")
    if raw_port and (not raw_port.isdigit() or not 1 <= int(raw_port) <= 65535):
        raise ValueError(f"port {raw_port!r} is not a number in 1-65535")
    shown_host = f"[{host}]" if ":" in host else host
    netloc = f"{shown_host}:{raw_port}" if raw_port else shown_host
    auth = (unquote(parts.username or ""), unquote(parts.password or "")) if "@" in parts.netloc else None
    return WebhookURL(urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")), auth,
                      f"{parts.scheme}://{netloc}")
