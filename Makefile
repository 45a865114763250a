# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
CONSTRAINTS := requirements/constraints.txt
BENCH_ARGS ?=

.PHONY: install demo demo-quick test test-fast bench bench-quick lock clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade "pip>=24"
	@# setuptools warns about every editable install (a notice, not a problem): keep the install quiet
	PYTHONWARNINGS="ignore:Editable installation" $(PIP) install --quiet -c $(CONSTRAINTS) -e ".[test]"
	touch $(STAMP)

demo: install
	$(VENV)/bin/ganpipe demo

demo-quick: install
	$(VENV)/bin/ganpipe demo --quick

test: install
	$(PY) -m pytest

test-fast: install
	$(PY) -m pytest -m "not slow and not integration"

bench: install
	$(PY) -m benchmarks.run $(BENCH_ARGS)

bench-quick: install
	$(PY) -m benchmarks.run --quick $(BENCH_ARGS)

# Re-pin after changing dependencies in pyproject.toml (run in a fresh venv, then commit the file).
lock: install
	{ echo "# Pinned versions that install on this kind of machine (see README 'Installing'). Regenerate with 'make lock'."; \
	  $(PIP) freeze --exclude-editable | grep -v '^ganpipe'; } > $(CONSTRAINTS).new && mv $(CONSTRAINTS).new $(CONSTRAINTS)

clean-venv:
	rm -rf $(VENV)
