"""Alembic wiring: the project's history, current revision, upgrade, downgrade, stamp and
schema diff (compare_metadata).

The history (heads, chains, ancestry, known revisions, each revision's file) is Alembic's
``RevisionMap`` over the revision files read with ``ast`` (:mod:`vetai_ops.validate.graph`,
memoized on the files' bytes): asking it imports no revision file. Only what must run a
revision's code goes through Alembic's ``ScriptDirectory`` (``command.upgrade`` /
``downgrade`` / ``stamp`` here, the offline SQL of :func:`vetai_ops.validate.lint.render_sql`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine import Connection

    from ..validate.graph import Graph

from ..errors import GateRefused, OpsError
from ..paths import migrations_dir, project_root, versions_dir

OPS_TABLES = {"deploy_history", "vetai_ops_applied", "vetai_ops_accepted_drift", "migrations", "alembic_version"}


def alembic_config(connection: Connection | None = None, *, ini: Path | None = None, **attributes) -> Config:
    """The one Alembic Config of vetai-ops. The project's alembic.ini (the default) points at
    the history in use (``VETAI_OPS_MIGRATIONS`` or migrations/); another ``ini`` (a foreign
    project handed to the validator) keeps its own script location, resolved next to it."""
    from alembic.config import Config  # Alembic is imported by the runs that use it (not a backup)

    own = project_root() / "alembic.ini"
    ini = Path(ini or own)
    cfg = Config(str(ini))
    location = cfg.get_main_option("script_location") or ""
    if ini.resolve() == own.resolve():
        cfg.set_main_option("script_location", str(migrations_dir()))
    elif ":" not in location and not Path(location).is_absolute():
        cfg.set_main_option("script_location", str(ini.resolve().parent / location))
    if connection is not None:
        cfg.attributes["connection"] = connection
    cfg.attributes.update(attributes)
    return cfg


def history() -> Graph:
    """The history in use (``VETAI_OPS_MIGRATIONS`` or migrations/), read without importing a
    revision file. Refused, naming each file and line, when its graph is broken (several heads
    are left to :func:`head`: a chain or a known revision still makes sense with them)."""
    from ..validate.graph import load

    graph = load(versions_dir())
    bad = [e for e in graph.errors if e.code != "multiple-heads"]
    if bad:
        raise GateRefused(
            f"the migration history in {versions_dir()} failed validation: "
            + "; ".join(f"{e.revision or '?'} ({e.file}{f':{e.line}' if e.line else ''}): {e.message}" for e in bad),
            "fix the files (never edit an applied revision: add a new one); `invoke validate` shows details",
        )
    return graph


def head() -> str | None:
    graph = history()
    heads = graph.heads
    if len(heads) != 1:
        where = ", ".join(f"{graph.files[h].path}:{graph.files[h].lines.get('revision', 1)}" for h in heads)
        raise GateRefused(f"the migration history has {len(heads)} heads ({', '.join(heads)}); expected one"
                          + (f" ({where})" if where else ""), "merge them with `alembic merge heads`")
    return heads[0]


def current(conn) -> str | None:
    """The database's Alembic revision: what ``MigrationContext.get_current_heads()`` reads
    (the rows of ``alembic_version``, none when the table is absent), read directly with
    psycopg, without importing Alembic or SQLAlchemy (a backup and a rollback only need this
    much of it). ``conn``: psycopg's, or a SQLAlchemy one (its driver connection is used)."""
    from .pg import column, scalar

    exists = scalar(conn, "select to_regclass('alembic_version') is not null")
    heads = tuple(column(conn, "select version_num from alembic_version")) if exists else ()
    if len(heads) > 1:
        raise OpsError(f"the database has several current revisions: {', '.join(heads)}")
    return heads[0] if heads else None


def chain(from_rev: str | None, to_rev: str | None) -> list[str]:
    """Revision ids strictly after ``from_rev`` up to and including ``to_rev``, oldest first."""
    if to_rev is None or from_rev == to_rev:
        return []
    revs = list(history().map.iterate_revisions(to_rev, from_rev or "base"))
    revs.reverse()
    return [r.revision for r in revs if r.revision != from_rev]


def is_ancestor(maybe_ancestor: str | None, rev: str) -> bool:
    if maybe_ancestor is None:
        return True
    revmap = history().map
    try:
        return any(r.revision == maybe_ancestor for r in revmap.iterate_revisions(rev, "base"))
    except Exception:
        return False


def known(rev: str) -> bool:
    try:
        return history().map.get_revision(rev) is not None
    except Exception:
        return False


def upgrade(conn: Connection, target: str, on_version_apply: Callable | None = None) -> None:
    from alembic import command

    cfg = alembic_config(conn, on_version_apply=on_version_apply)
    command.upgrade(cfg, target)


def downgrade(conn: Connection, target: str, on_version_apply: Callable | None = None) -> None:
    from alembic import command

    cfg = alembic_config(conn, on_version_apply=on_version_apply)
    command.downgrade(cfg, target)


def stamp(conn: Connection, rev: str) -> None:
    from alembic import command

    command.stamp(alembic_config(conn), rev)


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """Alembic's include_object hook: tables owned by vetai-ops (and TypeORM's journal)
    are never part of the app schema (env.py's autogenerate and the post-check share it)."""
    return not (type_ == "table" and name in OPS_TABLES)


def include_object_for(conn: Connection):
    """:func:`include_object` that also leaves out the TypeORM journal ``adopt --table``
    marked in this database (a ``migrationsTableName`` other than ``migrations``)."""
    from .typeorm_journal import journal_tables

    skip: set[str] | None = None

    def include(obj, name, type_, reflected, compare_to) -> bool:
        nonlocal skip
        if type_ != "table":
            return True
        if skip is None:  # asked lazily: an upgrade never compares, and must not open a transaction first
            skip = OPS_TABLES | journal_tables(conn)
        return name not in skip

    return include


def schema_diff(conn: Connection) -> list:
    """Differences between the live schema and the SQLAlchemy models (empty = match)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from ..schema.models import Base

    from sqlalchemy import inspect

    from .catalog import APP_SCHEMA, app_schema_first

    # only the app's schema: unqualified, the reflection reads every table on the search_path
    # (an extension's schema, another app's), and would resolve a shadowed name to the wrong one
    app_tables = set(inspect(conn).get_table_names(schema=APP_SCHEMA))

    def include_name(name, type_, *_) -> bool:  # (name, type_, parent_names)
        return type_ != "table" or name in app_tables

    with app_schema_first(conn):
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "include_name": include_name,
                                                     "include_object": include_object_for(conn)})
        return compare_metadata(ctx, Base.metadata)


def describe_diff(diff: list) -> list[str]:
    out = []
    for d in diff:
        if isinstance(d, list):  # modify_* come as lists of tuples
            out.extend(describe_diff(d))
            continue
        op = d[0]
        rest = [getattr(x, "name", None) or str(x) for x in d[1:4] if x is not None]
        out.append(f"{op} " + " ".join(str(r) for r in rest))
    return out


def set_timeouts(conn: Connection, lock_timeout: str, statement_timeout: str) -> None:
    from sqlalchemy import text  # Alembic's connection (a migrate)

    conn.execute(text("select set_config('lock_timeout', :v, false)"), {"v": lock_timeout})
    conn.execute(text("select set_config('statement_timeout', :v, false)"), {"v": statement_timeout})
    conn.commit()
