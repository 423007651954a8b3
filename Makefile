# Two commands matter on a fresh machine: `make demo` and `make test` (see README).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# glibc's malloc on transparent huge pages: XLA:CPU's per-step buffers fault 512x less (docs/benchmarks.md)
HUGEPAGES := GLIBC_TUNABLES=glibc.malloc.hugetlb=1

.PHONY: install demo test lint clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(HUGEPAGES) $(PY) scripts/main.py --config configs/demo.py --workdir runs/demo

test: $(STAMP)
	$(PY) -m pytest -q tests

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache *.egg-info
