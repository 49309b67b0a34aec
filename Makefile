# make run | demo | test | bench — each installs what it needs on a fresh Debian/Ubuntu machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 3001
SIM_PORT ?= 3002

# Debian packages: the browser for everything; a QR decoder and PostgreSQL for the tests.
RUN_PACKAGES := chromium chromium-driver
TEST_PACKAGES := $(RUN_PACKAGES) libzbar0 postgresql

.PHONY: run demo test bench system-run system-test venv clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

venv: $(VENV)/.installed

system-run:
	@scripts/install-system-packages $(RUN_PACKAGES)

system-test:
	@scripts/install-system-packages $(TEST_PACKAGES)

run: system-run venv
	PORT=$(PORT) $(VENV)/bin/gunicorn -c gunicorn.conf.py server:app

demo: system-run venv
	@PORT=$(PORT) SIM_PORT=$(SIM_PORT) PY=$(PY) scripts/demo

test: system-test venv
	$(PY) -m pytest -q tests
	@scripts/check-orphans

bench: system-test venv
	$(PY) -m bench
	@scripts/check-orphans

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
