"""Pull requests on Forgejo and Gitea (API v1), one client with two flavours.

The two forges share the API read from their sources (see
tests/data/reference/forgejo-api/README.md) and differ where it matters here:
- Forgejo lists PRs with `?head=BRANCH&base=BRANCH` (since v16; older ones
  drop the filter silently, so every list is filtered here as well);
- Gitea has no `head` filter and calls its base filter `base_branch`; it
  answers `GET /pulls/{base}/{head}` with a PR in any state, so a closed
  answer means "look through the open list".
Both answer a duplicate create with 409 and list with `page`/`limit` (at
most 50). Made by controller.forge.factory; called by the engine in threads.
"""
from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from controller import __version__
from controller.forge.base import ForgeError, ForgePR, ForgeReview, PRStatus, ReviewState
from controller.forge import pulls
from controller.forge.pulls import first_ours, is_ours, open_once, to_pr
from controller.forge.repos import RepoRef
from controller.forge.transport import Secret, Transport

PAGE_LIMIT = 50  # the servers' MaxResponseItems: a bigger limit is cut to this

_REVIEW_STATES = {
    "APPROVED": ReviewState.APPROVED,
    "REQUEST_CHANGES": ReviewState.CHANGES_REQUESTED,
    "COMMENT": ReviewState.COMMENTED,
    "PENDING": ReviewState.PENDING,
    "REQUEST_REVIEW": ReviewState.REVIEW_REQUESTED,
}


def _q(part: str, safe: str = "") -> str:
    return urllib.parse.quote(part, safe=safe)


class ForgejoForge:
    """A Forgejo (flavour "forgejo") or Gitea (flavour "gitea") server."""

    def __init__(self, url: str, api_url: str | None, token: Secret, *,
                 flavour: str = "forgejo", timeout: float = 20.0,
                 clock: Callable[[], float] = time.time) -> None:
        if flavour not in ("forgejo", "gitea"):
            raise ValueError(f"unknown flavour {flavour!r}: forgejo or gitea")
        self._flavour = flavour
        self._web_url = url.rstrip("/")
        headers = {"Accept": "application/json", "User-Agent": f"fleet/{__version__}"}
        self._http = Transport(api_url or self._web_url + "/api/v1", headers, token,
                               kind=flavour, auth_scheme="token", timeout=timeout, clock=clock)

    def __repr__(self) -> str:
        return f"ForgejoForge({self._flavour}, {self._http.api_url!r})"

    @property
    def kind(self) -> str:
        """"forgejo" or "gitea"."""
        return self._flavour

    @property
    def web_url(self) -> str:
        """The forge's web address."""
        return self._web_url

    def find_open_pr(self, repo: RepoRef, head_branch: str, base: str) -> ForgePR | None:
        """The open PR from `head_branch` into `base`, or None."""
        return self._find(repo, head_branch, base, thorough=False)

    def open_pr(self, repo: RepoRef, head_branch: str, base: str, title: str,
                body: str) -> ForgePR:
        """Open the PR once; a 409 "already exists" means "find it"."""
        what = f"{self._flavour}: open PR {head_branch} -> {base} on {repo.full_name}"

        def create() -> ForgePR | None:
            answer = self._http.request(
                "POST", self._repo(repo) + "/pulls", accept=(409,),
                body={"head": head_branch, "base": base, "title": title, "body": body})
            return None if answer.status == 409 else to_pr(answer.data, what)

        return open_once(lambda thorough: self._find(repo, head_branch, base, thorough),
                         create, what)

    def comment(self, repo: RepoRef, number: int, body: str) -> None:
        pulls.comment(self._http, repo, number, body)

    def pr_status(self, repo: RepoRef, number: int) -> PRStatus:
        return pulls.pr_status(self._http, repo, number, self._flavour)

    def reviews(self, repo: RepoRef, number: int) -> list[ForgeReview]:
        return pulls.reviews(self._http, repo, number, _review, size_param="limit",
                             size=PAGE_LIMIT)

    def _repo(self, repo: RepoRef) -> str:
        return pulls.repo_path(repo)

    def _find(self, repo: RepoRef, head_branch: str, base: str,
              thorough: bool) -> ForgePR | None:
        what = f"{self._flavour}: find PR {head_branch} -> {base} on {repo.full_name}"
        if self._flavour == "gitea" and not thorough and "/" not in base:
            # The route is /pulls/{base}/* so the head may hold slashes; the base may not.
            answer = self._http.request(
                "GET", f"{self._repo(repo)}/pulls/{_q(base)}/{_q(head_branch, safe='/')}",
                accept=(404,))
            if answer.status == 404:
                return None
            if is_ours(answer.data, repo, head_branch, base):
                return to_pr(answer.data, what)
            # An old closed PR for the same branches: an open one may exist besides.
        query: dict[str, str | int] = {"state": "open"}
        if self._flavour == "forgejo":
            query.update(head=head_branch, base=base)
        else:
            query["base_branch"] = base
        for page in self._http.pages(self._repo(repo) + "/pulls", query,
                                     size_param="limit", size=PAGE_LIMIT):
            found = first_ours(page, repo, head_branch, base, what)
            if found is not None:
                return found
        return None


def _review(item: dict[str, Any]) -> ForgeReview:
    user = item.get("user")
    login = str(user.get("login") or user.get("username") or "") if isinstance(user, dict) else ""
    state = _REVIEW_STATES.get(str(item.get("state") or ""), ReviewState.UNKNOWN)
    if item.get("dismissed"):
        state = ReviewState.DISMISSED
    review_id = item.get("id")
    if not isinstance(review_id, int):
        raise ForgeError("forgejo: a review without an id", transient=False)
    return ForgeReview(
        id=review_id, author=login,
        state=state, body=str(item.get("body") or ""), html_url=str(item.get("html_url") or ""),
        official=bool(item.get("official")), commit_id=str(item.get("commit_id") or ""),
        submitted_at=str(item.get("submitted_at") or ""), stale=bool(item.get("stale")))
