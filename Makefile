# The contract: `make run` and `make test` do all set-up themselves on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
PROFILE ?= demo

.PHONY: install run test lint bench audit recover ui clean redis celery-worker

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==0.13.9
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/uv pip install -q --compile-bytecode -r requirements.lock
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/uv pip install -q --no-deps -e .
	$(BIN)/python -m compileall -q -j 0 portfolio_assets >/dev/null
	touch $(STAMP)

run: install
	$(BIN)/portfolio-assets run --profile $(PROFILE)

# Four pytest-xdist workers on two cores: the daemon and UI tests mostly wait (Dagster's backfill
# daemon ticks every 30 s), so two more workers keep the cores busy meanwhile (measured 2026-12-03:
# 1096 s with -n 4 against 1266 s with -n 2 on a busy machine; 2026-12-04: 437-491 s with -n 4,
# ~910-950 s of CPU in all with both cores 97% busy, and 671 s with -n 6; on a quiet machine
# 502 s and 984 s of CPU: the suite is CPU-bound; with the module order below, 476 s with -n 4 and
# 472 s with -n 5, within the noise; fifteenth sitting: the cores 99.6% busy from /proc/stat, and
# 462-487 s with the tests' CLI calls forked from a warm zygote, portfolio_assets_tests/forked_cli.py).
# loadscope keeps a module's tests (and its module-scoped graph runs) on one worker;
# --no-loadscope-reorder hands the modules out in the conftest's LONGEST_FIRST order (xdist 3.x would
# otherwise start with the modules that have the most tests).
# Besides --durations, the run ends with the 10 tests that used the most CPU (portfolio_assets_tests/conftest.py).
test: install
	$(BIN)/python -m pytest -q -ra --durations=10 -n 4 --dist loadscope --no-loadscope-reorder

lint: install
	$(BIN)/ruff check portfolio_assets portfolio_assets_tests benchmarks
	$(BIN)/mypy

bench: install
	$(BIN)/python -m benchmarks

audit: install
	$(BIN)/portfolio-assets audit --profile $(PROFILE)

recover: install
	$(BIN)/portfolio-assets recover --profile $(PROFILE) $(if $(DATE),--date $(DATE),)

ui: install
	$(BIN)/portfolio-assets ui

# Scale-out with `executor.kind: celery` (docs/deployment.md): a Redis broker, then workers.
REDIS_PORT ?= 6379
BROKER ?= redis://127.0.0.1:$(REDIS_PORT)/0
CELERY_CONCURRENCY ?= 1

redis:
	redis-server --port $(REDIS_PORT) --bind 127.0.0.1 --daemonize yes --save '' --appendonly no

celery-worker: install
	mkdir -p $(DAGSTER_HOME)
	printf 'execution:\n  config:\n    broker: "%s"\n    backend: "%s"\n' '$(BROKER)' '$(BROKER)' > $(DAGSTER_HOME)/celery.yaml
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dagster-celery worker start -A dagster_celery.app -y $(DAGSTER_HOME)/celery.yaml -- --concurrency=$(CELERY_CONCURRENCY)

clean:
	rm -rf lakehouse/*/ .dagster_home
