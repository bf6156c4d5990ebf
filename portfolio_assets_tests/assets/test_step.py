"""`assets._step`: how a price-store part's run is known to be finished (what lets compaction
merge the parts of finished runs: `fetch.compact_store`)."""

from __future__ import annotations

from dagster import DagsterInstance, DagsterRunStatus, Failure, asset, job, materialize, op

from portfolio_assets.assets._step import scope_finished


@asset
def one() -> int:
    return 1


@asset
def broken() -> int:
    raise Failure("no")


@op
def noop() -> None:
    return None


@job
def pending() -> None:
    noop()


def test_a_scope_is_finished_only_when_dagster_has_its_run_finished():
    with DagsterInstance.ephemeral() as instance:
        done = materialize([one], instance=instance).run_id
        failed = materialize([broken], instance=instance, raise_on_error=False).run_id
        going = instance.create_run_for_job(pending, status=DagsterRunStatus.STARTED).run_id
        finished = scope_finished(instance)
        assert finished(f"{done}@2026-12-03") and finished(f"{failed}@2026-12-02")
        assert not finished(f"{going}@2026-12-03")
        assert not finished("00000000-0000-0000-0000-000000000000@2026-12-03")  # unknown to Dagster
        instance.report_run_canceled(instance.get_run_by_id(going))
        assert not finished(f"{going}@2026-12-03")  # one lookup per run and call of scope_finished
        assert scope_finished(instance)(f"{going}@2026-12-03")  # canceled is finished
