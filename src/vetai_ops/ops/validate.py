"""``invoke validate``: the static report of any Alembic versions folder, and with an env the
live half: applied-file checksums, where the database is in the history, and the refusals
a deploy to that env would make (a pending destructive revision not acknowledged; on a
protected env, SQL nobody linted: :func:`vetai_ops.policy.refuse_unlinted`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import paths
from ..errors import ConfigError, GateRefused


@dataclass
class Validation:
    data: dict  # what --json prints: the report, live_errors, ok (current and pending with an env)
    versions_dir: Path

    @property
    def ok(self) -> bool:
        return bool(self.data["ok"])


def _live(env: str) -> tuple:
    """(environment, current revision, pending revisions or None when unknown, live errors)."""
    from ..database import migrations as mig
    from ..database.applied import changed_applied
    from ..pipeline import run_context

    errors: list[str] = []
    pending = None
    with run_context(env, "validate", journaled=False) as ctx:
        with ctx.access.engine().connect() as conn:
            current = mig.current(conn)
            errors += changed_applied(conn)
        if current and not mig.known(current):
            errors.append(f"database is at revision {current}, unknown to this checkout (ahead or diverged)")
        else:
            pending = set(mig.chain(current, mig.head()))
        return ctx.env, current, pending, errors


def validate(env: str | None, migrations: str | None, *, render_sql: bool = False) -> Validation:
    """Validate ``migrations`` (default: this project's versions folder); with ``env`` also
    the live checks. ``render_sql``: render the pending SQL (Alembic offline, this project's
    history only) and lint it with squawk."""
    from ..validate import validate_history

    vdir = Path(migrations) if migrations else paths.versions_dir()
    if not vdir.is_dir():
        raise ConfigError(f"--migrations={vdir}: not a directory", "point it at an Alembic versions/ folder")
    own = migrations is None
    environment, current, pending, live_errors = _live(env) if env else (None, None, None, [])
    report = validate_history(
        vdir, pending=pending, render=render_sql and own,
        alembic_ini=paths.project_root() / "alembic.ini" if own else None,
    )
    data = report.to_json()
    data["live_errors"] = live_errors
    if env:
        data["current"] = current
        data["pending"] = sorted(pending or [])
    # with --env, a pending destructive revision that deploy would refuse is not "valid" either
    ok = report.ok and not live_errors and not (env and report.blocking)
    if environment is not None and any(f.rule == "squawk-missing" for f in report.findings):
        from ..policy import refuse_unlinted

        try:
            refuse_unlinted(environment)
        except GateRefused as e:
            live_errors.append(e.message)
            ok = False
    data["ok"] = ok
    return Validation(data, vdir)
