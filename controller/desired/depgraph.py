"""The depends_on graph of the desired state, kept up to date change by change.

Used by desired.DesiredBuilder: it says which tasks sit on a dependency cycle
(with the path, for the message) and which tasks a change can affect, so one
edited task file rechecks its dependents only, not all 100k tasks. Pure Python.
"""
from __future__ import annotations

import builtins
from typing import Iterator

# Inside the class body `set` names the method DependsOn.set, so its annotations
# spell the builtin type as builtins.set.


class DependsOn:
    """The depends_on graph, and which tasks sit on a cycle, kept up to date per change."""

    def __init__(self) -> None:
        self.edges: dict[str, tuple[str, ...]] = {}   # only tasks that depend on something
        self.dependents: dict[str, set[str]] = {}     # id -> tasks listing it (may not exist)
        self.exists: set[str] = set()
        self.cycles: dict[str, str] = {}              # task id -> "a -> b -> a"

    def set(self, tid: str, deps: tuple[str, ...], exists: bool) -> bool:
        """Record a task's edges; True when its edges or its existence changed."""
        old, was = self.edges.get(tid, ()), tid in self.exists
        (self.exists.add if exists else self.exists.discard)(tid)
        if old == deps:
            return was != exists
        for d in old:
            self.dependents[d].discard(tid)
            if not self.dependents[d]:
                del self.dependents[d]
        for d in deps:
            self.dependents.setdefault(d, set()).add(tid)
        if deps:
            self.edges[tid] = deps
        else:
            del self.edges[tid]
        return True

    def recompute(self, moved: builtins.set[str]) -> builtins.set[str]:
        """Re-derive cycles after `moved` changed; returns every task whose checks may change.

        Only tasks that reach a moved one (its dependents, transitively) can gain
        or lose a cycle or a missing dependency, so only those are redone.
        """
        if not moved:
            return set()
        # Every ancestor has edges of its own: past a quarter of them, take them all.
        affected = (moved | set(self.edges) if len(moved) * 4 > len(self.edges)
                    else self._ancestors(moved))
        for tid in affected:
            self.cycles.pop(tid, None)
        for scc in self._components(affected):
            big = f"of {len(scc)} tasks, including {self._cycle_from(scc[0], scc)}"
            for tid in scc:   # a path per task reads best, but costs |scc|^2
                self.cycles[tid] = self._cycle_from(tid, scc) if len(scc) < 200 else big
        return affected

    def _ancestors(self, seeds: builtins.set[str]) -> builtins.set[str]:
        seen, todo = set(seeds), list(seeds)
        while todo:
            for up in self.dependents.get(todo.pop(), ()):
                if up not in seen:
                    seen.add(up)
                    todo.append(up)
        return seen

    def _components(self, starts: builtins.set[str]) -> list[list[str]]:
        """Components of 2+ tasks reachable from `starts` (Tarjan's algorithm, iterative).

        A task without edges is never on a cycle, so it is never visited.
        """
        edges = self.edges
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        on_stack: set[str] = set()
        found: list[list[str]] = []
        for root in starts:
            if root in index or root not in edges:
                continue
            index[root] = low[root] = len(index)
            stack.append(root)
            on_stack.add(root)
            work: list[tuple[str, Iterator[str]]] = [(root, iter(edges[root]))]
            while work:
                node, children = work[-1]
                for child in children:
                    if child not in index and child in edges:
                        index[child] = low[child] = len(index)
                        stack.append(child)
                        on_stack.add(child)
                        work.append((child, iter(edges[child])))
                        break
                    if child in on_stack:
                        low[node] = min(low[node], index[child])
                else:
                    work.pop()
                    if work:
                        parent = work[-1][0]
                        low[parent] = min(low[parent], low[node])
                    if low[node] == index[node]:
                        scc: list[str] = []
                        while not scc or scc[-1] != node:
                            scc.append(stack.pop())
                            on_stack.discard(scc[-1])
                        if len(scc) > 1:
                            found.append(sorted(scc))
        return found

    def _cycle_from(self, start: str, scc: list[str]) -> str:
        """The shortest path start -> ... -> start inside one component (breadth first)."""
        members, todo = set(scc), [start]
        parent: dict[str, str | None] = {start: None}
        for node in todo:
            for nxt in self.edges.get(node, ()):
                if nxt == start:
                    path = [node]
                    while (up := parent[path[-1]]) is not None:
                        path.append(up)
                    return " -> ".join([*reversed(path), start])
                if nxt in members and nxt not in parent:
                    parent[nxt] = node
                    todo.append(nxt)
        return start
