"""``invoke sandbox.up`` / ``sandbox.down``: the embedded PostgreSQL of an env with a
``sandbox:`` section (:mod:`vetai_ops.database.sandbox`)."""

from __future__ import annotations

from ..config import Environment, load_inventory
from ..errors import OpsError


def _sandbox_env(env_name: str | None) -> Environment:
    e = load_inventory().env(env_name)
    if e.sandbox is None:
        raise OpsError(f"env {e.name!r} has no sandbox", "use an env with a 'sandbox:' section, e.g. local")
    return e


def up(env_name: str | None) -> dict:
    """Start it (initialising it on first use): its URL for the env's database, and its version."""
    from ..database.sandbox import ensure_sandbox

    e = _sandbox_env(env_name)
    cl = ensure_sandbox(e)
    return {"env": e.name, "url": cl.url(e.database.name, e.database.user).replace("+psycopg", ""),
            "version": ".".join(map(str, cl.version))}


def down(env_name: str | None, *, destroy: bool = False) -> dict:
    """Stop it; with ``destroy`` also delete its data directory."""
    from ..database.sandbox import stop_sandbox

    cl = stop_sandbox(_sandbox_env(env_name), destroy=destroy)
    return {"root": str(cl.root), "destroyed": destroy}
