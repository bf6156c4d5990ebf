"""The executors' settings (`jobs.executor_for`, `manifest.CeleryConfig`).

The executors themselves run in `benchmarks/test_bench.py`: the bench's `celery` section runs the
tournament asset on the in_process, multiprocess and celery executors (two workers on a Redis it
starts) and the whole daily graph through `portfolio-assets run` on two celery workers, and that
module's tests assert the same tables as in-process, the two engine batches and every step outside
the run's process (issue 15). One run of each serves both the bench's rows and those tests.
"""

from __future__ import annotations

import pytest


def test_executor_for_celery_points_at_the_configured_broker():
    from portfolio_assets.jobs import executor_for
    from portfolio_assets.manifest import CeleryConfig, ExecutorConfig

    ex = executor_for(ExecutorConfig(kind="celery", celery=CeleryConfig(broker="redis://10.0.0.5:6380/2")))
    assert ex.name == "celery"
    applied = ex.apply_config_mapping({})
    assert applied.success
    assert applied.value["config"]["broker"] == "redis://10.0.0.5:6380/2"
    assert applied.value["config"]["backend"] == "redis://10.0.0.5:6380/2"  # results through the broker's Redis


def test_broker_must_be_a_redis_url():
    from pydantic import ValidationError

    from portfolio_assets.manifest import CeleryConfig

    with pytest.raises(ValidationError, match="should match pattern"):
        CeleryConfig(broker="amqp://guest@localhost//")
    assert CeleryConfig(broker="redis://h:1/0").result_backend == "redis://h:1/0"
    assert CeleryConfig(broker="redis://h:1/0", backend="redis://h:1/1").result_backend == "redis://h:1/1"
