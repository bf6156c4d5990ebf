"""Gist publishing against a local fake GitHub API (http.server on 127.0.0.1, port 0)."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from portfolio_assets.reports.gist import GistError, publish_gist, token_from_env

TOKEN = "ghp_SECRETtoken1234567890"


class FakeGitHub:
    """Records every request; answers with the queued (status, JSON body) or a created gist."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.reply: tuple[int, object] = (201, {"id": "abc123", "html_url": "https://gist.github.com/abc123"})
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                fake.requests.append({"method": self.command, "path": self.path,
                                      "headers": dict(self.headers.items()), "body": body})
                status, payload = fake.reply
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_PATCH = _handle

            def log_message(self, *args) -> None:  # keep test output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def github():
    fake = FakeGitHub()
    yield fake
    fake.close()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "index.md").write_text("# Report\n\nSharpe 1.23\n")
    (tmp_path / "golden_manifest.json").write_text('{"count": 2}\n')
    (tmp_path / "tearsheets").mkdir()
    (tmp_path / "tearsheets" / "hrp__realized.md").write_text("# hrp ünïcode\n")
    (tmp_path / "equity_curves.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    (tmp_path / "empty.md").write_text("  \n")
    return tmp_path


def test_create_posts_every_text_file_with_the_documented_headers(github, folder):
    result = publish_gist(folder, token=TOKEN, api_base=github.base, description="golden 2024-11-28")
    assert len(github.requests) == 1
    req = github.requests[0]
    assert (req["method"], req["path"]) == ("POST", "/gists")
    headers = {k.lower(): v for k, v in req["headers"].items()}
    assert headers["authorization"] == f"Bearer {TOKEN}"
    assert headers["accept"] == "application/vnd.github+json"
    assert headers["x-github-api-version"] == "2022-11-28"
    body = json.loads(req["body"])
    assert body["description"] == "golden 2024-11-28" and body["public"] is False
    assert body["files"] == {
        "golden_manifest.json": {"content": '{"count": 2}\n'},
        "index.md": {"content": "# Report\n\nSharpe 1.23\n"},
        "tearsheets__hrp__realized.md": {"content": "# hrp ünïcode\n"},
    }
    assert result == {
        "id": "abc123",
        "html_url": "https://gist.github.com/abc123",
        "method": "POST",
        "files": ["golden_manifest.json", "index.md", "tearsheets__hrp__realized.md"],
        "skipped": [
            {"name": "empty.md", "reason": "empty (GitHub refuses empty gist files)"},
            {"name": "equity_curves.png", "reason": "binary (gists take text files only)"},
        ],
    }


def test_update_patches_the_given_gist(github, folder):
    github.reply = (200, {"id": "abc123", "html_url": "https://gist.github.com/abc123"})
    result = publish_gist(folder, token=TOKEN, api_base=github.base + "/", gist_id="abc123", public=True)
    req = github.requests[0]
    assert (req["method"], req["path"]) == ("PATCH", "/gists/abc123")
    assert json.loads(req["body"])["public"] is True
    assert result["method"] == "PATCH" and result["id"] == "abc123"


def test_401_says_the_token_was_rejected_without_showing_it(github, folder):
    github.reply = (401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})
    with pytest.raises(GistError) as info:
        publish_gist(folder, token=TOKEN, api_base=github.base)
    assert str(info.value) == "GitHub rejected the token (401): Bad credentials"
    assert TOKEN not in repr(info.value) and info.value.__cause__ is None


def test_422_carries_githubs_message(github, folder):
    github.reply = (422, {"message": "Validation Failed", "errors": [{"resource": "Gist", "code": "missing_field"}]})
    with pytest.raises(GistError) as info:
        publish_gist(folder, token=TOKEN, api_base=github.base, gist_id="abc123")
    assert str(info.value) == "GitHub refused the gist (422 Unprocessable Entity): Validation Failed"


def test_other_errors_give_status_and_a_redacted_snippet(github, folder):
    github.reply = (503, f"upstream down; echo {TOKEN}".encode())
    with pytest.raises(GistError) as info:
        publish_gist(folder, token=TOKEN, api_base=github.base)
    text = str(info.value)
    assert text.startswith(f"GitHub API error 503 Service Unavailable on POST {github.base}/gists: upstream down")
    assert TOKEN not in text and "***" in text


def test_network_failure_and_bad_arguments_are_gist_errors(folder):
    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(GistError, match=r"could not reach the GitHub API at http://127\.0\.0\.1:\d+"):
        publish_gist(folder, token=TOKEN, api_base=f"http://127.0.0.1:{port}", timeout=2)
    with pytest.raises(GistError, match="no GitHub token"):
        publish_gist(folder, token=" ")
    with pytest.raises(GistError, match="gist_id must be alphanumeric"):
        publish_gist(folder, token=TOKEN, gist_id="../users")
    with pytest.raises(GistError, match="has no text file"):
        only_png = folder / "tearsheets"
        (only_png / "hrp__realized.md").unlink()
        (only_png / "x.png").write_bytes(b"\x00\x01")
        publish_gist(only_png, token=TOKEN)


def test_malformed_answer_is_an_error(github, folder):
    github.reply = (201, b"<html>not json</html>")
    with pytest.raises(GistError, match="malformed answer from POST"):
        publish_gist(folder, token=TOKEN, api_base=github.base)


def test_token_from_env(monkeypatch):
    monkeypatch.setenv("PA_GIST_TOKEN", f"  {TOKEN}\n")
    assert token_from_env("PA_GIST_TOKEN") == TOKEN
    monkeypatch.setenv("PA_GIST_TOKEN", "")
    assert token_from_env("PA_GIST_TOKEN") is None
    monkeypatch.delenv("PA_GIST_TOKEN")
    assert token_from_env("PA_GIST_TOKEN") is None
