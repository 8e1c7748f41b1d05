"""A restore on a production-like bed (issue 11): a non-superuser deploy role, the app's own
sessions, database-level grants and settings, an operator that dies mid-swap.

The swap is stopped at a known statement by a lock the test holds (a row lock on the
database's pg_database row: ``ALTER DATABASE ... RENAME`` waits on it), never by timing."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from vetai_ops.database.swap import APPLICATION

pytestmark = pytest.mark.remote


def _deploy_and_backup(env) -> str:
    r = env.cli("deploy", "--env=prod", "--yes")
    assert r.returncode == 0, r.stderr
    r = env.cli("backup", "--env=prod", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["id"]


def _wait(cond, what: str, timeout: float = 90):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _swap_waiting(pg, renaming: str):
    """The swap session's pid once it waits on a lock in ``ALTER DATABASE <renaming> RENAME``."""
    def probe():
        rows = pg.admin(sql.SQL("SELECT pid, query FROM pg_stat_activity WHERE application_name = {}"
                                " AND wait_event_type = 'Lock'").format(sql.Literal(APPLICATION)))
        for pid, query in rows:
            if query.startswith(f'ALTER DATABASE "{renaming}" RENAME'):
                return pid
        return None
    return _wait(probe, f"the swap to wait while renaming {renaming}")


def _row_lock(pg, dbname: str):
    """Hold a row lock on ``dbname``'s pg_database row: its RENAME waits until we let go."""
    c = psycopg.connect(**pg.conninfo())
    c.execute(sql.SQL("SELECT 1 FROM pg_database WHERE datname = {} FOR UPDATE").format(sql.Literal(dbname)))
    return c


def _live_open(env) -> bool:
    """The live name exists, allows connections, and the app gets in."""
    rows = env.pg.admin(sql.SQL("SELECT datallowconn FROM pg_database WHERE datname = {}").format(
        sql.Literal(env.dbname)))
    if rows != [(True,)]:
        return False
    with psycopg.connect(**env.pg.app_conninfo(env.dbname)) as c:
        return c.execute("SELECT 1").fetchone() == (1,)


def _copies(env) -> list[str]:
    return [d for d in env.databases() if "_restore_" in d]


@pytest.mark.parametrize("stage", ["live", "copy"])
@pytest.mark.parametrize("who", ["operator", "session"])
def test_killed_at_each_swap_stage(remote_env, app_sessions, stage, who):
    """Stop the swap at its first rename (live -> before) or its second (copy -> live); then
    SIGKILL the operator, or end its maintenance session. The live name is there and open
    all along; the restore copy is dropped by that run (session ended) or by the next one,
    which says so and then restores."""
    env, pg = remote_env, remote_env.pg
    bid = _deploy_and_backup(env)
    env.psql("CREATE TABLE oops (x int)")  # the state the rollback is meant to undo
    app_sessions.idle()
    copy = f"{env.dbname}_restore_{bid}".lower()
    hold_live = _row_lock(pg, env.dbname)
    hold_copy = None
    p = env.popen("rollback", f"--to={bid}", "--env=prod", "--yes")
    try:
        pid = _swap_waiting(pg, env.dbname)
        if stage == "copy":  # let the first rename through, stop at the second
            hold_copy = _row_lock(pg, copy)
            hold_live.rollback()
            pid = _swap_waiting(pg, copy)
        # mid-swap: the live name is still there for everyone else (the rename is not committed)
        assert pg.admin(sql.SQL("SELECT 1 FROM pg_database WHERE datname = {}").format(sql.Literal(env.dbname)))
        if who == "operator":
            p.send_signal(signal.SIGKILL)
        else:
            pg.admin(sql.SQL("SELECT pg_terminate_backend({})").format(sql.Literal(pid)))
        _wait(lambda: not pg.admin(sql.SQL("SELECT 1 FROM pg_stat_activity WHERE pid = {}").format(sql.Literal(pid))),
              "the dead operator's swap session to end", timeout=60)
    finally:
        for h in (hold_live, hold_copy):
            if h is not None:
                h.close()
        _, err = p.communicate(timeout=120)
    assert p.returncode != 0
    assert _live_open(env)
    assert env.psql("SELECT to_regclass('public.oops')") == "oops"  # nothing was swapped
    if who == "session":
        assert "Traceback" not in err and _copies(env) == []  # that run dropped its copy
    else:
        assert _copies(env) == [copy]  # a SIGKILLed run cannot clean up: the next one does
    r = env.cli("rollback", f"--to={bid}", "--env=prod", "--yes")
    assert r.returncode == 0, r.stderr
    if who == "operator":
        assert f"repaired an interrupted restore: dropped {copy}" in r.stderr
    assert _copies(env) == []
    assert env.psql("SELECT to_regclass('public.oops')") == ""
    assert _live_open(env)


def test_next_run_repairs_what_the_old_two_step_swap_left(remote_env):
    """A live database left refusing connections, or a live name left missing (the older swap
    died between its renames): the next mutating run repairs it first and says so."""
    env, pg = remote_env, remote_env.pg
    assert env.cli("deploy", "--env=prod", "--yes").returncode == 0
    db = sql.Identifier(env.dbname)
    pg.admin(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(db))
    r = env.cli("deploy", "--env=prod", "--yes")
    assert r.returncode == 0, r.stderr
    assert "accepts connections again" in r.stderr and _live_open(env)
    aside = f"{env.dbname}_before_20260101t000000z"
    pg.admin(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(db, sql.Identifier(aside)))
    r = env.cli("deploy", "--env=prod", "--yes")
    assert r.returncode == 0, r.stderr
    assert f"renamed {aside} back to {env.dbname}" in r.stderr and _live_open(env)
    assert env.revision() != "base"



def test_rollback_while_the_app_is_connected(remote_env, app_sessions):
    """The app's sessions (another role) are ended at the swap by the non-superuser deploy
    role; the app reconnects to the restored database and goes on writing."""
    env = remote_env
    bid = _deploy_and_backup(env)
    pets = env.psql("SELECT count(*) FROM pets")
    env.psql("DELETE FROM pets WHERE id IN (SELECT id FROM pets LIMIT 1)")
    app_sessions.idle()
    writer = app_sessions.writer("app_cache.sessions")  # the app keeps writing through the rollback
    _wait(lambda: writer["ok"] > 0, "the app's first write")
    r = env.cli("rollback", f"--to={bid}", "--env=prod", "--yes")
    assert r.returncode == 0, r.stderr
    # the one-job restore of a zstd backup on this production: its compressed bytes spooled to the
    # DB host over SSH, verified, then piped through zstd -d into pg_restore; the spool removed
    assert "zstd -d | pg_restore into" in " ".join(r.stderr.split()), r.stderr
    assert not list(Path("/tmp").glob(f"vetai-ops-spool-{env.dbname}.*"))
    assert app_sessions.alive() == [False]  # ended at the swap
    with psycopg.connect(**env.pg.app_conninfo(env.dbname)) as c:  # and back in, to the restored copy
        assert str(c.execute("SELECT count(*) FROM pets").fetchone()[0]) == pets
    ok = writer["ok"]
    _wait(lambda: writer["ok"] > ok, "the app's writer to write to the restored database")
    assert _copies(env) == []


# ---------------------------------------------------------------- the same database to the app


def _catalog(env) -> dict:
    """What the app sees of the database, from the catalogs (asked as the superuser)."""
    pg, lit = env.pg, sql.Literal(env.dbname)
    out = {}
    out["database"] = pg.admin(sql.SQL(
        "SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype, datconnlimit,"
        " shobj_description(oid, 'pg_database'), array(SELECT x::text FROM unnest(datacl) x ORDER BY 1)"
        " FROM pg_database WHERE datname = {}").format(lit))
    out["settings"] = pg.admin(sql.SQL(
        "SELECT coalesce(pg_get_userbyid(nullif(s.setrole, 0)), ''), array(SELECT unnest(s.setconfig) ORDER BY 1)"
        " FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = {} ORDER BY 1"
    ).format(lit))
    out["relations"] = pg.admin(
        "SELECT n.nspname, c.relname, c.relkind, pg_get_userbyid(c.relowner),"
        " array(SELECT x::text FROM unnest(c.relacl) x ORDER BY 1)"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1, 2",
        db=env.dbname)
    out["schemas"] = pg.admin(
        "SELECT nspname, pg_get_userbyid(nspowner), array(SELECT x::text FROM unnest(nspacl) x ORDER BY 1)"
        " FROM pg_namespace WHERE nspname NOT LIKE 'pg_%' AND nspname <> 'information_schema' ORDER BY 1", db=env.dbname)
    out["default_acl"] = pg.admin(
        "SELECT pg_get_userbyid(defaclrole), defaclnamespace::regnamespace::text, defaclobjtype, defaclacl::text"
        " FROM pg_default_acl ORDER BY 1, 2, 3", db=env.dbname)
    return out


def test_rollback_gives_back_the_same_database_to_the_app(remote_env):
    """Owner, ACL, settings, per-role settings, encoding/collation, comment, object owners and
    grants after a rollback equal what they were at the backup (catalogs compared)."""
    env = remote_env
    assert env.cli("deploy", "--env=prod", "--yes").returncode == 0
    env.psql("REVOKE DELETE ON pets FROM vetai_app; GRANT SELECT ON clients TO PUBLIC")
    env.psql("CREATE TABLE app_cache.prefs (k text PRIMARY KEY, v text)", user=env.pg.app_user)
    env.pg.admin(sql.SQL("ALTER DATABASE {} SET search_path = \"$user\", public, \"odd, name\"").format(
        sql.Identifier(env.dbname)))
    before = _catalog(env)
    assert before["database"][0][2] == "C.utf8" and before["settings"] and before["default_acl"]
    r = env.cli("backup", "--env=prod", "--json")
    assert r.returncode == 0, r.stderr
    bid = json.loads(r.stdout)["id"]
    man = json.loads(env.s3.client().get_object(Bucket=env.bucket, Key=f"prod/prod/{bid}.json")["Body"].read())
    assert man["database_props"]["comment"] and man["database_props"]["acl"] and man["object_owners"]
    # the database changes after the backup, at the database level too
    db = sql.Identifier(env.dbname)
    env.pg.admin(sql.SQL("ALTER DATABASE {} SET work_mem = '64MB'").format(db),
                 sql.SQL("GRANT CONNECT ON DATABASE {} TO PUBLIC").format(db),
                 sql.SQL("COMMENT ON DATABASE {} IS 'changed'").format(db))
    env.psql("DELETE FROM pets")
    r = env.cli("rollback", f"--to={bid}", "--env=prod", "--yes")
    assert r.returncode == 0, r.stderr
    after = _catalog(env)
    for k in before:
        assert after[k] == before[k], k
    assert env.psql("SELECT count(*) FROM pets") != "0"
    with psycopg.connect(**env.pg.app_conninfo(env.dbname)) as c:  # the app's own setting is back
        assert c.execute("SHOW statement_timeout").fetchone()[0] == "30s"


# ---------------------------------------------------------------- preflight: the rights to recover


def _limited_role(env, lacking: str) -> str:
    """A deploy role with every right README lists but ``lacking``; it owns the database."""
    pg = env.pg
    name = f"deploy_{lacking}_{env.dbname[-6:]}"
    member_of = [r for r, k in (("pg_signal_backend", "signal"), ("pg_read_all_settings", "settings_read"),
                                (pg.app_user, "app_member")) if k != lacking]
    pg.create_role(name, pg.deploy_password, *(() if lacking == "createdb" else ("CREATEDB",)), member_of=tuple(member_of))
    db = sql.Identifier(env.dbname)
    if lacking != "owner":
        pg.admin(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(db, sql.Identifier(name)))
    else:
        pg.admin(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db, sql.Identifier(name)))
    if lacking == "signal":  # anyone may connect: only pg_signal_backend ends every session
        pg.admin(sql.SQL("GRANT CONNECT ON DATABASE {} TO PUBLIC").format(db))
    env.use_role(name, pg.deploy_password)
    return name


@pytest.mark.parametrize("lacking,statement", [
    ("createdb", 'ALTER ROLE "{role}" CREATEDB;'),
    ("owner", 'ALTER DATABASE "{db}" OWNER TO "{role}";'),
    ("signal", 'GRANT pg_signal_backend TO "{role}";'),
    ("app_member", 'GRANT "vetai_app" TO "{role}";'),
    ("settings_read", 'GRANT pg_read_all_settings TO "{role}";'),
])
def test_preflight_refuses_without_each_right(remote_env, lacking, statement):
    """Each missing right refuses the deploy before the backup (exit 2), naming its GRANT."""
    role = _limited_role(remote_env, lacking)
    r = remote_env.cli("deploy", "--env=prod", "--yes")
    assert r.returncode == 2, r.stderr
    assert statement.format(role=role, db=remote_env.dbname) in r.stderr
    assert "Traceback" not in r.stderr and "nothing changed" in r.stderr
    assert remote_env.objects() == [] and remote_env.revision() == "base"


def test_rollback_refuses_before_restoring_without_the_rights(remote_env):
    """A rollback asks the same before it restores anything: exit 2, the GRANT named, the
    live database untouched and no copy made."""
    env = remote_env
    bid = _deploy_and_backup(env)
    env.psql("CREATE TABLE oops (x int)")
    pg = env.pg
    revoke = sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(pg.app_user), sql.Identifier(pg.deploy_user))
    pg.admin(revoke)  # the deploy role no longer may act as the app role (owner of app_cache, its settings)
    try:
        r = env.cli("rollback", f"--to={bid}", "--env=prod", "--yes")
    finally:
        pg.admin(sql.SQL("GRANT {} TO {}").format(sql.Identifier(pg.app_user), sql.Identifier(pg.deploy_user)))
    assert r.returncode == 2, r.stderr
    assert f'GRANT "{pg.app_user}" TO "{pg.deploy_user}";' in r.stderr and "before restoring" in r.stderr
    assert env.psql("SELECT to_regclass('public.oops')") == "oops" and _copies(env) == []


def test_automatic_recovery_while_the_app_is_connected(remote_env, app_sessions, health):
    """A deploy that fails after its backup restores it while the app holds sessions and
    writes; the app's sessions are ended at the swap and it reconnects to the restored DB,
    which has the app's grants and settings as before."""
    env = remote_env
    env.write(checks=f"{{http: ['{health.url}'], timeout: 2, retries: 1, retry_delay: 0.1}}")
    assert env.cli("migrations.upgrade", "--env=prod", "--to=0012", "--yes").returncode == 0
    app_sessions.idle()
    writer = app_sessions.writer("app_cache.sessions")
    _wait(lambda: writer["ok"] > 0, "the app's first write")
    health.status = 503
    r = env.cli("deploy", "--env=prod", "--yes")
    assert r.returncode != 0 and "recovered" in r.stderr, r.stderr
    assert "RECOVERY FAILED" not in r.stderr
    assert env.revision() == "0012" and _copies(env) == []
    assert app_sessions.alive() == [False]
    ok = writer["ok"]
    _wait(lambda: writer["ok"] > ok, "the app's writer to write to the restored database")
    with psycopg.connect(**env.pg.app_conninfo(env.dbname)) as c:
        assert c.execute("SHOW statement_timeout").fetchone()[0] == "30s"
        assert c.execute("SELECT count(*) FROM clients").fetchone()[0] >= 0


def test_preflight_refuses_without_room_for_the_restore_copy(remote_env):
    """The database lives in a tablespace on a small disk (a 12 MiB tmpfs): the copy a restore
    would write there does not fit, so the deploy is refused before the backup. Creating the
    copy in that tablespace is a right of its own, named first."""
    import os
    import subprocess
    import tempfile

    from bed import require_or_skip
    from vetai_ops.database.cluster import _server_user

    env, pg = remote_env, remote_env.pg
    d = tempfile.mkdtemp(prefix="vetai-tiny-ts-")
    os.chmod(d, 0o755)
    user = _server_user()
    opts = "size=12m,mode=0700" + (f",uid={_uid(user)},gid={_gid(user)}" if user else "")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", d], capture_output=True)
    if r.returncode != 0:
        require_or_skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    space = sql.Identifier(f"tiny_{env.dbname}")
    try:
        pg.admin(sql.SQL("CREATE TABLESPACE {} LOCATION {}").format(space, sql.Literal(d)))
        pg.admin(sql.SQL("ALTER DATABASE {} SET TABLESPACE {}").format(sql.Identifier(env.dbname), space))
        r = env.cli("deploy", "--env=prod", "--yes")
        assert r.returncode == 2, r.stderr
        assert f'GRANT CREATE ON TABLESPACE "tiny_{env.dbname}" TO "{pg.deploy_user}";' in r.stderr
        pg.admin(sql.SQL("GRANT CREATE ON TABLESPACE {} TO {}").format(space, sql.Identifier(pg.deploy_user)))
        r = env.cli("deploy", "--env=prod", "--yes")
        assert r.returncode == 2, r.stderr
        assert "not enough room for a restore copy" in r.stderr and d in r.stderr
        assert env.objects() == [] and env.revision() == "base"
    finally:
        for db in env.databases():
            pg.admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
        pg.admin(sql.SQL("DROP TABLESPACE IF EXISTS {}").format(space))
        subprocess.run(["umount", "-l", d], check=False)


def _uid(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_uid


def _gid(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_gid


def test_preflight_refuses_objects_a_non_superuser_cannot_restore_under_their_owner(remote_env):
    """A table the app owns in the deploy role's public schema: pg_restore (not a superuser)
    could not give it back to the app (its ALTER ... OWNER TO runs before the schema's grants
    are restored), so the deploy is refused before the backup, naming the table."""
    env, pg = remote_env, remote_env.pg
    pg.admin(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(pg.app_user)), db=env.dbname)
    env.psql("CREATE TABLE public.app_notes (id int)", user=pg.app_user)
    r = env.cli("deploy", "--env=prod", "--yes", "--accept-drift=table:app_notes")  # drift is not the point here
    assert r.returncode == 2, r.stderr
    assert f'ALTER TABLE "public"."app_notes" OWNER TO "{pg.deploy_user}";' in r.stderr
    assert env.objects() == [] and env.revision() == "base"


def test_rollback_while_autovacuum_works_on_the_live_database(remote_env):
    """An autovacuum worker on the live database has no role: the non-superuser deploy role
    may not end it ("must be a superuser to terminate superuser process"), and it need not,
    since PostgreSQL stops it for the rename. The rollback succeeds with one at work (found in
    a full-suite run, where autovacuum visited the freshly seeded database at the swap)."""
    env, pg = remote_env, remote_env.pg
    bid = _deploy_and_backup(env)
    # a table whose vacuum is throttled to a crawl, so the worker stays on the database
    env.psql("CREATE TABLE churn (id int, pad text) WITH (autovacuum_vacuum_cost_delay = 100,"
             " autovacuum_vacuum_cost_limit = 1, autovacuum_vacuum_threshold = 0,"
             " autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_insert_threshold = 0)")
    env.psql("INSERT INTO churn SELECT g, repeat('x', 200) FROM generate_series(1, 60000) g; DELETE FROM churn")
    pg.admin("ALTER SYSTEM SET autovacuum_naptime = 1", "SELECT pg_reload_conf()")
    try:
        def worker():
            return pg.admin(sql.SQL("SELECT pid FROM pg_stat_activity WHERE datname = {}"
                                    " AND backend_type = 'autovacuum worker'").format(sql.Literal(env.dbname)))
        _wait(worker, "an autovacuum worker on the live database")
        r = env.cli("rollback", f"--to={bid}", "--env=prod", "--yes")
        assert r.returncode == 0, r.stderr
    finally:
        pg.admin("ALTER SYSTEM RESET autovacuum_naptime", "SELECT pg_reload_conf()")
    assert "churn" not in env.psql("SELECT string_agg(relname, ',') FROM pg_class WHERE relname = 'churn'")
    assert _copies(env) == []
