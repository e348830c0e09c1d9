# One set of commands for developers and CI. Every target installs what it needs first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install check test test-fast demo bench bench-smoke bench-workers bench-large soak soak-paid clean format browser postgres

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

format: $(STAMP)
	$(BIN)/ruff format orchestrator tests bench migrations
	$(BIN)/ruff check --fix orchestrator tests bench migrations

check: $(STAMP)
	$(BIN)/ruff check orchestrator tests bench migrations
	$(BIN)/ruff format --check orchestrator tests bench migrations
	$(BIN)/mypy

# The report's browser test needs Debian's chromium; install it when missing (CI is root).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else echo "chromium not installed: the browser test will be skipped"; fi; }

# The store contract and the multi-worker tests run on a throwaway PostgreSQL server that the
# tests start from the machine's binaries (tests/pg_server.py); install them when missing.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
		else echo "PostgreSQL server binaries not installed: its tests will be skipped"; fi; }

test: check browser postgres
	$(BIN)/pytest --cov --cov-report=term -q

# The everyday loop: every test not marked slow (multi-worker kills, kill -9 trials, the
# hostile corpora, the long runs: measured with --durations), without coverage; about 3.5
# minutes on the 2-core machine against 10 for everything. `make test` and CI still run
# every test.
test-fast: check
	$(BIN)/pytest -q -m "not slow" --no-cov

demo: $(STAMP)
	$(BIN)/orchestrator validate manifests/matrix-all-models.yaml
	$(BIN)/orchestrator plan manifests/matrix-all-models.yaml --db outputs/demo.db --prices manifests/prices.example.yaml
	$(BIN)/orchestrator run manifests/matrix-all-models.yaml --simulate --db outputs/demo.db --prices manifests/prices.example.yaml
	$(BIN)/orchestrator export --batch model-comparison --format hf --db outputs/demo.db
	$(BIN)/orchestrator status --batch model-comparison --db outputs/demo.db

bench: $(STAMP)
	$(BIN)/python bench/plan_enqueue.py --jobs 100000 --write BENCHMARKS.md
	$(BIN)/python bench/simulator_load.py --seconds 5 --write BENCHMARKS.md
	$(BIN)/python bench/poll_profiles.py --write BENCHMARKS.md
	$(BIN)/python bench/engine_makespan.py --jobs 2000 --slots 50 --write BENCHMARKS.md
	$(BIN)/python bench/store_status.py --jobs 1000000 --write BENCHMARKS.md
	$(BIN)/python bench/compare.py --jobs 100,1000 --slots 50,500 --tools sequential,gather,orchestrator --write BENCHMARKS.md

# Issue 7 at N = 10,000 (about 40 minutes, so kept out of `make bench`): the comparison at
# 50 and 500 slots, and memory with 10,000 jobs in flight at once.
bench-large: $(STAMP)
	$(BIN)/python bench/engine_makespan.py --all-in-flight --jobs 10000 --run-seconds 6000 --write BENCHMARKS.md
	$(BIN)/python bench/compare.py --jobs 10000 --slots 50,500 --tools sequential,gather,orchestrator,orchestrator-tuned --cap 200 --section large --write BENCHMARKS.md

# A few seconds of each benchmark, so none of them can rot (CI runs it; no time is asserted).
bench-smoke: $(STAMP)
	$(BIN)/python bench/engine_makespan.py --smoke
	$(BIN)/python bench/poll_profiles.py --smoke
	$(BIN)/python bench/compare.py --smoke
	$(BIN)/python bench/workers_scaling.py --smoke
	$(BIN)/python bench/kill_trials.py --smoke
	$(BIN)/python bench/paid_soak.py --smoke

# Issue 6: 1, 2 and 4 worker processes on one PostgreSQL queue (5,000 jobs: about 13 minutes,
# so it is kept out of `make bench`).
bench-workers: $(STAMP)
	$(BIN)/python bench/workers_scaling.py --jobs 5000 --slots 200 --workers 1,2,4 --write BENCHMARKS.md

# The long reliability run (issue 7): hostile profile, kill -9 restarts; writes RELIABILITY.md.
soak: $(STAMP)
	$(BIN)/python bench/kill_trials.py --trials 30 --seed 7 --jobs 8 --write RELIABILITY.md
	$(BIN)/python bench/soak.py --jobs 2000 --restarts 4 --write RELIABILITY.md

# Issue 12: 2,000 jobs through file-host outages and one full disk (a tmpfs: needs root);
# every billed job delivered or waiting to be fetched (about 10 minutes). Writes RELIABILITY.md.
soak-paid: $(STAMP)
	$(BIN)/python bench/paid_soak.py --write RELIABILITY.md

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .coverage outputs
