# Every target builds .venv on its own from a bare python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
EXTRAS := postgres,nats,rabbitmq,http,testing,otel
REFERENCE := examples/reference

.PHONY: .venv test lint format bench bench-quick demo demo-distributed clean

.venv: $(STAMP)

# chronik with every extra, the reference system beside it (its own distribution), and the
# dev dependency group (PEP 735: tests, linters, deployment checks; pip >= 25.1 reads it).
$(STAMP): pyproject.toml $(REFERENCE)/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade 'pip>=25.1'
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]' -e $(REFERENCE) --group dev
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

# The benchmarks are type-checked too, against the peer package they drive.
lint: $(VENV)/.bench-stamp
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

$(VENV)/.bench-stamp: $(STAMP) benchmarks/requirements.txt
	$(BIN)/python -m pip install --quiet -r benchmarks/requirements.txt
	touch $@

bench: $(VENV)/.bench-stamp
	$(BIN)/python -m benchmarks.run

bench-quick: $(VENV)/.bench-stamp
	$(BIN)/python -m benchmarks.run --quick

demo: $(STAMP)
	$(BIN)/chronik demo

# The split deployment on the local PostgreSQL and NATS (see docs/tour.md).
demo-distributed: $(STAMP)
	deploy/local/run-distributed.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .chronik
