"""Issue 18, item 8: alerts that arrive. Local HTTP servers (127.0.0.1 only) that fail the first
attempts, never answer, redirect or refuse; a dead sink beside a live one; basic auth from URL
userinfo; the payload; the run's own sinks (tag, the CLI's resolution, or the profile now)."""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from portfolio_assets import alerts as A
from portfolio_assets.lakehouse import Lakehouse
from portfolio_assets.manifest import AlertsConfig, AlertSink, resolve


class Hook:
    """A local webhook: answers each POST with the next status of `script` (then 200), records
    (path, Authorization header, JSON body) of every request it answers."""

    def __init__(self, script: list[int] | None = None, location: str | None = None) -> None:
        self.script, self.location = list(script or []), location
        self.received: list[tuple[str, str | None, dict]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status = hook.script.pop(0) if hook.script else 200
                hook.received.append((self.path, self.headers.get("Authorization"), body))
                self.send_response(status)
                if hook.location:
                    self.send_header("Location", hook.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hooks() -> Iterator[list[Hook]]:
    made: list[Hook] = []
    yield made
    for hook in made:
        hook.close()


def hook(hooks: list[Hook], script: list[int] | None = None, location: str | None = None) -> Hook:
    made = Hook(script, location)
    hooks.append(made)
    return made


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent() -> Iterator[str]:
    """A server that accepts connections and never answers (the kernel's backlog takes them)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


def alert(lake: Lakehouse, n: int = 0, **changes: str) -> A.Alert:
    fields = dict(kind="check_failure", partition="2026-11-25", subject=f"target_weights:weights_sanity_{n}",
                  reason=f"artifact {lake.root}/risk/risk_buckets/2026-11-25.parquet changed", run_id="run-1",
                  profile="development", severity="ERROR")
    return A.Alert(**{**fields, **changes})


def webhook(env: str = "HOOK", **settings: float) -> AlertSink:
    return AlertSink(kind="webhook", url_env=env, **{"max_attempts": 3, "backoff_s": 0.05, "timeout_s": 2, **settings})


def dead_letter(lake: Lakehouse) -> list[dict]:
    path = lake.root / "alerts" / "dead_letter.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def sent_pairs(lake: Lakehouse) -> list[str]:
    return (lake.root / "alerts" / "sent.txt").read_text().splitlines()


@pytest.fixture
def lake(tmp_path: Path) -> Lakehouse:
    return Lakehouse(tmp_path / "lake", "development")


# ------------------------------------------------------------------------------------ retries
def test_a_server_that_fails_the_first_attempts_gets_the_alert_after_backoff(lake, hooks):
    server = hook(hooks, [500, 503])
    waits: list[float] = []
    report = A.deliver([alert(lake)], [webhook()], lake, environ={"HOOK": server.url + "/hook"}, sleep=waits.append)
    assert waits == [0.05, 0.1]  # backoff_s, then doubled
    assert len(server.received) == 3 and report.dead == []
    assert report.sent == [(alert(lake).alert_id, "webhook:HOOK")]
    assert sent_pairs(lake) == [f"{alert(lake).alert_id} webhook:HOOK"]
    assert dead_letter(lake) == []


def test_a_server_that_keeps_failing_sends_the_alert_to_the_dead_letter(lake, hooks):
    server = hook(hooks, [500] * 10)
    waits: list[float] = []
    report = A.deliver([alert(lake)], [webhook(max_attempts=4)], lake, environ={"HOOK": server.url},
                       sleep=waits.append)
    assert waits == [0.05, 0.1, 0.2] and len(server.received) == 4
    error = f"{server.url} answered HTTP 500 (after 4 attempt(s))"
    assert report.dead == [(alert(lake).alert_id, "webhook:HOOK", error)]
    assert report.problems() == [
        f"alert {alert(lake).alert_id} not delivered to webhook:HOOK: {error}",
        "1 undelivered alert(s) kept in alerts/dead_letter.jsonl; retried at the next delivery"]
    [entry] = dead_letter(lake)
    assert (entry["error"], entry["tries"], entry["sink"]["url_env"]) == (error, 1, "HOOK")


@pytest.mark.parametrize(("status", "location", "problem"), [
    (400, None, "answered HTTP 400"),
    (404, None, "answered HTTP 404"),
    (302, "http://127.0.0.1:1/elsewhere", "answered HTTP 302 (redirects are not followed)"),
])
def test_a_client_error_or_redirect_is_not_retried(lake, hooks, status, location, problem):
    server = hook(hooks, [status] * 5, location)
    report = A.deliver([alert(lake)], [webhook()], lake, environ={"HOOK": server.url}, sleep=pytest.fail)
    assert len(server.received) == 1
    assert report.dead == [(alert(lake).alert_id, "webhook:HOOK", f"{server.url} {problem} (after 1 attempt(s))")]


def test_a_server_that_never_answers_times_out(lake, silent):
    start = time.monotonic()
    report = A.deliver([alert(lake)], [webhook(timeout_s=0.2, max_attempts=2, backoff_s=0)], lake,
                       environ={"HOOK": silent})
    elapsed = time.monotonic() - start
    assert 0.4 <= elapsed < 30  # two attempts of 0.2 s each, no more
    assert report.dead == [(alert(lake).alert_id, "webhook:HOOK",
                            f"{silent}: TimeoutError: timed out (after 2 attempt(s))")]


def test_an_unset_url_variable_waits_in_the_dead_letter(lake, hooks):
    report = A.deliver([alert(lake)], [webhook()], lake, environ={}, sleep=pytest.fail)
    assert report.dead == [(alert(lake).alert_id, "webhook:HOOK",
                            "environment variable HOOK is not set (after 1 attempt(s))")]
    server = hook(hooks)
    later = A.deliver([], [webhook()], lake, environ={"HOOK": server.url})
    assert later.redelivered == [(alert(lake).alert_id, "webhook:HOOK")] and len(server.received) == 1


# ----------------------------------------------------------------------- independent sinks
def test_a_dead_sink_never_drops_a_live_sinks_alert_and_is_retried_later(lake, hooks):
    live = hook(hooks)
    sinks = [webhook("DEAD"), webhook("LIVE"), AlertSink(kind="jsonl")]
    env = {"DEAD": f"http://127.0.0.1:{closed_port()}/dead", "LIVE": live.url + "/live"}
    batch = [alert(lake, n) for n in range(3)]
    waits: list[float] = []
    report = A.deliver(batch, sinks, lake, environ=env, sleep=waits.append)
    assert [p for p, _, _ in live.received] == ["/live"] * 3
    assert len((lake.root / "alerts" / "alerts.jsonl").read_text().splitlines()) == 3
    assert waits == [0.05, 0.1]  # the dead sink's retries ran once: its later alerts skip them
    assert [(a, s) for a, s, _ in report.dead] == [(x.alert_id, "webhook:DEAD") for x in batch]
    assert report.dead[1][2].endswith("(after 3 attempt(s)) (not retried in this delivery)")
    assert len(dead_letter(lake)) == 3

    # the same alerts again: nothing is sent twice; the dead letter is retried (still dead)
    again = A.deliver(batch, sinks, lake, environ=env, sleep=lambda s: None)
    assert len(live.received) == 3 and again.already_sent == 6 and len(again.dead) == 3
    assert {e["tries"] for e in dead_letter(lake)} == {2}

    # the dead sink comes back: the next delivery (with no new alert) empties the dead letter
    env["DEAD"] = live.url + "/dead"
    back = A.deliver([], sinks, lake, environ=env)
    assert sorted(back.redelivered) == sorted((x.alert_id, "webhook:DEAD") for x in batch)
    assert [p for p, _, _ in live.received] == ["/live"] * 3 + ["/dead"] * 3
    assert dead_letter(lake) == [] and back.problems() == []
    assert A.deliver(batch, sinks, lake, environ=env).already_sent == 9 and len(live.received) == 6


def test_a_damaged_dead_letter_stops_delivery_with_its_line(lake, hooks):
    A.deliver([alert(lake)], [webhook()], lake, environ={}, sleep=pytest.fail)
    path = lake.root / "alerts" / "dead_letter.jsonl"
    path.write_text(path.read_text() + '{"alert": {}}\n')
    with pytest.raises(A.AlertDeliveryError) as err:
        A.deliver([], [webhook()], lake, environ={})
    assert str(err.value) == ("alerts/dead_letter.jsonl: line 2 is not a dead-letter entry (TypeError); "
                              "fix or remove it")


def test_two_deliveries_at_once_send_each_alert_once(lake, hooks):
    server = hook(hooks)
    batch = [alert(lake, n) for n in range(5)]
    threads = [threading.Thread(target=A.deliver, args=(batch, [webhook()], lake), kwargs={"environ": {"HOOK": server.url}})
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(b["id"] for _, _, b in server.received) == sorted(x.alert_id for x in batch)


# ------------------------------------------------------------------------------- basic auth
def test_url_userinfo_is_sent_as_basic_auth_and_never_written(lake, hooks):
    server = hook(hooks)
    url = server.url.replace("//", "//ops%40desk:s3cr%3At@") + "/hook?team=risk"
    report = A.deliver([alert(lake)], [webhook()], lake, environ={"HOOK": url})
    [(path, auth, _)] = server.received
    assert path == "/hook?team=risk" and report.dead == []
    assert auth == "Basic " + base64.b64encode(b"ops@desk:s3cr:t").decode()

    dead_url = f"http://ops:s3cret@127.0.0.1:{closed_port()}/hook"
    failed = A.deliver([alert(lake, 1)], [webhook("DEAD")], lake, environ={"DEAD": dead_url}, sleep=lambda s: None)
    written = "\n".join(failed.problems()) + (lake.root / "alerts" / "dead_letter.jsonl").read_text()
    assert failed.dead and "s3cret" not in written and "ops:" not in written and "ops@" not in written


# ---------------------------------------------------------------------------------- payload
def test_the_payload_carries_no_host_paths(lake, hooks):
    server = hook(hooks)
    other = "/home/operator/work/configs/manifest.json"
    sent = alert(lake, reason=f"artifact {lake.root}/risk/x.parquet changed; read {other}: bad; root {lake.root}.",
                 at="2026-11-25T21:00:00+00:00")
    A.deliver([sent], [webhook(), AlertSink(kind="jsonl")], lake, environ={"HOOK": server.url})
    [(_, _, body)] = server.received
    assert body == {
        "id": sent.alert_id, "kind": "check_failure", "partition": "2026-11-25",
        "subject": "target_weights:weights_sanity_0",
        "reason": "artifact risk/x.parquet changed; read …/manifest.json: bad; root <profile root>.",
        "run_id": "run-1", "profile": "development", "severity": "ERROR", "at": "2026-11-25T21:00:00+00:00",
    }
    assert json.loads((lake.root / "alerts" / "alerts.jsonl").read_text()) == body
    assert str(lake.base) not in json.dumps(body)


@pytest.mark.parametrize(("text", "expected"), [
    ("{root}/ledger/2026-11-25/audit.jsonl: hash", "ledger/2026-11-25/audit.jsonl: hash"),
    ("'{root}/a b'", "'a b'"),
    ("see https://hooks.example/services/x and /var/log/x.log.", "see https://hooks.example/services/x and …/x.log."),
    ("ratio 3/4 and a/b", "ratio 3/4 and a/b"),
    ("{root}", "<profile root>"),
    ("{root}-other/x", "…/x"),
])
def test_portable_text(tmp_path, text, expected):
    root = tmp_path / "lake" / "development"
    assert A.portable_text(text.format(root=root), root) == expected


# ------------------------------------------------------------------------- the run's sinks
@pytest.fixture
def failed_run(tmp_path, monkeypatch):
    """A tiny failed Dagster run (a failed ERROR check and a failed step) on an ephemeral instance."""
    import dagster as dg

    logging.getLogger("dagster").setLevel(logging.ERROR)
    monkeypatch.setenv("PA_LAKEHOUSE", str(tmp_path / "lake"))
    for name in ("PA_PROFILE", "PA_CLI_OVERRIDES", "PA_ALERTS__SINKS"):
        monkeypatch.delenv(name, raising=False)
    partitions = dg.StaticPartitionsDefinition(["2026-11-25"])
    root = Lakehouse(tmp_path / "lake", "development").root

    @dg.asset(partitions_def=partitions, check_specs=[dg.AssetCheckSpec("gate", asset="thing")])
    def thing():
        yield dg.Output(1)
        yield dg.AssetCheckResult(check_name="gate", passed=False, description=f"artifact {root}/risk/x.parquet changed")

    @dg.asset(partitions_def=partitions, deps=[thing])
    def boom():
        raise RuntimeError(f"cannot read {root}/prices/AMEX__SPY.parquet")

    instance = dg.DagsterInstance.ephemeral()

    def run(tags: dict[str, str]) -> str:
        result = dg.materialize([thing, boom], instance=instance, partition_key="2026-11-25", raise_on_error=False,
                                tags={"portfolio_assets/profile": "development", **tags})
        assert not result.success
        return result.run_id

    return instance, run


def test_the_run_tag_decides_the_sinks(failed_run, hooks, monkeypatch):
    instance, run = failed_run
    server = hook(hooks)
    monkeypatch.setenv("PA_TAGGED_HOOK", server.url)
    config = AlertsConfig(sinks=[webhook("PA_TAGGED_HOOK")])
    run_id = run(A.run_tags(config))
    delivery = A.deliver_run(instance, run_id)
    assert delivery.sinks_from == "the run's portfolio_assets/alerts tag"
    kinds = [b["kind"] for _, _, b in server.received]
    assert kinds == ["check_failure", "step_failure", "run_failure"]
    step = server.received[1][2]
    assert (step["subject"], step["reason"]) == ("step boom", "RuntimeError: cannot read prices/AMEX__SPY.parquet")
    assert server.received[0][2]["reason"] == "artifact risk/x.parquet changed"


def test_the_clis_resolution_with_set_decides_the_sinks_and_tags_the_run(failed_run, hooks, monkeypatch):
    instance, run = failed_run
    server = hook(hooks)
    monkeypatch.setenv("PA_CLI_HOOK", server.url)
    run_id = run({})
    resolved = resolve("development", cli_overrides={"alerts.sinks": [{"kind": "webhook", "url_env": "PA_CLI_HOOK"}]})
    delivery = A.deliver_run(instance, run_id, resolved=resolved)
    assert delivery.sinks_from == "profile development with this command's overrides"
    assert len(server.received) == 3
    tag = instance.get_run_by_id(run_id).tags[A.ALERTS_TAG]
    assert AlertsConfig.model_validate_json(tag) == resolved.config.alerts
    # the daemon's sensor, later, uses the same sinks and sends nothing twice
    from portfolio_assets.sensors import deliver_run_alerts

    texts = deliver_run_alerts(instance, run_id)
    assert len(texts) == 3 and len(server.received) == 3


def test_a_run_without_the_tag_gets_its_profile_resolved_now_and_says_so(failed_run, monkeypatch):
    instance, run = failed_run
    run_id = run({})
    delivery = A.deliver_run(instance, run_id)
    assert delivery.sinks_from == "profile development as resolved now (the run has no portfolio_assets/alerts tag)"
    lines = (Lakehouse(profile="development").root / "alerts" / "alerts.jsonl").read_text().splitlines()
    assert len(lines) == 3 and delivery.report.sent == [(a.alert_id, "jsonl") for a in delivery.alerts]


def test_the_sensor_raises_when_an_alert_is_left_in_the_dead_letter(failed_run, monkeypatch):
    instance, run = failed_run
    monkeypatch.setenv("PA_DEAD_HOOK", f"http://127.0.0.1:{closed_port()}")
    run_id = run(A.run_tags(AlertsConfig(sinks=[webhook("PA_DEAD_HOOK", backoff_s=0, max_attempts=1)])))
    from portfolio_assets.sensors import deliver_run_alerts

    with pytest.raises(A.AlertDeliveryError) as err:
        deliver_run_alerts(instance, run_id)
    message = str(err.value)
    assert message.startswith("sinks from the run's portfolio_assets/alerts tag: alert ")
    assert message.endswith("3 undelivered alert(s) kept in alerts/dead_letter.jsonl; retried at the next delivery")


def test_a_failed_run_is_alerted_for_its_date_or_its_range():
    """A run of one date is alerted with that date; a ranged run (the one run a backfill launches
    for the range's books) with its range, not with no partition."""
    from dagster import DagsterInstance, DagsterRun, DagsterRunStatus

    instance = DagsterInstance.ephemeral()
    tags = [{"dagster/partition": "2026-11-24"},
            {"dagster/asset_partition_range_start": "2026-11-04", "dagster/asset_partition_range_end": "2026-12-02"}]
    for i, run_tags in enumerate(tags):
        instance.add_run(DagsterRun(job_name="__ASSET_JOB", run_id=f"cccccccc-0000-4000-8000-00000000000{i}",
                                    status=DagsterRunStatus.FAILURE, tags=run_tags))
    date, ranged = (A.alerts_for_run(instance, f"cccccccc-0000-4000-8000-00000000000{i}", "development") for i in (0, 1))
    assert [(a.kind, a.partition) for a in date] == [("run_failure", "2026-11-24")]
    assert [(a.kind, a.partition) for a in ranged] == [("run_failure", "2026-11-04..2026-12-02")]
    assert "partition 2026-11-04..2026-12-02" in ranged[0].text()
