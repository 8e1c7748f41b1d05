"""The expected schema at a revision: what the history builds, not a hand-kept copy.

:func:`reference` runs the Alembic history up to ``rev`` into a scratch database on the
env's own server (``<db>_ref_<key>_<random>``, created and always dropped again), reads its catalog
(:func:`vetai_ops.database.catalog.snapshot`) and caches that snapshot as JSON in
``.vetai/cache/reference/<key>.json`` (directory 0700, file 0600). The key is the sha256
of the files of every revision up to ``rev`` (ids and bytes), ``env.py``, the server's
major version (``format_type`` and friends render per version) and the snapshot format:
edit a revision, add one below ``rev``, or change server and the key changes; otherwise
the cached snapshot is read back in milliseconds. Only the operator's machine holds it;
no database is kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import uuid
from pathlib import Path

from psycopg import sql
from sqlalchemy import text

from ..errors import OpsError, short_error
from ..paths import cache_dir, migrations_dir
from . import migrations as mig
from .applied import file_hashes
from .catalog import FORMAT, driver_connection, empty_snapshot, snapshot
from .introspect import drop_database, new_database
from .scratch import claimed, reference_prefix

_memo: dict[str, dict] = {}


def server_major(conn) -> int:
    return int(conn.execute(text("show server_version_num")).scalar_one()) // 10000


def history_key(rev: str | None, major: int) -> str:
    """sha256 over the history up to ``rev`` (revision ids + file bytes), env.py, server major."""
    h = hashlib.sha256(f"vetai-ops reference {FORMAT} pg{major} {rev or 'base'}\n".encode())
    files = file_hashes()
    for r in mig.chain(None, rev):
        h.update(f"{r} {files[r][1]}\n".encode())
    env_py = migrations_dir() / "env.py"
    if env_py.is_file():
        h.update(b"env.py " + hashlib.sha256(env_py.read_bytes()).hexdigest().encode())
    return h.hexdigest()


def _cache_path(key: str) -> Path:
    return cache_dir() / "reference" / f"{key}.json"


def _read_cache(key: str) -> dict | None:
    p = _cache_path(key)
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == FORMAT and "tables" in data else None


def _write_cache(key: str, snap: dict) -> None:
    p = _cache_path(key)
    with contextlib.suppress(OSError):  # a cache that cannot be written only costs time
        for d in (p.parent.parent, p.parent):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(d, 0o700)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(snap, f, sort_keys=True)
        os.replace(tmp, p)


def reference(access, rev: str | None, *, conn=None, emit=None) -> tuple[dict, dict]:
    """(snapshot, info) of the schema the history builds at ``rev`` on ``access``'s server.

    ``info``: ``key``, ``cached`` (bool), ``seconds``. ``conn``: an open connection to the
    server (for its version), else one is opened. Raises OpsError when the history does not
    build at ``rev`` on an empty database.
    """
    t0 = time.monotonic()
    if rev is None:
        return empty_snapshot(), {"key": None, "cached": True, "seconds": 0.0}
    if conn is None:
        with access.engine().connect() as c:
            major = server_major(c)
    else:
        major = server_major(conn)
    key = history_key(rev, major)
    snap = _memo.get(key) or _read_cache(key)
    if snap is not None:
        _memo[key] = snap
        return snap, {"key": key, "cached": True, "seconds": round(time.monotonic() - t0, 3)}
    if emit:
        emit("info", f"building the reference schema at {rev} (Alembic history into a scratch database; cached after)")
    snap = build(access, rev, key)
    _write_cache(key, snap)
    _memo[key] = snap
    return snap, {"key": key, "cached": False, "seconds": round(time.monotonic() - t0, 3)}


def warm(access, rev: str | None) -> bool:
    """Load the cached reference at ``rev`` into this process (Alembic imported, the history
    walked and hashed, the snapshot read), so that a later :func:`reference` for it is a
    lookup. Never builds one (that writes a scratch database): True when it was cached.
    Meant to run beside work that waits on the server (a restore), in a thread."""
    if rev is None:
        return True
    with access.engine().connect() as c:
        major = server_major(c)
    key = history_key(rev, major)
    snap = _memo.get(key) or _read_cache(key)
    if snap is not None:
        _memo[key] = snap
    return snap is not None


def equivalent_forms(conn, snap: dict) -> dict:
    """The definitions as a dump and restore leaves them (in ``conn``'s reference database,
    which this rewrites): PostgreSQL re-parses the text ``pg_get_constraintdef`` /
    ``pg_get_expr`` / ``pg_get_indexdef`` gave pg_dump, and some expressions come back in
    another spelling (``(ARRAY['a'::varchar])::text[]`` becomes ``ARRAY[('a'::varchar)::text]``).
    A restored database is the same schema: those spellings are recorded as equivalent.
    Only the reference's own, history-built definitions are re-executed here."""
    pg = driver_connection(conn)
    with pg.cursor() as cur:
        for t, cons in snap["constraints"].items():
            for n, v in cons.items():
                if v["kind"] == "check":
                    cur.execute(sql.SQL("ALTER TABLE {t} DROP CONSTRAINT {n}, ADD CONSTRAINT {n} {d}").format(
                        t=sql.Identifier(t), n=sql.Identifier(n), d=sql.SQL(v["definition"])))
        for t, cols in snap["tables"].items():
            for c, v in cols.items():
                if v["default"] is not None and not v["default"].startswith("generated "):
                    cur.execute(sql.SQL("ALTER TABLE {t} ALTER COLUMN {c} SET DEFAULT {d}").format(
                        t=sql.Identifier(t), c=sql.Identifier(c), d=sql.SQL(v["default"])))
        cur.execute("select ic.relname, pg_get_indexdef(i.indexrelid) from pg_index i join pg_class ic on ic.oid = i.indexrelid"
                    " join pg_class c on c.oid = i.indrelid join pg_namespace n on n.oid = c.relnamespace"
                    " where n.nspname = 'public' and (i.indpred is not null or i.indexprs is not null)"
                    " and not exists (select 1 from pg_constraint con where con.conindid = i.indexrelid)")
        for name, definition in cur.fetchall():
            cur.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
            cur.execute(sql.SQL(definition))
    again = snapshot(conn)
    eq: dict = {"constraints": {}, "defaults": {}, "indexes": {}}
    for t, cons in again["constraints"].items():
        for n, v in cons.items():
            if snap["constraints"].get(t, {}).get(n) not in (None, v):
                eq["constraints"].setdefault(t, {})[n] = v
    for t, cols in again["tables"].items():
        for c, v in cols.items():
            if snap["tables"].get(t, {}).get(c, {}).get("default") not in (None, v["default"]):
                eq["defaults"].setdefault(t, {})[c] = v["default"]
    for t, idx in again["indexes"].items():
        for n, v in idx.items():
            if snap["indexes"].get(t, {}).get(n) not in (None, v):
                eq["indexes"].setdefault(t, {})[n] = v
    return eq


def build(access, rev: str, key: str) -> dict:
    """Upgrade a new scratch database to ``rev``, snapshot it, drop it (always)."""
    # a suffix of its own: a concurrent build (a `check` beside a deploy) never drops this one
    name = f"{reference_prefix(access.db.name)}{key[:8]}_{uuid.uuid4().hex[:6]}".lower()
    maint = access.admin_engine()
    # claimed before it exists, until it is dropped: a killed run's is told from a live one's
    with claimed(maint, name):
        try:
            with new_database(maint, name):
                eng = access.engine(name)
                try:
                    with eng.connect() as c:
                        mig.upgrade(c, rev)
                        c.commit()
                    with eng.connect() as c:
                        snap = snapshot(c)
                    with eng.begin() as c:
                        snap["equivalent"] = equivalent_forms(c, snap)
                    return snap
                finally:
                    eng.dispose()
        except OpsError:
            raise
        except Exception as e:  # noqa: BLE001 - the history itself fails on an empty database
            raise OpsError(
                f"the reference schema at revision {rev} could not be built from the history "
                f"(Alembic upgrade of an empty database failed: {short_error(e)})",
                "every revision must apply to an empty database in order; fix the revision, then run again",
            ) from None
        finally:
            with contextlib.suppress(Exception):
                drop_database(maint, name)
