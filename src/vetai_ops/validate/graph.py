"""The revision graph: missing parents, cycles, heads, bases and a topological order."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .model import ValidationIssue
from .parse import RevisionFile


@dataclass
class Graph:
    """Heads, bases, base->head order and the structural errors of one history."""

    heads: list[str] = field(default_factory=list)
    bases: list[str] = field(default_factory=list)
    order: list[str] = field(default_factory=list)
    errors: list[ValidationIssue] = field(default_factory=list)


def analyse(revs: dict[str, RevisionFile]) -> Graph:
    """Check references, cycles and heads of ``revs`` (revision id -> file, ids unique)."""
    g = Graph()
    labels = {label: rid for rid, rf in revs.items() for label in rf.branch_labels}
    parents: dict[str, list[str]] = {}
    deps: dict[str, list[str]] = {}
    for rid, rf in revs.items():
        parents[rid] = [p for p in rf.down_revisions if _exists(g, rf, "down_revision", p, revs)]
        deps[rid] = [labels.get(d, d) for d in rf.depends_on if d in labels or _exists(g, rf, "depends_on", d, revs)]
    referenced = {p for ps in parents.values() for p in ps}
    g.heads = [rid for rid in revs if rid not in referenced]
    g.bases = [rid for rid in revs if not revs[rid].down_revisions]
    before = {rid: parents[rid] + deps[rid] for rid in revs}
    g.order = _toposort(revs, before)
    if len(g.order) < len(revs):
        _report_cycles(g, revs, before, set(revs) - set(g.order))
    if not revs:
        return g
    if not g.heads and not g.errors:
        g.errors.append(ValidationIssue("no-head", "the history has no head revision", None, None))
    if len(g.heads) > 1:
        _check_branches(g, revs, parents)
    return g


def _exists(g: Graph, rf: RevisionFile, attr: str, ref: str, revs: dict[str, RevisionFile]) -> bool:
    if ref in revs:
        return True
    code = "missing-down-revision" if attr == "down_revision" else "missing-depends-on"
    g.errors.append(ValidationIssue(
        code, f"revision {rf.revision} has {attr} {ref!r}, which is not in the history", rf.revision, str(rf.path),
        rf.lines.get(attr)))
    return False


def _toposort(revs: dict[str, RevisionFile], before: dict[str, list[str]]) -> list[str]:
    """Kahn's algorithm; ties keep file order so the result is stable."""
    pending = {rid: len(set(ps)) for rid, ps in before.items()}
    children: dict[str, list[str]] = {rid: [] for rid in revs}
    for rid, ps in before.items():
        for p in set(ps):
            children[p].append(rid)
    ready = deque(rid for rid in revs if pending[rid] == 0)
    order = []
    while ready:
        rid = ready.popleft()
        order.append(rid)
        for child in children[rid]:
            pending[child] -= 1
            if pending[child] == 0:
                ready.append(child)
    return order


def _report_cycles(g: Graph, revs: dict[str, RevisionFile], before: dict[str, list[str]], stuck: set[str]) -> None:
    """Walk parent links inside the unsorted set until a revision repeats: that is a cycle."""
    seen: set[str] = set()
    for start in sorted(stuck):
        path: list[str] = []
        node = start
        while node not in seen and node not in path:
            path.append(node)
            nxt = [p for p in before[node] if p in stuck]
            if not nxt:
                break
            node = nxt[0]
        seen.update(path)
        if node in path:
            cycle = path[path.index(node):]
            first = revs[cycle[0]]
            chain = " -> ".join([*cycle, cycle[0]])
            files = ", ".join(revs[r].path.name for r in cycle)
            g.errors.append(ValidationIssue(
                "cycle", f"revision cycle {chain} (files {files})", first.revision, str(first.path)))


def _ancestry_labels(head: str, revs: dict[str, RevisionFile], parents: dict[str, list[str]]) -> set[str]:
    labels: set[str] = set()
    todo, seen = [head], set()
    while todo:
        rid = todo.pop()
        if rid in seen:
            continue
        seen.add(rid)
        labels.update(revs[rid].branch_labels)
        todo.extend(parents[rid])
    return labels


def _check_branches(g: Graph, revs: dict[str, RevisionFile], parents: dict[str, list[str]]) -> None:
    """Several heads are fine only when each one carries a branch label no other head has."""
    per_head = {h: _ancestry_labels(h, revs, parents) for h in g.heads}
    for head, labels in per_head.items():
        others = set().union(*(v for k, v in per_head.items() if k != head))
        if not labels - others:
            rf = revs[head]
            g.errors.append(ValidationIssue(
                "multiple-heads",
                f"{len(g.heads)} heads ({', '.join(g.heads)}); head {head} has no branch label of its own — "
                "merge them (`alembic merge heads`) or declare branch_labels",
                head, str(rf.path)))
