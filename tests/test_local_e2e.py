"""Deploy / backup / rollback end to end on the embedded local env (real PostgreSQL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from procs import cli

from vetai_ops.errors import BackupNotFound, ConfigError, UntrustedBackup
from vetai_ops.store.manifest import ID_RE

ROOT = Path(__file__).resolve().parents[1]


def test_deploy_backup_rollback_cycle(local_env):
    rep = local_env.run("deploy", yes=True)
    assert rep["outcome"] == "success"
    assert rep["to_rev"] == "0013"  # head of the history
    assert int(local_env.psql("select count(*) from clients")) > 0, "first deploy seeds demo data"
    pets_before = local_env.psql("select string_agg(id::text || name, ',' order by id) from pets")

    b = local_env.run("backup")
    bid = b["backup_id"]
    assert ID_RE.match(bid)

    # mutate: delete rows, add a table
    local_env.psql("delete from pets where id in (select id from pets order by id limit 3)")
    local_env.psql("create table after_backup (x int)")
    assert local_env.psql("select string_agg(id::text || name, ',' order by id) from pets") != pets_before

    r = local_env.run("rollback", to=bid, yes=True)
    assert r["outcome"] == "success" and r["restored_id"] == bid
    assert local_env.psql("select string_agg(id::text || name, ',' order by id) from pets") == pets_before
    assert local_env.psql("select to_regclass('public.after_backup')") == ""
    # the previous live DB is kept under <db>_before_<id>
    kept = local_env.psql(f"select datname from pg_database where datname = '{local_env.dbname}_before_{bid.lower()}'")
    assert kept


def test_manifest_fields_and_dump_checksum(local_env):
    import hashlib

    local_env.run("deploy", yes=True)
    rep = local_env.run("backup")
    bid = rep["backup_id"]
    man = json.loads((local_env.backups / "local" / f"{bid}.json").read_text())
    for k in ("id", "env", "database", "size", "sha256", "revision", "server_version", "pg_dump_version",
              "tool_version", "git_commit", "duration_s", "reason", "created_at"):
        assert k in man, k
    dump = local_env.backups / "local" / Path(man["dump_key"]).name
    assert bid in dump.name
    assert dump.stat().st_size == man["size"]
    assert hashlib.sha256(dump.read_bytes()).hexdigest() == man["sha256"]
    assert man["reason"] == "manual" and man["env"] == "local" and man["database"] == local_env.dbname
    assert man["revision"] is not None


def test_manifestless_dump_is_never_listed_nor_restored(local_env):
    local_env.run("deploy", yes=True)
    good = local_env.run("backup")["backup_id"]
    orphan = local_env.backups / "local" / "20200101T000000Z.dump"
    orphan.write_bytes(b"PGDMP partial")
    from vetai_ops.ops.status import list_backups

    ids = [b["id"] for b in list_backups("local")]
    assert good in ids and "20200101T000000Z" not in ids
    assert len(ids) == 2  # the pre-deploy backup and the manual one
    with pytest.raises(BackupNotFound):
        local_env.run("rollback", to="20200101T000000Z", yes=True)


def test_rollback_bad_ids_are_clear(local_env):
    local_env.run("deploy", yes=True)
    bid = local_env.run("backup")["backup_id"]
    with pytest.raises(BackupNotFound, match="required"):
        local_env.run("rollback", yes=True)
    with pytest.raises(BackupNotFound, match="not a backup id"):
        local_env.run("rollback", to="yesterday; rm -rf /", yes=True)
    with pytest.raises(BackupNotFound) as ei:
        local_env.run("rollback", to="19990101T000000Z", yes=True)
    assert bid in (ei.value.hint or "")  # nearest backups are listed
    # a unique prefix works; 'latest' works
    assert local_env.run("rollback", to=bid[:15], yes=True)["restored_id"] == bid
    assert local_env.run("rollback", to="latest", yes=True)["restored_id"] == bid


def test_ambiguous_prefix(local_env):
    local_env.run("deploy", yes=True)
    a = local_env.run("backup")["backup_id"]
    b = local_env.run("backup")["backup_id"]
    assert a != b
    with pytest.raises(BackupNotFound, match="ambiguous"):
        local_env.run("rollback", to=a[:9], yes=True)


def test_cli_status_and_backups_list_json(local_env):
    r = cli("deploy", "--env=local", "--yes")
    assert r.returncode == 0, r.stderr
    r = cli("status", "--env=local", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["current"] == s["head"] and s["pending"] == []
    assert s["database_url"].startswith("postgresql://vetai@")
    psql = subprocess.run([local_env.cluster().bin("psql"), s["database_url"], "-Atc", "select count(*) from pets"], capture_output=True, text=True)
    assert psql.returncode == 0 and int(psql.stdout) > 0, psql.stderr
    r = cli("backup", "--env=local")
    assert r.returncode == 0, r.stderr
    r = cli("backups.list", "--env=local", "--json")
    items = json.loads(r.stdout)
    assert len(items) == 2  # the pre-deploy one and the manual one
    assert items[0]["id"] > items[1]["id"]
    for k in ("id", "sha256", "size", "revision", "created_at"):
        assert k in items[0]


def test_cli_bad_id_exits_nonzero_without_traceback(local_env):
    cli("deploy", "--env=local", "--yes")
    r = cli("rollback", "--to=20991231T000000Z", "--env=local", "--yes")
    assert r.returncode == 2  # refused: nothing changed
    assert "Traceback" not in r.stderr and "no backup" in r.stderr


BAD_INVENTORIES = {
    "syntax": ("environments:\n  local: [unclosed\n", "not valid YAML"),
    "no_envs": ("default_env: local\n", "environments"),
    "bad_type": ("environments:\n  local:\n    database: {port: notanumber}\n", "environments.local.database.port"),
    "unknown_key": ("environments:\n  local:\n    databse: {}\n", "environments.local.databse"),
    "s3_no_bucket": ("environments:\n  prod:\n    storage: {type: s3}\n", "bucket"),
    "password_inline": ("environments:\n  prod:\n    database: {password_env: 'hunter2 pw'}\n", "password_env"),
}


@pytest.mark.parametrize("case", sorted(BAD_INVENTORIES))
def test_bad_inventory_names_file_and_key(tmp_path, monkeypatch, case):
    text, expect = BAD_INVENTORIES[case]
    p = tmp_path / "inv.yml"
    p.write_text(text)
    from vetai_ops.config import load_inventory

    with pytest.raises(ConfigError) as ei:
        load_inventory(p)
    assert str(p) in ei.value.message and expect in ei.value.message
    r = cli("status", "--env=local", env_extra={"VETAI_OPS_INVENTORY": str(p)})
    assert r.returncode == 1 and "Traceback" not in r.stderr and str(p) in r.stderr
    assert "hunter2" not in r.stderr


def test_unknown_env(local_env):
    r = cli("status", "--env=nope")
    assert r.returncode == 1 and "unknown environment 'nope'" in r.stderr and "local" in r.stderr


def test_guide_variables(local_env, monkeypatch):
    # RUN_MIGRATIONS=false: backup and checks run, nothing is applied
    monkeypatch.setenv("RUN_MIGRATIONS", "false")
    rep = local_env.run("deploy", yes=True)
    assert rep["outcome"] == "success" and rep["backup_id"]
    assert local_env.psql("select to_regclass('public.alembic_version')") == ""
    monkeypatch.delenv("RUN_MIGRATIONS")
    # RUN_SEEDS=false on the first deploy: schema but no demo data
    monkeypatch.setenv("RUN_SEEDS", "false")
    local_env.run("deploy", yes=True)
    assert local_env.psql("select version_num from alembic_version") == "0013"
    assert local_env.psql("select count(*) from clients") == "0"
    # RUN_SEEDS=true on a later (not first) deploy: seeds run because they were asked for
    monkeypatch.setenv("RUN_SEEDS", "true")
    local_env.run("deploy", yes=True)
    assert int(local_env.psql("select count(*) from clients")) > 0
    monkeypatch.delenv("RUN_SEEDS")
    # IS_FIRST_DEPLOY=true later: seeds run (idempotently)
    monkeypatch.setenv("IS_FIRST_DEPLOY", "true")
    local_env.run("deploy", yes=True)
    assert int(local_env.psql("select count(*) from clients")) > 0
    n = local_env.psql("select count(*) from pets")
    local_env.run("deploy", yes=True)
    assert local_env.psql("select count(*) from pets") == n


def test_history_journal(local_env):
    local_env.run("deploy", yes=True)
    r = cli("history", "--env=local", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert rows[0]["action"] == "deploy" and rows[0]["outcome"] == "success"
    assert rows[0]["from_revision"] is None and rows[0]["to_revision"] == "0013" and rows[0]["backup_id"]
    assert "@" in rows[0]["operator"]
    assert any(s["step"] == "migrate" and s["duration_s"] >= 0 for s in rows[0]["steps"])
    assert len(rows[0]["revisions"]) == 13
    log = [json.loads(line) for line in (local_env.root / "logs" / "migration.log").read_text().splitlines()]
    assert {"run_started", "step_finished", "run_finished"} <= {x["event"] for x in log}


def test_fab_per_host_tasks(local_env):
    """fabfile.py exposes the same building blocks per host (here: this machine)."""
    local_env.run("deploy", yes=True)
    env = dict(os.environ)
    r = subprocess.run([sys.executable, "-m", "fabric", "--list"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0 and all(t in r.stdout for t in ("dump", "restore", "health", "restart")), r.stderr
    r = subprocess.run([sys.executable, "-m", "fabric", "dump", "--env=local"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    bid = r.stdout.split()[1]
    assert ID_RE.match(bid) and (local_env.backups / "local" / f"{bid}.json").exists()
    local_env.psql("delete from prescriptions")
    r = subprocess.run([sys.executable, "-m", "fabric", "restore", "--env=local", f"--to={bid}", "--yes"], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert int(local_env.psql("select count(*) from prescriptions")) > 0
    # fab restart runs the env's service restart command on this host
    marker = local_env.root / "restarted"
    local_env.inventory.write_text(local_env.inventory.read_text()
                                   + f"    services: {{restart: [sh, -c, 'echo ok > {marker}']}}\n")
    r = subprocess.run([sys.executable, "-m", "fabric", "restart", "--env=local"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and marker.read_text() == "ok\n", r.stderr
    # -H names a host; a local env cannot reach one: refused, not silently ignored
    r = subprocess.run([sys.executable, "-m", "fabric", "-H", "127.0.0.9", "dump", "--env=local"], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "no ssh" in r.stderr and "127.0.0.9" in r.stderr and "Traceback" not in r.stderr


def test_second_rollback_to_the_same_backup_keeps_both_previous_databases(local_env):
    local_env.run("deploy", yes=True)
    bid = local_env.run("backup")["backup_id"]
    local_env.psql("insert into clients (first_name, last_name) values ('First', 'Retired')")
    local_env.run("rollback", to=bid, yes=True)
    local_env.psql("insert into clients (first_name, last_name) values ('Second', 'Retired')")
    local_env.run("rollback", to=bid, yes=True)
    kept = local_env.psql(f"select string_agg(datname, ' ' order by datname) from pg_database "
                          f"where datname like '{local_env.dbname}_before_%'").split()
    assert len(kept) == 2
    c = local_env.cluster()
    found = sorted(c.psql("select first_name from clients where last_name = 'Retired'", db=k) for k in kept)
    assert found == ["First", "Second"]  # neither retired database was dropped


def test_retired_database_name_never_replaces_a_kept_one(local_env):
    """Two restores of one backup within the second the backup was taken: the swap-time name
    equals the backup's own; the third choice gets a counter instead of colliding (CI saw this)."""
    import psycopg

    from vetai_ops.database import retired

    c = local_env.cluster()
    live = local_env.dbname
    for name in (f"{live}_before_20261125t170950z", f"{live}_before_20261125t170950z_2"):
        c.psql(f'CREATE DATABASE "{name}"')

    def maint():
        return psycopg.connect(host=str(c.socket_dir), port=c.port, user=c.superuser, dbname="postgres", autocommit=True)

    try:
        got = retired.unused_name(maint, live, "20261125T170950Z", "20261125T170950Z")
        assert got == f"{live}_before_20261125t170950z_3"
        assert retired.unused_name(maint, live, "20200101T000000Z", "20261125T170950Z") == \
            f"{live}_before_20200101t000000z"
    finally:
        for name in (f"{live}_before_20261125t170950z", f"{live}_before_20261125t170950z_2"):
            c.psql(f'DROP DATABASE "{name}"')


def test_database_names_that_would_be_truncated_are_refused():
    from vetai_ops.config import Database

    Database(name="a" * 36)
    with pytest.raises(ValueError, match="max 36"):
        Database(name="a" * 37)


def test_plan_shows_sql_and_changes_nothing(local_env):
    local_env.run("deploy", yes=True, target="0011")
    history = local_env.psql("select count(*) from deploy_history")
    r = cli("plan", "--env=local")
    assert r.returncode == 0, r.stderr
    assert "-- 0012" in r.stdout and "CREATE TABLE ai_diagnoses" in r.stdout and "-- 0013" in r.stdout
    r = cli("plan", "--env=local", "--json")
    plan = json.loads(r.stdout)["plan"]
    assert plan["pending"] == ["0012", "0013"] and "CREATE TABLE ai_diagnoses" in plan["sql"]["0012"]
    assert (plan["from"], plan["to"]) == ("0011", "0013")
    # nothing written into the database: same revision, no deploy_history row
    assert local_env.psql("select version_num from alembic_version") == "0011"
    assert local_env.psql("select count(*) from deploy_history") == history


def test_pgserver_wheel_engine_deploys_backs_up_and_rolls_back(tmp_path, monkeypatch):
    """The fallback a newcomer without PostgreSQL gets: the pgserver wheel's PostgreSQL 16
    (server, pg_dump and pg_restore from the wheel), forced with `sandbox.engine: pgserver`."""
    import shutil

    from fixtures_pg import free_port, server_dir
    from vetai_ops.database.cluster import pgserver_bindir
    from vetai_ops.config import load_inventory
    from vetai_ops.database.sandbox import sandbox_cluster, stop_sandbox
    from vetai_ops.pipeline import run_playbook

    assert pgserver_bindir() is not None, "pgserver is a dependency (pyproject.toml); pip install -e . installs it"
    sb = server_dir("pgserver")
    inv = tmp_path / "inventory.yml"
    inv.write_text(
        "environments:\n"
        "  local:\n"
        f"    sandbox: {{dir: '{sb}', port: {free_port()}, engine: pgserver}}\n"
        "    database: {name: vc_wheel, user: vetai}\n"
        f"    storage: {{type: local, path: '{tmp_path / 'backups'}'}}\n")
    monkeypatch.setenv("VETAI_OPS_INVENTORY", str(inv))
    monkeypatch.setenv("VETAI_OPS_LOGS", str(tmp_path / "logs"))
    try:
        rep = run_playbook("deploy", "local", options={"yes": True})
        assert rep["outcome"] == "success" and rep["to_rev"] == "0013"
        c = sandbox_cluster(load_inventory(inv).env("local"))
        assert c.version[0] == 16  # the wheel's PostgreSQL (this machine's server is 15)
        bid = run_playbook("backup", "local")["backup_id"]
        c.psql("delete from prescriptions", db="vc_wheel")
        run_playbook("rollback", "local", options={"to": bid, "yes": True})
        assert int(c.psql("select count(*) from prescriptions", db="vc_wheel")) > 0
    finally:
        stop_sandbox(load_inventory(inv).env("local"), destroy=True)
        shutil.rmtree(sb, ignore_errors=True)


def test_a_manifest_describing_another_backup_is_not_trusted(local_env):
    """Manifest fields reach SQL comments, object keys and messages: a manifest whose id or
    dump key is not the backup its file names is refused, never restored."""
    local_env.run("deploy", yes=True)
    bid = local_env.run("backup")["backup_id"]
    mp = local_env.backups / "local" / f"{bid}.json"
    m = json.loads(mp.read_text())
    m["id"] = "20200101T000000Z'; DROP DATABASE postgres; --"
    mp.write_text(json.dumps(m))
    with pytest.raises(UntrustedBackup, match="not trusted"):  # exit 4
        local_env.run("rollback", to=bid, yes=True)
    assert local_env.psql("select count(*) from pg_database where datname = 'postgres'") == "1"
