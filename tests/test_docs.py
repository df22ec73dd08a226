"""docs/ stays true to the code, cheaply: every name the code defines is on its page.

Each test reads a list from the code (the CLI parser, the JSON schemas, the
State enum, the config keys, the prompt placeholders, the output formats) and
fails naming what no page mentions. They check presence, not prose: a
mention can still be wrong, but a new command, flag, field, state or key can
no longer go undocumented. Also: the contract lives in this repository, so
no file may point into a `shared` directory beside the clone (the README once
linked DESIGN.md there).
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from controller.cli import main as cli
from controller import config
from controller.plan import prompt
from controller.model import State

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SKIP_DIRS = {".git", ".venv", ".cache", "__pycache__", "build", "node_modules", ".pytest_cache"}


def page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def missing(names, text: str, form: str = "`{}`") -> list[str]:
    return sorted({n for n in names if form.format(n) not in text})


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {opt for a in parser._actions for opt in a.option_strings
            if opt not in ("-h", "--help")}


def _section(text: str, heading: str) -> str | None:
    """The text under `## heading` up to the next `## `, or None when there is no such section."""
    start = text.find(f"\n## {heading}\n")
    if start < 0:
        return None
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else len(text)]


def _mentions(text: str, flag: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text) is not None


def test_every_subcommand_and_flag_is_in_commands_md():
    text = page("commands.md")
    parser = cli._parser()
    gaps = [f"fleet {flag}" for flag in sorted(_flags(parser)) if not _mentions(text, flag)]
    for name, sub in _subparsers(parser).items():
        words = [name]
        for action in sub._actions:     # `fleet hosts scan`: a positional with choices
            if not action.option_strings and action.choices:
                words = [f"{name} {choice}" for choice in action.choices]
        for word in words:
            section = _section(text, f"fleet {word}")
            if section is None:
                gaps.append(f"a section `## fleet {word}`")
                continue
            gaps += [f"fleet {word} {flag}" for flag in sorted(_flags(sub))
                     if not _mentions(section, flag)]
    assert not gaps, f"docs/commands.md does not mention: {', '.join(gaps)}"


def _properties(node, found: set[str]) -> set[str]:
    if isinstance(node, dict):
        for name, sub in (node.get("properties") or {}).items():
            found.add(name)
            _properties(sub, found)
        for key, value in node.items():
            if key != "properties":
                _properties(value, found)
    elif isinstance(node, list):
        for item in node:
            _properties(item, found)
    return found


SCHEMAS = sorted((ROOT / "controller" / "schemas").glob("*.schema.json"))


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda p: p.name)
def test_every_schema_field_is_in_repository_md(schema):
    fields = _properties(json.loads(schema.read_text(encoding="utf-8")), set())
    assert fields, f"{schema.name}: no properties found"
    gaps = missing(fields, page("repository.md"))
    assert not gaps, f"docs/repository.md does not mention {schema.name} fields: {gaps}"


def test_every_state_is_in_states_md():
    gaps = missing((s.value for s in State), page("states.md"))
    assert not gaps, f"docs/states.md does not mention the states {gaps}"


def test_every_config_key_is_in_config_md():
    gaps = missing(config.KEYS | config.SSH_KEYS, page("config.md"))
    assert not gaps, f"docs/config.md does not mention the config keys {gaps}"


def test_every_prompt_placeholder_output_format_and_outcome_is_in_runs_md():
    from controller.executors import parsers
    text = page("runs.md")
    agent = json.loads((ROOT / "controller" / "schemas" / "agent.schema.json").read_text())
    gaps = missing(prompt.PLACEHOLDERS, text, "`${}`")
    gaps += missing(agent["properties"]["output"]["enum"], text)
    gaps += missing(parsers.OUTCOMES, text)
    assert not gaps, f"docs/runs.md does not mention {sorted(set(gaps))}"


def _text_files():
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if any(part in SKIP_DIRS or part.endswith(".egg-info") for part in rel.parts):
            continue
        if path.is_file() and not path.is_symlink() and path.suffix not in (".pyc", ".png"):
            try:
                yield rel, path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue


def test_no_file_links_outside_the_repository():
    outside = "../" + "shared"      # spelled apart so this file does not match itself
    hits = [str(rel) for rel, text in _text_files() if outside in text]
    assert not hits, f"these files refer to {outside}/, which a clone does not have: {hits}"


LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_markdown_links_resolve_inside_the_repository():
    broken = []
    for md in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        for target in LINK.findall(md.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            dest = (md.parent / target.split("#", 1)[0]).resolve()
            if not dest.exists() or ROOT not in (dest, *dest.parents):
                broken.append(f"{md.relative_to(ROOT)}: {target}")
    assert not broken, f"links that lead nowhere in the repository: {broken}"


def test_docs_index_links_every_page_and_the_readme_links_the_index():
    index = page("README.md")
    pages = [p.name for p in DOCS.glob("*.md") if p.name != "README.md"]
    gaps = [p for p in pages if f"]({p})" not in index]
    assert not gaps, f"docs/README.md does not link {gaps}"
    assert "](docs/README.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
