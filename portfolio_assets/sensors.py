"""Sensors that turn failed runs and failed (or warning) check evaluations into alerts."""

from __future__ import annotations

from dagster import DagsterRunStatus, DefaultSensorStatus, RunStatusSensorContext, run_status_sensor

from portfolio_assets.alerts import AlertDeliveryError, deliver_run


def deliver_run_alerts(instance, run_id: str, profile: str | None = None) -> list[str]:
    """Deliver every alert of `run_id` to the run's own sinks (`alerts.deliver_run`); returns the
    alert texts. Raises `AlertDeliveryError` when a sink did not take an alert: the tick shows the
    failure, and the alert waits in the dead letter for the next delivery."""
    delivery = deliver_run(instance, run_id, profile=profile)
    if delivery.report.dead:
        raise AlertDeliveryError(f"sinks from {delivery.sinks_from}: " + "; ".join(delivery.report.problems()))
    return [a.text() for a in delivery.alerts]


def _deliver_and_log(context: RunStatusSensorContext) -> None:
    """The body both sensors share: deliver the run's alerts, log each on the tick."""
    for text in deliver_run_alerts(context.instance, context.dagster_run.run_id):
        context.log.info(f"alert: {text}")


@run_status_sensor(
    run_status=DagsterRunStatus.FAILURE,
    monitor_all_code_locations=False,
    default_status=DefaultSensorStatus.RUNNING,
    description="Failed runs (and the failed checks and steps in them) become alerts in the configured sinks.",
)
def alert_on_failed_run(context: RunStatusSensorContext):
    """Deliver a failed run's alerts to its sinks; raises `AlertDeliveryError` when a sink does not
    take one."""
    _deliver_and_log(context)


@run_status_sensor(
    run_status=DagsterRunStatus.SUCCESS,
    monitor_all_code_locations=False,
    default_status=DefaultSensorStatus.RUNNING,
    description="Successful runs with a failed WARN check (e.g. a non-strict health gate) become alerts.",
)
def alert_on_check_warnings(context: RunStatusSensorContext):
    """Deliver the alerts of a successful run's failed checks to its sinks; raises `AlertDeliveryError`
    when a sink does not take one."""
    _deliver_and_log(context)
