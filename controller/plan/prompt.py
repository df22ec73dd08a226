"""Build the prompt an agent receives for one attempt of a task.

Called by the engine when it starts a run (ssh mode) and by the HTTP dequeue
route (pull mode). The template language (PLACEHOLDERS, `check_template`)
lives in desired/template.py: a template's syntax is a property of the
fleet.yaml that holds it, checked where that file is read. The prompt is Markdown and deterministic: the same inputs
always give the same bytes, so prompts can be snapshot-tested and diffed.

Templates use `string.Template` syntax: `$name` or `${name}`, and `$$` for a
literal dollar sign. Agent commands spell their placeholders `{name}`
(rundir.py); a template that writes a placeholder of its own that way
(`{goal}`, `{{ goal }}`) is refused, since it would reach the agent as literal
text. Values are substituted once and never re-read as template
text, so a `$` inside a goal or a review note is harmless. After substitution,
runs of blank lines are collapsed to one, so a section that is empty for this
attempt (no constraints, no feedback) leaves no gap.

Placeholders (PLACEHOLDERS holds the same list):
  title, task_id, goal, repo, branch, base, attempt    plain values
  constraints       bulleted list of the constraints, or ""
  validation        fenced block of the validation commands, or ""
  feedback          numbered list of reviewers' notes, oldest first, or ""
  previous_summary  the previous result's summary, or ""
  previous_failure  why the previous attempt failed, or ""
  constraints_section, validation_section, delivery_section,
  revision_section, retry_section
                    each a "## Heading" plus its body, or "" when it does not apply

The default template (DEFAULT_TEMPLATE) is the sections in order: title, goal,
constraints, validation, repository and delivery, reviewer feedback (on a
revision: feedback given or a previous result), previous failure (on a retry).
"""
from __future__ import annotations

import re
import string
from typing import Sequence

from controller.desired.template import PLACEHOLDERS as PLACEHOLDERS  # re-exported: the list lives with the check
from controller.desired.template import check_template as check_template
from controller.model import Result, Task

DEFAULT_TEMPLATE = """\
# $title

Task `$task_id`, attempt $attempt.

## Goal

$goal

$constraints_section

$validation_section

$delivery_section

$revision_section

$retry_section
"""

FEEDBACK_HEADING = "## Reviewer feedback"   # demo_agent finds the notes under it
RETRY_HEADING = "## Why the previous attempt failed"

def build_prompt(task: Task, *, repo: str, branch: str, base: str, attempt: int,
                 feedback: Sequence[str] = (), previous_result: Result | None = None,
                 previous_failure: str = "", template: str | None = None) -> str:
    """The prompt for `attempt` of `task`, from `template` or DEFAULT_TEMPLATE."""
    template = DEFAULT_TEMPLATE if template is None else template
    check_template(template)
    values = _values(task, repo=repo, branch=branch, base=base, attempt=attempt,
                     feedback=feedback, previous_result=previous_result,
                     previous_failure=previous_failure)
    text = string.Template(template).substitute(values)
    return _tidy(text)


def _values(task: Task, *, repo: str, branch: str, base: str, attempt: int,
            feedback: Sequence[str], previous_result: Result | None,
            previous_failure: str) -> dict[str, str]:
    summary = (previous_result.summary if previous_result else "").strip()
    values = {
        "title": _one_line(task.title),
        "task_id": task.id,
        "goal": task.goal.strip(),
        "repo": repo,
        "branch": branch,
        "base": base,
        "attempt": str(attempt),
        "constraints": _bullets(task.constraints),
        "validation": _fenced([c.strip() for c in task.validation if c.strip()]),
        "feedback": _numbered(feedback),
        "previous_summary": summary,
        "previous_failure": previous_failure.strip(),
    }
    values["constraints_section"] = _section("## Constraints", values["constraints"])
    values["validation_section"] = _section(
        "## Validation",
        values["validation"] and "Before you finish, make every one of these commands "
        "pass, run from the repository root:\n\n" + values["validation"])
    values["delivery_section"] = _delivery(repo, branch, base)
    values["revision_section"] = _revision(values["feedback"], summary)
    values["retry_section"] = _section(
        RETRY_HEADING,
        values["previous_failure"] and "The previous attempt did not succeed:\n\n"
        f"{_quoted(values['previous_failure'])}\n\nFind the cause and avoid it this time.")
    return values


def _delivery(repo: str, branch: str, base: str) -> str:
    return _section("## Repository and delivery", "\n".join([
        f"- You are in a checkout of `{repo}`, on the branch `{branch}` (from `{base}`).",
        f"- Commit your work on `{branch}`. The controller pushes it when you finish and "
        "asks for a review.",
        "- Do not push, create, switch to or rewrite any other branch.",
        "- When you are done, reply with a short summary of what you changed and how "
        "you validated it.",
    ]))


def _revision(feedback: str, summary: str) -> str:
    if not feedback and not summary:
        return ""
    parts = ["This is a revision of work already on the branch."]
    if feedback:
        parts.append("Reviewers asked for these changes (oldest first, newest last); "
                     "address every one:\n\n" + feedback)
    if summary:
        parts.append("Your previous result said:\n\n" + _quoted(summary))
    return _section(FEEDBACK_HEADING, "\n\n".join(parts))


def _section(heading: str, body: str) -> str:
    return f"{heading}\n\n{body}" if body else ""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _indent_rest(text: str, pad: str) -> str:
    """Indent continuation lines so a multi-line entry stays inside its list item."""
    lines = text.strip().split("\n")
    return "\n".join([lines[0]] + [pad + line if line.strip() else "" for line in lines[1:]])


def _bullets(items: Sequence[str]) -> str:
    return "\n".join(f"- {_indent_rest(i, '  ')}" for i in items if i.strip())


def _numbered(items: Sequence[str]) -> str:
    kept = [i for i in items if i.strip()]
    return "\n".join(f"{n}. {_indent_rest(i, ' ' * len(f'{n}. '))}"
                     for n, i in enumerate(kept, 1))


def _fenced(lines: Sequence[str]) -> str:
    """A ```sh block whose fence is longer than any backtick run in the commands."""
    if not lines:
        return ""
    body = "\n".join(lines)
    longest = max((len(m) for m in re.findall(r"`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}sh\n{body}\n{fence}"


def _quoted(text: str) -> str:
    return "\n".join(f"> {line}" if line.strip() else ">" for line in text.strip().split("\n"))


def _tidy(text: str) -> str:
    """Collapse blank-line runs left by empty sections; end with one newline."""
    text = "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n") + "\n"
