"""Pull requests on GitHub (and GitHub Enterprise Server) over the REST API.

Facts from tests/data/reference/github-api/README.md: every request carries
`Accept: application/vnd.github+json`, `X-GitHub-Api-Version: 2022-11-28`, a
User-Agent and `Authorization: Bearer`; the `head` filter needs the
`OWNER:BRANCH` form; a duplicate create is a 422 "Validation Failed" whose
`errors[].message` says "A pull request already exists"; lists page with
`per_page` (up to 100) and a `Link` header. Review verdicts arrive in upper
case, and a reviewer's standing is `author_association`. Made by
controller.forge.factory; called by the engine in threads.
"""
from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from controller import __version__
from controller.forge.base import ForgeError, ForgePR, ForgeReview, PRStatus, ReviewState
from controller.forge import pulls
from controller.forge.pulls import first_ours, open_once, to_pr
from controller.forge.repos import RepoRef
from controller.forge.transport import Secret, Transport

API_VERSION = "2022-11-28"
PER_PAGE = 100
WRITE_ASSOCIATIONS = frozenset({"OWNER", "MEMBER", "COLLABORATOR"})
_REVIEW_STATES = {s.value: s for s in (
    ReviewState.APPROVED, ReviewState.CHANGES_REQUESTED, ReviewState.COMMENTED,
    ReviewState.DISMISSED, ReviewState.PENDING)}


def default_api_url(url: str) -> str:
    """https://api.github.com for github.com; HOST/api/v3 for GitHub Enterprise Server."""
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    if host in ("github.com", "www.github.com"):
        return "https://api.github.com"
    return url.rstrip("/") + "/api/v3"


class GitHubForge:
    """github.com or a GitHub Enterprise Server."""

    def __init__(self, url: str, api_url: str | None, token: Secret, *,
                 timeout: float = 20.0, clock: Callable[[], float] = time.time) -> None:
        self._web_url = url.rstrip("/")
        headers = {"Accept": "application/vnd.github+json",
                   "X-GitHub-Api-Version": API_VERSION,
                   "User-Agent": f"fleet/{__version__}"}
        self._http = Transport(api_url or default_api_url(url), headers, token,
                               kind="github", auth_scheme="Bearer", timeout=timeout,
                               clock=clock)

    def __repr__(self) -> str:
        return f"GitHubForge({self._http.api_url!r})"

    @property
    def kind(self) -> str:
        """Always "github"."""
        return "github"

    @property
    def web_url(self) -> str:
        """The forge's web address."""
        return self._web_url

    def find_open_pr(self, repo: RepoRef, head_branch: str, base: str) -> ForgePR | None:
        """The open PR from `head_branch` of `repo` itself into `base`, or None."""
        what = f"github: find PR {head_branch} -> {base} on {repo.full_name}"
        query: dict[str, str | int] = {"state": "open", "head": f"{repo.owner}:{head_branch}",
                                       "base": base}
        for page in self._http.pages(self._repo(repo) + "/pulls", query,
                                     size_param="per_page", size=PER_PAGE):
            found = first_ours(page, repo, head_branch, base, what)
            if found is not None:
                return found
        return None

    def open_pr(self, repo: RepoRef, head_branch: str, base: str, title: str,
                body: str) -> ForgePR:
        """Open the PR once; the 422 "already exists" means "find it"."""
        what = f"github: open PR {head_branch} -> {base} on {repo.full_name}"

        def create() -> ForgePR | None:
            answer = self._http.request(
                "POST", self._repo(repo) + "/pulls", accept=(422,),
                body={"title": title, "head": head_branch, "base": base, "body": body})
            if answer.status != 422:
                return to_pr(answer.data, what)
            if _already_exists(answer.data):
                return None
            raise self._http.error("POST", self._repo(repo) + "/pulls", answer)

        return open_once(lambda thorough: self.find_open_pr(repo, head_branch, base),
                         create, what)

    def comment(self, repo: RepoRef, number: int, body: str) -> None:
        pulls.comment(self._http, repo, number, body)

    def pr_status(self, repo: RepoRef, number: int) -> PRStatus:
        return pulls.pr_status(self._http, repo, number, "github")

    def reviews(self, repo: RepoRef, number: int) -> list[ForgeReview]:
        return pulls.reviews(self._http, repo, number, _review, size_param="per_page",
                             size=PER_PAGE)

    def _repo(self, repo: RepoRef) -> str:
        return pulls.repo_path(repo)


def _errors(data: Any) -> list[str]:
    items = data.get("errors") if isinstance(data, dict) else None
    return [str(e.get("message") or e.get("code") or "") if isinstance(e, dict) else str(e)
            for e in items or []]


def _already_exists(data: Any) -> bool:
    return any("already exists" in message.lower() for message in _errors(data))


def _review(item: dict[str, Any]) -> ForgeReview:
    user = item.get("user")
    login = str(user.get("login") or "") if isinstance(user, dict) else ""
    association = str(item.get("author_association") or "")
    review_id = item.get("id")
    if not isinstance(review_id, int):
        raise ForgeError("github: a review without an id", transient=False)
    return ForgeReview(
        id=review_id, author=login,
        state=_REVIEW_STATES.get(str(item.get("state") or "").upper(), ReviewState.UNKNOWN),
        body=str(item.get("body") or ""), html_url=str(item.get("html_url") or ""),
        official=association in WRITE_ASSOCIATIONS, association=association,
        commit_id=str(item.get("commit_id") or ""),
        submitted_at=str(item.get("submitted_at") or ""))
