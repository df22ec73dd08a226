"""`allowed_repos` patterns: which target repositories the controller may touch.

The controller config's `allowed_repos` lists URL patterns; when it is set, a
task whose `repo` matches none is blocked (plan/placement) and nothing clones,
fetches or opens a PR on it. Pure string matching, no IO: the planner calls it,
and so may anything else that is about to touch a repository.

A pattern is matched against the repo exactly as the task writes it (any clone
form: `https://host/o/r.git`, `ssh://git@host/o/r`, `git@host:o/r`, a path),
whole and case-sensitively (`/srv/Git` and `/srv/git` are two directories):
  *    any run of characters within one path segment (never `/`)
  **   any run of characters, `/` included
  ?    one character other than `/`
Everything else is literal: there are no `[...]` classes, so a `[` in a URL
means itself. A repo with a `.` or `..` path segment (`%2e` too) never matches, so
`https://forge.example/team/../other/x` cannot slip past `https://forge.example/team/**`.
"""
from __future__ import annotations

import functools
import re
from typing import Iterable

# `.` and `..` segments, also percent-encoded (a server may decode %2e before resolving).
_DOT_SEGMENT_RE = re.compile(r"(^|[/:])(\.|%2e)(\.|%2e)?(/|$)", re.IGNORECASE)


@functools.lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out), re.DOTALL)


def matches(repo: str, pattern: str) -> bool:
    """`repo` matches this one pattern (see the module docstring)."""
    if _DOT_SEGMENT_RE.search(repo):
        return False
    return _compile(pattern).fullmatch(repo) is not None


def allowed(repo: str, patterns: Iterable[str]) -> bool:
    """`repo` may be touched: no patterns at all (the setting is off), or one matches."""
    patterns = tuple(patterns)
    return not patterns or any(matches(repo, p) for p in patterns)
