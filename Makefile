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

# The local IRSA target from Pulumi.dev.yaml, doctor and a round trip with the pod's env,
# then `satchel serve` mirroring an offline repository; until Ctrl-C, which stops it all.
demo: $(STAMP)
	$(BIN)/satchel local up --stack dev --state-dir var/local --check --serve

test: $(STAMP) lint typecheck
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check runtime infra tests bench
	$(BIN)/ruff format --check runtime infra tests bench

format: $(STAMP)
	$(BIN)/ruff check --fix runtime infra tests bench
	$(BIN)/ruff format runtime infra tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# Benchmarks against the local IRSA target: one table, bench/results.json (~3 min).
# Python extras (obstore, psutil) are pinned in the dev extra; wrk and nginx come from Debian.
bench: $(STAMP)
	command -v wrk >/dev/null && command -v nginx >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx; }
	$(BIN)/python -m bench.mirror

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
