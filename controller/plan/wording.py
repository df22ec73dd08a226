"""Phrases the planner's messages share (planner.py and forge_events.py). Pure."""
from __future__ import annotations

from controller.model import Task


def rerun_hint(task: Task) -> str:
    """What starts a failed task again: a failed status is final until a person acts."""
    return f"; set rerun: in tasks/{task.id}.yaml to any new value to start it again"


def lead_line(text: str) -> str:
    """The first line once the text's outer blanks are trimmed. Not text.first_line:
    a multi-line text keeps its first line's trailing blanks here, and no limit."""
    stripped = text.strip()
    return stripped.splitlines()[0] if stripped else ""
