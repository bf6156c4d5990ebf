"""Alerts: failed runs and failed (or warning) check evaluations, delivered to the run's sinks.

Sinks (`manifest.AlertSink`): `jsonl` (`<profile root>/alerts/alerts.jsonl`), `webhook` (HTTP POST
of the alert as JSON to the URL in the environment variable `url_env`; `user:password@` in that URL
is sent as HTTP basic auth, never logged; redirects are not followed, so credentials never travel
to another host), `slack` (token from `token_env`). Secrets come only from the environment.

Which sinks: those of the run's own resolved configuration, every layer included (`--set`,
`PA_*`, profile, defaults). A run carries them in its tag `portfolio_assets/alerts` (`run_tags`,
written by whoever launches the run or, failing that, by the CLI when it delivers); a run without
the tag gets the sinks of its profile as resolved at delivery time, and the report says so.

Delivery (`deliver`), under one file lock per profile:
- each sink is independent: one failing never drops another's alert;
- per sink, attempts with exponential backoff: a refused connection, a timeout, HTTP 5xx, 408 or
  429 is retried after `backoff_s`, `2 * backoff_s`, ... up to `max_attempts` (bounded by the
  manifest: at most `MAX_SINK_WAIT_S` per alert and sink); a sink that exhausted its attempts is
  not tried again within the same delivery (its later alerts go straight to the dead letter);
- an alert a sink did not take goes to `<profile root>/alerts/dead_letter.jsonl` (the alert as
  sent, the sink's settings, the error, the attempts); the next delivery retries the dead letter
  first and removes what got through;
- idempotent: `<profile root>/alerts/sent.txt` records each (alert id, sink) delivered, at once, so
  the sensors (daemon) and the CLI never send the same alert to the same sink twice.

Payloads carry no absolute host paths: paths under the profile root become relative to it, any
other absolute path is cut to `…/<name>`.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import http.client
import json
import math
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Final

from portfolio_assets.backfills import run_label
from portfolio_assets.lakehouse import Lakehouse, atomic_write_bytes, file_lock
from portfolio_assets.manifest import AlertsConfig, AlertSink, ResolvedManifest, resolve
from portfolio_assets.manifest_input import parse_webhook_url

ALERTS_TAG: Final = "portfolio_assets/alerts"
"""Run tag: the run's resolved `alerts` section as JSON (sinks name environment variables only)."""
PROFILE_TAG: Final = "portfolio_assets/profile"
ALERTS_DIR: Final = "alerts"
SENT_FILE: Final = "sent.txt"
DEAD_LETTER_FILE: Final = "dead_letter.jsonl"
JSONL_FILE: Final = "alerts.jsonl"


class AlertDeliveryError(RuntimeError):
    """Some alerts could not be delivered (they are in the dead letter); names sinks, never secrets."""


@dataclass(frozen=True)
class Alert:
    """One alert of a run: a failed run or step, or a check that failed or warned; `at` is stamped
    (UTC, ISO 8601) when it is first delivered."""

    kind: str  # "run_failure" | "step_failure" | "check_failure" | "check_warning"
    partition: str | None
    subject: str  # the check ("history_500d:health_gate") or the failed step
    reason: str
    run_id: str
    profile: str
    severity: str  # "ERROR" | "WARN"
    at: str = ""

    @property
    def alert_id(self) -> str:
        """Stable id (16 hex digits) from run id, kind and subject: what `sent.txt` deduplicates on."""
        return hashlib.sha256(f"{self.run_id}|{self.kind}|{self.subject}".encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        """The alert's fields plus its `id`, as sent to webhooks and written to the JSONL files."""
        return {**asdict(self), "id": self.alert_id}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Alert:
        """Rebuild an alert from `to_json` output (e.g. a dead-letter entry), ignoring unknown keys."""
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})

    def text(self) -> str:
        """One human-readable line (severity, kind, subject, partition, profile, short run id, reason),
        as posted to Slack and printed by the CLI."""
        return (f"[{self.severity}] portfolio_assets {self.kind} — {self.subject} — partition {self.partition} "
                f"(profile {self.profile}, run {self.run_id[:8]}): {self.reason}")


# ------------------------------------------------------------------------------------ payloads
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~:/\\-])/[^\s'\"`<>()\[\]{},;|]+")


def portable_text(text: str, root: Path) -> str:
    """`text` with every absolute path made relative to the profile root `root` (the root itself
    reads `<profile root>`) or, outside it, cut to `…/<name>`: payloads leave the host, its layout
    does not."""

    def relative(match: re.Match[str]) -> str:
        token = match.group(0)
        path = token.rstrip(".:")
        tail = token[len(path):]
        pure = PurePosixPath(path)
        if pure == PurePosixPath(root):
            return "<profile root>" + tail
        if PurePosixPath(root) in pure.parents:
            return str(pure.relative_to(root)) + tail
        return f"…/{pure.name}{tail}" if pure.name else token

    return _ABSOLUTE_PATH.sub(relative, text)


def portable(alert: Alert, root: Path) -> Alert:
    """The alert with `portable_text` applied to its free-text fields."""
    return dataclasses.replace(alert, subject=portable_text(alert.subject, root), reason=portable_text(alert.reason, root))


# ------------------------------------------------------------------------------------- sinks
class _Failure(Exception):
    """One failed attempt: `message` (no secret in it) and whether trying again may help."""

    def __init__(self, message: str, retry: bool) -> None:
        super().__init__(message)
        self.message, self.retry = message, retry


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:  # a 3xx becomes an HTTPError
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)
_RETRY_STATUS = frozenset({408, 429})


def _post_webhook(alert: Alert, sink: AlertSink, environ: Mapping[str, str]) -> None:
    url = environ.get(sink.url_env or "")
    if not url:
        raise _Failure(f"environment variable {sink.url_env} is not set", retry=False)
    try:
        target = parse_webhook_url(url)
    except ValueError as exc:
        raise _Failure(f"the URL in {sink.url_env} {exc}", retry=False) from None
    headers = {"Content-Type": "application/json", "User-Agent": "portfolio-assets-alerts"}
    if target.auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(target.auth).encode()).decode("ascii")
    request = urllib.request.Request(target.url, data=json.dumps(alert.to_json(), sort_keys=True).encode(),
                                     method="POST", headers=headers)
    try:
        with _OPENER.open(request, timeout=sink.timeout_s) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        status = exc.code
        exc.close()
        hint = " (redirects are not followed)" if 300 <= status < 400 else ""
        raise _Failure(f"{target.display} answered HTTP {status}{hint}",
                       retry=status >= 500 or status in _RETRY_STATUS) from None
    except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out, bad status line
        reason = getattr(exc, "reason", exc)
        raise _Failure(f"{target.display}: {type(reason).__name__}: {reason}", retry=True) from None


def _post_slack(alert: Alert, sink: AlertSink, environ: Mapping[str, str]) -> None:
    token = environ.get(sink.token_env or "")
    if not token:
        raise _Failure(f"environment variable {sink.token_env} is not set", retry=False)
    from slack_sdk import WebClient  # the Slack SDK (a direct dependency), with our timeout

    try:
        WebClient(token=token, timeout=math.ceil(sink.timeout_s)).chat_postMessage(channel=sink.channel,
                                                                                   text=alert.text())
    except Exception as exc:  # slack_sdk raises its own errors and urllib's; none carries the token
        raise _Failure(f"slack {sink.channel}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                       retry=True) from None


def _append_jsonl(alert: Alert, folder: Path) -> None:
    try:
        with open(folder / JSONL_FILE, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(alert.to_json(), sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise _Failure(f"{JSONL_FILE}: {exc.strerror or type(exc).__name__}", retry=True) from None


def _attempts(alert: Alert, sink: AlertSink, folder: Path, environ: Mapping[str, str],
              sleep: Callable[[float], None]) -> tuple[_Failure | None, int]:
    """Send with retries: (None, attempts) when delivered, else (the last failure, attempts).
    Waits before attempt k (k >= 2): `backoff_s * 2**(k - 2)` seconds."""
    send = {"jsonl": lambda: _append_jsonl(alert, folder), "webhook": lambda: _post_webhook(alert, sink, environ),
            "slack": lambda: _post_slack(alert, sink, environ)}[sink.kind]
    attempt = 1
    while True:
        try:
            send()
            return None, attempt
        except _Failure as failure:
            if not failure.retry or attempt >= sink.max_attempts:
                return failure, attempt
        sleep(sink.backoff_s * 2 ** (attempt - 1))
        attempt += 1


# ---------------------------------------------------------------------------------- delivery
@dataclass
class DeliveryReport:
    """What one `deliver` call did. Pairs are (alert id, sink key)."""

    dead_letter: str  # the dead-letter file, relative to the profile root
    sent: list[tuple[str, str]] = field(default_factory=list)
    redelivered: list[tuple[str, str]] = field(default_factory=list)  # from the dead letter
    dead: list[tuple[str, str, str]] = field(default_factory=list)  # (id, sink, error): in the dead letter now
    already_sent: int = 0

    def problems(self) -> list[str]:
        """One line per undelivered (alert, sink), then where they wait."""
        if not self.dead:
            return []
        lines = [f"alert {alert_id} not delivered to {sink}: {error}" for alert_id, sink, error in self.dead]
        return [*lines, f"{len(self.dead)} undelivered alert(s) kept in {self.dead_letter}; retried at the next delivery"]


def _read_sent(folder: Path) -> tuple[set[tuple[str, str]], set[str]]:
    """(alert id, sink key) pairs delivered, and bare ids (older files: delivered to every sink)."""
    pairs: set[tuple[str, str]] = set()
    bare: set[str] = set()
    path = folder / SENT_FILE
    for line in path.read_text().splitlines() if path.exists() else ():
        parts = line.split(" ", 1)
        if len(parts) == 2:
            pairs.add((parts[0], parts[1]))
        elif parts[0]:
            bare.add(parts[0])
    return pairs, bare


def _record_sent(folder: Path, alert_id: str, sink_key: str) -> None:
    with open(folder / SENT_FILE, "a", encoding="utf-8") as fh:
        fh.write(f"{alert_id} {sink_key}\n")
        fh.flush()
        os.fsync(fh.fileno())


def _read_dead_letter(folder: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """The dead letter by (alert id, sink key); a line that is not an entry stops delivery with its
    number (dropping it would lose an alert silently)."""
    path = folder / DEAD_LETTER_FILE
    letters: dict[tuple[str, str], dict[str, Any]] = {}
    for number, line in enumerate(path.read_text().splitlines() if path.exists() else (), start=1):
        try:
            entry = json.loads(line)
            Alert.from_json(entry["alert"])
            sink = AlertSink.model_validate(entry["sink"])
            letters[(entry["alert"]["id"], sink.key)] = entry
        except (ValueError, KeyError, TypeError) as exc:
            raise AlertDeliveryError(f"{ALERTS_DIR}/{DEAD_LETTER_FILE}: line {number} is not a dead-letter entry "
                                     f"({type(exc).__name__}); fix or remove it") from None
    return letters


def _write_dead_letter(folder: Path, letters: Mapping[tuple[str, str], dict[str, Any]]) -> None:
    path = folder / DEAD_LETTER_FILE
    if not letters and not path.exists():
        return
    atomic_write_bytes(path, "".join(json.dumps(e, sort_keys=True) + "\n" for e in letters.values()).encode())


def deliver(alerts: Sequence[Alert], sinks: Sequence[AlertSink], lake: Lakehouse, *,
            environ: Mapping[str, str] | None = None,
            sleep: Callable[[float], None] = time.sleep) -> DeliveryReport:
    """Deliver `alerts` to every sink once: the dead letter first, then the new alerts (see the
    module docstring). Never raises for a sink's failure: it is in the report and the dead letter."""
    environ = os.environ if environ is None else environ
    folder = lake.root / ALERTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    report = DeliveryReport(dead_letter=f"{ALERTS_DIR}/{DEAD_LETTER_FILE}")
    now = dt.datetime.now(dt.UTC).isoformat()
    with file_lock(folder / SENT_FILE):
        sent, bare = _read_sent(folder)
        letters = _read_dead_letter(folder)
        down: dict[str, str] = {}  # sink key -> why it is unreachable in this call

        def attempt(alert: Alert, sink: AlertSink) -> str | None:
            if sink.key in down:
                return f"{down[sink.key]} (not retried in this delivery)"
            failure, n = _attempts(alert, sink, folder, environ, sleep)
            if failure is None:
                _record_sent(folder, alert.alert_id, sink.key)
                sent.add((alert.alert_id, sink.key))
                return None
            message = f"{failure.message} (after {n} attempt(s))"
            if failure.retry:
                down[sink.key] = message
            return message

        for pair, entry in list(letters.items()):
            if pair in sent or pair[0] in bare:
                del letters[pair]
                continue
            error = attempt(Alert.from_json(entry["alert"]), AlertSink.model_validate(entry["sink"]))
            if error is None:
                del letters[pair]
                report.redelivered.append(pair)
            else:
                letters[pair] = {**entry, "error": error, "tries": entry["tries"] + 1, "last_failed_at": now}
                report.dead.append((*pair, error))
            _write_dead_letter(folder, letters)
        for alert in alerts:
            stamped = portable(dataclasses.replace(alert, at=alert.at or now), lake.root)
            for sink in {s.key: s for s in sinks}.values():
                pair = (stamped.alert_id, sink.key)
                if pair in sent or pair[0] in bare:
                    report.already_sent += 1
                    continue
                if pair in letters:  # failed earlier and retried above in this call
                    continue
                error = attempt(stamped, sink)
                if error is None:
                    report.sent.append(pair)
                    continue
                letters[pair] = {"alert": stamped.to_json(), "sink": sink.model_dump(mode="json"), "sink_key": sink.key,
                                 "error": error, "tries": 1, "first_failed_at": now, "last_failed_at": now}
                report.dead.append((*pair, error))
                _write_dead_letter(folder, letters)
    return report


# ------------------------------------------------------------------------------- runs and tags
def run_tags(alerts: AlertsConfig) -> dict[str, str]:
    """The tag a launcher puts on a run so its alerts go where its own configuration says."""
    return {ALERTS_TAG: json.dumps(alerts.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))}


def root_cause(err: Any) -> str:
    """The innermost cause of a Dagster step error, as `Type: message` (Dagster wraps the real error)."""
    if err is None:
        return "unknown error"
    while err.cause is not None:
        err = err.cause
    lines = err.message.strip().splitlines()
    return lines[0] if lines else (err.cls_name or "error")


def alerts_for_run(instance: Any, run_id: str, profile: str, on_warn: bool = True) -> list[Alert]:
    """Alerts for one finished run: each failed check evaluation (WARN too) and the run's failure."""
    from dagster import DagsterEventType, DagsterRunStatus

    run = instance.get_run_by_id(run_id)
    if run is None:
        return []
    partition = run_label(run.tags)  # the date, or `start..end` for a ranged run (holdings, previous_target)
    out: list[Alert] = []
    for record in instance.all_logs(run_id, of_type={DagsterEventType.ASSET_CHECK_EVALUATION,
                                                     DagsterEventType.STEP_FAILURE}):
        event = record.dagster_event
        if event is None:
            continue
        if event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            ev = event.event_specific_data
            if ev.passed or (ev.severity.value == "WARN" and not on_warn):
                continue
            out.append(Alert(
                kind="check_failure" if ev.severity.value == "ERROR" else "check_warning",
                partition=partition, subject=f"{ev.asset_key.to_user_string()}:{ev.check_name}",
                reason=ev.description or "check failed", run_id=run_id, profile=profile, severity=ev.severity.value,
            ))
        else:
            out.append(Alert(kind="step_failure", partition=partition, subject=f"step {event.step_key}",
                             reason=root_cause(event.event_specific_data.error),
                             run_id=run_id, profile=profile, severity="ERROR"))
    if run.status == DagsterRunStatus.FAILURE:
        out.append(Alert(kind="run_failure", partition=partition, subject=f"run {run.job_name}",
                         reason=f"{sum(a.kind == 'step_failure' for a in out)} failed step(s); "
                                f"{sum(a.kind == 'check_failure' for a in out)} failed check(s)",
                         run_id=run_id, profile=profile, severity="ERROR"))
    return out


@dataclass
class RunDelivery:
    """The alerts of one run (paths already portable), where their sinks came from, and the report."""

    alerts: list[Alert]
    sinks_from: str
    report: DeliveryReport


def deliver_run(instance: Any, run_id: str, *, resolved: ResolvedManifest | None = None,
                profile: str | None = None, environ: Mapping[str, str] | None = None,
                sleep: Callable[[float], None] = time.sleep) -> RunDelivery:
    """Deliver every alert of `run_id` to the run's own sinks. Sinks, first found: the run's
    `ALERTS_TAG`; `resolved` (the caller's resolution for this run: the tag is then added, so the
    daemon's sensors use the same sinks); else `profile` (or the run's profile tag) resolved now."""
    run = instance.get_run_by_id(run_id)
    tags = dict(run.tags) if run is not None else {}
    if ALERTS_TAG in tags:
        config = AlertsConfig.model_validate_json(tags[ALERTS_TAG])
        name = tags.get(PROFILE_TAG) or profile or (resolved or resolve(environ=environ)).profile
        sinks_from = f"the run's {ALERTS_TAG} tag"
    elif resolved is not None:
        config, name = resolved.config.alerts, resolved.profile
        sinks_from = f"profile {name} with this command's overrides"
        if run is not None:
            instance.add_run_tags(run_id, run_tags(config))
    else:
        now = resolve(profile or tags.get(PROFILE_TAG), environ=environ)
        config, name = now.config.alerts, now.profile
        sinks_from = f"profile {name} as resolved now (the run has no {ALERTS_TAG} tag)"
    lake = Lakehouse(profile=name)
    alerts = [portable(a, lake.root) for a in alerts_for_run(instance, run_id, name, config.on_warn)]
    return RunDelivery(alerts, sinks_from, deliver(alerts, config.sinks, lake, environ=environ, sleep=sleep))
