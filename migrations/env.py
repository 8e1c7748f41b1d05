"""Alembic environment for the VetAI Connect schema.

Online: vetai-ops passes an open SQLAlchemy connection in ``config.attributes["connection"]``
(and an ``on_version_apply`` callback to journal per-revision timings and file hashes);
plain ``alembic`` uses VETAI_OPS_DATABASE_URL. Offline (``--sql``) renders literal SQL,
which the pre-deploy gate lints. Each revision runs in its own transaction, so a
failing revision rolls back alone and leaves the database at the previous revision.
"""

import os

from alembic import context
from sqlalchemy import create_engine, pool

# tables owned by vetai-ops (and TypeORM's journal, whatever its name) stay out
from vetai_ops.database.migrations import include_object, include_object_for
from vetai_ops.schema.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = os.environ.get("VETAI_OPS_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        from vetai_ops.database.urls import default_env_url  # the sandbox of the default env

        url = default_env_url()
    return url


def run_migrations_offline() -> None:
    context.configure(
        url=config.attributes.get("offline_url") or "postgresql://",
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        transaction_per_migration=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        engine = create_engine(_url(), poolclass=pool.NullPool)
        with engine.connect() as conn:
            _run(conn)
    else:
        _run(connection)


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        transaction_per_migration=True,
        include_object=include_object_for(connection),
        compare_type=True,
        on_version_apply=config.attributes.get("on_version_apply"),
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
