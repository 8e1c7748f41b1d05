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

Which revisions are "up to ``rev``" is the revision graph's answer (Alembic's RevisionMap,
which imports all of SQLAlchemy: ~0.3 s). It is asked once per content of the versions
folder: :func:`lineage` caches, in ``.vetai/cache/history/<sha256 of every revision
file>.json``, each revision's chain digest (its ancestors' ids and file hashes), so a
rollback's post-check on an unchanged history imports neither Alembic nor SQLAlchemy.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
import uuid
from pathlib import Path

from psycopg import sql

from ..errors import OpsError, short_error
from ..paths import cache_dir, migrations_dir, versions_dir
from . import migrations as mig
from .catalog import FORMAT, driver_connection, empty_snapshot, snapshot
from .introspect import drop_database, new_database
from .pg import scalar
from .scratch import claimed, reference_prefix

_memo: dict[str, dict] = {}
LINEAGE_FORMAT = 1


def server_major(conn) -> int:
    return int(scalar(conn, "show server_version_num")) // 10000


def _chain_digest(chain: list[str], files: dict[str, tuple[str, str]]) -> str:
    h = hashlib.sha256()
    for r in chain:
        h.update(f"{r} {files[r][1]}\n".encode())
    return h.hexdigest()


def lineage() -> dict[str, str] | None:
    """revision -> digest of its chain from base (ids and file sha256s), for every revision
    of the history in use; None when the history is broken (the graph says why). Read from
    the cache keyed by every revision file's name and bytes; computed with the revision
    graph (Alembic) and cached when that content is new."""
    from ..validate.parse import revision_paths

    h = hashlib.sha256(f"vetai-ops lineage {LINEAGE_FORMAT}\n".encode())
    for p in revision_paths(versions_dir()):
        h.update(f"{p.name} {hashlib.sha256(p.read_bytes()).hexdigest()}\n".encode())
    key = "lineage-" + h.hexdigest()
    got = _memo.get(key) or _read_json(_cache_path(key, "history"))
    if isinstance(got, dict) and isinstance(got.get("chains"), dict):
        _memo[key] = got
        return got["chains"]
    try:
        files = mig.history().hashes()
    except OpsError:
        return None
    chains = {}
    for rev in files:
        with contextlib.suppress(Exception):  # a revision the graph could not place: asked the slow way
            chains[rev] = _chain_digest(mig.chain(None, rev), files)
    data = {"format": LINEAGE_FORMAT, "chains": chains}
    _write_json(_cache_path(key, "history"), data)
    _memo[key] = data
    return chains


def known(rev: str) -> bool:
    """Is ``rev`` a revision of the history in use? (:func:`lineage`'s answer: no Alembic on
    an unchanged history; the graph's for any other answer.)"""
    chains = lineage()
    return (chains is not None and rev in chains) or mig.known(rev)


def history_key(rev: str | None, major: int) -> str:
    """sha256 over the history up to ``rev`` (revision ids + file bytes), env.py, server major."""
    h = hashlib.sha256(f"vetai-ops reference {FORMAT} pg{major} {rev or 'base'}\n".encode())
    if rev is not None:
        chains = lineage()
        if chains is not None and rev in chains:
            h.update(chains[rev].encode())
        else:  # the graph's own error (a broken history, an unknown revision)
            from .applied import file_hashes

            h.update(_chain_digest(mig.chain(None, rev), file_hashes()).encode())
    env_py = migrations_dir() / "env.py"
    if env_py.is_file():
        h.update(b"env.py " + hashlib.sha256(env_py.read_bytes()).hexdigest().encode())
    return h.hexdigest()


def _cache_path(key: str, kind: str = "reference") -> Path:
    return cache_dir() / kind / f"{key}.json"


def _read_json(p: Path):
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def _read_cache(key: str) -> dict | None:
    data = _read_json(_cache_path(key))
    return data if isinstance(data, dict) and data.get("format") == FORMAT and "tables" in data else None


def _write_json(p: Path, snap: dict) -> None:
    with contextlib.suppress(OSError):  # a cache that cannot be written only costs time
        for d in (p.parent.parent, p.parent):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(d, 0o700)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.{threading.get_ident()}.tmp")  # the warm thread writes too
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
        with access.connect() as c:
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
    _write_json(_cache_path(key), snap)
    _memo[key] = snap
    return snap, {"key": key, "cached": False, "seconds": round(time.monotonic() - t0, 3)}


def warm(access, rev: str | None) -> bool:
    """Load the cached reference at ``rev`` into this process (the history's lineage and the
    snapshot read: Alembic only when the history changed since its lineage was cached), so
    that a later :func:`reference` for it is a lookup. Never builds one (that writes a
    scratch database): True when it was cached. Meant to run beside work that waits on the
    server (a restore), in a thread."""
    if rev is None:
        return True
    with access.connect() as c:
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
    maint = access.admin
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
