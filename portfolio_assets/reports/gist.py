"""Publish a folder (the golden bundle) to a GitHub Gist over the REST API.

`publish_gist` creates a gist (`POST {api_base}/gists`) or updates one (`PATCH
{api_base}/gists/{gist_id}`) with the body `{"description", "public", "files": {name: {"content":
text}}}`. Gists hold text only, and have no folders: every UTF-8 text file below the folder is
sent under its relative path with `/` replaced by `__`; binary files (PNG, ...) and empty files are
skipped and listed as such in the result. Nothing touches the network unless `publish_gist` is
called. The token is sent only in the `Authorization` header and never appears in an error.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

DEFAULT_API_BASE = "https://api.github.com"
API_VERSION = "2022-11-28"
DEFAULT_DESCRIPTION = "portfolio_assets golden artifacts"
_GIST_ID_RE = re.compile(r"^[A-Za-z0-9]{1,64}$")
_SNIPPET_CHARS = 300


class GistError(RuntimeError):
    """Publishing to GitHub Gist failed; the message says why (never containing the token)."""


def token_from_env(name: str = "GITHUB_TOKEN") -> str | None:
    """The token in environment variable `name` (surrounding whitespace stripped), or None if unset/empty."""
    value = os.environ.get(name, "").strip()
    return value or None


def gist_files(folder: Path) -> tuple[dict[str, dict[str, str]], list[dict[str, str]]]:
    """The gist `files` mapping for `folder` and the skipped files (`{"name", "reason"}`).

    Files are visited in sorted order; a file is text when it decodes as UTF-8 and has no NUL byte.
    Raises `GistError` when two paths flatten to the same gist name.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise GistError(f"{folder} is not a folder")
    files: dict[str, dict[str, str]] = {}
    skipped: list[dict[str, str]] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        name = rel.replace("/", "__")
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is None or "\x00" in text:
            skipped.append({"name": rel, "reason": "binary (gists take text files only)"})
            continue
        if not text.strip():
            skipped.append({"name": rel, "reason": "empty (GitHub refuses empty gist files)"})
            continue
        if name in files:
            raise GistError(f"two files map to the gist name {name!r}; rename one of them")
        files[name] = {"content": text}
    return files, skipped


def _redact(text: str, token: str) -> str:
    return text.replace(token, "***") if token else text


def _error_message(status: int, reason: str, body: bytes, method: str, url: str) -> str:
    text = body.decode("utf-8", errors="replace")
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    message = payload.get("message") if isinstance(payload, dict) else None
    if status == 401:
        return f"GitHub rejected the token (401): {message or text[:_SNIPPET_CHARS]}"
    if status == 422:
        return f"GitHub refused the gist (422 Unprocessable Entity): {message or text[:_SNIPPET_CHARS]}"
    return f"GitHub API error {status} {reason} on {method} {url}: {text[:_SNIPPET_CHARS]}"


def publish_gist(
    folder: Path,
    *,
    token: str,
    api_base: str = DEFAULT_API_BASE,
    gist_id: str | None = None,
    public: bool = False,
    description: str = DEFAULT_DESCRIPTION,
    timeout: float = 10,
) -> dict[str, Any]:
    """Create (no `gist_id`) or update a gist with the text files of `folder`.

    Returns `{"id", "html_url", "method", "files": [gist names sent], "skipped": [{"name",
    "reason"}]}`. Raises `GistError` on a missing token, no text file to send, a non-2xx answer
    (401: the token was rejected; 422: GitHub refused the content, with its message; others:
    status and a snippet of the body), a network failure or a malformed answer.
    """
    if not token or not token.strip():
        raise GistError("no GitHub token given: set one (e.g. GITHUB_TOKEN) to publish the gist")
    if not api_base.startswith(("https://", "http://")):
        raise GistError(f"api_base must be an http(s) URL, got {api_base!r}")
    if gist_id is not None and not _GIST_ID_RE.match(gist_id):
        raise GistError(f"gist_id must be alphanumeric, got {gist_id!r}")
    files, skipped = gist_files(folder)
    if not files:
        raise GistError(f"{folder} has no text file to publish ({len(skipped)} skipped)")
    method = "POST" if gist_id is None else "PATCH"
    url = api_base.rstrip("/") + ("/gists" if gist_id is None else f"/gists/{gist_id}")
    body = json.dumps({"description": description, "public": bool(public), "files": files}).encode("utf-8")
    request = urllib.request.Request(
        url,
        data=body,
        method=method,
        headers={
            "Authorization": f"Bearer {token.strip()}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "portfolio-assets",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        detail = _error_message(exc.code, str(exc.reason), exc.read() or b"", method, url)
        raise GistError(_redact(detail, token)) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise GistError(_redact(f"could not reach the GitHub API at {api_base}: {reason}", token)) from None
    try:
        answer = json.loads(raw.decode("utf-8"))
        gist = {"id": str(answer["id"]), "html_url": str(answer.get("html_url", ""))}
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise GistError(_redact(f"malformed answer from {method} {url}: {raw[:_SNIPPET_CHARS]!r}", token)) from None
    return {**gist, "method": method, "files": sorted(files), "skipped": skipped}
