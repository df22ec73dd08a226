"""`make bench`: measure each size in a fresh subprocess and print the table of figures.

`python -m benchmarks [--sizes 1000,10000,100000] [--repeat 5] [--profile PHASE]
[--fanout/--merges/--webhooks yes|no|only]`.
Repositories are generated once (genrepo) and cached under .cache/bench/; each
size is then measured by `python -m benchmarks.scale` in its own process, so its
peak RSS is its own and not the generator's or another size's.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

from . import genrepo

# The targets at 100k tasks: (column, limit, unit).
TARGETS = {"cold": 10.0, "change": 50.0, "commit": 300.0, "rss": 600.0}
TARGET_SIZE = 100_000


def run_size(size: int, repeat: int, profile: str | None) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.scale", "--size", str(size), "--repeat", str(repeat)]
    if profile:
        cmd += ["--profile", profile]
    # stderr (progress, profiles) passes through; stdout's last line is the figures.
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"measuring {size:,} tasks failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def verdict(value: float, limit: float) -> str:
    return "PASS" if value <= limit else "MISS"


def table(results: list[dict]) -> str:
    head = (f"{'tasks':>8}  {'cold start s':>14}  {'one-change ms (fetch + rest)':>32}  "
            f"{'1k-commit ms':>14}  {'peak RSS MB':>13}")
    lines = [head, "-" * len(head)]
    for r in results:
        change = r["change_ms"]
        cells = [f"{r['cold']['total_s']:.2f}",
                 f"{change:.0f} ({r['change_fetch_ms']:.0f} + {change - r['change_fetch_ms']:.0f})",
                 f"{r['commit_ms']:.0f}", f"{r['rss_mb']:.0f}"]
        if r["size"] == TARGET_SIZE:
            values = (r["cold"]["total_s"], change, r["commit_ms"], r["rss_mb"])
            cells = [f"{c} {verdict(v, lim)}" for c, v, lim in zip(cells, values, TARGETS.values())]
        lines.append(f"{r['size']:>8,}  {cells[0]:>14}  {cells[1]:>32}  {cells[2]:>14}  {cells[3]:>13}")
    t = TARGETS
    lines.append(f"{'target':>8}  {'<= ' + str(int(t['cold'])):>14}  {'<= ' + str(int(t['change'])):>32}  "
                 f"{'<= ' + str(int(t['commit'])):>14}  {'<= ' + str(int(t['rss'])):>13}"
                 f"   (at {TARGET_SIZE:,} tasks)")
    return "\n".join(lines)


# The steps of a pass in order, with the step that holds each nested one.
STEPS = ("fetch", "changes", "parse specs", "read statuses", "load statuses", "observe", "plan",
         "status commit")
INSIDE = {"merge checks": "observe", "push": "status commit"}


def breakdown(steps: dict[str, float], total: float, fmt: str) -> str:
    """'fetch 1.2, ..., observe 3.4 (merge checks 3.0), ..., other 0.1' from the laps."""
    parts = []
    for name in STEPS:
        if name not in steps:
            continue
        inner = [f"{n} {steps[n]:{fmt}}" for n, outer in INSIDE.items() if outer == name and n in steps]
        parts.append(f"{name} {steps[name]:{fmt}}" + (f" ({', '.join(inner)})" if inner else ""))
    other = total - sum(steps.get(n, 0) for n in STEPS)
    return ", ".join(parts + [f"other {other:{fmt}}"])


def details(results: list[dict]) -> str:
    """Where the time goes, per size: enough to tell the owner which step to look at."""
    out = []
    for r in results:
        cold = r["cold"]
        out.append(f"{r['size']:>8,}  cold start s: {breakdown(cold['steps_s'], cold['total_s'], '.2f')}; "
                   f"planned {cold['focus']:,} tasks, {cold['actions']} actions")
        out.append(f"{'':>8}  one-change ms: {breakdown(r['change_steps_ms'], r['change_ms'], '.1f')}")
        out.append(f"{'':>8}  1k-commit ms: push {r['commit_push_ms']:.0f} of {r['commit_ms']:.0f} "
                   f"(statusfile.dumps of the 1,000 statuses, not included: {r['dumps_ms']:.0f}); "
                   f"peak RSS by the end of the run {r['rss_end_mb']:.0f} MB")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1000,10000,100000",
                   help="comma-separated task counts (default: %(default)s)")
    p.add_argument("--repeat", type=int, default=5,
                   help="repetitions of the one-change pass and the 1k commit; the median is shown")
    p.add_argument("--profile", choices=("cold", "reconcile", "commit"),
                   help="print a cProfile of that phase (on stderr) for every size")
    p.add_argument("--fanout", choices=("yes", "no", "only"), default="yes",
                   help="also (or only) the SSH fan-out against Ansible and asyncssh (benchmarks/fanout.py)")
    p.add_argument("--merges", choices=("yes", "no", "only"), default="yes",
                   help="also (or only) the merge checks of 200 review_pending tasks (benchmarks/merges.py)")
    p.add_argument("--webhooks", choices=("yes", "no", "only"), default="no",
                   help="also (or only) signed deliveries and push-to-dispatch through a real "
                        "`fleet run` (benchmarks/webhooks.py, benchmarks/dispatch.py); opt-in: 2 to 3.5 minutes")
    args = p.parse_args(argv)
    if args.webhooks == "only":
        return webhooks_section()
    if args.merges == "only":
        return merges_section()
    if args.fanout == "only":
        return fanout_section()
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    for size in sizes:
        genrepo.ensure(size, log=lambda m: print(m, file=sys.stderr, flush=True))
    results = [run_size(size, args.repeat, args.profile) for size in sizes]
    print()
    print(table(results))
    print()
    print("where the time goes (the median run of each):")
    print(details(results))
    if args.fanout == "yes":
        fanout_section()
    if args.merges == "yes":
        merges_section()
    if args.webhooks == "yes":
        webhooks_section()


def fanout_section() -> None:
    """benchmarks/fanout.py in its own process; its report goes straight to stdout."""
    print()
    proc = subprocess.run([sys.executable, "-m", "benchmarks.fanout"], stdout=subprocess.PIPE, text=True)
    lines = proc.stdout.strip().splitlines()
    print("\n".join(lines[:-1]) if proc.returncode == 0 else
          f"fan-out: failed (exit {proc.returncode}); run python -m benchmarks.fanout to see why")


def merges_section() -> None:
    """benchmarks/merges.py in its own process; its report, without the JSON line."""
    print()
    proc = subprocess.run([sys.executable, "-m", "benchmarks.merges"], stdout=subprocess.PIPE, text=True)
    lines = proc.stdout.strip().splitlines()
    print("\n".join(lines[:-1]) if proc.returncode == 0 else
          f"merge checks: failed (exit {proc.returncode}); run python -m benchmarks.merges to see why")


def webhooks_section() -> None:
    """benchmarks/webhooks.py, then benchmarks/dispatch.py, each in its own process."""
    for module, what in (("benchmarks.webhooks", "webhook deliveries"),
                         ("benchmarks.dispatch", "push to dispatch")):
        print()
        proc = subprocess.run([sys.executable, "-m", module], stdout=subprocess.PIPE, text=True)
        lines = proc.stdout.strip().splitlines()
        print("\n".join(lines[:-1]) if proc.returncode == 0 else
              f"{what}: failed (exit {proc.returncode}); run python -m {module} to see why")


if __name__ == "__main__":
    main()
