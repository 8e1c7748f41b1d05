"""Result types of the static gate: revisions, errors, findings and the report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

Severity = Literal["warning", "error"]

#: Finding rules that lose data or break running clients. Pending, un-acknowledged
#: findings of these rules block a deploy.
DESTRUCTIVE_RULES = frozenset(
    {"drop-table", "drop-column", "change-column-type", "rename-column", "rename-table", "destructive-sql"}
)

#: Finding rules for operations PostgreSQL refuses as written (e.g. CREATE INDEX CONCURRENTLY
#: inside the transaction env.py opens per revision): the deploy would fail after its backup,
#: so pending, un-acknowledged findings of these rules block it at the gate as well.
FAILING_RULES = frozenset({"concurrently-in-transaction"})


@dataclass(frozen=True)
class RevisionInfo:
    """What the gate read from one revision file (never by importing it)."""

    revision: str
    file: Path
    down_revisions: tuple[str, ...] = ()
    branch_labels: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    sha256: str = ""
    has_downgrade: bool = False
    message: str = ""


@dataclass(frozen=True)
class ValidationIssue:
    """A structural error: the history cannot be deployed as it is."""

    code: str
    message: str
    revision: str | None
    file: str | None
    line: int | None = None

    def to_json(self) -> dict:
        """Plain dict for ``--json`` output."""
        return asdict(self)

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else str(self.file)
        return f"[{self.code}] {self.message} (revision {self.revision or '?'}, {where})"


@dataclass
class Finding:
    """A risky operation found in a revision (by AST, pglast or squawk)."""

    file: str
    revision: str | None
    rule: str
    message: str
    line: int | None = None
    severity: Severity = "warning"
    operation: str = ""
    acknowledged: bool = False

    @property
    def destructive(self) -> bool:
        """True for rules that lose data or break clients (see DESTRUCTIVE_RULES)."""
        return self.rule in DESTRUCTIVE_RULES

    @property
    def blocks_when_pending(self) -> bool:
        """Destructive (loses data) or certain to fail (see FAILING_RULES)."""
        return self.destructive or self.rule in FAILING_RULES

    def to_json(self) -> dict:
        """Plain dict for ``--json`` output."""
        return asdict(self)

    def __str__(self) -> str:
        ack = " (acknowledged)" if self.acknowledged else ""
        return f"{self.severity}: [{self.rule}] {self.message} — {self.file}:{self.line or '?'}{ack}"


@dataclass
class Report:
    """Outcome of :func:`vetai_ops.validate.validate_history`.

    ``ok`` is True when there are no structural errors; ``blocking`` lists the findings
    that refuse a deploy (pending, destructive, not acknowledged). A gate passes when
    ``report.ok and not report.blocking``.
    """

    versions_dir: Path
    revisions: dict[str, RevisionInfo] = field(default_factory=dict)
    heads: list[str] = field(default_factory=list)
    bases: list[str] = field(default_factory=list)
    errors: list[ValidationIssue] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    sql: dict[str, str] = field(default_factory=dict)
    _order: list[str] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        """True when the history has no structural errors."""
        return not self.errors

    @property
    def blocking(self) -> list[Finding]:
        """Findings that refuse a deploy: severity "error" and not acknowledged."""
        return [f for f in self.findings if f.severity == "error" and not f.acknowledged]

    def order(self) -> list[str]:
        """Revision ids base -> head, parents (and depends_on) before children.

        Revisions caught in a cycle are left out.
        """
        return list(self._order)

    def to_json(self) -> dict:
        """One JSON-ready object for ``invoke validate --json``."""
        out = {
            "versions_dir": str(self.versions_dir),
            "ok": self.ok,
            "revisions": len(self.revisions),
            "heads": list(self.heads),
            "bases": list(self.bases),
            "errors": [e.to_json() for e in self.errors],
            "findings": [f.to_json() for f in self.findings],
            "blocking": [f.to_json() for f in self.blocking],
        }
        if self.sql:
            out["sql"] = dict(self.sql)
        return out
