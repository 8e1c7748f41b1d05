"""Writes during a deploy are never lost without a word (issue 11, item 4), on the SSH + S3
bed with the app's own role writing: the restore reports what it set aside and where."""

from __future__ import annotations

import json
import os

import psycopg
import pytest

from procs import pty_cli, wait_for

pytestmark = pytest.mark.remote



def app_exec(re_, *statements, db: str | None = None):
    """Statements as the app role, one connection, autocommit (then closed: its counters are flushed)."""
    with psycopg.connect(**re_.pg.app_conninfo(db or re_.dbname), autocommit=True) as c:
        for st in statements:
            c.execute(st)


def rows(re_, sql: str, db: str) -> list:
    with psycopg.connect(**re_.pg.conninfo(db), autocommit=True) as c:
        return c.execute(sql).fetchall()


APP_WRITES = (  # exactly 3 inserted, 2 updated, 1 deleted, as the app, into its own table
    "INSERT INTO app_cache.sessions (id, data) VALUES (101, 'a'), (102, 'b'), (103, 'c')",
    "UPDATE app_cache.sessions SET data = data || '!' WHERE id IN (101, 102)",
    "DELETE FROM app_cache.sessions WHERE id = 103",
)


def events_table(re_):
    """A table the app's background writer fills (owned by the app role)."""
    re_.pg.admin("CREATE TABLE app_cache.events (id serial PRIMARY KEY, at timestamptz DEFAULT now())",
                 "ALTER TABLE app_cache.events OWNER TO vetai_app", db=re_.dbname)


def test_writes_during_a_failed_deploy_are_reported_and_kept(remote_env, app_sessions, health):
    """A writer (the app role) runs during a deploy whose post-check fails; during the post-check
    the app also inserts/updates/deletes known rows. The recovery's report counts them per table
    and names the retired database, which holds them; the live database is the backup."""
    assert remote_env.cli("migrations.upgrade", "--env=prod", "--to=0012", "--yes").returncode == 0
    events_table(remote_env)
    remote_env.write(checks=f"{{http: ['{health.url}'], timeout: 2, retries: 1, retry_delay: 0.1}}")
    health.status = 503
    health.on_request = lambda n: n == 1 and app_exec(remote_env, *APP_WRITES)
    writer = app_sessions.writer("app_cache.events", interval=0.02)
    try:
        r = remote_env.cli("deploy", "--env=prod", "--yes", "--json")
    finally:
        app_sessions.close()
    assert r.returncode == 1, r.stderr
    rep = json.loads(r.stdout)["report"]
    assert rep["recovery"]["status"] == "ok"
    w, kept = rep["writes_since_backup"], rep["kept_as"]
    assert w["app_cache.sessions"] == {"inserted": 3, "updated": 2, "deleted": 1}
    assert kept.startswith(remote_env.dbname + "_before_") and kept in remote_env.databases()
    # the retired database holds what the app wrote; the live one is the backup
    assert rows(remote_env, "SELECT id, data FROM app_cache.sessions WHERE id > 100 ORDER BY id", kept) == [
        (101, "a!"), (102, "b!")]
    assert remote_env.psql("SELECT count(*) FROM app_cache.sessions WHERE id > 100") == "0"
    lost = rows(remote_env, "SELECT count(*) FROM app_cache.events", kept)[0][0] - int(
        remote_env.psql("SELECT count(*) FROM app_cache.events"))
    assert writer["ok"] > 0 and lost > 0
    assert w["app_cache.events"]["inserted"] >= lost  # statistics count attempts: an upper bound
    # the tool's own writes (its journal, the migration's bookkeeping) are not the app's
    assert not {"alembic_version", "vetai_ops_applied", "deploy_history"} & set(w)
    # said in words too, in the failure report
    assert "WRITES SINCE THE BACKUP" in r.stderr and "app_cache.sessions +3 ~2 -1" in r.stderr and kept in r.stderr


def test_rollback_shows_the_writes_before_the_operator_confirms(remote_env):
    """On a terminal, rollback's plan lists the writes since that backup BEFORE asking for the
    env name; a wrong answer changes nothing. With --yes --json the report carries them."""
    assert remote_env.cli("deploy", "--env=prod", "--yes").returncode == 0
    r = remote_env.cli("backup", "--env=prod", "--json")
    assert r.returncode == 0, r.stderr
    bid = json.loads(r.stdout)["id"]
    app_exec(remote_env, *APP_WRITES)

    env = dict(os.environ, **remote_env.env_vars(), COLUMNS="200")
    with pty_cli(env, "rollback", f"--to={bid}", "--env=prod") as run:
        assert wait_for(lambda: b"Type the environment name" in run.seen, 120), bytes(run.seen)
        shown = bytes(run.seen).decode(errors="replace")
        run.write(b"not-prod\n")
        code = run.wait()
    before_prompt = shown.split("Type the environment name")[0]
    assert "WRITES SINCE THAT BACKUP" in before_prompt and "app_cache.sessions +3 ~2 -1" in before_prompt
    assert code == 2  # not confirmed: nothing changed
    assert remote_env.psql("SELECT count(*) FROM app_cache.sessions WHERE id > 100") == "2"

    r = remote_env.cli("rollback", f"--to={bid}", "--env=prod", "--yes", "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)["report"]
    assert rep["writes_since_backup"]["app_cache.sessions"] == {"inserted": 3, "updated": 2, "deleted": 1}
    assert rows(remote_env, "SELECT count(*) FROM app_cache.sessions WHERE id > 100", rep["kept_as"]) == [(2,)]
    assert remote_env.psql("SELECT count(*) FROM app_cache.sessions WHERE id > 100") == "0"

    # the live database is now a restored copy, not the one backed up: its statistics do not
    # reach back to the backup, so the count is "unknown", said so, never a made-up zero
    r = remote_env.cli("rollback", f"--to={bid}", "--env=prod", "--yes", "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)["report"]
    assert rep["writes_since_backup"] is None and "replaced" in " ".join(rep["writes_notes"])
    assert "writes since backup" in r.stderr and "unknown" in r.stderr


def _deploy_recovered_with_app_writes(re_, health):
    """A deploy with downgrade_on_failure whose post-check health fails; at the first health
    request the app writes (APP_WRITES): it fails and recovers. (the CLI's result, its report)"""
    re_.write(downgrade_on_failure="true", checks=f"{{http: ['{health.url}'], timeout: 2, retries: 1, retry_delay: 0.1}}")
    health.status = 503
    health.on_request = lambda n: n == 1 and app_exec(re_, *APP_WRITES)
    r = re_.cli("deploy", "--env=prod", "--yes", "--json")
    assert r.returncode == 1, r.stderr
    return r, json.loads(r.stdout)["report"]


def test_downgrade_on_failure_keeps_the_writes(remote_env, health, migrations_copy):
    """downgrade_on_failure with a revision whose downgrade loses nothing (an index): the
    recovery downgrades, and what the app wrote during the deploy is still in the live database."""
    assert remote_env.cli("migrations.upgrade", "--env=prod", "--to=head", "--yes").returncode == 0
    migrations_copy.add("0014", "0013", 'op.create_index("ix_pets_name_planted", "pets", ["name"])',
                        'op.drop_index("ix_pets_name_planted", table_name="pets")')
    r, rep = _deploy_recovered_with_app_writes(remote_env, health)
    assert rep["recovery"]["status"] == "ok" and rep["recovered_by"] == "downgrade"
    assert [s["step"] for s in rep["recovery"]["steps"] if s["status"] == "ok"] == [
        "recovery_plan", "downgrade", "restart", "postcheck"]
    assert remote_env.revision() == "0013"
    assert remote_env.psql("SELECT to_regclass('public.ix_pets_name_planted')") == ""
    # the app's writes are still live; no database was retired
    assert remote_env.psql("SELECT string_agg(id || data, ',' ORDER BY id) FROM app_cache.sessions WHERE id > 100") == "101a!,102b!"
    assert rep.get("kept_as") is None and remote_env.databases() == [remote_env.dbname]
    assert "writes since the backup are kept" in r.stderr


def test_downgrade_on_failure_restores_when_a_downgrade_would_lose_data(remote_env, health):
    """0013's downgrade drops tables and columns: the recovery restores the backup, says why,
    and reports the writes it set aside."""
    assert remote_env.cli("migrations.upgrade", "--env=prod", "--to=0012", "--yes").returncode == 0
    r, rep = _deploy_recovered_with_app_writes(remote_env, health)
    assert rep["recovery"]["status"] == "ok" and rep.get("recovered_by") is None
    assert "downgrade_on_failure is set, but the backup is restored instead" in r.stderr
    assert "0013: downgrade drop_column" in r.stderr or "0013: downgrade drop_table" in r.stderr
    assert remote_env.revision() == "0012"
    assert rep["writes_since_backup"]["app_cache.sessions"] == {"inserted": 3, "updated": 2, "deleted": 1}
    assert rep["kept_as"] in remote_env.databases()
