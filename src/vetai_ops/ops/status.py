"""Read-only views: status, backups list, history. They use a RunContext for wiring
(targets, store, DB access) but run no playbook, take no lock and write no journal."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from ..database import migrations as mig
from ..database.history import read as read_history
from ..pipeline import run_context
from ..store.manifest import id_time
from ..units import human_age


def age(bid: str) -> str:
    return human_age((datetime.now(timezone.utc) - id_time(bid)).total_seconds()) + " ago"


def _backup_row(m) -> dict:
    return {
        "id": m.id, "sha256": m.sha256, "size": m.size, "revision": m.revision, "created_at": m.created_at,
        "reason": m.reason, "compression": m.compression, "database": m.database, "age": age(m.id),
        "verified": m.verified, "signed": m.signed, "trust": m.trust,
    }


def list_backups(env_name: str | None, before=None, after=None) -> list[dict]:
    """Complete backups, newest first; ``before`` / ``after`` (inclusive) as :func:`store.when.window` reads them."""
    from ..store.when import window

    with run_context(env_name, "status", journaled=False) as ctx:
        return [_backup_row(m) for m in window(ctx.catalog.list(), before, after)]


def collect_status(env_name: str | None) -> dict:
    from ..database.access import check_reachable

    with run_context(env_name, "status", journaled=False) as ctx:
        version = check_reachable(ctx.access)
        with ctx.access.connect() as conn:
            current = mig.current(conn)
        head = mig.head()
        known = current is None or mig.known(current)
        pending = mig.chain(current, head) if known and mig.is_ancestor(current, head) else []
        backups = ctx.catalog.list()
        hist = read_history(ctx.access.connect, limit=1)
        return {
            "env": ctx.env.name,
            "protected": ctx.env.protected,
            "database_url": ctx.access.display_url(),
            "server_version": version,
            "current": current,
            "head": head,
            "pending": pending,
            "state": "up to date" if current == head else ("unknown revision" if not known else f"{len(pending)} pending"),
            "last_backup": _backup_row(backups[0]) if backups else None,
            "backups": len(backups),
            "backup_store": ctx.store.location,
            "last_deploy": hist[0] if hist else None,
            "checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }


def collect_history(env_name: str | None, limit: int = 20) -> list[dict]:
    with run_context(env_name, "history", journaled=False) as ctx:
        return read_history(ctx.access.connect, limit=limit)
