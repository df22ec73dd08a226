"""Push to dispatch: a person's `git push` of a new task until its agent has started.

`python -m benchmarks.dispatch [--sizes 1000,10000] [--rounds 10,5] [--poll-rounds 3,2]`.
For each size the cached generated repository (genrepo) is copied to a scratch
bare repository, and a person's clone of it makes one setup commit: the hosts'
workdirs move into the scratch directory and both agent profiles become a tiny
agent that prints one line at once (no model, no commit, so nothing is pushed
to the target repositories). A real `fleet run` subprocess (local hosts,
`poll_interval: 10s`, `listen` on 127.0.0.1 port 0) then reconciles it; once its
status commits have settled, each round the person commits one new task and
runs `git push`; the clock starts when the push returns and stops when the
run's `output` file (<workdir>/runs/<run_id>/output) holds its first byte,
polled every 2 ms. With the webhook, a signed Forgejo push for the fleet
repository is posted right after the push; without it the controller finds the
commit at its next poll. The controller's log lines are timestamped as they
arrive, to say where the time goes. The last line is the figures as JSON.
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from . import genrepo

SECRET = "bench-secret-0a9c"
POLL = "10s"
STEP_S = 0.002
SERVING = re.compile(r"serving listen on http://([\d.]+):(\d+)")
QUICK_AGENT = ('name: {name}\ncommand: [sh, -c, "echo agent started; cat >/dev/null"]\n'
               'prompt: stdin\noutput: raw\n')
GIT_ENV = {**genrepo.GIT_ENV, "GIT_AUTHOR_NAME": "Pat Person", "GIT_AUTHOR_EMAIL": "pat@example.invalid",
           "GIT_COMMITTER_NAME": "Pat Person", "GIT_COMMITTER_EMAIL": "pat@example.invalid"}


def git(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, capture_output=True, text=True,
                          timeout=120)
    if check and proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args[:2])} failed: {proc.stderr.strip()}")
    return proc


def wait_for(pred, timeout: float, step: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return False


class Controller:
    """`fleet run` as a subprocess; its stderr lines kept with their arrival times."""

    def __init__(self, repo: Path, root: Path) -> None:
        config = root / "controller.yaml"
        config.write_text(f"state_dir: {root / 'state'}\npoll_interval: {POLL}\n"
                          f"listen: 127.0.0.1:0\nwebhook_secret: {SECRET}\n")
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        env.pop("FLEET_WEBHOOK_SECRET", None)
        self.lines: list[tuple[float, str]] = []
        self.proc = subprocess.Popen([sys.executable, "-m", "controller", "run", "--repo", str(repo),
                                      "--config", str(config)], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        if not wait_for(lambda: self.addr is not None or self.proc.poll() is not None, 60):
            raise RuntimeError("fleet run did not start serving within 60 s")
        if self.addr is None:
            raise RuntimeError("fleet run exited:\n" + "".join(l for _, l in self.lines[-20:]))

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append((time.monotonic(), line))

    @property
    def addr(self) -> tuple[str, int] | None:
        for _, line in list(self.lines):
            if m := SERVING.search(line):
                return m[1], int(m[2])
        return None

    def first(self, text: str, after: float) -> float | None:
        """When the first line containing `text` arrived after `after`."""
        return next((t for t, line in list(self.lines) if t >= after and text in line), None)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def post_push(addr: tuple[str, int], repo: Path, delivery: str, before: str, after: str) -> int:
    """A signed Forgejo push of main for the bare repository `repo` (matched by its path)."""
    body = json.dumps({"ref": "refs/heads/main", "before": before, "after": after,
                       "repository": {"full_name": "/".join(repo.parts[-2:]), "clone_url": str(repo),
                                      "html_url": None, "ssh_url": None},
                       "pusher": {"login": "pat"}, "commits": []}).encode()
    headers = {"X-Forgejo-Event": "push", "X-Forgejo-Delivery": delivery,
               "X-Forgejo-Signature": hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
               "Content-Type": "application/json"}
    conn = http.client.HTTPConnection(*addr, timeout=15)
    try:
        conn.request("POST", "/api/v1/webhooks/forgejo", body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def setup(size: int, root: Path) -> tuple[Path, Path, Path]:
    """(bare fleet repo, the person's clone, the hosts' parent dir), the setup commit pushed."""
    bare = root / "fleet" / "fleet.git"
    shutil.copytree(genrepo.ensure(size, log=lambda m: print(m, file=sys.stderr)), bare)
    work = root / "person"
    git("clone", "-q", str(bare), str(work), cwd=root)
    hosts = root / "hosts"
    for path in sorted((work / "hosts").glob("*.yaml")):
        text = re.sub(r"(?m)^workdir: .*$", f"workdir: {hosts / path.stem}", path.read_text())
        path.write_text(text)
    for name in genrepo.AGENTS:
        (work / "agents" / f"{name}.yaml").write_text(QUICK_AGENT.format(name=name))
    git("commit", "-qam", "benchmark: local workdirs, an agent that prints one line at once", cwd=work)
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    return bare, work, hosts


def settle(bare: Path, quiet_s: float = 4.0, timeout: float = 120.0) -> None:
    """Wait (bounded) until the controller has made no status commit for quiet_s."""
    last, since = "", time.monotonic()
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        tip = git("rev-parse", "main", cwd=bare).stdout
        if tip != last:
            last, since = tip, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.2)
    print(f"note: status commits still coming after {timeout:.0f} s; measuring anyway", file=sys.stderr)


def task_yaml(task: str, target: str) -> str:
    return (f"id: {task}\ntitle: Benchmark task {task}\nagent: codex\ngoal: |\n  Print one line.\n"
            f"repo: {target}\nbase: main\npriority: 4\n")


def push_task(work: Path, task: str, target: str) -> tuple[float, str, str]:
    """The person's commit of tasks/<task>.yaml and `git push`; (when it returned, before, after)."""
    for _ in range(10):       # the controller's status commits may land first: rebase and again
        git("pull", "-q", "--rebase", "origin", "main", cwd=work)
        before = git("rev-parse", "HEAD", cwd=work).stdout.strip()
        path = work / "tasks" / f"{task}.yaml"
        if not path.exists():
            path.write_text(task_yaml(task, target))
            git("add", str(path), cwd=work)
            git("commit", "-qm", f"add {task}", cwd=work)
        else:
            before = git("rev-parse", "HEAD~1", cwd=work).stdout.strip()
        proc = git("push", "-q", "origin", "HEAD:main", cwd=work, check=False)
        done = time.monotonic()
        if proc.returncode == 0:
            return done, before, git("rev-parse", "HEAD", cwd=work).stdout.strip()
        git("reset", "-q", "--hard", "HEAD~1", cwd=work)
        path.unlink(missing_ok=True)
    raise RuntimeError(f"could not push {task} in 10 tries")


def first_output(hosts: Path, task: str, timeout: float) -> float | None:
    """When a run of `task` first has output; None after `timeout`."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for out in hosts.glob(f"*/runs/{task}-*/output"):
            try:
                if out.stat().st_size > 0:
                    return time.monotonic()
            except FileNotFoundError:
                pass
        time.sleep(STEP_S)
    return None


def measure(size: int, rounds: int, poll_rounds: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="fleet-bench-dispatch-") as tmp:
        root = Path(tmp)
        bare, work, hosts = setup(size, root)
        target = genrepo.ensure_targets()[0][0]
        c = Controller(bare, root)
        try:
            settle(bare)
            out: dict = {"size": size}
            for mode, n in (("webhook", rounds), ("poll", poll_rounds)):
                samples, parts = [], []
                for k in range(n):
                    task = f"bench-{mode}-{k}"
                    t0, before, after = push_task(work, task, target)
                    if mode == "webhook" and post_push(c.addr, bare, f"bench-{k}", before, after) != 200:
                        raise RuntimeError("the webhook was not accepted")
                    t1 = first_output(hosts, task, timeout=30.0)
                    if t1 is None:
                        raise RuntimeError(f"{task} did not start within 30 s of its push")
                    samples.append((t1 - t0) * 1000)
                    heard = c.first("push to the fleet repository", t0) if mode == "webhook" else t0
                    committed = c.first(f"{task}: ", t0)
                    if heard is not None and committed is not None:
                        parts.append(((heard - t0) * 1000, (committed - heard) * 1000,
                                      (t1 - committed) * 1000))
                    settle(bare, quiet_s=1.0, timeout=30.0)
                out[mode] = {"samples_ms": samples, "p50_ms": statistics.median(samples),
                             "p99_ms": pct(samples, 0.99)}
                if parts:
                    out[mode]["parts_ms"] = [statistics.median(p[i] for p in parts) for i in range(3)]
            return out
        finally:
            c.stop()


def pct(values: list[float], q: float) -> float:
    """The q-quantile by nearest rank; with few samples, p99 is the largest."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def table(results: list[dict]) -> str:
    head = (f"{'tasks':>8}  {'webhook p50 ms':>15}  {'webhook p99 ms':>15}  "
            f"{'poll-only p50 ms':>17}  {'poll-only p99 ms':>17}")
    lines = [head, "-" * len(head)]
    for r in results:
        w, p = r["webhook"], r["poll"]
        verdict = "PASS" if w["p50_ms"] <= 100 else "MISS"
        lines.append(f"{r['size']:>8,}  {w['p50_ms']:>10.0f} {verdict}  {w['p99_ms']:>15.0f}  "
                     f"{p['p50_ms']:>17.0f}  {p['p99_ms']:>17.0f}")
    lines.append(f"{'target':>8}  {'<= 100':>15}   (rounds: webhook "
                 f"{'/'.join(str(len(r['webhook']['samples_ms'])) for r in results)}, poll-only "
                 f"{'/'.join(str(len(r['poll']['samples_ms'])) for r in results)}; poll_interval {POLL})")
    for r in results:
        if "parts_ms" in r["webhook"]:
            a, b, c = r["webhook"]["parts_ms"]
            lines.append(f"{r['size']:>8,}  webhook, medians: push returned -> webhook on record {a:.0f} ms, "
                         f"-> status commit of the assignment {b:.0f} ms (fetch, diff, parse, plan, commit, "
                         f"push), -> agent's first output {c:.0f} ms (run dir, wrapper, workspace clone)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.dispatch", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1000,10000")
    p.add_argument("--rounds", default="10,5", help="webhook rounds per size")
    p.add_argument("--poll-rounds", default="3,2", help="polling-only rounds per size")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    rounds = [int(s) for s in args.rounds.split(",")]
    polls = [int(s) for s in args.poll_rounds.split(",")]
    results = []
    for i, size in enumerate(sizes):
        print(f"push to dispatch at {size:,} tasks ...", file=sys.stderr, flush=True)
        results.append(measure(size, rounds[min(i, len(rounds) - 1)], polls[min(i, len(polls) - 1)]))
    print("push to dispatch (git push returned -> the run's first output), a real `fleet run`, "
          "local hosts:")
    print(table(results))
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
