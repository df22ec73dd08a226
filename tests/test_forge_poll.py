"""observe/forge_poll.py: a PR read from the API becomes the webhooks' ForgeFacts, with
the same review ids, so a review seen both ways counts once."""
from datetime import datetime, timezone

import pytest

from controller.engine.facts import review_id
from controller.events import RepoRef as EventRepo
from controller.events import Review, ReviewKind
from controller.forge import ForgeReview, PRState, PRStatus, RepoRef, ReviewState
from controller.model import ForgeChange, PullRequest
from controller.observe.forge_poll import poll_pr

NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)
REPO = RepoRef("forge.test", 443, "team", "app")
PR = PullRequest(3, "https://forge.test/team/app/pulls/3")


class FakeForge:
    def __init__(self, kind, status, reviews):
        self.kind, self._status, self._reviews = kind, status, reviews

    def pr_status(self, repo, number):
        return self._status

    def reviews(self, repo, number):
        return self._reviews


def status(state=PRState.OPEN, merged=False):
    return PRStatus(3, state, merged, "abc" if merged else None, "task/fix", "h", "main", PR.url)


def review(state, rid=11, official=True, **kw):
    return ForgeReview(rid, "carol", state, "Please rename x.", f"{PR.url}#r{rid}", official, **kw)


def test_forgejo_review_ids_match_their_webhooks_and_official_is_write_access():
    forge = FakeForge("forgejo", status(), [review(ReviewState.CHANGES_REQUESTED),
                                           review(ReviewState.COMMENTED, 12),
                                           review(ReviewState.DISMISSED, 13),
                                           review(ReviewState.APPROVED, 14, official=False)])
    calls = []
    facts = poll_pr(forge, REPO, PR, NOW, lambda: calls.append(1))
    assert [f.change for f in facts] == [ForgeChange.CHANGES_REQUESTED, ForgeChange.APPROVED]
    assert [f.write_access for f in facts] == [True, False] and len(calls) == 2
    hook = Review(EventRepo("team/app"), ReviewKind.CHANGES_REQUESTED, 3, PR.url, "fix", "carol",
                  "x", body="Please rename x.")
    assert facts[0].review.id == review_id(hook)


def test_github_review_ids_are_the_forges_and_association_travels():
    forge = FakeForge("github", status(), [review(ReviewState.CHANGES_REQUESTED, 77,
                                                  association="MEMBER")])
    (fact,) = poll_pr(forge, REPO, PR, NOW, lambda: None)
    assert fact.review.id == "77" and fact.association == "MEMBER" and fact.write_access is None


@pytest.mark.parametrize("st,change", [(status(PRState.CLOSED, merged=True), ForgeChange.PR_MERGED),
                                       (status(PRState.CLOSED), ForgeChange.PR_CLOSED)])
def test_merged_and_closed_prs(st, change):
    (fact,) = poll_pr(FakeForge("gitea", st, []), REPO, PR, NOW, lambda: None)
    assert fact.change == change and fact.pr == PR


def test_stale_reviews_are_about_an_older_head_and_skipped():
    forge = FakeForge("forgejo", status(), [review(ReviewState.CHANGES_REQUESTED, stale=True)])
    assert poll_pr(forge, REPO, PR, NOW, lambda: None) == []
