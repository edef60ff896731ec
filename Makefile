# Two commands set everything up on a fresh clone: `make run` and `make test`.
# Each step leaves a stamp, so a second run reinstalls nothing that has not changed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMPS := .stamps
PO := $(wildcard translations/*/LC_MESSAGES/messages.po)
MO := $(PO:.po=.mo)
export PAKIET_INSTANCE_PATH ?= $(CURDIR)/instance
# make run and demo-db are development: the shipped SECRET_KEY is accepted (docs/operations.md).
FLASK := PAKIET_DEVELOPMENT=1 $(BIN)/flask --app wsgi

.PHONY: run test journeys install lint translations-extract demo-db screenshots clean bench soak

run: install demo-db
	@echo ""
	@echo "Pakiet runs at http://127.0.0.1:5000/"
	@echo "Demo logins (password for all: pakiet-demo-2026):"
	@echo "  free@demo.example.com      Free"
	@echo "  standard@demo.example.com  Standard, monthly, 3 agents, PLN, Visa 4242 saved"
	@echo "  pro@demo.example.com       Pro, yearly, EUR, Visa 4242 saved"
	@echo "  admin@demo.example.com     staff: http://127.0.0.1:5000/admin/"
	@echo ""
	PAKIET_DEVELOPMENT=1 $(BIN)/python scripts/devserver.py --host 127.0.0.1 --port 5000

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The journeys alone (tests/journeys; also part of `make test`): see docs/testing.md.
journeys: install
	$(BIN)/python -m pytest tests/journeys $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check portal plugins tests scripts
	$(BIN)/ruff format --check portal plugins tests scripts
	$(BIN)/mypy
	$(BIN)/lint-imports

install: $(STAMPS)/python $(STAMPS)/npm $(MO)

$(STAMPS)/python: pyproject.toml
	@mkdir -p $(STAMPS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

$(STAMPS)/npm: package.json package-lock.json
	@mkdir -p $(STAMPS)
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

translations/%/LC_MESSAGES/messages.mo: translations/%/LC_MESSAGES/messages.po $(STAMPS)/python
	$(BIN)/pybabel compile --statistics -l $* -i $< -o $@

screenshots: demo-db
	$(BIN)/python scripts/screenshots.py

demo-db: install
	$(FLASK) db upgrade
	$(FLASK) demo-data

translations-extract: install
	$(BIN)/pybabel extract -F babel.cfg -k lazy_gettext -k _l -k _n:1,2 -o translations/messages.pot --no-location --sort-output --width 100 portal plugins templates
	$(BIN)/pybabel update -i translations/messages.pot -d translations --no-fuzzy-matching --width 100

# Throughput and latency of the portal against a bare Flask app, on PostgreSQL (database
# pakiet_bench at 127.0.0.1:5432, created and dropped) and SQLite: see docs/performance.md.
bench: install
	$(BIN)/python scripts/bench.py $(BENCH_ARGS)

# Five minutes of mixed traffic at 16 connections while two billing runners renew 10,000
# subscriptions, with zero errors and zero double effects (database pakiet_soak at
# 127.0.0.1:5432, created and dropped): see scripts/soak.py.
soak: install
	$(BIN)/python scripts/soak.py $(SOAK_ARGS)

clean:
	rm -rf $(VENV) $(STAMPS) node_modules
