# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.satchel-installed

.PHONY: demo test lint format typecheck bench clean

# (Re)install when pyproject.toml changes; the venv is made with the machine's python3 and pip.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# The local IRSA target from Pulumi.dev.yaml, doctor and a round trip with the pod's env;
# runs until Ctrl-C, which stops every process it started.
demo: $(STAMP)
	$(BIN)/satchel local up --stack dev --state-dir var/local --check

test: $(STAMP) lint typecheck
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check runtime infra tests
	$(BIN)/ruff format --check runtime infra tests

format: $(STAMP)
	$(BIN)/ruff check --fix runtime infra tests
	$(BIN)/ruff format runtime infra tests

typecheck: $(STAMP)
	$(BIN)/mypy

# Mirror benchmarks against the local IRSA target: one table, bench/results.json (~2 min).
# Their extra packages are pinned here, not in the project's dependencies.
BENCH_DEPS := obstore==0.12.1 psutil==7.2.2

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(BENCH_DEPS)
	$(BIN)/python -m bench.mirror

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
