"""Sensors that turn failed runs and failed (or warning) check evaluations into alerts."""

from __future__ import annotations

from dagster import DagsterRunStatus, DefaultSensorStatus, RunStatusSensorContext, run_status_sensor

from portfolio_assets.alerts import alerts_for_run, deliver
from portfolio_assets.lakehouse import Lakehouse
from portfolio_assets.manifest import resolve


def deliver_run_alerts(instance, run_id: str, profile: str | None = None) -> list[str]:
    """Deliver every alert of `run_id` to the profile's sinks; returns the alert texts."""
    run = instance.get_run_by_id(run_id)
    resolved = resolve(profile or (run.tags.get("portfolio_assets/profile") if run else None))
    lake = Lakehouse(profile=resolved.profile)
    alerts = alerts_for_run(instance, run_id, resolved.profile, resolved.config.alerts.on_warn)
    for alert in alerts:
        deliver(alert, list(resolved.config.alerts.sinks), lake)
    return [a.text() for a in alerts]


@run_status_sensor(
    run_status=DagsterRunStatus.FAILURE,
    monitor_all_code_locations=False,
    default_status=DefaultSensorStatus.RUNNING,
    description="Failed runs (and the failed checks and steps in them) become alerts in the configured sinks.",
)
def alert_on_failed_run(context: RunStatusSensorContext):
    for text in deliver_run_alerts(context.instance, context.dagster_run.run_id):
        context.log.info(f"alert: {text}")


@run_status_sensor(
    run_status=DagsterRunStatus.SUCCESS,
    monitor_all_code_locations=False,
    default_status=DefaultSensorStatus.RUNNING,
    description="Successful runs with a failed WARN check (e.g. a non-strict health gate) become alerts.",
)
def alert_on_check_warnings(context: RunStatusSensorContext):
    for text in deliver_run_alerts(context.instance, context.dagster_run.run_id):
        context.log.info(f"alert: {text}")
