"""The revision graph of one history: Alembic's own ``RevisionMap``, fed from the syntax tree.

:func:`load` reads every revision file of a versions directory with ``ast`` (never
importing it, :mod:`.parse`), once per content: the result is memoized on the files' paths
and sha256. The heads, bases, order, chains and ancestry are Alembic's (its
``RevisionMap`` over light :class:`~alembic.script.revision.Revision` objects holding
revision, down_revision, depends_on and branch_labels); this module only turns what Alembic
refuses to build (a missing parent, a cycle, a reused branch label) into errors naming the
file and line, and builds the map from the rest so that the report stays whole.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path

from alembic.script.revision import CycleDetected, Revision, RevisionError, RevisionMap

from .model import ValidationIssue
from .parse import RevisionFile, read_revision, revision_paths

_MEMO_SIZE = 8  # histories kept (a run uses one; the validator's tests use many)
_memo: dict[tuple, Graph] = {}
_lock = threading.Lock()


@dataclass
class Graph:
    """One history: its files, Alembic's map of them, and every structural error."""

    files: dict[str, RevisionFile] = field(default_factory=dict)  # revision id -> file (first of duplicates)
    errors: list[ValidationIssue] = field(default_factory=list)
    map: RevisionMap = field(default_factory=lambda: RevisionMap(list))
    heads: list[str] = field(default_factory=list)
    bases: list[str] = field(default_factory=list)
    order: list[str] = field(default_factory=list)  # base -> head, the revisions Alembic could place

    def hashes(self) -> dict[str, tuple[str, str]]:
        """revision -> (file name, sha256) for every revision file of the history."""
        return {rid: (rf.path.name, rf.sha256) for rid, rf in self.files.items()}


def load(versions_dir: Path) -> Graph:
    """The graph of the revision files in ``versions_dir``, parsed once per content."""
    paths = revision_paths(versions_dir)
    data = {p: p.read_bytes() for p in paths}
    key = (str(Path(versions_dir).resolve()),
           tuple((str(p), hashlib.sha256(b).hexdigest()) for p, b in data.items()))
    with _lock:  # a reference is warmed in a thread while the run asks for the history
        graph = _memo.get(key)
        if graph is None:
            graph = analyse([read_revision(p, b) for p, b in data.items()])
            while len(_memo) >= _MEMO_SIZE:
                _memo.pop(next(iter(_memo)))
            _memo[key] = graph
    return graph


def analyse(parsed: list[RevisionFile]) -> Graph:
    """Errors of the parsed files, duplicates, then Alembic's map of the rest."""
    g = Graph()
    for rf in parsed:
        g.errors.extend(rf.errors)
        if rf.revision is None:
            continue
        first = g.files.get(rf.revision)
        if first is not None:
            g.errors.append(ValidationIssue(
                "duplicate-revision",
                f"revision id {rf.revision} is declared by both {first.path.name} and {rf.path.name}",
                rf.revision, f"{first.path}, {rf.path}"))
            continue
        g.files[rf.revision] = rf
    specs = _specs(g)
    g.map = _build(g, specs)
    g.heads, g.bases = list(g.map.heads), list(g.map.bases)
    g.order = [r.revision for r in g.map.iterate_revisions("heads", "base")][::-1] if specs else []
    if len(g.heads) > 1:
        _check_branches(g)
    return g


def _issue(g: Graph, code: str, message: str, rf: RevisionFile, attr: str | None) -> None:
    g.errors.append(ValidationIssue(code, message, rf.revision, str(rf.path), rf.lines.get(attr) if attr else None))


def _specs(g: Graph) -> dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]]:
    """revision -> (down_revisions, depends_on, branch_labels) that Alembic can take: what
    it would refuse (a missing reference, an id or label it does not allow) is an error here."""
    ok = {}
    for rid, rf in g.files.items():
        try:
            Revision.verify_rev_id(rid)
            ok[rid] = rf
        except RevisionError as e:
            _issue(g, "bad-revision-id", f"{e} (Alembic refuses it)", rf, "revision")
    labels: dict[str, str] = {}
    for rid, rf in ok.items():
        for label in rf.branch_labels:
            owner = labels.get(label) or (label if label in ok else None)
            if owner is not None:
                _issue(g, "duplicate-branch-label",
                       f"branch label {label!r} of revision {rid} is already the name of {owner} "
                       f"({ok[owner].path.name})", rf, "branch_labels")
            else:
                labels[label] = rid
    specs = {}
    for rid, rf in ok.items():
        downs = tuple(p for p in rf.down_revisions if _exists(g, rf, "down_revision", p, ok))
        deps = tuple(d for d in rf.depends_on if d in labels or _exists(g, rf, "depends_on", d, ok))
        specs[rid] = (downs, deps, tuple(lb for lb in rf.branch_labels if labels.get(lb) == rid))
    return specs


def _exists(g: Graph, rf: RevisionFile, attr: str, ref: str, ok: dict[str, RevisionFile]) -> bool:
    if ref in ok:
        return True
    code = "missing-down-revision" if attr == "down_revision" else "missing-depends-on"
    _issue(g, code, f"revision {rf.revision} has {attr} {ref!r}, which is not in the history", rf, attr)
    return False


def _build(g: Graph, specs: dict) -> RevisionMap:
    """Alembic's map; a cycle it detects is reported (with its members' files) and the
    revisions it could not place are left out, until the rest builds."""
    while True:
        labels = {lb: rid for rid, (_, _, lbs) in specs.items() for lb in lbs}
        revmap = RevisionMap(lambda s=dict(specs): [  # fresh objects each time: Alembic annotates them
            Revision(rid, downs or None, deps or None, lbs or None) for rid, (downs, deps, lbs) in s.items()])
        try:
            revmap.heads  # noqa: B018 - builds the map: Alembic checks it here
            return revmap
        except CycleDetected as e:
            before = {rid: [*downs, *(labels.get(d, d) for d in deps)] for rid, (downs, deps, _) in specs.items()}
            stuck = [r for r in e.revisions if r in specs]
            members = _report_cycles(g, before, stuck, e)
            # Alembic names exactly what it cannot place when the rest has a head and a base;
            # else it names everything, and only the cycles themselves are left out
            drop = set(stuck) if len(stuck) < len(specs) else (members or set(stuck))
        except RevisionError as e:  # nothing above lets this happen; still an error, never an exception
            g.errors.append(ValidationIssue("alembic-refused", f"Alembic cannot build this history: {e}", None,
                                            str(next(iter(g.files.values())).path.parent)))
            return RevisionMap(list)
        specs = {rid: (tuple(p for p in downs if p not in drop),
                       tuple(d for d in deps if labels.get(d, d) not in drop), lbs)
                 for rid, (downs, deps, lbs) in specs.items() if rid not in drop}


def _report_cycles(g: Graph, before: dict[str, list[str]], stuck: list[str], exc: CycleDetected) -> set[str]:
    """The cycles among what Alembic could not place (a depth-first walk along parent and
    depends_on links), each reported at the line of its first member that closes it."""
    members: set[str] = set()
    for cycle in _cycles(before, set(stuck)):
        members.update(cycle)
        first = g.files[cycle[0]]
        attr = "down_revision" if cycle[1 % len(cycle)] in first.down_revisions else "depends_on"
        chain = " -> ".join([*cycle, cycle[0]])
        files = ", ".join(g.files[r].path.name for r in cycle)
        _issue(g, "cycle", f"revision cycle {chain} (files {files})", first, attr)
    if not members:  # not found by the walk: Alembic's own words
        g.errors.append(ValidationIssue("cycle", str(exc), None, ", ".join(str(g.files[r].path) for r in stuck)))
    return members


def _cycles(before: dict[str, list[str]], inside: set[str]) -> list[list[str]]:
    """Each cycle once, as [r, parent of r, ...], starting from the first id (sorted)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    found = []
    for start in sorted(inside):
        if start in state:
            continue
        path, todo = [start], [iter([p for p in before[start] if p in inside])]
        state[start] = 1
        while todo:
            nxt = next(todo[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                todo.pop()
            elif state.get(nxt) == 1:
                found.append(path[path.index(nxt):])
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                todo.append(iter([p for p in before[nxt] if p in inside]))
    return found


def _check_branches(g: Graph) -> None:
    """Several heads are fine only when each one carries a branch label no other head has
    (Alembic gives a head the labels of its branch)."""
    per_head = {h: set(g.map.get_revision(h).branch_labels) for h in g.heads}
    for head, labels in per_head.items():
        others = set().union(*(v for k, v in per_head.items() if k != head))
        if not labels - others:
            _issue(g, "multiple-heads",
                   f"{len(g.heads)} heads ({', '.join(g.heads)}); head {head} has no branch label of its own — "
                   "merge them (`alembic merge heads`) or declare branch_labels", g.files[head], "revision")
