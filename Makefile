# The two commands of the README: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
PIP_FLAGS ?= --quiet --disable-pip-version-check

.PHONY: demo test test-integration bench lint format clean install install-dev

# Reinstall only when pyproject.toml changed since the last install.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_FLAGS) --upgrade pip
	$(BIN)/pip install $(PIP_FLAGS) -e '.[site]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_FLAGS) --upgrade pip
	$(BIN)/pip install $(PIP_FLAGS) -e '.[dev,postgres]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# Carrier webhooks are refused without a public URL. Unless the environment or .env names one (a
# tunnel), the demo server's own address serves: the simulated caller (voiceagents_call_simulate)
# reaches it directly. Every command of the demo gets it, so none warns that it is missing.
DEMO_ENV = $(if $(VOICEAGENTS_PUBLIC_URL)$(shell grep -s '^VOICEAGENTS_PUBLIC_URL=' .env),,VOICEAGENTS_PUBLIC_URL=http://127.0.0.1:$(PORT))

demo: install
	mkdir -p var
	$(DEMO_ENV) $(BIN)/python manage.py migrate --no-input
	$(DEMO_ENV) $(BIN)/python manage.py voiceagents_demo
	@echo "Admin: http://127.0.0.1:$(PORT)/admin/   Health: http://127.0.0.1:$(PORT)/healthz/"
	$(DEMO_ENV) $(BIN)/python manage.py runserver 127.0.0.1:$(PORT)

# Compiled modules (and pytest's rewritten test files) go under .venv, outside the source tree,
# even where the environment turns bytecode off: compiling them anew cost each run ~6 s of collection.
PYTEST = env -u PYTHONDONTWRITEBYTECODE PYTHONPYCACHEPREFIX=$(abspath $(VENV))/pycache $(BIN)/python -m pytest

test: install-dev
	$(PYTEST)

# The whole suite again on DATABASE_URL (PostgreSQL) plus the tests marked integration (REDIS_URL).
# Both default to the local services; .ci/run starts them.
test-integration: export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
test-integration: export REDIS_URL ?= redis://127.0.0.1:6379/0
test-integration: install-dev
	$(PYTEST) -m 'not live and not bench'

# Audio-core table, the truncate-error matrix, then a short concurrent-call sweep (about 12
# minutes; see docs/benchmarks.md).
$(VENV)/.installed-bench: pyproject.toml $(VENV)/.installed-dev
	$(BIN)/pip install $(PIP_FLAGS) -e '.[dev,postgres,bench]'
	touch $@

bench: $(VENV)/.installed-bench
	$(BIN)/python -m pytest -q -m bench tests/bench
	$(BIN)/python -m bench

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) var build *.egg-info
