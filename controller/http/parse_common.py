"""The parts of a webhook body that Forgejo, Gitea and GitHub spell alike.

Called by parse_gitea.py and parse_github.py: the repository, a push, and the
pull request's head and base, with the two rules that decide whether a PR can be
a task's at all: its head branch is `task/<id>` with a valid id, and its head
repository is its base repository (a fork's `task/x` is someone else's branch).
"""
from __future__ import annotations

from dataclasses import dataclass

from controller.events import (HEADS_PREFIX, Forge, Ignored, Push, RepoRef,
                               task_id_of_branch)
from controller.http.payload import Doc, integer, obj, opt_integer, opt_text, shown, text


def repo_ref(doc: Doc, path: str = "repository") -> RepoRef:
    return RepoRef(full_name=text(doc, f"{path}.full_name"),
                   clone_url=opt_text(doc, f"{path}.clone_url"),
                   ssh_url=opt_text(doc, f"{path}.ssh_url"),
                   html_url=opt_text(doc, f"{path}.html_url"))


def push(event: str, doc: Doc) -> Push | Ignored:
    """A branch push; a tag push (refs/tags/...) changes no task and is Ignored."""
    ref = text(doc, "ref")
    before, after = text(doc, "before"), text(doc, "after")
    repo = repo_ref(doc)
    if not ref.startswith(HEADS_PREFIX):
        return Ignored(event, f"push of {shown(ref)}, not a branch")
    return Push(repo=repo, ref=ref, before=before, after=after)


@dataclass(frozen=True, slots=True)
class PrBasics:
    """What every PR and review event carries once it is known to be a task's."""
    repo: RepoRef
    number: int
    html_url: str
    task_id: str
    head_ref: str
    head_repo: str
    base_repo: str
    base_ref: str


def pr_basics(forge: Forge, event: str, doc: Doc) -> PrBasics | Ignored:
    """The PR's identity and branches, or Ignored when it cannot be a task's PR."""
    obj(doc, "pull_request")
    repo = repo_ref(doc)
    number = opt_integer(doc, "pull_request.number")
    if number is None:              # older Forgejo bodies carry it only at the top
        number = integer(doc, "number")
    html_url = text(doc, "pull_request.html_url")
    head_ref = text(doc, "pull_request.head.ref")
    base_ref = text(doc, "pull_request.base.ref")
    base_repo = opt_text(doc, "pull_request.base.repo.full_name") or repo.full_name
    head_repo = _head_repo(forge, doc, base_repo)
    if head_repo is None:
        return Ignored(event, f"PR #{number}: its head repository is not the base repository")
    if head_repo.lower() != base_repo.lower():
        return Ignored(event, f"PR #{number}: head {shown(head_repo)} is a fork of {shown(base_repo)}")
    task_id = task_id_of_branch(head_ref)
    if task_id is None:
        return Ignored(event, f"PR #{number}: head branch {shown(head_ref)} is not task/<id>")
    return PrBasics(repo, number, html_url, task_id, head_ref, head_repo, base_repo, base_ref)


def _head_repo(forge: Forge, doc: Doc, base_repo: str) -> str | None:
    """The head repository's full name; None when it must be a (deleted) fork.

    Some Forgejo/Gitea bodies omit `head.repo`; there a fork shows in the label
    (`owner:branch`, the bare branch name for the same repository). GitHub always
    sends it, and sends null only when the fork is gone.
    """
    name = opt_text(doc, "pull_request.head.repo.full_name")
    if name is not None:
        return name
    if forge is Forge.GITHUB:
        return None
    label = opt_text(doc, "pull_request.head.label")
    return None if label is not None and ":" in label else base_repo
