# The two commands a new user runs: `make demo` and `make test`.
# Both create .venv on first use and install fleet into it (editable).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# The real Codex and Claude Code CLIs for tests/test_real_agents.py, pinned in
# tools/agents/package.json and installed once into this git-ignored cache.
AGENTS := .cache/npm/agents

.PHONY: demo test sshd bench clean lock

# Installs exactly what requirements.lock pins, hashes checked, pip and the
# build backend included, into a new venv: a release made tomorrow changes
# nothing here. The ranges in pyproject.toml are for people who pip install
# fleet as a library; `make lock` refreshes the pins from them.
LOCK   := requirements.lock
UV     := .cache/uv/bin/uv

$(VENV)/.installed: pyproject.toml $(LOCK)
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes --no-deps -r $(LOCK)
	@# setuptools prints a note on every editable install ("Editable installation.
	@# Please be careful with folders..."); it is information, not a problem, and
	@# only that one note is filtered: any real warning still shows.
	PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	touch $@

# uv, the lock tool, comes from the lock too: its pinned line with its hashes.
$(UV): $(LOCK)
	rm -rf .cache/uv && $(PYTHON) -m venv .cache/uv
	awk '/^uv==/{p=1} p{print} p && !/\\$$/{exit}' $(LOCK) > .cache/uv/requirements.txt
	.cache/uv/bin/pip install -q --require-hashes --no-deps -r .cache/uv/requirements.txt

# `make lock` follows pyproject.toml and keeps every pin that still fits;
# `make lock UPGRADE=1` takes the newest releases the ranges allow.
lock: $(UV)
	$(UV) pip compile pyproject.toml tools/lock-tools.in --extra test --generate-hashes \
		--universal --python-version 3.11 --no-header --quiet $(if $(UPGRADE),--upgrade) -o $(LOCK)

demo: $(VENV)/.installed
	$(VENV)/bin/fleet demo

test: $(VENV)/.installed sshd
	sh tools/agents/install.sh $(AGENTS)
	FLEET_AGENT_BIN=$(CURDIR)/$(AGENTS)/node_modules/.bin $(PY) -m pytest

# The SSH tests start a real OpenSSH sshd on 127.0.0.1: install the server when
# it is missing. Without root (or apt-get) say so: those tests then skip, and
# fail under CI=true, where a skip would hide a broken machine.
sshd:
	@PATH="$$PATH:/usr/sbin:/usr/local/sbin:/sbin" command -v sshd >/dev/null 2>&1 || \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "make: installing openssh-server for the SSH tests" >&2; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null; \
	else \
		echo "make: sshd is not installed and this user cannot apt-get it: the SSH tests will be skipped (sudo apt-get install openssh-server)" >&2; \
		[ -z "$${CI:-}" ]; \
	fi

bench: $(VENV)/.installed
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
