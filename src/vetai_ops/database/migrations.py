"""Alembic wiring: the project's history (ScriptDirectory), current revision, upgrade,
downgrade, schema diff (compare_metadata) and per-revision file hashes."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from sqlalchemy import text
from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

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


_sd_memo: dict[tuple, ScriptDirectory] = {}


def _history_stamp() -> tuple:
    """What the loaded history depends on: the migrations folder, and the name, size and
    mtime of alembic.ini, env.py and every revision file. A run asks for the history several
    times (the plan, the reference key, the post-check); it is loaded once while this holds."""
    files = [project_root() / "alembic.ini", migrations_dir() / "env.py", *sorted(versions_dir().rglob("*.py"))]
    out: list = [str(migrations_dir())]
    for f in files:
        try:
            st = f.stat()
            out.append((str(f), st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((str(f), None))
    return tuple(out)


def script_directory() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    try:
        stamp = _history_stamp()
        if stamp in _sd_memo:
            return _sd_memo[stamp]
        sd = ScriptDirectory.from_config(alembic_config())
        sd.get_heads()  # builds the revision map now: a broken graph fails here, with a clear message
        _sd_memo.clear()
        _sd_memo[stamp] = sd
        return sd
    except Exception as e:
        raise GateRefused(
            f"the migration history in {migrations_dir()} does not load ({type(e).__name__}: {e})",
            "run `invoke validate` to see which revision and file are at fault",
        ) from None


def head() -> str | None:
    heads = script_directory().get_heads()
    if len(heads) != 1:
        raise GateRefused(f"the migration history has {len(heads)} heads ({', '.join(heads)}); expected one",
                       "merge them with `alembic merge heads`")
    return heads[0]


def current(conn: Connection) -> str | None:
    """The database's Alembic revision: what ``MigrationContext.get_current_heads()`` reads
    (the rows of ``alembic_version``, none when the table is absent), read directly and
    without importing Alembic (a backup and a rollback only need this much of it)."""
    exists = conn.execute(text("select to_regclass('alembic_version') is not null")).scalar_one()
    heads = tuple(conn.execute(text("select version_num from alembic_version")).scalars()) if exists else ()
    if len(heads) > 1:
        raise OpsError(f"the database has several current revisions: {', '.join(heads)}")
    return heads[0] if heads else None


def chain(from_rev: str | None, to_rev: str | None) -> list[str]:
    """Revision ids strictly after ``from_rev`` up to and including ``to_rev``, oldest first."""
    if to_rev is None or from_rev == to_rev:
        return []
    sd = script_directory()
    revs = list(sd.iterate_revisions(to_rev, from_rev or "base"))
    revs.reverse()
    return [r.revision for r in revs if r.revision != from_rev]


def is_ancestor(maybe_ancestor: str | None, rev: str) -> bool:
    if maybe_ancestor is None:
        return True
    sd = script_directory()
    try:
        return any(r.revision == maybe_ancestor for r in sd.iterate_revisions(rev, "base"))
    except Exception:
        return False


def known(rev: str) -> bool:
    try:
        return script_directory().get_revision(rev) is not None
    except Exception:
        return False


def revision_file(rev: str) -> Path:
    return Path(script_directory().get_revision(rev).path)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def history_hashes() -> dict[str, tuple[str, str]]:
    """rev -> (file name, sha256) for every revision in the history."""
    out = {}
    for sc in script_directory().walk_revisions():
        p = Path(sc.path)
        out[sc.revision] = (p.name, file_sha256(p))
    return out


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
    conn.execute(text("select set_config('lock_timeout', :v, false)"), {"v": lock_timeout})
    conn.execute(text("select set_config('statement_timeout', :v, false)"), {"v": statement_timeout})
    conn.commit()
