# Two commands matter on a fresh machine: `make demo` and `make test` (see README).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
LOCK   := constraints.txt
# glibc's malloc on transparent huge pages: XLA:CPU's per-step buffers fault 512x less (docs/benchmarks.md)
HUGEPAGES := GLIBC_TUNABLES=glibc.malloc.hugetlb=1

.PHONY: install demo test test-fast lint lock clean

install: $(STAMP)

# setup.cfg declares ranges; the lock pins the exact set the tests ran with. PYTHONWARNINGS hides the
# notice setuptools prints on every editable install ("be careful with folders ..."); -qq keeps pip's
# errors and drops its warnings (a machine-wide pip.conf naming a missing index adds one per package).
$(STAMP): setup.cfg pyproject.toml $(LOCK)
	@echo "Installing swin-flax and the pinned dependencies ($(LOCK)) into $(VENV): a few minutes the first time"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -qq --upgrade pip
	@PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install -qq -c $(LOCK) -e '.[test,pretrained]'
	@touch $(STAMP)

demo: $(STAMP)
	$(HUGEPAGES) $(PY) scripts/main.py --config configs/demo.py --workdir runs/demo

# Everything (CI runs this), with the 15 slowest tests named at the end.
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=15 tests

# The edit loop: leaves out the tests marked slow (scripts run as subprocesses, several processes,
# training runs; see tests/conftest.py).
test-fast: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not slow" tests

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Re-resolve setup.cfg's ranges into the lock (newest releases inside them), keeping its header;
# then run make test.
lock:
	rm -rf $(VENV)/lock && $(PYTHON) -m venv $(VENV)/lock
	$(VENV)/lock/bin/pip install -q -e '.[test,pretrained]'
	{ sed -n '/^#/!q;p' $(LOCK); $(VENV)/lock/bin/pip freeze --exclude-editable; } > $(LOCK).new
	mv $(LOCK).new $(LOCK) && rm -rf $(VENV)/lock

# The environment and caches; never runs/, which holds trained runs and their checkpoints.
clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
