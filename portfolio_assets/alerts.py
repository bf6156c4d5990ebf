"""Alerts: failed runs and failed (or warning) check evaluations, delivered to the manifest's sinks.

Sinks: `jsonl` (always safe: `<lakehouse>/<profile>/alerts/alerts.jsonl`), `webhook` (HTTP POST of
the alert as JSON to the URL in the environment variable `url_env`), `slack` (dagster-slack, token
from `token_env`). Secrets come only from the environment and are never written anywhere.

Delivery is idempotent per alert id (run id + subject), so the sensors (daemon) and the CLI
(which reports its own runs at once) never send the same alert twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any

from portfolio_assets.lakehouse import Lakehouse, file_lock
from portfolio_assets.manifest import AlertSink


class AlertDeliveryError(RuntimeError):
    """A sink could not take an alert (the message names the sink, never its secret)."""


@dataclass(frozen=True)
class Alert:
    kind: str  # "run_failure" | "check_failure" | "check_warning"
    partition: str | None
    subject: str  # the check ("history_500d:health_gate") or the failed step
    reason: str
    run_id: str
    profile: str
    severity: str  # "ERROR" | "WARN"
    at: str = ""

    @property
    def alert_id(self) -> str:
        return hashlib.sha256(f"{self.run_id}|{self.kind}|{self.subject}".encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "id": self.alert_id}

    def text(self) -> str:
        return (f"[{self.severity}] portfolio_assets {self.kind} — {self.subject} — partition {self.partition} "
                f"(profile {self.profile}, run {self.run_id[:8]}): {self.reason}")


def _send_webhook(alert: Alert, sink: AlertSink) -> None:
    if not sink.url_env or not os.environ.get(sink.url_env):
        raise AlertDeliveryError(f"webhook sink: environment variable {sink.url_env or '(url_env unset)'} is not set")
    req = urllib.request.Request(
        os.environ[sink.url_env], data=json.dumps(alert.to_json()).encode(), method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "portfolio-assets-alerts"},
    )
    try:
        with urllib.request.urlopen(req, timeout=sink.timeout_s) as resp:  # noqa: S310 (URL from the operator's env)
            if resp.status >= 300:
                raise AlertDeliveryError(f"webhook sink answered HTTP {resp.status}")
    except OSError as exc:
        raise AlertDeliveryError(f"webhook sink ({sink.url_env}) failed: {type(exc).__name__}: {exc}") from None


def _send_slack(alert: Alert, sink: AlertSink) -> None:
    from dagster_slack import SlackResource

    if not sink.token_env or not os.environ.get(sink.token_env) or not sink.channel:
        raise AlertDeliveryError("slack sink: token_env (set in the environment) and channel are required")
    SlackResource(token=os.environ[sink.token_env]).get_client().chat_postMessage(channel=sink.channel, text=alert.text())


def deliver(alert: Alert, sinks: list[AlertSink], lake: Lakehouse) -> list[str]:
    """Deliver `alert` to every sink once. Returns the sinks it went to; raises if any sink failed
    (after trying all of them) — a lost alert is never silent."""
    log = lake.root / "alerts" / "alerts.jsonl"
    sent = lake.root / "alerts" / "sent.txt"
    log.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(sent):
        done = set(sent.read_text().split()) if sent.exists() else set()
        if alert.alert_id in done:
            return []
        stamped = Alert(**{**asdict(alert), "at": alert.at or dt.datetime.now(dt.UTC).isoformat()})
        delivered, errors = [], []
        for sink in sinks:
            try:
                if sink.kind == "jsonl":
                    with open(log, "a", encoding="utf-8") as fh:
                        fh.write(json.dumps(stamped.to_json(), sort_keys=True) + "\n")
                elif sink.kind == "webhook":
                    _send_webhook(stamped, sink)
                elif sink.kind == "slack":
                    _send_slack(stamped, sink)
                delivered.append(sink.kind)
            except AlertDeliveryError as exc:
                errors.append(str(exc))
        with open(sent, "a") as fh:
            fh.write(alert.alert_id + "\n")
    if errors:
        raise AlertDeliveryError("; ".join(errors))
    return delivered


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
    partition = run.tags.get("dagster/partition")
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
