"""Promises the README and DESIGN make that had no test of their own, on the embedded local
env with real parts (the sandbox PostgreSQL, the real CLI in a subprocess, real signals).

Runs are held at a known point by a lock the test owns (a table lock pg_dump waits for), or by
freezing the tool's own child process (SIGSTOP) while the test looks at it: never by a sleep
or by guessing how long the CLI takes to start. Revision ids come from Alembic (the history's
head), never spelled out here.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures_pg import snapshot
from procs import cli, cli_bg, frozen, pids, wait_until
from vetai_ops.errors import ChecksumMismatch, GateRefused, OpsError

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ helpers


def one_line(text: str) -> str:
    return " ".join(text.split())  # the console wraps long lines


def head_revision() -> str:
    """The head of the history in use (VETAI_OPS_MIGRATIONS when migrations_copy set it)."""
    from vetai_ops.database.migrations import head

    return head()


def next_revision_id(rev: str) -> str:
    return str(int(rev) + 1).zfill(len(rev)) if rev.isdigit() else f"{rev}b"


def plant_on_head(migrations_copy, upgrade: str, downgrade: str = "pass") -> str:
    head = head_revision()
    rev = next_revision_id(head)
    migrations_copy.add(rev, head, upgrade, downgrade)
    return rev


def store_files(le) -> list[str]:
    d = le.backups / "local"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def history_rows(le) -> str:
    if not le.psql("select to_regclass('public.deploy_history')"):
        return ""
    return le.psql("select count(*) || ':' || coalesce(max(id), 0) from deploy_history")


def deploy_lock_held(le) -> bool:
    from vetai_ops.database.advisory import LOCK_CLASS

    return le.cluster().psql(
        f"select count(*) from pg_locks where locktype = 'advisory' and classid = {LOCK_CLASS}") != "0"


def scratch_databases(le) -> str:
    return le.psql(f"select count(*) from pg_database where datname like '{le.dbname}_restore_%'")


class TableGate:
    """An ACCESS EXCLUSIVE lock on a table of the live DB, held by the test: pg_dump waits for
    its ACCESS SHARE lock on it, so a backup is held inside pg_dump until the test lets go."""

    def __init__(self, le, table: str = "gatekeeper"):
        import psycopg

        self.le = le
        le.psql(f"create table if not exists {table} (x int)")
        c = le.cluster()
        self.conn = psycopg.connect(host=str(c.socket_dir), port=c.port, user="vetai", dbname=le.dbname)
        self.conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")

    def dump_waiting(self) -> bool:
        return self.le.psql("select count(*) from pg_stat_activity where datname = current_database()"
                            " and application_name = 'pg_dump' and wait_event_type = 'Lock'") == "1"

    def open(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # a restore may have terminated this session
                conn.rollback()
            conn.close()


# ------------------------------------------------------------------ recovery restarts the services


def test_the_recovery_restarts_the_services_after_restoring(local_env, migrations_copy):
    """DESIGN: on_failure restores the backup, THEN restarts the app, then checks. The restart
    command records the revision it sees: the pre-deploy one, so it ran after the restore."""
    local_env.run("deploy", yes=True)
    before = snapshot(local_env)
    c = local_env.cluster()
    log = local_env.root / "restarts.log"
    script = local_env.root / "restart.sh"
    script.write_text(f"'{c.bin('psql')}' -h '{c.socket_dir}' -p {c.port} -U vetai -d {local_env.dbname} -Atc "
                      f"\"select coalesce((select version_num from alembic_version), 'base') || ' ' || "
                      f"(select count(*) from pg_class where relname = 'half_done')\" >> '{log}'\n")
    inv = local_env.inventory.read_text().replace("    storage:", f"    services: {{restart: [sh, '{script}']}}\n    storage:")
    local_env.inventory.write_text(inv)
    plant_on_head(migrations_copy, 'op.create_table("half_done", sa.Column("x", sa.Integer))\n'
                                   'raise RuntimeError("boom after a table")', 'op.drop_table("half_done")')
    r = cli("deploy", "--env=local", "--yes")
    assert r.returncode == 1, r.stderr
    said = one_line(r.stderr)
    assert "boom after a table" in said and "recovered" in said, said
    # the forward run failed at migrate (before its own restart): exactly one restart, the recovery's,
    # and it saw the restored database (pre-deploy revision, no half-done table)
    assert log.read_text().splitlines() == [f"{before['revision']} 0"]
    assert snapshot(local_env) == before


# ------------------------------------------------------------------ preflight refusals


def test_preflight_refuses_a_deploy_when_the_store_has_no_room(local_env, tiny_disk):
    """The database (several MB) does not fit the 256 KiB store: refused before the backup,
    exit 2, nothing changed (no revision applied, nothing written to the store)."""
    inv = local_env.inventory.read_text().replace(f"path: '{local_env.backups}'", f"path: '{tiny_disk}'")
    local_env.inventory.write_text(inv)
    r = cli("deploy", "--env=local", "--yes")
    assert r.returncode == 2, r.stderr
    said = one_line(r.stderr)
    assert "not enough free disk for the backup" in said and str(tiny_disk) in said, said
    assert local_env.psql("select to_regclass('public.alembic_version')") == ""  # still at base
    assert [p for p in tiny_disk.rglob("*") if p.is_file()] == []


def test_preflight_refuses_a_pg_dump_older_than_the_server(tmp_path, monkeypatch):
    """Real binaries of two majors: the pgserver wheel's PostgreSQL 16 server, and this
    machine's PostgreSQL 15 client tools named by database.bin_dir. pg_dump 15 cannot dump a
    16 server: preflight refuses (exit 2) before any backup or migration."""
    import shutil

    from fixtures_pg import free_port, server_dir
    from vetai_ops.config import load_inventory
    from vetai_ops.database.cluster import pgserver_bindir, resolve_bindir
    from vetai_ops.database.sandbox import sandbox_cluster, stop_sandbox
    from vetai_ops.pipeline import run_playbook
    from vetai_ops.steps.validate import tool_major

    wheel = pgserver_bindir()
    assert wheel is not None, "pgserver is a dependency (pyproject.toml)"
    old = resolve_bindir()
    old_major = tool_major(subprocess.run([str(Path(old) / "pg_dump"), "--version"], capture_output=True,
                                          text=True).stdout)
    new_major = tool_major(subprocess.run([str(Path(wheel) / "pg_dump"), "--version"], capture_output=True,
                                          text=True).stdout)
    if not (old_major and new_major and old_major < new_major):
        from bed import require_or_skip

        require_or_skip(f"needs client tools older than the wheel's server (have {old_major} and {new_major})")
    sb = server_dir("pgserver-old")
    inv = tmp_path / "inventory.yml"
    inv.write_text(
        "environments:\n"
        "  local:\n"
        f"    sandbox: {{dir: '{sb}', port: {free_port()}, engine: pgserver}}\n"
        f"    database: {{name: vc_oldtools, user: vetai, bin_dir: '{old}'}}\n"
        f"    storage: {{type: local, path: '{tmp_path / 'backups'}'}}\n")
    monkeypatch.setenv("VETAI_OPS_INVENTORY", str(inv))
    monkeypatch.setenv("VETAI_OPS_LOGS", str(tmp_path / "logs"))
    try:
        with pytest.raises(GateRefused, match=rf"pg_dump {old_major} .* cannot handle the PostgreSQL {new_major} server"):
            run_playbook("deploy", "local", options={"yes": True})
        r = cli("deploy", "--env=local", "--yes")
        assert r.returncode == 2 and "nothing changed" in one_line(r.stderr), r.stderr
        c = sandbox_cluster(load_inventory(inv).env("local"))
        assert c.version[0] == new_major
        assert c.psql("select to_regclass('public.alembic_version')", db="vc_oldtools") == ""
        assert not (tmp_path / "backups" / "local").exists() or not list((tmp_path / "backups" / "local").iterdir())
    finally:
        stop_sandbox(load_inventory(inv).env("local"), destroy=True)
        shutil.rmtree(sb, ignore_errors=True)


# ------------------------------------------------------------------ deploy --dry-run


def test_deploy_dry_run_changes_nothing(local_env, migrations_copy):
    local_env.run("deploy", yes=True)
    rev = plant_on_head(migrations_copy, 'op.create_table("dry_run_probe", sa.Column("x", sa.Integer))',
                        'op.drop_table("dry_run_probe")')
    before, files, hist = snapshot(local_env), store_files(local_env), history_rows(local_env)
    dbs = local_env.cluster().psql("select string_agg(datname, ',' order by datname) from pg_database")
    r = cli("deploy", "--env=local", "--yes", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert rev in r.stdout + r.stderr  # the plan names the pending revision...
    assert snapshot(local_env) == before  # ...but nothing ran: same revision, same rows
    assert local_env.psql("select to_regclass('public.dry_run_probe')") == ""
    assert store_files(local_env) == files  # no backup taken
    assert history_rows(local_env) == hist
    assert local_env.cluster().psql("select string_agg(datname, ',' order by datname) from pg_database") == dbs
    assert not deploy_lock_held(local_env)


# ------------------------------------------------------------------ SIGINT during a backup / a rollback


def interrupted_inside(le, prog: str, needle: str, *args: str) -> None:
    """Run the CLI with ``args``; once it runs ``prog`` (frozen, so the run is certainly inside
    it, under the deploy lock), Ctrl-C: it ends with exit 130 and says it was interrupted."""
    p = cli_bg(*args)
    try:
        with frozen(p, prog, needle):
            assert deploy_lock_held(le)
            p.send_signal(signal.SIGINT)
    finally:
        out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "interrupted" in err


def test_sigint_during_the_deploys_backup(local_env, migrations_copy):
    """Ctrl-C while pg_dump runs (frozen by the test, so the run is certainly inside it; a
    table lock would also stop preflight's row counts): exit 130, no manifest and no dump
    left in the store, the deploy lock released, the live database as it was."""
    local_env.run("deploy", yes=True)
    rev = plant_on_head(migrations_copy, "op.execute('SELECT 1')")  # a pending revision: the deploy backs up first
    before, files = snapshot(local_env), store_files(local_env)
    interrupted_inside(local_env, "pg_dump", local_env.dbname, "deploy", "--env=local", "--yes")
    assert store_files(local_env) == files  # no manifest, no dump, no .partial
    assert not deploy_lock_held(local_env)
    assert snapshot(local_env) == before  # the revision was not applied
    assert local_env.psql("select outcome from deploy_history order by id desc limit 1").startswith("interrupted")
    assert local_env.run("deploy", yes=True)["outcome"] == "success"  # nothing left in the way
    assert local_env.psql("select version_num from alembic_version") == rev


def test_sigint_during_a_rollback(local_env):
    """Ctrl-C while pg_restore fills the scratch copy (the test freezes pg_restore, signals the
    CLI, then lets pg_restore go): exit 130, the live database untouched, the scratch copy
    dropped, the lock released; the same rollback then succeeds."""
    local_env.run("deploy", yes=True)
    bid = local_env.run("backup")["backup_id"]
    local_env.psql("create table after_backup (x int); insert into after_backup values (1)")
    before = snapshot(local_env)
    scratch = f"{local_env.dbname}_restore_{bid}".lower()
    interrupted_inside(local_env, "pg_restore", scratch, "rollback", f"--to={bid}", "--env=local", "--yes")
    assert snapshot(local_env) == before and local_env.psql("select count(*) from after_backup") == "1"
    assert scratch_databases(local_env) == "0"
    assert not deploy_lock_held(local_env)
    assert not pids("pg_restore", scratch)
    r = cli("rollback", f"--to={bid}", "--env=local", "--yes")
    assert r.returncode == 0, r.stderr
    assert local_env.psql("select to_regclass('public.after_backup')") == ""


# ------------------------------------------------------------------ checksum mismatch in the file and spool modes


@pytest.mark.parametrize("mode,settings", [
    ("file", "compression: none"),  # the store's own file, checked before pg_restore reads it
    ("spool", "restore_jobs: 2, compress_on: operator"),  # spooled to /tmp, checked while written
])
def test_checksum_mismatch_is_refused_in_every_restore_mode(local_env, monkeypatch, mode, settings):
    from vetai_ops.transfer import restore as restore_mod

    taken = []
    real = restore_mod.restore_plan
    monkeypatch.setattr(restore_mod, "restore_plan", lambda route, m: taken.append(real(route, m)) or taken[-1])
    local_env.inventory.write_text(local_env.inventory.read_text() + f"    backup: {{{settings}}}\n")
    local_env.run("deploy", yes=True)
    bid = local_env.run("backup")["backup_id"]
    dump = local_env.backups / "local" / f"{bid}.dump"
    data = bytearray(dump.read_bytes())
    data[int(len(data) * 0.6)] ^= 0x01
    dump.write_bytes(bytes(data))
    local_env.psql("create table after_backup (x int)")
    before = snapshot(local_env)
    with pytest.raises(ChecksumMismatch, match="corrupt"):
        local_env.run("rollback", to=bid, yes=True)
    assert taken and taken[-1][0] == mode
    r = cli("rollback", f"--to={bid}", "--env=local", "--yes")
    assert r.returncode == 4 and "corrupt" in r.stderr, r.stderr
    assert snapshot(local_env) == before
    assert scratch_databases(local_env) == "0"


# ------------------------------------------------------------------ a restored copy unlike its manifest


def _edit_manifest(le, bid: str, **changes) -> None:
    """Change fields of a stored manifest (what a stale or wrong manifest would say), signed
    again with the env's key as the tool writes it (a forgery without the key is refused
    before any restore: tests/test_manifest_trust.py)."""
    from vetai_ops.store.manifest import Manifest
    from vetai_ops.store.factory import make_catalog

    mp = le.backups / "local" / f"{bid}.json"
    m = json.loads(mp.read_text())
    m.update(changes)
    make_catalog(le.env()).write_manifest(Manifest.from_json(m))


@pytest.mark.parametrize("what", ["revision", "tables"])
def test_a_restored_copy_unlike_its_manifest_is_refused(local_env, what):
    local_env.run("deploy", yes=True)
    bid = local_env.run("backup")["backup_id"]
    m = json.loads((local_env.backups / "local" / f"{bid}.json").read_text())
    if what == "revision":
        _edit_manifest(local_env, bid, revision=next_revision_id(m["revision"]))
        expect = f"restored copy is at revision {m['revision']}"
    else:
        tables = m["tables"]
        tables = ({**tables, "ghost_table": 1} if isinstance(tables, dict) else [*tables, "ghost_table"])
        _edit_manifest(local_env, bid, tables=tables)
        expect = "restored copy lacks tables ghost_table"
    local_env.psql("create table after_backup (x int)")
    before = snapshot(local_env)
    with pytest.raises(OpsError, match=expect):
        local_env.run("rollback", to=bid, yes=True)
    r = cli("rollback", f"--to={bid}", "--env=local", "--yes")
    assert r.returncode == 1 and expect in one_line(r.stderr) and "live DB untouched" in one_line(r.stderr), r.stderr
    assert snapshot(local_env) == before
    assert scratch_databases(local_env) == "0"
    # backups.verify restores the same copy into a scratch database: it fails verification (4)
    r = cli("backups.verify", f"--to={bid}", "--env=local")
    assert r.returncode == 4, r.stderr
    assert scratch_databases(local_env) == "0"


def test_verify_exits_4_when_pg_restore_fails(local_env):
    """A dump whose checksum matches its manifest but that pg_restore cannot read (not an
    archive): the real pg_restore errors, backups.verify records ok=false and exits 4."""
    import hashlib

    local_env.run("deploy", yes=True)
    bid = local_env.run("backup")["backup_id"]
    m = json.loads((local_env.backups / "local" / f"{bid}.json").read_text())
    dump = local_env.backups / "local" / Path(m["dump_key"]).name
    junk = b"this is not a pg_dump archive\n" * 1000
    dump.write_bytes(junk)
    _edit_manifest(local_env, bid, size=len(junk), sha256=hashlib.sha256(junk).hexdigest(), compression="none")
    r = cli("backups.verify", f"--to={bid}", "--env=local")
    assert r.returncode == 4, r.stderr
    assert "pg_restore" in one_line(r.stderr), r.stderr
    v = json.loads((local_env.backups / "local" / f"{bid}.json").read_text())["verifications"][-1]
    assert v["ok"] is False and "pg_restore" in v["error"]
    assert scratch_databases(local_env) == "0"


# ------------------------------------------------------------------ every documented exit code through the CLI


def _exit_1(le, migrations_copy):
    le.inventory.write_text(le.inventory.read_text().replace("user: vetai}", "user: vetai, password_env: VETAI_UNSET_PW}"))
    os.environ.pop("VETAI_UNSET_PW", None)
    return cli("deploy", "--env=local", "--yes"), "VETAI_UNSET_PW is not set"


def _exit_2(le, migrations_copy):
    plant_on_head(migrations_copy, 'op.drop_table("users")')
    return cli("deploy", "--env=local", "--yes"), "drop_table users"


def _exit_3(le, migrations_copy):
    from vetai_ops.database.advisory import LOCK_CLASS, lock_key

    import psycopg

    c = le.cluster()
    with psycopg.connect(host=str(c.socket_dir), port=c.port, user="vetai", dbname="postgres", autocommit=True) as held:
        held.execute("select set_config('application_name', 'vetai-ops deploy by someone@elsewhere', false)")
        held.execute("select pg_advisory_lock(%s, %s)", (LOCK_CLASS, lock_key(le.dbname)))
        return cli("deploy", "--env=local", "--yes"), "deploy by someone@elsewhere"


def _exit_4(le, migrations_copy):
    bid = le.run("backup")["backup_id"]
    dump = le.backups / "local" / f"{bid}.dump"
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0x01
    dump.write_bytes(bytes(data))
    return cli("backups.verify", f"--to={bid}", "--env=local"), "sha256"


def _exit_130(le, migrations_copy):
    gate = TableGate(le)
    p = cli_bg("backup", "--env=local")
    try:
        assert wait_until(gate.dump_waiting, p), "the backup never reached pg_dump"
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=120)
    finally:
        gate.open()
    return subprocess.CompletedProcess(p.args, p.returncode, out, err), "interrupted"


@pytest.mark.parametrize("code,case", [(1, _exit_1), (2, _exit_2), (3, _exit_3), (4, _exit_4), (130, _exit_130)],
                         ids=["1-error", "2-refused", "3-locked", "4-verification", "130-interrupted"])
def test_every_documented_exit_code(local_env, migrations_copy, code, case):
    """README: 0 ok, 1 error, 2 a gate refused (nothing changed), 3 another run holds the
    lock, 4 a backup failed verification, 130 interrupted. Each through the real CLI."""
    # the number is the documented one: in the README's "Exit codes:" paragraph (up to its blank line)
    paragraph = (ROOT / "README.md").read_text().split("Exit codes:", 1)[1].split("\n\n", 1)[0]
    assert f"`{code}`" in one_line(paragraph)
    local_env.run("deploy", yes=True)
    local_env.psql("create table gatekeeper (x int)")  # the 130 case holds pg_dump on it
    before = snapshot(local_env)
    r, says = case(local_env, migrations_copy)
    assert r.returncode == code, (r.returncode, r.stderr)
    assert says in one_line(r.stderr) and "Traceback" not in r.stderr, r.stderr
    assert snapshot(local_env) == before  # none of them changed the live database


# ------------------------------------------------------------------ the console script


def test_the_vetai_ops_console_script(local_env):
    """pyproject's [project.scripts] entry, installed next to the interpreter: it lists the
    tasks and runs one against a real env (no activated venv needed)."""
    exe = Path(sys.executable).parent / "vetai-ops"
    assert exe.exists(), f"{exe} missing: pip install -e . installs the console script"
    r = subprocess.run([str(exe), "--list"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env=dict(os.environ), stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    for task in ("deploy", "rollback", "backup", "status", "backups.verify"):
        assert re.search(rf"^\s+{re.escape(task)}\b", r.stdout, re.M), r.stdout
    local_env.run("deploy", yes=True)
    r = subprocess.run([str(exe), "status", "--env=local", "--json"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, env=dict(os.environ), stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["current"] == head_revision()
    r = subprocess.run([str(exe), "rollback", "--to=nope", "--env=local", "--yes"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120, env=dict(os.environ), stdin=subprocess.DEVNULL)
    same = cli("rollback", "--to=nope", "--env=local", "--yes")
    assert r.returncode == same.returncode == 2 and "Traceback" not in r.stderr, r.stderr  # refused, like invoke
    said = one_line(r.stderr)
    assert "--to='nope' is not a backup id" in said and said.split("error:")[-1] == one_line(same.stderr).split("error:")[-1]


# ------------------------------------------------------------------ shipped inventory and documented YAML


def _yaml_blocks(path: Path) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", path.read_text(), re.S)


def _validated(text: str, tmp_path: Path, name: str):
    from vetai_ops.config import load_inventory

    f = tmp_path / name
    f.write_text(text)
    inv = load_inventory(f)
    return {n: inv.env(n) for n in inv.environments}


def test_the_shipped_inventory_loads_with_its_commented_examples(tmp_path):
    from vetai_ops.config import load_inventory

    shipped = ROOT / "playbooks" / "inventory.yml"
    inv = load_inventory(shipped)
    local = inv.env(inv.default_env)
    assert local.sandbox is not None and local.storage.type == "local"
    # the commented staging/prod examples, uncommented, are valid inventory too
    lines = shipped.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"  # (staging|prod):", line))
    text = "\n".join(lines[:start] + [re.sub(r"^  # ", "  ", line) if line.startswith("  # ") else line
                                      for line in lines[start:]])
    envs = _validated(text, tmp_path, "uncommented.yml")
    assert {"local", "staging", "prod"} <= set(envs)
    assert envs["prod"].protected and envs["prod"].storage.type == "s3"


@pytest.mark.parametrize("doc", ["README.md", "docs/es/runbook.md"])
def test_the_documented_yaml_examples_load(tmp_path, doc):
    blocks = _yaml_blocks(ROOT / doc)
    assert blocks, f"{doc} has no ```yaml example"
    import textwrap

    for i, block in enumerate(blocks):
        if "environments:" in block:
            text = block
        else:  # a fragment of one environment (e.g. `    checks: {...}`): validated inside one
            text = "environments:\n  example:\n" + textwrap.indent(textwrap.dedent(block), "    ")
        envs = _validated(text, tmp_path, f"block{i}.yml")
        assert envs, f"{doc} yaml block {i} defines no environment"
