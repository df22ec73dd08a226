# The two commands a new user runs: `make demo` and `make test`.
# Both create .venv on first use and install fleet into it (editable).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# The real Codex and Claude Code CLIs for tests/test_real_agents.py, pinned in
# tools/agents/package.json and installed once into this git-ignored cache.
AGENTS := .cache/npm/agents

.PHONY: demo test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/fleet demo

test: $(VENV)/.installed
	sh tools/agents/install.sh $(AGENTS)
	FLEET_AGENT_BIN=$(CURDIR)/$(AGENTS)/node_modules/.bin $(PY) -m pytest

bench: $(VENV)/.installed
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
