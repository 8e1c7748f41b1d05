"""URL of the default environment, for plain `alembic` runs without VETAI_OPS_DATABASE_URL."""

from __future__ import annotations

from ..config import load_inventory
from ..errors import ConfigError


def default_env_url() -> str:
    inv = load_inventory()
    env = inv.env(None)
    if env.sandbox is None:
        raise ConfigError(
            f"the default env {env.name!r} is remote; plain `alembic` needs VETAI_OPS_DATABASE_URL",
            "use `invoke migrations.upgrade --env=...` or export VETAI_OPS_DATABASE_URL",
        )
    from .sandbox import ensure_sandbox

    c = ensure_sandbox(env)
    return c.url(env.database.name)
