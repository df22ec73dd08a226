"""The engine's webhook side in process: journal, facts, inbox and sink (no HTTP)."""
import asyncio
import threading
from datetime import datetime, timezone

import pytest

from controller.engine.facts import facts_for, is_fleet_push, repo_matches, review_id
from controller.engine.inbox import Inbox
from controller.engine.journal import Journal, key_of
from controller.engine.sink import EngineSink
from controller.events import (Forge, PrAction, Push, PullRequestEvent, RepoRef, Review,
                               ReviewKind, WebhookDelivery)
from controller.model import ForgeChange, Task

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
FORGE = "http://127.0.0.1:3000"
REPO = RepoRef("Team/App", clone_url=f"{FORGE}/Team/App.git", html_url=f"{FORGE}/Team/App",
               ssh_url="git@127.0.0.1:Team/App.git")
TASKS = {"t": Task("t", "T", "demo", "g", repo=f"{FORGE}/team/app.git")}


def delivery(event, did="d1", forge=Forge.FORGEJO, name="pull_request"):
    return WebhookDelivery(forge, did, name, AT, event)


def pr(action=PrAction.OPENED, merged=False, repo=REPO, task="t"):
    return PullRequestEvent(repo=repo, action=action, merged=merged, number=3,
                            html_url=f"{FORGE}/Team/App/pulls/3", task_id=task,
                            head_ref=f"task/{task}", head_repo="Team/App", base_repo="Team/App",
                            base_ref="main")


def review(kind=ReviewKind.CHANGES_REQUESTED, **kw):
    return Review(repo=REPO, kind=kind, pr_number=3, pr_url=f"{FORGE}/Team/App/pulls/3",
                  task_id="t", reviewer="alice", html_url=f"{FORGE}/Team/App/pulls/3",
                  body="fix it", **kw)


def test_the_journal_keeps_every_kind_across_a_restart_and_drops_what_was_applied(tmp_path):
    journal = Journal(tmp_path)
    items = [delivery(pr(), "a"), delivery(review(author_association="OWNER", review_id=9), "b"),
             delivery(Push(REPO, "refs/heads/task/t", "0" * 40, "1" * 40), "c", Forge.GITHUB)]
    for d in items:
        journal.append(d)
    with open(journal.path, "a") as out:
        out.write('{"key": "torn')             # a crash mid-append
    assert Journal(tmp_path).read() == items
    journal.drop({key_of(items[0]), key_of(items[2])})
    assert Journal(tmp_path).read() == [items[1]]
    assert "torn" not in journal.path.read_text()


@pytest.mark.parametrize("task_repo,event_repo,ok", [
    (f"{FORGE}/team/app.git", REPO, True),
    (f"{FORGE}/Team/App", REPO, True),
    ("ssh://git@127.0.0.1:2222/TEAM/app.git", REPO, True),      # SSH: the host is enough
    ("git@127.0.0.1:team/app.git", REPO, True),
    ("http://127.0.0.1:3001/team/app.git", REPO, False),          # another port
    ("http://other.example:3000/team/app.git", REPO, False),
    (f"{FORGE}/team/other.git", REPO, False),
    ("/srv/git/team/app.git", REPO, False),                       # a local path has no forge
    (f"{FORGE}/team/app.git", RepoRef("Team/App"), False),        # no URL to compare the host
])
def test_an_event_counts_only_for_the_tasks_own_repo(task_repo, event_repo, ok):
    assert repo_matches(task_repo, event_repo) is ok


def test_fleet_pushes_are_recognised_by_url_path_or_owner_and_name():
    push = Push(RepoRef("ops/fleet", clone_url="/srv/ops/fleet.git"), "refs/heads/main", "a", "b")
    assert is_fleet_push(delivery(push), "/srv/ops/fleet.git", "main")
    assert not is_fleet_push(delivery(push), "/srv/ops/fleet.git", "status")
    by_name = Push(RepoRef("Ops/Fleet", clone_url="http://forge/Ops/Fleet.git"), "refs/heads/main",
                   "a", "b")
    assert is_fleet_push(delivery(by_name), "/var/lib/forge/ops/fleet.git", "main")
    assert is_fleet_push(delivery(by_name), "http://forge/ops/fleet.git", "main")
    assert not is_fleet_push(delivery(by_name), "http://forge:8080/ops/fleet.git", "main")
    assert not is_fleet_push(delivery(pr()), "/srv/ops/fleet.git", "main")


def test_facts_are_made_for_existing_tasks_of_the_right_repo_only():
    wrong = RepoRef("Team/App", clone_url="http://elsewhere/Team/App.git")
    facts = facts_for([delivery(pr()), delivery(pr(PrAction.CLOSED, merged=True), "2"),
                       delivery(pr(repo=wrong), "3"), delivery(pr(task="nope"), "4"),
                       delivery(review(ReviewKind.COMMENTED), "5")], TASKS, None)
    assert [f.change for f in facts["t"]] == [ForgeChange.PR_OPENED, ForgeChange.PR_MERGED]
    assert set(facts) == {"t"}


def test_a_forgejo_review_gets_a_stable_id_and_a_github_one_its_own():
    assert review_id(review()) == review_id(review()) and review_id(review()).startswith("sha256:")
    assert review_id(review(review_id=77)) == "77"


def test_the_inbox_journals_dedupes_wakes_and_reads_back(tmp_path):
    async def scenario():
        inbox = Inbox(Journal(tmp_path), "/srv/fleet.git", "main")
        waiting = asyncio.create_task(inbox.wait(30))
        await inbox.accept(delivery(pr()))
        await asyncio.wait_for(waiting, 2)             # woken, not after 30s
        await inbox.accept(delivery(pr()))             # a replay: no second entry
        keys, facts = inbox.take(TASKS)
        assert len(keys) == 1 and len(facts["t"]) == 1
        again = Inbox(Journal(tmp_path), "/srv/fleet.git", "main")   # a restart
        await again.load()
        assert again.take(TASKS)[0] == keys
        await inbox.applied(keys)
        await inbox.accept(delivery(pr()))             # applied already: still a no-op
        assert inbox.take(TASKS)[0] == []
        fresh = Inbox(Journal(tmp_path), "/srv/fleet.git", "main")
        await fresh.load()
        assert fresh.take(TASKS)[0] == []
    asyncio.run(scenario())


def test_the_sink_hands_over_to_the_loop_and_refuses_when_it_is_gone(tmp_path):
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    inbox = Inbox(Journal(tmp_path), "/srv/fleet.git", "main")
    sink = EngineSink(inbox.accept, loop, timeout=5)
    sink.record(delivery(pr()))                        # from this (non-loop) thread
    assert len(Journal(tmp_path).read()) == 1          # on record when record() returned
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    with pytest.raises(RuntimeError, match="not running"):
        sink.record(delivery(pr(), "2"))
    loop.close()
