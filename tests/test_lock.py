"""requirements.lock agrees with pyproject.toml, and this environment was installed from it.

`make test` installs from the lock; a range changed in pyproject.toml without
`make lock`, or a pin the ranges no longer allow, fails here rather than on a
new user's machine.
"""
from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
TOOLS = ROOT / "tools" / "lock-tools.in"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def pins() -> dict[str, tuple[str, str | None, set[str]]]:
    """name -> (version, marker, the requirers named in its `# via` lines)."""
    out: dict[str, tuple[str, str | None, set[str]]] = {}
    name = None
    for line in LOCK.read_text().splitlines():
        m = PIN.match(line)
        if m:
            name = canonicalize_name(m.group(1))
            out[name] = (m.group(2), m.group(3), set())
        elif name and line.strip().startswith("#"):
            via = line.strip().lstrip("#").strip().removeprefix("via").strip()
            if via:
                out[name][2].add(via)
    return out


def direct() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    lines += [line.split("#")[0].strip() for line in TOOLS.read_text().splitlines()]
    reqs = [Requirement(line) for line in lines if line]
    return {canonicalize_name(r.name): r for r in reqs}


def test_every_direct_requirement_is_pinned_within_its_range() -> None:
    locked = pins()
    for name, req in direct().items():
        assert name in locked, f"{name} is in pyproject.toml or {TOOLS.name} but not locked: run make lock"
        version = locked[name][0]
        assert req.specifier.contains(version, prereleases=True), (
            f"{name}=={version} in the lock is outside {req.specifier} in pyproject.toml: run make lock")


def test_the_lock_names_no_direct_requirement_that_is_gone() -> None:
    wanted = set(direct())
    for name, (_, _, via) in pins().items():
        if via & {"fleet (pyproject.toml)", f"-r tools/{TOOLS.name}"}:
            assert name in wanted, f"{name} is locked as a direct requirement that no longer exists: run make lock"


def test_every_pin_has_hashes() -> None:
    text = LOCK.read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text)
    for block in blocks:
        if PIN.match(block.splitlines()[0]):
            assert "--hash=sha256:" in block, block.splitlines()[0]


def test_this_environment_holds_exactly_the_locked_versions() -> None:
    from packaging.markers import Marker
    for name, (version, marker, _) in pins().items():
        if marker and not Marker(marker).evaluate():
            continue
        assert metadata.version(name) == version, f"{name}: installed {metadata.version(name)}, locked {version}"
