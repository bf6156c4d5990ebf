"""The daily schedule: the whole graph for today's session, after the US close."""

from __future__ import annotations

from dagster import DefaultScheduleStatus, RunRequest, ScheduleEvaluationContext, SkipReason, schedule

from portfolio_assets.jobs import daily_job
from portfolio_assets.partitions import MASTER_TZ, is_session


@schedule(
    job=daily_job,
    cron_schedule="30 17 * * 1-5",
    execution_timezone=MASTER_TZ,
    default_status=DefaultScheduleStatus.STOPPED,
    description="17:30 New York on weekdays: materialize today's partition if XNYS had a session "
                "(the partition exists from the 16:00 close on).",
)
def daily_after_close(context: ScheduleEvaluationContext):
    """Request the partition of the scheduled day (run key: the date), or skip a day that is not an
    XNYS session."""
    day = context.scheduled_execution_time.date()
    if not is_session(day):
        return SkipReason(f"{day} is not an XNYS session")
    return RunRequest(run_key=day.isoformat(), partition_key=day.isoformat())
