"""The scripted forge's answers, built from bodies the real forges sent.

Each answer starts from a recorded object (Forgejo: a PR from code.forgejo.org;
Gitea: PRs and reviews from gitea.com; GitHub: the `pull_request` and
`review` objects of its webhook bodies, which are the REST shapes), with the
recorded site and repository names rewritten to the scripted forge's, and
then only the fields that carry state changed: number, head, base, state,
merged, shas, review verdicts. So a client reads exactly the shape the real
forge answers with. Used by tests/forgeserver.py.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data"
EXAMPLES = DATA / "reference" / "forgejo-api" / "examples"
GITHUB = DATA / "fixtures" / "github-webhooks"
# (file, the recorded site, the recorded OWNER/REPO) of each template.
_PULL = {
    "forgejo": (EXAMPLES / "forgejo_pulls_list_code.forgejo.org.json", "https://code.forgejo.org",
                "Gusted/agit-test"),
    "gitea": (EXAMPLES / "gitea_pulls_list_page1_limit3_gitea.com.json", "https://gitea.com",
              "gitea/test_repo"),
}
_REVIEWS = EXAMPLES / "gitea_pull_reviews_gitea.com.json"
STAMP = "2026-01-01T00:00:00Z"


def _load(path: Path, site: str, full_name: str, web_url: str, new_full: str,
          api_url: str | None = None) -> Any:
    text = path.read_text()
    if api_url is not None:
        text = text.replace("https://api.github.com", api_url)
    owner, name = full_name.split("/")
    new_owner, new_name = new_full.split("/")
    text = text.replace(site + "/", web_url + "/").replace(full_name, new_full)
    text = text.replace(f'"{owner}"', f'"{new_owner}"').replace(f'"{name}"', f'"{new_name}"')
    return json.loads(text)


class Shapes:
    """Answer bodies for one flavour at one address."""

    def __init__(self, flavour: str, web_url: str, api_url: str) -> None:
        self.flavour = flavour
        self.web_url = web_url
        self.api_url = api_url

    def pull(self, owner: str, name: str, repo_id: int, pr: Any, head_sha: str,
             base_sha: str) -> dict[str, Any]:
        """A PR object for `pr` (a forgeserver.Pull)."""
        full = f"{owner}/{name}"
        if self.flavour == "github":
            body = _load(GITHUB / "pull_request.opened.json", "https://github.com",
                         "Codertocat/Hello-World", self.web_url, full, self.api_url)
            data: dict[str, Any] = body["pull_request"]
            html = f"{self.web_url}/{full}/pull/{pr.number}"
            data.update(url=f"{self.api_url}/repos/{full}/pulls/{pr.number}",
                        issue_url=f"{self.api_url}/repos/{full}/issues/{pr.number}")
            data["head"]["label"] = f"{owner}:{pr.head}"
        else:
            path, site, recorded = _PULL[self.flavour]
            data = _load(path, site, recorded, self.web_url, full)[0]
            html = f"{self.web_url}/{full}/pulls/{pr.number}"
            data.update(url=html, diff_url=html + ".diff", patch_url=html + ".patch")
            data["head"]["label"] = pr.head
            data["base"]["label"] = pr.base
            for side in ("head", "base"):
                data[side]["repo_id"] = repo_id
            data["merge_base"] = base_sha
        for side in ("head", "base"):
            data[side]["repo"]["id"] = repo_id
            data[side]["repo"]["full_name"] = full
        data["head"].update(ref=pr.head, sha=head_sha)
        data["base"].update(ref=pr.base, sha=base_sha)
        data.update(id=1000 + pr.number, number=pr.number, title=pr.title, body=pr.body,
                    html_url=html, state="closed" if pr.closed else "open", merged=pr.merged,
                    merged_at=STAMP if pr.merged else None,
                    merge_commit_sha=pr.merge_commit_sha,
                    closed_at=STAMP if pr.closed else None, draft=False)
        return data

    def review(self, owner: str, name: str, number: int, review: Any) -> dict[str, Any]:
        """A review object for `review` (a forgeserver.Review)."""
        full = f"{owner}/{name}"
        if self.flavour == "github":
            data: dict[str, Any] = _load(
                GITHUB / "pull_request_review.submitted.json", "https://github.com",
                "Codertocat/Hello-World", self.web_url, full, self.api_url)["review"]
            html = f"{self.web_url}/{full}/pull/{number}#pullrequestreview-{review.id}"
            data.update(author_association=review.association,
                        pull_request_url=f"{self.api_url}/repos/{full}/pulls/{number}")
        else:
            data = _load(_REVIEWS, "https://gitea.com", "gitea/test_repo", self.web_url, full)[0]
            html = f"{self.web_url}/{full}/pulls/{number}#issuecomment-{review.id}"
            data.update(official=review.official, dismissed=review.dismissed,
                        stale=review.stale, pull_request_url=f"{self.web_url}/{full}/pulls/{number}")
        data["user"].update(login=review.user, id=abs(hash(review.user)) % 10_000)
        if "username" in data["user"]:
            data["user"]["username"] = review.user
        data.update(id=review.id, state=review.state, body=review.body, html_url=html,
                    commit_id=review.commit_id, submitted_at=STAMP)
        return data

    def comment(self, owner: str, name: str, number: int, comment_id: int,
                body: str) -> dict[str, Any]:
        """A comment object, with the fields the Comment definition lists."""
        full = f"{owner}/{name}"
        kind = "pull" if self.flavour == "github" else "pulls"
        data: dict[str, Any] = {
            "id": comment_id, "body": body,
            "html_url": f"{self.web_url}/{full}/{kind}/{number}#issuecomment-{comment_id}",
            "issue_url": f"{self.web_url}/{full}/issues/{number}",
            "user": {"id": 1, "login": "fleet-bot"}, "created_at": STAMP, "updated_at": STAMP}
        if self.flavour == "github":
            data.update(url=f"{self.api_url}/repos/{full}/issues/comments/{comment_id}",
                        author_association="COLLABORATOR")
        else:
            data.update(pull_request_url=f"{self.web_url}/{full}/pulls/{number}",
                        original_author="", original_author_id=0, assets=[])
        return data

    def error(self, status: int, message: str) -> dict[str, Any]:
        """An error body: Forgejo's APIError, or GitHub's message + documentation_url."""
        if self.flavour == "github":
            return {"message": message, "documentation_url": "https://docs.github.com/rest",
                    "status": str(status)}
        body: dict[str, Any] = {"message": message, "url": f"{self.web_url}/api/swagger"}
        if status == 404:
            body["errors"] = [message]
        return body

    def already_exists(self, pr: Any, repo_id: int, owner: str) -> tuple[int, dict[str, Any]]:
        """The answer to a create whose head and base already have an open PR."""
        if self.flavour == "github":
            return 422, {
                "message": "Validation Failed",
                "errors": [{"resource": "PullRequest", "code": "custom",
                            "message": f"A pull request already exists for {owner}:{pr.head}."}],
                "documentation_url":
                    "https://docs.github.com/rest/pulls/pulls#create-a-pull-request",
                "status": "422"}
        message = (f"pull request already exists for these targets [id: {1000 + pr.number}, "
                   f"issue_id: {pr.number}, head_repo_id: {repo_id}, base_repo_id: {repo_id}, "
                   f"head_branch: {pr.head}, base_branch: {pr.base}]")
        return 409, self.error(409, message)
