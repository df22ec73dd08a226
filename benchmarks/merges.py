"""What noticing merges costs: 200 review_pending tasks on one target repository.

`python -m benchmarks.merges [--tasks 200] [--files 2000]`. Builds (with git
fast-import, in a temporary directory) a target repository whose main holds
`--files` files and one `task/<id>` branch per task, each changing a file of its
own, then times Targets.merged() for: the first pass (fetch into an empty cache,
then every check), a pass where nothing moved, a pass after main moved by one
unrelated commit (every pair asked again), and a pass after a squash merge of
one task (which it must notice). The last line is the figures as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from controller.observe import merges
from controller.observe.merges import MergeCheck, Targets

ENV = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.invalid",
       "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@example.invalid",
       "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def git(*args: str, cwd: Path, input: bytes | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=ENV, input=input, check=True,
                          capture_output=True).stdout.decode()


def build(root: Path, tasks: int, files: int) -> tuple[Path, dict[str, str]]:
    """A bare repository: main with `files` files in 20 folders, and task/t<n> off it."""
    remote = root / "target.git"
    git("init", "-q", "--bare", "--initial-branch=main", str(remote), cwd=root)
    out = []

    def data(text: str) -> None:
        raw = text.encode()
        out.append(f"data {len(raw)}\n".encode() + raw + b"\n")

    out.append(b"commit refs/heads/main\nmark :1\ncommitter b <b@example.invalid> 0 +0000\n")
    data("initial")
    for n in range(files):
        out.append(f"M 644 inline d{n % 20}/f{n}.txt\n".encode())
        data("".join(f"line {i} of file {n}\n" for i in range(30)))
    for t in range(tasks):
        out.append(f"commit refs/heads/task/t{t}\ncommitter b <b@example.invalid> {t + 1} +0000\n".encode())
        data(f"task t{t}")
        out.append(b"from :1\n")
        n = t % files
        out.append(f"M 644 inline d{n % 20}/f{n}.txt\n".encode())
        data("".join(f"line {i} of file {n}{' (t%d)' % t if i == t % 30 else ''}\n" for i in range(30)))
    git("fast-import", "--quiet", cwd=remote, input=b"".join(out))
    heads = {}
    for line in git("for-each-ref", "--format=%(refname:lstrip=3) %(objectname)",
                    "refs/heads/task/", cwd=remote).splitlines():
        name, sha = line.split()
        heads[name] = sha
    return remote, heads


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return (time.perf_counter() - start) * 1000, value


def count_git(fn) -> tuple[float, object, int]:
    """ms, result and the number of git processes run."""
    calls = [0]
    real = merges.subprocess.run

    def counting(*a, **k):
        calls[0] += 1
        return real(*a, **k)

    merges.subprocess.run = counting
    try:
        ms, value = timed(fn)
    finally:
        merges.subprocess.run = real
    return ms, value, calls[0]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.merges", description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=200)
    p.add_argument("--files", type=int, default=2000)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fleet-bench-merges-") as tmp:
        root = Path(tmp)
        remote, heads = build(root, args.tasks, args.files)
        checks = [MergeCheck(t, str(remote), "main", sha) for t, sha in sorted(heads.items())]
        targets = Targets(root / "cache", min_interval=3600)
        fetch_ms, _ = timed(lambda: targets._fresh(str(remote)))
        targets.refresh()
        cold_ms, done, cold_git = count_git(lambda: targets.merged(checks))
        assert done == set(), done
        idle_ms, _, idle_git = count_git(lambda: targets.merged(checks))

        work = root / "work"
        git("clone", "-q", str(remote), str(work), cwd=root)
        (work / "unrelated.txt").write_text("x\n")
        git("add", "-A", cwd=work)
        git("commit", "-qm", "unrelated", cwd=work)
        git("push", "-q", "origin", "HEAD:main", cwd=work)
        targets.refresh()
        moved_ms, done, moved_git = count_git(lambda: targets.merged(checks))
        assert done == set(), done

        git("merge", "-q", "--squash", "origin/task/t7", cwd=work)
        git("commit", "-qm", "t7 (squashed)", cwd=work)
        git("push", "-q", "origin", "HEAD:main", ":task/t7", cwd=work)
        targets.refresh()
        squash_ms, done, squash_git = count_git(lambda: targets.merged(checks))
        assert done == {"t7"}, done
    figures = {"tasks": args.tasks, "files": args.files, "fetch_ms": fetch_ms,
               "cold_ms": cold_ms, "cold_git": cold_git, "idle_ms": idle_ms, "idle_git": idle_git,
               "moved_ms": moved_ms, "moved_git": moved_git,
               "squash_ms": squash_ms, "squash_git": squash_git}
    n = args.tasks
    print(f"merge checks, {n} review_pending tasks on one repository ({args.files} files):")
    print(f"  first pass   {cold_ms:7.0f} ms  ({cold_git} git runs; its fetch alone {fetch_ms:.0f} ms "
          f"into an empty cache)")
    print(f"  nothing moved{idle_ms:7.1f} ms  ({idle_git} git runs)")
    print(f"  main moved   {moved_ms:7.0f} ms  ({moved_git} git runs with the fetch, {moved_ms / n:.1f} ms a task)")
    print(f"  one squash   {squash_ms:7.0f} ms  ({squash_git} git runs; noticed)")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
