"""Signed webhook deliveries into the real HTTP app and the engine's own journal.

`python -m benchmarks.webhooks [--deliveries 1000] [--senders 16] [--duplicates 0.1]`.
make_app() is served by the real Server (waitress) on 127.0.0.1:0; its Sink is
the engine's EngineSink handing each delivery to the engine's Inbox on an
asyncio loop in a thread, which journals it (fsync) as `fleet run` does, minus
the passes. `--senders` threads post `--deliveries` signed Forgejo push bodies,
about `--duplicates` of them re-sending an earlier delivery id. Afterwards every
id answered `accepted` must be in the journal (else it is lost) and every other
answer for it must be `{"duplicate": true}`. The last line is the figures as JSON.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import http.client
import json
import logging
import random
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from controller.engine.inbox import Inbox
from controller.engine.journal import Journal
from controller.engine.sink import EngineSink
from controller.http.app import make_app
from controller.http.deps import AppDeps, HealthReport
from controller.http.server import Listener, Server

SECRET = "bench-secret-0a9c"
TIMEOUT_S = 15.0


def sign(body: bytes) -> str:
    """Forgejo's X-Forgejo-Signature: the bare hex HMAC-SHA256 of the body."""
    return hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def push_body(n: int) -> bytes:
    """A Forgejo push to task/t<n> of an unrelated repository: it reaches the Sink."""
    return json.dumps({
        "ref": f"refs/heads/task/t{n}", "before": "0" * 40, "after": f"{n:040x}",
        "repository": {"full_name": "team/app", "clone_url": "http://forge.invalid/team/app.git",
                       "html_url": "http://forge.invalid/team/app"},
        "pusher": {"login": "pat"}, "commits": []}).encode()


def post(addr: tuple[str, int], delivery: str, body: bytes) -> tuple[int, dict, float]:
    """(status, answer, seconds) of one signed delivery on a new connection."""
    headers = {"X-Forgejo-Event": "push", "X-Forgejo-Delivery": delivery,
               "X-Forgejo-Signature": sign(body), "Content-Type": "application/json"}
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection(*addr, timeout=TIMEOUT_S)
    try:
        conn.request("POST", "/api/v1/webhooks/forgejo", body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    return resp.status, json.loads(data) if data else {}, time.perf_counter() - t0


def plan(total: int, dup_share: float, seed: int = 7) -> list[str]:
    """The delivery ids in sending order: new ones, and ~dup_share re-sends of earlier ones."""
    rng = random.Random(seed)
    ids: list[str] = []
    fresh = 0
    for _ in range(total):
        if fresh and rng.random() < dup_share:
            ids.append(f"d{rng.randrange(fresh)}")
        else:
            ids.append(f"d{fresh}")
            fresh += 1
    return ids


def run(total: int, senders: int, dup_share: float) -> dict:
    logging.getLogger("fleet").setLevel(logging.WARNING)
    logging.getLogger("waitress").setLevel(logging.ERROR)   # "Task queue depth" notes
    with tempfile.TemporaryDirectory(prefix="fleet-bench-webhooks-") as tmp:
        state = Path(tmp)
        loop = asyncio.new_event_loop()
        looper = threading.Thread(target=loop.run_forever, daemon=True)
        looper.start()
        journal = Journal(state)
        inbox = Inbox(journal, str(state / "fleet.git"), "main")
        deps = AppDeps(sink=EngineSink(inbox.accept, loop), health=lambda: HealthReport(1.0, 10.0),
                       state_dir=state, webhook_secret=SECRET)
        server = Server([Listener("listen", "127.0.0.1:0", make_app(deps), max_body=deps.max_body,
                                  threads=senders)])
        server.start()
        try:
            addr = server.addresses()["listen"]
            ids = plan(total, dup_share)
            t0 = time.perf_counter()
            with ThreadPoolExecutor(senders) as pool:
                replies = list(pool.map(lambda d: (d, *post(addr, d, push_body(int(d[1:])))), ids))
            wall = time.perf_counter() - t0
        finally:
            server.close()
            loop.call_soon_threadsafe(loop.stop)
            looper.join(5)
        journaled = {json.loads(line)["delivery_id"] for line in journal.path.read_text().splitlines()}
    accepted = [d for d, status, answer, _ in replies if status == 200 and answer.get("accepted")]
    dups = [d for d, status, answer, _ in replies if status == 200 and answer.get("duplicate")]
    others = [(d, s, a) for d, s, a, _ in replies if not (s == 200 and (a.get("accepted") or a.get("duplicate")))]
    lat = sorted(sec * 1000 for *_, sec in replies)
    figures = {
        "deliveries": total, "senders": senders, "unique": len(set(ids)),
        "duplicates_sent": total - len(set(ids)), "duplicates_recognised": len(dups),
        "accepted_twice": len(accepted) - len(set(accepted)),
        "lost": len(set(accepted) - journaled), "failed": len(others),
        "per_s": total / wall, "p50_ms": statistics.median(lat),
        "p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))], "wall_s": wall}
    if others:
        print(f"unexpected answers, first: {others[0]}", file=sys.stderr)
    return figures


def report(f: dict) -> str:
    ok = (f["lost"] == 0 and f["failed"] == 0 and f["accepted_twice"] == 0
          and f["duplicates_recognised"] == f["duplicates_sent"])
    return (f"webhook deliveries, {f['deliveries']:,} signed from {f['senders']} concurrent senders "
            f"(journaled with fsync by the engine's inbox):\n"
            f"  {f['per_s']:.0f} deliveries/s, p50 {f['p50_ms']:.1f} ms, p99 {f['p99_ms']:.1f} ms; "
            f"lost {f['lost']}, failed {f['failed']}; duplicates recognised "
            f"{f['duplicates_recognised']} of {f['duplicates_sent']} sent"
            f"{'' if ok else '  MISS'}")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.webhooks", description=__doc__.splitlines()[0])
    p.add_argument("--deliveries", type=int, default=1000)
    p.add_argument("--senders", type=int, default=16)
    p.add_argument("--duplicates", type=float, default=0.1, help="share of re-sent delivery ids")
    args = p.parse_args(argv)
    figures = run(args.deliveries, args.senders, args.duplicates)
    print(report(figures))
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
