# Two commands for a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run cluster test lint typecheck pytest openapi redis-server nginx chromium bench bench-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## run: serve one instance on 127.0.0.1:8080 (no Redis needed)
run: $(STAMP)
	$(BIN)/python -m chat_service

## cluster: Redis, three instances (8081-8083) and nginx on 127.0.0.1:8080; logs in cluster-logs/; Ctrl-C stops all
cluster: $(STAMP) redis-server nginx
	$(BIN)/python -m chat_service.devtools.cluster --log-dir cluster-logs

## test: everything the suite needs, then lint, type checks and the suite
test: $(STAMP) redis-server nginx chromium lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) redis-server nginx chromium bench-deps
	$(BIN)/pytest

## openapi: regenerate the committed API documents (openapi/) from the code
openapi: $(STAMP)
	$(BIN)/python -m chat_service.api.documents

## bench: the benchmark, ours against the bare-stack baseline and Starlette (about 15 minutes; see bench/README.md)
bench: bench-deps redis-server
	$(BIN)/python -m bench.run --profile

# The benchmark's Python extras, the Starlette reference server's own
# virtualenv and the Node load generator (the smoke test needs them too).
BENCH_STAMP := $(VENV)/.bench-installed
STARLETTE_VENV := bench/.venv-starlette
STARLETTE_STAMP := $(STARLETTE_VENV)/.installed
bench-deps: $(BENCH_STAMP) $(STARLETTE_STAMP) bench/node_modules/.package-lock.json

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

$(STARLETTE_STAMP): bench/requirements-starlette.txt
	$(PYTHON) -m venv $(STARLETTE_VENV)
	$(STARLETTE_VENV)/bin/pip install --quiet -r bench/requirements-starlette.txt
	touch $(STARLETTE_STAMP)

bench/node_modules/.package-lock.json: bench/package.json bench/package-lock.json
	cd bench && npm ci --no-audit --no-fund --loglevel=error

# The Redis tests start their own redis-server processes; install the binary where it is missing.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "installing redis-server"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server >/dev/null; }

# The deployment tests and `make cluster` start nginx (Debian's package) on ports of their own.
nginx:
	@command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { \
		echo "installing nginx"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq nginx >/dev/null; }

# The chat page's browser tests drive Debian's chromium through Playwright
# (Playwright's own browser download cannot be fetched here).
chromium:
	@[ -x /usr/bin/chromium ] || { \
		echo "installing chromium"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

clean:
	rm -rf $(VENV) $(STARLETTE_VENV) *.egg-info test-artifacts
