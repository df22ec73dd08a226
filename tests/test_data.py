"""The copied reference data under tests/data/ is complete and unchanged."""
from __future__ import annotations

import hashlib
from pathlib import Path

DATA = Path(__file__).parent / "data"


def listed() -> dict[str, str]:
    sums = {}
    for line in (DATA / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        sums[name.removeprefix("./")] = digest
    return sums


def present() -> set[str]:
    return {p.relative_to(DATA).as_posix() for p in DATA.rglob("*")
            if p.is_file() and p.name != "SHA256SUMS" and p.relative_to(DATA).as_posix() != "README.md"}


def test_every_data_file_is_listed_and_every_listed_file_is_there() -> None:
    assert present() == set(listed())


def test_no_data_file_was_edited() -> None:
    changed = [name for name, digest in listed().items()
               if hashlib.sha256((DATA / name).read_bytes()).hexdigest() != digest]
    assert changed == []


def test_the_data_covers_what_the_http_side_is_tested_against() -> None:
    names = set(listed())
    for folder in ("fixtures/forgejo-webhooks", "fixtures/gitea-webhooks", "fixtures/github-webhooks",
                   "reference/agent-outputs", "reference/forgejo-api", "reference/github-api"):
        assert any(n.startswith(folder + "/") for n in names), folder
