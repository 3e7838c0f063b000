# Every target does its own set-up: a fresh machine needs nothing but python3.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: setup test test-ext demo bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch and torchvision first and pinned: pip then takes them from this machine's disk.
$(STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet torch==2.14.1 torchvision==0.29.1
	$(PIP) install --quiet -e ".[test,triton]"
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

# torch-scatter and torch-sparse compile against the installed torch (their setup.py imports it, so no build
# isolation): about 17 min for both on 2 idle cores.
test-ext: $(STAMP)
	$(PIP) install --quiet --no-build-isolation torch-scatter torch-sparse
	$(PIP) install --quiet -e ".[test,triton,ext]"
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) -m videograph demo

bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf results .pytest_cache .hypothesis
