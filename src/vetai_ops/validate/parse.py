"""Read Alembic revision files with ``ast`` — never by importing them.

Real histories import their own applications at module level and would fail to load
outside them; the module-level metadata (``revision``, ``down_revision``,
``branch_labels``, ``depends_on``) is plain literals and reads fine from the syntax tree.
"""

from __future__ import annotations

import ast
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from .model import RevisionInfo, ValidationIssue

METADATA = ("revision", "down_revision", "branch_labels", "depends_on")
_SUSPICIOUS_NAMES = {"none", "null", ""}
# Used only for files that do not parse, to still name the revision and keep the graph whole.
_FALLBACK = re.compile(
    r"^(revision|down_revision)\s*(?::[^=\n]*)?=\s*(?:['\"]([^'\"\n]*)['\"]|(None))", re.MULTILINE
)


@dataclass
class RevisionFile:
    """One parsed file: its metadata, syntax tree and the errors found reading it."""

    path: Path
    data: bytes
    text: str
    tree: ast.Module | None = None
    revision: str | None = None
    down_revisions: tuple[str, ...] = ()
    branch_labels: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    lines: dict[str, int] = field(default_factory=dict)  # metadata name -> line
    errors: list[ValidationIssue] = field(default_factory=list)
    sha256: str = ""  # of ``data``: what "what was validated is what runs" compares

    def info(self, has_downgrade: bool = False) -> RevisionInfo:
        """The public, immutable view of this file."""
        return RevisionInfo(
            revision=self.revision or "",
            file=self.path,
            down_revisions=self.down_revisions,
            branch_labels=self.branch_labels,
            depends_on=self.depends_on,
            sha256=self.sha256,
            has_downgrade=has_downgrade,
            message=self.message(),
        )

    def issue(self, code: str, message: str, line: int | None = None) -> None:
        """Record an error naming this file and (when known) its revision."""
        self.errors.append(ValidationIssue(code, message, self.revision, str(self.path), line))

    def message(self) -> str:
        """The first line of the module docstring (what Alembic shows as the revision's doc)."""
        doc = ast.get_docstring(self.tree) if self.tree else None
        return doc.strip().splitlines()[0] if doc and doc.strip() else ""


def revision_paths(versions_dir: Path) -> list[Path]:
    """The revision files Alembic would load: ``*.py`` except ``__init__.py`` and editor locks."""
    return sorted(
        p for p in Path(versions_dir).glob("*.py") if p.name != "__init__.py" and not p.name.startswith(".#")
    )


def read_revision(path: Path, data: bytes | None = None) -> RevisionFile:
    """Parse one revision file (``data``: its bytes, when already read); problems become
    ``errors`` on the result, never exceptions."""
    data = path.read_bytes() if data is None else data
    rf = RevisionFile(path=path, data=data, text=data.decode("utf-8", errors="replace"),
                      sha256=hashlib.sha256(data).hexdigest())
    try:
        rf.tree = ast.parse(data, filename=str(path))
    except (SyntaxError, ValueError) as exc:
        _read_fallback(rf)
        line = getattr(exc, "lineno", None)
        rf.issue("syntax-error", f"{path.name} does not parse: {getattr(exc, 'msg', exc)}", line)
        return rf
    values, lines = _module_assignments(rf.tree)
    rf.lines = lines
    not_literal = []
    for name, node in values.items():
        try:
            values[name] = ast.literal_eval(node)
        except ValueError:
            not_literal.append((name, ast.unparse(node)))
            values[name] = None
    _check_metadata(rf, values, lines)
    for name, source in not_literal:
        rf.issue("suspicious-metadata", f"{name} is not a literal ({source}); it cannot be checked", lines[name])
    return rf


def _module_assignments(tree: ast.Module) -> tuple[dict[str, ast.expr], dict[str, int]]:
    values: dict[str, ast.expr] = {}
    lines: dict[str, int] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            targets, value = [stmt.target], stmt.value
        else:
            continue
        for target in targets:
            if isinstance(target, ast.Name) and target.id in METADATA:
                values[target.id], lines[target.id] = value, stmt.lineno
    return values, lines


def _as_tuple(rf: RevisionFile, name: str, value, line: int | None) -> tuple[str, ...]:
    if value is None:
        return ()
    items = (value,) if isinstance(value, str) else value
    if not isinstance(items, (tuple, list, set, frozenset)) or not all(isinstance(i, str) for i in items):
        rf.issue("suspicious-metadata", f"{name} must be a string, a tuple of strings or None, got {value!r}", line)
        return ()
    return tuple(items)


def _check_metadata(rf: RevisionFile, values: dict, lines: dict[str, int]) -> None:
    rev = values.get("revision")
    if "revision" not in values:
        rf.issue("missing-revision", f"{rf.path.name} has no module-level `revision`")
    elif not isinstance(rev, str) or not rev.strip() or any(c.isspace() for c in rev):
        rf.issue("bad-revision-id", f"revision id {rev!r} is empty, not a string or contains whitespace",
                 lines["revision"])
    else:
        rf.revision = rev
    rf.down_revisions = _as_tuple(rf, "down_revision", values.get("down_revision"), lines.get("down_revision"))
    rf.branch_labels = _as_tuple(rf, "branch_labels", values.get("branch_labels"), lines.get("branch_labels"))
    rf.depends_on = _as_tuple(rf, "depends_on", values.get("depends_on"), lines.get("depends_on"))
    for name, items in (("down_revision", rf.down_revisions), ("branch_labels", rf.branch_labels),
                        ("depends_on", rf.depends_on)):
        for item in items:
            if item.strip().lower() in _SUSPICIOUS_NAMES:
                rf.issue("suspicious-metadata", f"{name} contains the string {item!r} (meant None?)", lines[name])
    if rf.revision and rf.revision in rf.down_revisions + rf.depends_on:
        name = "down_revision" if rf.revision in rf.down_revisions else "depends_on"
        rf.issue("self-reference", f"revision {rf.revision} names itself in its own {name}", lines[name])
    # keep the graph free of the values just reported
    def sane(ref: str) -> bool:
        return ref != rf.revision and ref.strip().lower() not in _SUSPICIOUS_NAMES

    rf.down_revisions = tuple(filter(sane, rf.down_revisions))
    rf.depends_on = tuple(filter(sane, rf.depends_on))


def _read_fallback(rf: RevisionFile) -> None:
    """Best effort metadata for a file with a syntax error (simple literal forms only)."""
    for name, value, none in _FALLBACK.findall(rf.text):
        if name == "revision" and value.strip() and rf.revision is None:
            rf.revision = value
        elif name == "down_revision" and not none and value:
            rf.down_revisions = (value,)
