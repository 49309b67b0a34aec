# make run | demo | test | test-unit | lint | bench — each installs what it needs on a fresh
# Debian/Ubuntu machine (system packages as root: apt-get update once, then apt-get install).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 3001
SIM_PORT ?= 3002

# Debian packages: the browser for everything; for the tests a QR decoder, PostgreSQL and
# nginx (a reverse proxy in front of the server, as people deploy it).
RUN_PACKAGES := chromium chromium-driver
TEST_PACKAGES := $(RUN_PACKAGES) libzbar0 postgresql nginx

.PHONY: run demo doctor test test-unit lint bench soak system-run system-test venv venv-dev bytecode clean

# The server's own environment (make run, make demo) ...
$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

# ... and the one for tests, benchmarks and lint on top of it.
$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed
venv-dev: $(VENV)/.installed-dev

# The server's modules as bytecode (bin/post_compile, also Heroku's build hook): a start reads
# them instead of compiling them, also where the interpreter may not write its cache.
bytecode: venv
	@PYTHON=$(PY) bin/post_compile

system-run:
	@scripts/install-system-packages $(RUN_PACKAGES)

system-test:
	@scripts/install-system-packages $(TEST_PACKAGES)

run: system-run venv bytecode
	PORT=$(PORT) $(VENV)/bin/gunicorn -c gunicorn.conf.py server:app

demo: system-run venv bytecode
	@PORT=$(PORT) SIM_PORT=$(SIM_PORT) PY=$(PY) scripts/demo

# Is this machine ready for `make run`? One line per check, exit 1 naming what failed.
doctor: system-run venv
	$(PY) -m whatsapp doctor

lint: venv-dev
	$(VENV)/bin/ruff check whatsapp simulator bench tests server.py gunicorn.conf.py
	$(VENV)/bin/mypy

# The fast suite: pure logic and in-process tests, no browser, no server processes.
test-unit: venv-dev
	$(PY) -m pytest -q -m "not e2e" tests

test: system-test venv-dev
	$(PY) -m pytest -q tests
	@scripts/check-orphans

bench: system-test venv-dev bytecode
	$(PY) -m bench
	@scripts/check-orphans

# Faults at random under traffic (bench/soak): SOAK_MINUTES (default 10) or SOAK_CYCLES,
# SOAK_SEED (default 19), SOAK_FAULTS (the mix, name=weight,...). Root for the network
# namespace and the tmpfs data folder; without it, partitions and a full disk are left out.
soak: system-test venv-dev
	$(PY) -m bench.soak $(if $(SOAK_MINUTES),--minutes $(SOAK_MINUTES)) $(if $(SOAK_CYCLES),--cycles $(SOAK_CYCLES)) \
		$(if $(SOAK_SEED),--seed $(SOAK_SEED)) $(if $(SOAK_FAULTS),--faults '$(SOAK_FAULTS)')
	@scripts/check-orphans

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
