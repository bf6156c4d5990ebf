"""`portfolio_assets.celery_local`: the workers' config file (the workers themselves run in the
bench's celery section, `benchmarks/test_bench.py`)."""

from __future__ import annotations

import pytest
import yaml

from portfolio_assets.celery_local import write_worker_config


@pytest.mark.parametrize("broker", ["redis://127.0.0.1:6379/0", 'redis://:p"a\\ss: #x@127.0.0.1:6379/0'])
def test_the_worker_config_keeps_the_broker_url_as_written(tmp_path, broker):
    """A password with a quote, a backslash, ': ' or ' #' used to break the hand-written YAML."""
    path = write_worker_config(tmp_path / "celery.yaml", broker)
    assert yaml.safe_load(path.read_text()) == {"execution": {"config": {"broker": broker, "backend": broker}}}
    write_worker_config(path, broker, backend="rpc://")
    assert yaml.safe_load(path.read_text())["execution"]["config"] == {"broker": broker, "backend": "rpc://"}
