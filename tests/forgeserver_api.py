"""The scripted forge's API routes: PRs, reviews and comments kept in memory.

`Api.handle` takes one request below the API base, checks it with the spec
(recording problems in `ForgeServer.errors`), checks the token, and answers
as the real forge does, including its refusals: 404 for an unknown repo or
branch, 409 (Forgejo/Gitea) or 422 (GitHub) for a second open PR on the same
head and base, 422 when head and base do not differ. Lists are paged the way
each forge pages them (`limit` up to 50 with X-Total-Count and Link; GitHub
`per_page` up to 100 with Link). Used by tests/forgeserver.py only.
"""
from __future__ import annotations

import hashlib
import urllib.parse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.forgeserver import ForgeServer, Pull, Repo

Reply = tuple[int, Any, dict[str, str]]


class Api:
    """The routes of one ForgeServer."""

    def __init__(self, forge: ForgeServer) -> None:
        self.forge = forge

    def handle(self, method: str, path: str, query: dict[str, list[str]],
               headers: dict[str, str], body: bytes) -> Reply:
        """Answer one API request (path still percent-encoded)."""
        forge, base = self.forge, self.forge.spec.base_path
        if not path.startswith(base + "/"):
            return self._refuse(404, f"{method} {path}: outside the API base {base}")
        checked = forge.spec.check(method, path[len(base):], query, headers, body)
        if checked.route is None:
            return self._refuse(404, *checked.problems)
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() not in ("token", "bearer") or token != forge.token:
            return 401, forge.shapes.error(401, "Bad credentials" if forge.flavour == "github"
                                           else "user does not exist [uid: 0, name: ]"), {}
        if checked.problems:
            return self._refuse(422, *checked.problems)
        params, q = checked.path_params, checked.query
        if checked.route.template == "/version":
            return 200, {"version": "11.0.0+gitea-1.22.0"}, {}
        with forge.lock:
            repo = forge.repo(params["owner"], params["repo"])
            if repo is None:
                return 404, forge.shapes.error(404, "The target couldn't be found."), {}
            return self._route(method, checked.route.template, repo, params, q, checked.body,
                               path)

    def new_pull(self, repo: Repo, head: str, base: str, title: str, body: str) -> Pull:
        """Store a new PR; its number is the repository's next issue index."""
        from tests.forgeserver import Pull
        number = max(repo.pulls, default=0) + 1
        pull = Pull(number, title, body, head, base, last_head_sha=self._sha(repo, head))
        repo.pulls[number] = pull
        return pull

    def _route(self, method: str, template: str, repo: Repo, params: dict[str, str],
               q: dict[str, str], body: Any, path: str) -> Reply:
        number = int(params.get("index") or params.get("pull_number")
                     or params.get("issue_number") or 0)
        if template.endswith("/pulls") and method == "POST":
            return self._create(repo, body)
        if template.endswith("/pulls"):
            return self._list(repo, q, path)
        if template.endswith("/pulls/{base}/{head}"):
            return self._by_base_head(repo, params["base"], params["head"])
        pull = repo.pulls.get(number)
        if pull is None:
            return 404, self.forge.shapes.error(404, "The target couldn't be found."), {}
        if template.endswith("/reviews"):
            items = [self.forge.shapes.review(repo.owner, repo.name, number, r)
                     for r in pull.reviews]
            return self._page(items, q, path)
        if template.endswith("/comments"):
            pull.comments.append(body["body"])
            comment_id = 9000 + len(pull.comments)
            return 201, self.forge.shapes.comment(repo.owner, repo.name, number, comment_id,
                                                  body["body"]), {}
        return 200, self._shape(repo, pull), {}

    def _create(self, repo: Repo, body: dict[str, Any]) -> Reply:
        shapes, github = self.forge.shapes, self.forge.flavour == "github"
        head, base = str(body["head"]), str(body["base"])
        owner, colon, branch = head.rpartition(":")
        if colon and owner.lower() != repo.owner.lower():
            return 404, shapes.error(404, "no forks on the scripted forge"), {}
        head = branch if colon else head
        head_sha, base_sha = self._sha(repo, head), self._sha(repo, base)
        if repo.git_dir is not None and not (repo.git("rev-parse", "-q", "--verify",
                                                      f"refs/heads/{head}")):
            if github:
                return 422, self._validation({"resource": "PullRequest", "field": "head",
                                              "code": "invalid"}), {}
            return 404, shapes.error(404, "The target couldn't be found."), {}
        if head == base or head_sha == base_sha:
            if github:
                return 422, self._validation({"resource": "PullRequest", "code": "custom",
                                              "message": f"No commits between {base} and {head}"}), {}
            return 422, shapes.error(422, "Invalid PullRequest: There are no changes between "
                                          "the head and the base"), {}
        for pull in repo.pulls.values():
            if pull.open and pull.head == head and pull.base == base:
                status, data = shapes.already_exists(pull, repo.id, repo.owner)
                return status, data, {}
        pull = self.new_pull(repo, head, base, str(body["title"]), str(body.get("body") or ""))
        return 201, self._shape(repo, pull), {}

    def _list(self, repo: Repo, q: dict[str, str], path: str) -> Reply:
        github = self.forge.flavour == "github"
        state = q.get("state", "open" if github else "all")  # Forgejo: omitted means all
        pulls = sorted(repo.pulls.values(), key=lambda p: -p.number)
        if state != "all":
            pulls = [p for p in pulls if p.open == (state == "open")]
        head = q.get("head")
        if head is not None and not self.forge.ignore_head_filter:
            branch = head.split(":", 1)[1] if github else head
            pulls = [p for p in pulls if p.head == branch]
        base = q.get("base") or q.get("base_branch")
        if base is not None:
            pulls = [p for p in pulls if p.base == base]
        return self._page([self._shape(repo, p) for p in pulls], q, path)

    def _by_base_head(self, repo: Repo, base: str, head: str) -> Reply:
        branch = head.split(":", 1)[-1].split(":")[-1]
        # No ORDER BY upstream: the oldest match, in any state, like a table scan.
        for number in sorted(repo.pulls):
            pull = repo.pulls[number]
            if pull.base == base and pull.head == branch:
                return 200, self._shape(repo, pull), {}
        return 404, self.forge.shapes.error(404, "The target couldn't be found."), {}

    def _page(self, items: list[Any], q: dict[str, str], path: str) -> Reply:
        github = self.forge.flavour == "github"
        size_param, default, cap = ("per_page", 30, 100) if github else ("limit", 30, 50)
        size = min(max(int(q.get(size_param, default)), 1), cap)
        page = max(int(q.get("page", 1)), 1)
        last = max((len(items) + size - 1) // size, 1)
        headers = {"X-Total-Count": str(len(items))}
        links = []

        def link(n: int, rel: str) -> str:
            query = urllib.parse.urlencode({**q, "page": n, size_param: size})
            return f'<{self.forge.url}{path}?{query}>; rel="{rel}"'
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        if page > 1:
            links += [link(1, "first"), link(page - 1, "prev")]
        if links:
            headers["Link"] = (", " if github else ",").join(links)
        return 200, items[(page - 1) * size:page * size], headers

    def _shape(self, repo: Repo, pull: Pull) -> dict[str, Any]:
        head_sha = self._sha(repo, pull.head) if pull.open else pull.last_head_sha
        pull.last_head_sha = head_sha or pull.last_head_sha
        return self.forge.shapes.pull(repo.owner, repo.name, repo.id, pull, head_sha,
                                      self._sha(repo, pull.base))

    def _sha(self, repo: Repo, branch: str) -> str:
        found = repo.git("rev-parse", "-q", "--verify", f"refs/heads/{branch}")
        return found or hashlib.sha1(f"{repo.name}:{branch}".encode()).hexdigest()

    def _validation(self, error: dict[str, str]) -> dict[str, Any]:
        return {"message": "Validation Failed", "errors": [error], "status": "422",
                "documentation_url":
                    "https://docs.github.com/rest/pulls/pulls#create-a-pull-request"}

    def _refuse(self, status: int, *problems: str) -> Reply:
        with self.forge.lock:
            self.forge.errors.extend(problems)
        message = "; ".join(problems)
        return status, self.forge.shapes.error(status, message), {}
