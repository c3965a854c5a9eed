# The two commands a newcomer needs: `make demo` and `make test`.
# Both create .venv and install the core and the three driver plugins editable.
# The install prints one line; pip's own output goes to .venv/install.log, and to the
# terminal (its last 40 lines) only when the install fails.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PLUGINS := plugins/balloon plugins/zram plugins/gpu
STAMP := $(VENV)/.installed
LOG := $(VENV)/install.log

.PHONY: demo test install lint bench clean

$(STAMP): pyproject.toml $(foreach p,$(PLUGINS),$(p)/pyproject.toml)
	@echo "pagemig: installing the core and the plugins $(notdir $(PLUGINS)) into $(VENV) (log: $(LOG))"
	@$(PYTHON) -m venv $(VENV)
	@{ $(PY) -m pip install --upgrade pip setuptools wheel \
	   && $(PY) -m pip install -e '.[test]' $(foreach p,$(PLUGINS),-e $(p)); } > $(LOG) 2>&1 \
	 || { tail -n 40 $(LOG) >&2; echo "pagemig: the install failed; the whole log is $(LOG)" >&2; exit 1; }
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	@$(VENV)/bin/pagemig run

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) out
