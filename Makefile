# The two commands a new user runs: `make demo` and `make test`.
# Both create .venv on first use and install fleet into it (editable).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# The real Codex and Claude Code CLIs for tests/test_real_agents.py, pinned in
# tools/agents/package.json and installed once into this git-ignored cache.
AGENTS := .cache/npm/agents

.PHONY: demo test sshd bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

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
