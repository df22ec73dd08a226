#!/bin/sh
# Install the real agent CLIs pinned in package.json (next to this script) into
# DIR, for tests/test_real_agents.py. Called by `make test`; idempotent: when DIR
# already holds exactly these versions it does nothing, so only the first run
# (or a version change) pays for the download (about 12 s and 640 MB).
#
# Usage: sh tools/agents/install.sh DIR
# Without node or npm it installs nothing and says so: those tests then skip
# (and fail under CI=true, where a skip would hide a broken machine).
set -eu
[ "$#" -eq 1 ] || { echo "usage: sh install.sh DIR" >&2; exit 64; }
here=$(cd "$(dirname "$0")" && pwd)
dir=$1

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "install.sh: node or npm not found: real Codex/Claude Code tests will be skipped" >&2
    exit 0
fi
# The stamp is the package.json that was installed; a changed pin reinstalls.
if cmp -s "$here/package.json" "$dir/.installed" &&
    [ -x "$dir/node_modules/.bin/codex" ] && [ -x "$dir/node_modules/.bin/claude" ]; then
    exit 0
fi
echo "install.sh: installing the pinned agent CLIs into $dir" >&2
rm -rf "$dir"
mkdir -p "$dir"
cp "$here/package.json" "$dir/package.json"
if ! npm install --prefix "$dir" --no-audit --no-fund --loglevel=error >&2; then
    # Offline laptop: run the rest of the suite. CI: a skip would hide the breakage.
    echo "install.sh: npm install failed: real Codex/Claude Code tests will be skipped" >&2
    [ -z "${CI:-}" ] || exit 1
    exit 0
fi
cp "$here/package.json" "$dir/.installed"
