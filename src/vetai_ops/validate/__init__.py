"""Static pre-deploy gate for Alembic histories (the validate step: README "How a deploy works", step 2).

``validate_history(versions_dir, pending=..., acknowledged=..., render=..., alembic_ini=...)``
parses every revision file with ``ast`` (never importing it) and returns a :class:`Report`:
structural ``errors`` (syntax, duplicate ids, missing parents, cycles, several heads,
suspicious metadata) and ``findings`` (risky operations in ``upgrade()``, raw SQL checked
with pglast, missing downgrades, and optionally squawk's verdict on the rendered SQL).

Destructive findings of pending revisions block a deploy unless acknowledged, e.g. with
a comment line in the revision file::

    # vetai-ops: allow drop_column pets.name

(see :mod:`vetai_ops.validate.ack` for every form of the marker).
"""

from .lint import lint_sql, render_sql
from .model import DESTRUCTIVE_RULES, FAILING_RULES, Finding, Report, RevisionInfo, ValidationIssue
from .static import validate_history

__all__ = [
    "DESTRUCTIVE_RULES",
    "FAILING_RULES",
    "Finding",
    "Report",
    "RevisionInfo",
    "ValidationIssue",
    "lint_sql",
    "render_sql",
    "validate_history",
]
