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

from importlib import import_module

# Loaded on first use: the revision graph (.graph, .parse) is read by runs that never lint
# (a status, a rollback's post-check), and must not pay for pglast and the rules.
_EXPORTS = {
    "DESTRUCTIVE_RULES": ".model", "FAILING_RULES": ".model", "Finding": ".model", "Report": ".model",
    "RevisionInfo": ".model", "ValidationIssue": ".model",
    "lint_sql": ".lint", "render_sql": ".lint", "validate_history": ".static",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
