"""A restore on a production-like bed (issue 11): a non-superuser deploy role, the app's own
sessions, database-level grants and settings, an operator that dies mid-swap.

The swap is stopped at a known statement by a lock the test holds (a row lock on the
database's pg_database row: ``ALTER DATABASE ... RENAME`` waits on it), never by timing."""

from __future__ import annotations

import json
import signal
import time

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
        out, err = p.communicate(timeout=120)
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

