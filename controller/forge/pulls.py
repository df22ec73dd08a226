"""What Forgejo, Gitea and GitHub share: a PR object's fields and "open it once".

The three forges spell a pull request alike (`number`, `html_url`, `state`,
`merged`, `merge_commit_sha`, `head.{ref,sha,repo}`, `base.{ref,repo}`), so
one set of readers turns their JSON into our types. `open_once` is the
idempotent open every client uses: look, create, and on "already exists"
look again. Called by forgejo.py and github.py; no IO of its own.
"""
from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

from controller.forge.base import ForgeError, ForgePR, ForgeReview, PRState, PRStatus
from controller.forge.repos import RepoRef, matches_full_name
from controller.forge.transport import Transport


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def to_status(data: Any, what: str) -> PRStatus:
    """A PRStatus from a PR object; ForgeError (permanent) when it is not one."""
    pr = _dict(data)
    number = pr.get("number")
    if not isinstance(number, int) or isinstance(number, bool):
        raise ForgeError(f"{what}: the answer is not a pull request", transient=False)
    head, base = _dict(pr.get("head")), _dict(pr.get("base"))
    # A GitHub list item has no `merged`, only `merged_at`.
    merged = bool(pr.get("merged")) or bool(pr.get("merged_at"))
    state = PRState.OPEN if pr.get("state") == "open" and not merged else PRState.CLOSED
    return PRStatus(
        number=number, state=state, merged=merged,
        merge_commit_sha=(_text(pr.get("merge_commit_sha")) or None) if merged else None,
        head_ref=_text(head.get("ref")), head_sha=_text(head.get("sha")),
        base_ref=_text(base.get("ref")), html_url=_text(pr.get("html_url")))


def to_pr(data: Any, what: str) -> ForgePR:
    """A ForgePR from a PR object."""
    status = to_status(data, what)
    return ForgePR(number=status.number, html_url=status.html_url,
                   head_ref=status.head_ref, base_ref=status.base_ref, state=status.state)


def is_ours(data: Any, repo: RepoRef, head_branch: str, base: str) -> bool:
    """Whether a PR object is open, from `head_branch` of `repo` itself, into `base`.

    A fork's branch of the same name does not count: the head repository must
    be the base repository (by full name, or by id where the forge gives ids).
    """
    pr = _dict(data)
    head, base_info = _dict(pr.get("head")), _dict(pr.get("base"))
    if pr.get("state") != "open" or pr.get("merged") or pr.get("merged_at"):
        return False
    if head.get("ref") != head_branch or base_info.get("ref") != base:
        return False
    head_repo, base_repo = _dict(head.get("repo")), _dict(base_info.get("repo"))
    full_name = _text(head_repo.get("full_name"))
    if full_name:
        return matches_full_name(repo, full_name)
    head_id, base_id = head.get("repo_id"), base_info.get("repo_id")
    if head_id is not None and head_id == base_id:
        return True
    return head_repo.get("id") is not None and head_repo.get("id") == base_repo.get("id")


def first_ours(items: Iterable[Any], repo: RepoRef, head_branch: str, base: str,
               what: str) -> ForgePR | None:
    """The lowest-numbered PR in `items` that `is_ours`, or None."""
    ours = [to_pr(item, what) for item in items if is_ours(item, repo, head_branch, base)]
    return min(ours, key=lambda pr: pr.number) if ours else None


def open_once(find: Callable[[bool], ForgePR | None], create: Callable[[], ForgePR | None],
              what: str) -> ForgePR:
    """Return the open PR, creating it only when none is open.

    `find(thorough)` looks (thorough: by the slowest, surest way); `create()`
    returns the new PR, or None when the forge said one already exists. A
    create that was sent but whose answer was lost is found by the next
    call's first look, so retrying never opens a second PR.
    """
    existing = find(False)
    if existing is not None:
        return existing
    created = create()
    if created is not None:
        return created
    again = find(True)
    if again is not None:
        return again
    raise ForgeError(f"{what}: the forge says a pull request already exists, "
                     "but no open one was found for that head and base", transient=True)


# ---- the calls Forgejo, Gitea and GitHub spell the same way ---------------------

def repo_path(repo: RepoRef) -> str:
    """`/repos/OWNER/REPO`, each part quoted."""
    return f"/repos/{urllib.parse.quote(repo.owner, safe='')}/{urllib.parse.quote(repo.name, safe='')}"


def comment(http: Transport, repo: RepoRef, number: int, body: str) -> None:
    """Comment on PR `number`: a PR is an issue with the same index on all three."""
    http.request("POST", f"{repo_path(repo)}/issues/{number}/comments", body={"body": body})


def pr_status(http: Transport, repo: RepoRef, number: int, forge: str) -> PRStatus:
    """The state of PR `number` now."""
    answer = http.request("GET", f"{repo_path(repo)}/pulls/{number}")
    return to_status(answer.data, f"{forge}: PR {number} of {repo.full_name}")


def reviews(http: Transport, repo: RepoRef, number: int, read: Callable[[dict[str, Any]], ForgeReview],
            *, size_param: str, size: int) -> list[ForgeReview]:
    """Every review of PR `number`, oldest first, each read by the forge's own `read`."""
    found: list[ForgeReview] = []
    for page in http.pages(f"{repo_path(repo)}/pulls/{number}/reviews", {},
                           size_param=size_param, size=size):
        found.extend(read(item) for item in page if isinstance(item, dict))
    return found
