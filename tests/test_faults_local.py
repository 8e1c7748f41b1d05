"""Faults injected for real on the embedded local env; each case asserts the invariants (docs/architecture.md):
live DB at its pre-deploy revision with identical rows, nothing half-registered,
a clear report, a non-zero exit, and a following deploy that succeeds."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from fixtures_pg import snapshot
from procs import cli, cli_bg, frozen, pids, wait_for

from vetai_ops.errors import ChecksumMismatch, CommandFailed, ConfigError, DeployFailed, GateRefused, StoreError


def deployed(le, **opts):
    le.run("deploy", yes=True, **opts)
    return snapshot(le)


class AdvisoryGate:
    """An advisory lock this test holds, so a planted revision running
    ``SELECT pg_advisory_lock(<key>)`` waits inside its migration until the test opens the
    gate: the run is held for certain (no pg_sleep a slow machine could outlast)."""

    def __init__(self, le, key: int):
        from sqlalchemy import create_engine, text

        self.le, self.key, self.text = le, key, text
        self.conn = create_engine(le.cluster().url(le.dbname), isolation_level="AUTOCOMMIT").connect()
        self.conn.execute(text(f"SELECT pg_advisory_lock({key})"))
        self.revision_sql = f"op.execute('SET lock_timeout = 0')\nop.execute('SELECT pg_advisory_lock({key})')"

    def waiting(self) -> bool:
        return self.le.psql(
            f"select count(*) from pg_stat_activity where datname = current_database()"
            f" and query like 'SELECT pg_advisory_lock({self.key})%' and wait_event_type = 'Lock'") == "1"

    def open(self) -> None:
        from sqlalchemy.exc import OperationalError

        conn, self.conn = self.conn, None
        if conn is not None:
            try:  # a recovery that swapped the database in terminated this session: the lock went with it
                conn.execute(self.text(f"SELECT pg_advisory_unlock({self.key})"))
            except OperationalError:
                pass
            finally:
                conn.close()


# ------------------------------------------------------------------ 1. half-applied revision


def test_failing_revision_restores_pre_deploy_state(local_env, migrations_copy):
    before = deployed(local_env)
    migrations_copy.add("0014", "0013", 'op.create_table("promo_codes", sa.Column("code", sa.Text, primary_key=True))\n'
                        "op.execute(\"INSERT INTO promo_codes VALUES ('VET10')\")", 'op.drop_table("promo_codes")')
    migrations_copy.add("0015", "0014", 'op.create_table("half", sa.Column("x", sa.Integer))\n'
                        'raise RuntimeError("boom in 0015 after creating a table")', 'op.drop_table("half")')
    with pytest.raises(DeployFailed) as ei:
        local_env.run("deploy", yes=True)
    rep = ei.value.report
    assert rep["failed_step"] == "migrate" and "boom in 0015" in rep["error"]
    assert rep["recovery"]["status"] == "ok" and rep["backup_id"]
    assert snapshot(local_env) == before  # 0014's committed table is gone too: restored
    # journaled in the DB and the log file
    row = local_env.psql("select outcome from deploy_history order by id desc limit 1")
    assert row == "failed+restored"
    log = (local_env.root / "logs" / "migration.log").read_text()
    assert "boom in 0015" in log
    # the run's log sits next to the backup it made
    assert (local_env.backups / "local" / f"{rep['backup_id']}.log.jsonl").exists()
    # a revision that leaves the live schema other than the history builds it (it depends on the
    # live data): the post-check's drift check catches it, restored
    migrations_copy.add("0015", "0014", 'op.execute("DO $$ BEGIN IF EXISTS (SELECT 1 FROM pets) THEN '
                        'CREATE TABLE half (x int); END IF; END $$")', 'op.execute("DROP TABLE IF EXISTS half")')
    with pytest.raises(DeployFailed, match="schema"):
        local_env.run("deploy", yes=True)
    assert snapshot(local_env) == before
    # without the planted revisions the next deploy succeeds
    for rev in ("0014", "0015"):
        (migrations_copy.path / "versions" / f"{rev}_planted.py").unlink()
    assert local_env.run("deploy", yes=True)["outcome"] == "success"
    assert snapshot(local_env)["revision"] == "0013"


# ------------------------------------------------------------------ 2. post-check fails (health)


def _with_checks(le, url, retries=2):
    text = le.inventory.read_text().replace(
        "    storage:", f"    checks: {{http: ['{url}'], timeout: 2, retries: {retries}, retry_delay: 0.1}}\n    storage:")
    le.inventory.write_text(text)


def test_health_check_failure_restores(local_env, migrations_copy, health):
    # deploy to 0012 first, so the failing deploy has a revision to apply
    local_env.run("deploy", yes=True, target="0012")
    before = snapshot(local_env)
    assert before["revision"] == "0012"
    _with_checks(local_env, health.url)
    health.status = 503
    with pytest.raises(DeployFailed) as ei:
        local_env.run("deploy", yes=True)
    rep = ei.value.report
    assert rep["failed_step"] == "postcheck" and "health" in rep["error"] and "503" in rep["error"]
    assert rep["recovery"]["status"] == "ok"  # the DB is restored; the still-down endpoint is reported
    assert any("HEALTH STILL FAILING" in d for d in rep["recovery"]["done"])
    assert snapshot(local_env) == before
    health.status = 200
    rep = local_env.run("deploy", yes=True)
    assert rep["outcome"] == "success" and snapshot(local_env)["revision"] == "0013"


def test_rollback_whose_postcheck_fails_says_what_state_it_left(local_env, health):
    """A rollback has no backup of its own to fall back on: when its post-check fails after
    the swap, the report says the restore is done and where the replaced database is kept."""
    local_env.run("deploy", yes=True)
    bid = local_env.run("backup")["backup_id"]
    _with_checks(local_env, health.url)
    health.status = 503
    with pytest.raises(DeployFailed) as ei:
        local_env.run("rollback", to=bid, yes=True)
    msg = ei.value.message
    assert "failed at postcheck" in msg and f"the live database is backup {bid}" in msg
    assert f"{local_env.dbname}_before_{bid.lower()}" in msg and "no backup was taken" not in msg


# ------------------------------------------------------------------ 5. corrupted backup


def test_flipped_byte_refuses_rollback(local_env):
    local_env.run("deploy", yes=True)
    bid = local_env.run("backup")["backup_id"]
    local_env.psql("delete from vaccinations")
    before = snapshot(local_env)
    dump = local_env.backups / "local" / f"{bid}.dump"
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0x01
    dump.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatch, match="corrupt"):
        local_env.run("rollback", to=bid, yes=True)
    assert snapshot(local_env) == before
    scratch = local_env.psql(f"select count(*) from pg_database where datname like '{local_env.dbname}_restore_%'")
    assert scratch == "0"
    r = cli("rollback", f"--to={bid}", "--env=local", "--yes")
    assert r.returncode == 4 and "corrupt" in r.stderr and "Traceback" not in r.stderr  # 4: failed verification
    assert snapshot(local_env) == before
    assert local_env.run("deploy", yes=True)["outcome"] == "success"  # and the next deploy goes through


# ------------------------------------------------------------------ 6. pg_restore killed half-way


def test_pg_restore_killed_leaves_live_untouched(local_env, tmp_path):
    local_env.run("deploy", yes=True)
    bid = local_env.run("backup")["backup_id"]
    local_env.psql("delete from notifications")
    before = snapshot(local_env)
    real = local_env.cluster().bindir
    wrap = tmp_path / "bin"
    wrap.mkdir()
    for tool in ("pg_dump", "psql"):
        (wrap / tool).symlink_to(real / tool)
    # a pg_restore that restores part of the archive and is then killed with SIGKILL
    (wrap / "pg_restore").write_text(
        "#!/bin/sh\n"
        f"'{real}/pg_restore' --section=pre-data \"$@\" &\n"
        "child=$!\nwait $child\n"
        "kill -9 $$\n"
    )
    (wrap / "pg_restore").chmod(0o755)
    inv = local_env.inventory.read_text().replace("user: vetai}", f"user: vetai, bin_dir: '{wrap}'}}")
    local_env.inventory.write_text(inv)
    with pytest.raises(CommandFailed, match="pg_restore"):
        local_env.run("rollback", to=bid, yes=True)
    assert snapshot(local_env) == before
    assert local_env.psql(f"select count(*) from pg_database where datname like '{local_env.dbname}_restore_%'") == "0"


def test_stalled_pg_restore_is_stopped_and_the_live_database_kept(local_env):
    """A pg_restore that gets nowhere (frozen with SIGSTOP on the DB host: its sessions sit
    idle) moves no byte past the operator, so the stall watch asks the server: no progress
    for backup.stall_timeout and it is killed, the copy dropped, the live database untouched,
    the lock released; the next rollback goes through."""
    local_env.run("deploy", yes=True)
    bid = local_env.run("backup")["backup_id"]
    local_env.psql("delete from notifications")
    before = snapshot(local_env)
    local_env.configure(backup="{stall_timeout: 2}")
    p = cli_bg("rollback", f"--to={bid}", "--env=local", "--yes")
    stopped: list[int] = []
    try:
        assert wait_for(lambda: bool(pids("pg_restore", local_env.dbname)), proc=p), "pg_restore never started"
        for pid in pids("pg_restore", local_env.dbname):
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
        out, err = p.communicate(timeout=300)
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if p.poll() is None:
            p.kill()
            p.communicate()
    said = " ".join(err.split())
    assert p.returncode == 1, said
    assert "pg_restore into" in said and "made no progress for 2s (backup.stall_timeout) and was stopped" in said, said
    assert "the live database was not touched" in said and "Traceback" not in said, said
    # killed by the run: gone, or (in the zstd -d | pg_restore pipe, whose shell the kill ended too) a
    # zombie until the init process reaps it
    assert stopped and wait_for(lambda: not [pid for pid in stopped if _alive(pid)], timeout=30)
    assert snapshot(local_env) == before
    assert local_env.psql(f"select count(*) from pg_database where datname like '{local_env.dbname}_restore_%'") == "0"
    assert not list(Path("/tmp").glob(f"vetai-ops-spool-{local_env.dbname}.*"))
    local_env.configure()
    assert local_env.run("rollback", to=bid, yes=True)["outcome"] == "success"  # nothing left in its way
    assert local_env.psql("select count(*) from notifications") != "0"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _advisory_held(le, cls: int, key: int) -> bool:
    return le.cluster().psql(f"select count(*) from pg_locks where locktype = 'advisory' and granted"
                             f" and classid = {cls} and objid = {key & 0xFFFFFFFF}") != "0"


def test_scratch_databases_of_killed_runs_are_dropped_by_the_next_run_never_a_live_ones(local_env, migrations_copy):
    """A drift reference build and a backup drill, each killed with SIGKILL half-way, leave
    ``<db>_ref_*`` and ``<db>_verify_<id>``. The next run that takes the lock (backups.prune)
    drops the drill's copy at once; the reference only once its builder is dead: a `check`
    still building one (it takes no lock) keeps it."""
    from vetai_ops.database.advisory import LOCK_CLASS, lock_key
    from vetai_ops.database.scratch import SCRATCH_CLASS

    db = local_env.dbname
    local_env.run("deploy", yes=True)
    bid = local_env.run("backup")["backup_id"]
    head = local_env.psql("select version_num from alembic_version")
    # the live database stands at a revision whose reference build blocks (in the scratch database only)
    migrations_copy.add("9002", head, "op.execute('SELECT pg_sleep(3600)')")
    local_env.psql("update alembic_version set version_num = '9002'")

    def building() -> str:
        return local_env.psql(f"select datname from pg_stat_activity where datname like '{db}_ref_%'"
                              " and query like '%pg_sleep(3600)%' limit 1")

    check = cli_bg("check", "--env=local")
    try:
        assert wait_for(lambda: bool(building()), proc=check), "the reference build never started"
        ref = building()
        # a drill killed mid-restore: the CLI and its pg_restore (the operator's machine died)
        drill = cli_bg("backups.verify", f"--to={bid}", "--env=local")
        with frozen(drill, "pg_restore", f"{db}_verify_") as found:
            drill.kill()
            drill.communicate()
            for pid in found:
                os.kill(pid, signal.SIGKILL)
        assert wait_for(lambda: not _advisory_held(local_env, LOCK_CLASS, lock_key(db)))  # its lock died with it
        verify_db = f"{db}_verify_{bid}".lower()
        assert local_env.psql(f"select count(*) from pg_database where datname = '{verify_db}'") == "1"

        r = cli("backups.prune", "--keep-last=5", "--env=local", "--yes")
        said = " ".join(r.stderr.split())
        assert r.returncode == 0, said
        assert f"dropped {verify_db}, the scratch copy of a backup drill that died" in said, said
        assert ref not in said and check.poll() is None  # the live build's reference is left alone
        assert local_env.psql(f"select count(*) from pg_database where datname = '{ref}'") == "1"
    finally:
        check.kill()
        check.communicate()
    assert wait_for(lambda: not _advisory_held(local_env, SCRATCH_CLASS, lock_key(ref)))  # its claim died with it
    assert building() == ref  # the killed build's session still sleeps in it

    r = cli("backups.prune", "--keep-last=5", "--env=local", "--yes")
    said = " ".join(r.stderr.split())
    assert r.returncode == 0, said
    assert f"dropped {ref}, the drift reference a killed run was building" in said, said
    assert local_env.psql(f"select string_agg(datname, ' ') from pg_database where datname like '{db}_%'") == ""
    assert building() == ""


# ------------------------------------------------------------------ 7. two deploys at once


def test_two_deploys_one_runs_other_refused(local_env, migrations_copy):
    """The first deploy is held inside its migration by an advisory lock this test owns (not by
    a sleep that a slow machine could outlast), so the second one meets it for certain."""
    from vetai_ops.journal import operator_id

    local_env.run("deploy", yes=True)
    gate = AdvisoryGate(local_env, 4242)
    migrations_copy.add("0014", "0013", gate.revision_sql)
    first = None
    try:
        first = cli_bg("deploy", "--env=local", "--yes")
        assert wait_for(gate.waiting, proc=first), "the first deploy never reached its migration"
        second = cli("deploy", "--env=local", "--yes", timeout=120)  # refused, never queued
    finally:
        gate.open()
        if first is not None:
            out, err = first.communicate(timeout=120)
    assert second.returncode == 3, second.stderr
    said = " ".join(second.stderr.split())  # the console may wrap a long line
    # the holder is named: which verb, by whom (user@host of the run holding the lock), since when
    assert "in progress" in said and f"deploy by {operator_id()}" in said and "since" in said, said
    assert first.returncode == 0, err
    assert local_env.psql("select version_num from alembic_version") == "0014"


# ------------------------------------------------------------------ 8. SIGINT mid-migration


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_mid_migration(local_env, migrations_copy, sig):
    local_env.run("deploy", yes=True, target="0012")
    before = snapshot(local_env)
    gate = AdvisoryGate(local_env, 4343)
    migrations_copy.add("0013b", "0013", gate.revision_sql)
    p = cli_bg("deploy", "--env=local", "--yes")
    try:
        assert wait_for(gate.waiting, proc=p), "the deploy never reached its migration"
        p.send_signal(sig)
        out, err = p.communicate(timeout=120)
    finally:
        gate.open()
    assert p.returncode == 130, err
    assert "interrupted" in err
    assert snapshot(local_env) == before
    assert local_env.psql("select outcome from deploy_history order by id desc limit 1").startswith("interrupted")
    # lock released: the next deploy (without the slow revision) succeeds
    (migrations_copy.path / "versions" / "0013b_planted.py").unlink()
    assert local_env.run("deploy", yes=True)["outcome"] == "success"


# ------------------------------------------------------------------ 9. disk full where the backup goes


def test_disk_full_registers_nothing(local_env, tiny_disk):
    local_env.run("deploy", yes=True)
    # ~1.3 MB of incompressible rows: more than the 256 KiB disk holds
    local_env.psql("create table bulk as select md5(random()::text) || md5(random()::text) as x from generate_series(1, 20000)")
    inv = local_env.inventory.read_text().replace(f"path: '{local_env.backups}'", f"path: '{tiny_disk}'")
    local_env.inventory.write_text(inv)
    with pytest.raises(StoreError, match="no space left"):
        local_env.run("backup")
    assert [p.name for p in tiny_disk.rglob("*") if p.is_file()] == []
    r = cli("backup", "--env=local")
    assert r.returncode == 1 and "no space left" in r.stderr and "Traceback" not in r.stderr


# ------------------------------------------------------------------ bad input


def test_missing_password_variable(local_env, monkeypatch):
    monkeypatch.delenv("VETAI_TEST_PW", raising=False)
    inv = local_env.inventory.read_text().replace("user: vetai}", "user: vetai, password_env: VETAI_TEST_PW}")
    local_env.inventory.write_text(inv)
    with pytest.raises(ConfigError, match="VETAI_TEST_PW is not set"):
        local_env.run("backup")
    r = cli("deploy", "--env=local", "--yes")
    assert r.returncode == 1 and "VETAI_TEST_PW" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("field,value", [("name", "vetai;touch /tmp/pwned"), ("user", "x$(id)"), ("name", "a b")])
def test_shell_metacharacters_in_names_refused(local_env, field, value):
    inv = local_env.inventory.read_text().replace(f"{field}: {local_env.dbname if field == 'name' else 'vetai'}",
                                                  f"{field}: '{value}'", 1)
    local_env.inventory.write_text(inv)
    r = cli("backup", "--env=local")
    assert r.returncode == 1 and f"database.{field}" in r.stderr and "Traceback" not in r.stderr
    assert not Path("/tmp/pwned").exists()


def test_destructive_pending_revision_refused(local_env, migrations_copy):
    local_env.run("deploy", yes=True)
    before = snapshot(local_env)
    stored = sorted(p.name for p in (local_env.backups / "local").iterdir())
    migrations_copy.add("0014", "0013", 'op.drop_column("pets", "color")',
                        'op.add_column("pets", sa.Column("color", sa.String(40)))')
    with pytest.raises(GateRefused) as ei:
        local_env.run("deploy", yes=True)
    assert "drop_column pets.color" in ei.value.message and "allow" in ei.value.hint
    assert snapshot(local_env) == before
    # refused before the backup step: the store holds exactly what it held before
    assert sorted(p.name for p in (local_env.backups / "local").iterdir()) == stored
    r = cli("deploy", "--env=local", "--yes")
    assert r.returncode == 2 and "drop_column pets.color" in r.stderr  # 2: a gate refused, nothing changed


def test_lock_does_not_outlive_a_killed_holder(local_env, migrations_copy):
    local_env.run("deploy", yes=True)
    gate = AdvisoryGate(local_env, 4444)
    migrations_copy.add("0014", "0013", gate.revision_sql)
    p = cli_bg("deploy", "--env=local", "--yes")
    try:
        assert wait_for(gate.waiting, proc=p), "the deploy never reached its migration"
        p.kill()  # SIGKILL: no cleanup code runs at all
        p.communicate(timeout=30)
    finally:
        gate.open()
    # the advisory lock went with the session: the next run is not refused
    (migrations_copy.path / "versions" / "0014_planted.py").unlink()
    assert wait_for(lambda: local_env.psql(
        "select count(*) from pg_locks where locktype = 'advisory' and classid = 32378") == "0", timeout=60)
    rep = local_env.run("deploy", yes=True)
    assert rep["outcome"] == "success"
    assert local_env.psql("select version_num from alembic_version") == "0013"


def test_failure_after_backup_without_changes_restores_nothing(local_env):
    """A deploy that fails after its backup but before writing anything must not swap the
    backup in: rows written since the backup (here by the failing restart itself) stay."""
    local_env.run("deploy", yes=True)
    c = local_env.cluster()
    script = local_env.root / "restart.sh"
    script.write_text(f"'{c.bin('psql')}' -h '{c.socket_dir}' -p {c.port} -U vetai -d {local_env.dbname} "
                      "-c \"insert into clients (first_name, last_name) values ('After', 'Backup')\" && exit 1\n")
    inv = local_env.inventory.read_text().replace(
        "    storage:", f"    services: {{restart: [sh, '{script}']}}\n    storage:")
    local_env.inventory.write_text(inv)
    with pytest.raises(DeployFailed) as ei:
        local_env.run("deploy", yes=True)
    assert ei.value.report["failed_step"] == "restart"
    assert "not changed by this run" in ei.value.message and "recovery" not in ei.value.report
    assert local_env.psql("select count(*) from clients where first_name = 'After'") == "1"
    assert local_env.psql(f"select count(*) from pg_database where datname like '{local_env.dbname}_before_%'") == "0"
    steps = [s["step"] for s in ei.value.report["steps"]]
    assert steps[-1] == "restart" and ei.value.report["steps"][-1]["status"] == "failed"  # the failed step is reported


def test_skip_backup_failure_says_nothing_was_restored(local_env, migrations_copy):
    local_env.run("deploy", yes=True, target="0012")
    migrations_copy.add("0013b", "0013", 'raise RuntimeError("boom")')
    with pytest.raises(DeployFailed) as ei:
        local_env.run("deploy", yes=True, skip_backup=True)
    assert "no backup was taken" in ei.value.message and "recovery" not in ei.value.report
    assert "None" not in ei.value.message
    assert local_env.psql("select version_num from alembic_version") == "0013"  # partly migrated, said so


# ------------------------------------------------------------------ 11. a revision that loses rows


def test_revision_that_deletes_rows_is_caught_by_the_postcheck_and_restored(local_env, migrations_copy):
    """A DELETE with a WHERE clause passes the static gate; the post-check's row counts catch
    the loss and the run's backup is restored. With `checks: {row_counts: false}` the same
    revision deploys (the count is off), and a tolerance lets a planned shrink through."""
    local_env.run("deploy", yes=True)
    n = int(local_env.psql("select count(*) from prescriptions"))
    assert n > 1
    migrations_copy.add("0014", "0013", "op.execute('DELETE FROM prescriptions WHERE id IN (SELECT id FROM prescriptions ORDER BY id LIMIT 1)')")
    before = snapshot(local_env)
    with pytest.raises(DeployFailed, match="prescriptions lost rows"):
        local_env.run("deploy", yes=True)
    assert snapshot(local_env) == before
    # a tolerance that covers the planned loss lets it through
    text = local_env.inventory.read_text()
    local_env.inventory.write_text(text + "    checks: {row_count_tolerance: 0.6}\n")
    assert local_env.run("deploy", yes=True)["outcome"] == "success"
    assert int(local_env.psql("select count(*) from prescriptions")) < n
    # with the count switched off, nothing is counted at all
    local_env.run("rollback", to="latest", yes=True)  # the backup taken before 0014
    assert local_env.psql("select version_num from alembic_version") == "0013"
    assert int(local_env.psql("select count(*) from prescriptions")) == n
    local_env.inventory.write_text(text + "    checks: {row_counts: false}\n")
    assert local_env.run("deploy", yes=True)["outcome"] == "success"  # tolerance 0, yet not refused
    assert int(local_env.psql("select count(*) from prescriptions")) < n


# ------------------------------------------------------------------ 12. the recovery itself fails


def test_failed_recovery_says_so_and_how_to_restore_by_hand(local_env, migrations_copy):
    """The worst case: the migration fails AND this run's backup turns out corrupt when
    on_failure restores it. The live DB is not swapped for a bad copy; the report says
    RECOVERY FAILED and names the command to restore by hand."""
    from vetai_ops.events import ListSink
    from vetai_ops.pipeline import run_playbook

    local_env.run("deploy", yes=True)
    migrations_copy.add("0014", "0013", 'raise RuntimeError("boom in 0014")')

    class CorruptAfterBackup(ListSink):
        def emit(self, event):
            super().emit(event)
            if event.kind == "step_finished" and event.step == "backup":
                dump = max((local_env.backups / "local").glob("*.dump"), key=lambda p: p.stat().st_mtime)
                data = bytearray(dump.read_bytes())
                data[len(data) // 2] ^= 0x01
                dump.write_bytes(bytes(data))

    with pytest.raises(DeployFailed) as ei:
        run_playbook("deploy", "local", options={"yes": True}, sink=CorruptAfterBackup())
    rep = ei.value.report
    assert rep["recovery"]["status"] == "failed" and rep["recovery"]["failed_step"] == "restore"
    assert "RECOVERY FAILED" in ei.value.message and f"invoke rollback --to={rep['backup_id']}" in ei.value.message
    assert local_env.psql("select version_num from alembic_version") == "0013"  # 0014 rolled back in its transaction
    assert local_env.psql(f"select count(*) from pg_database where datname like '{local_env.dbname}_restore_%'") == "0"
    assert local_env.psql("select outcome from deploy_history order by id desc limit 1") == "failed"


# ------------------------------------------------------------------ 13. long transactions block DDL


def test_long_transaction_refuses_a_deploy_with_pending_revisions(local_env):
    from sqlalchemy import create_engine, text

    from vetai_ops.config import load_playbook
    from vetai_ops.pipeline import run_playbook

    local_env.run("deploy", yes=True, target="0012")
    pb = load_playbook("deploy")
    for spec in pb.steps:
        if spec.step == "preflight":
            spec.options = {"long_xact_seconds": 1}
    holder = create_engine(local_env.cluster().url(local_env.dbname)).connect()
    try:
        holder.execute(text("select count(*) from pets"))  # a transaction is open from here
        time.sleep(1.5)
        with pytest.raises(GateRefused, match=r"long-running transactions would block .*pid \d+"):
            run_playbook("deploy", "local", options={"yes": True}, playbook=pb)
    finally:
        holder.close()
    assert local_env.psql("select version_num from alembic_version") == "0012"
    assert run_playbook("deploy", "local", options={"yes": True}, playbook=pb)["outcome"] == "success"


def test_signals_during_the_recovery_are_held_off(local_env, migrations_copy):
    """Ctrl-C / SIGTERM arriving while on_failure restores the backup do not cut the restore
    short: the recovery finishes and the database is back in its pre-deploy state."""
    import os as _os

    from vetai_ops.events import ListSink
    from vetai_ops.pipeline import run_playbook

    before = deployed(local_env)
    migrations_copy.add("0014", "0013", 'raise RuntimeError("boom in 0014")')
    sent = []

    class SignalDuringRestore(ListSink):
        def emit(self, event):
            super().emit(event)
            if event.kind == "step_started" and event.step == "restore":
                for sig in (signal.SIGINT, signal.SIGTERM):
                    _os.kill(_os.getpid(), sig)
                    sent.append(sig)

    with pytest.raises(DeployFailed) as ei:
        run_playbook("deploy", "local", options={"yes": True}, sink=SignalDuringRestore())
    assert sent == [signal.SIGINT, signal.SIGTERM]
    rep = ei.value.report
    assert rep["outcome"] == "failed" and "boom in 0014" in rep["error"]
    assert rep["recovery"]["status"] == "ok"
    assert snapshot(local_env) == before
