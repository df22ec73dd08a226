"""The prompt template language: which placeholders exist and what a valid template is.

A property of the desired input: desired/builder.py calls `check_template` on
fleet.yaml's `prompt_template`, so a bad template blocks fleet.yaml with a
message, and plan/prompt.py checks again before it substitutes (the default
template included). The syntax is described in plan/prompt.py's docstring.
"""
from __future__ import annotations

import re
import string

PLACEHOLDERS = (
    "title", "task_id", "goal", "repo", "branch", "base", "attempt",
    "constraints", "validation", "feedback", "previous_summary", "previous_failure",
    "constraints_section", "validation_section", "delivery_section",
    "revision_section", "retry_section",
)


def check_template(template: str) -> None:
    """Raise ValueError when `template` has bad syntax or an unknown placeholder."""
    if not template.strip():
        raise ValueError("prompt template is empty")
    tmpl = string.Template(template)
    if not tmpl.is_valid():
        raise ValueError(f"prompt template has a bad placeholder near {_bad_spot(tmpl)} "
                         "(use $name or ${name}, and $$ for a dollar sign); "
                         f"placeholders: {', '.join(PLACEHOLDERS)}")
    unknown = [name for name in tmpl.get_identifiers() if name not in PLACEHOLDERS]
    if unknown:
        raise ValueError(f"prompt template uses unknown placeholder ${unknown[0]}; "
                         f"placeholders: {', '.join(PLACEHOLDERS)}")
    braced = _braced_placeholder(template)
    if braced:
        name, written = braced
        raise ValueError(f"prompt template placeholders are spelled $name or ${{name}}: "
                         f"use ${name}, not {written}")


# `{goal}` or `{{ goal }}` not preceded by `$`: the agent-command or Jinja spelling.
_BRACED_RE = re.compile(r"(?<!\$)(\{\{?\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}?)")


def _braced_placeholder(template: str) -> tuple[str, str] | None:
    """(name, as written) of the first placeholder spelled in braces without `$`."""
    for match in _BRACED_RE.finditer(template):
        if match.group(2) in PLACEHOLDERS:
            return match.group(2), match.group(1)
    return None


def _bad_spot(tmpl: string.Template) -> str:
    """The text around the first `$` that string.Template cannot read."""
    for match in tmpl.pattern.finditer(tmpl.template):
        if match.group("invalid") is not None:
            start = match.start()          # the `$` itself
            line = tmpl.template.count("\n", 0, start) + 1
            return f"{tmpl.template[start:start + 12]!r} on line {line}"
    return "'$'"
