"""The fixed cost of a run (issue 15): what a backup and a rollback no longer pay for, and
that what they read instead is what the slower way said. Real parts only: the sandbox
cluster, real pg_dump archives, this checkout's own .git, the CLI in a subprocess.
No timing asserts: bench/run.py measures the fixed cost ("empty database" row).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vetai_ops.database.archive import parse_header, pg_dump_version
from vetai_ops.paths import git_head, project_root
from vetai_ops.store.catalog import Catalog
from vetai_ops.store.local import LocalStore

ROOT = Path(__file__).resolve().parents[1]


def _imported_by(code: str) -> set[str]:
    """Top-level modules a fresh interpreter has imported after ``code``."""
    r = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                       capture_output=True, text=True, check=True, cwd=ROOT)
    return {m.split(".")[0] for m in json.loads(r.stdout.splitlines()[-1])}


def test_the_cli_and_status_do_not_import_boto3_pglast_or_alembic():
    # what `invoke --list` loads: the task collection
    mods = _imported_by("from vetai_ops.cli import ns")
    assert not mods & {"boto3", "botocore", "pglast", "alembic", "sqlalchemy", "pygments"}, mods
    # what a backup's steps load (the playbook's own step modules only)
    mods = _imported_by("from vetai_ops.config import load_playbook\nfrom vetai_ops.steps import check_playbook, get_step\n"
                        "check_playbook(load_playbook('backup')); get_step('backup')")
    assert not mods & {"boto3", "pglast", "alembic", "sqlalchemy"}, mods
    # a rollback's steps: no pglast, no boto3, and neither Alembic nor SQLAlchemy (the
    # post-check's history is the cached lineage: see the in-process test below)
    mods = _imported_by("from vetai_ops.config import load_playbook\nfrom vetai_ops.steps import check_playbook\n"
                        "check_playbook(load_playbook('rollback'))")
    assert not mods & {"boto3", "pglast", "alembic", "sqlalchemy"}, mods


# what `invoke --list` and `invoke status` must not load (issue 13, point 6): the S3 client,
# the squawk wrapper and the gate's rules, the SQL parser. The revision graph
# (vetai_ops.validate.graph / .parse: Alembic's RevisionMap over the files read with ast) is
# what status asks for head and pending; the package's other names load on first use.
NOT_FOR_STATUS = {"boto3", "botocore", "pglast", "vetai_ops.validate.lint", "vetai_ops.validate.static",
                  "vetai_ops.validate.rules", "vetai_ops.validate.sqlcheck"}


def test_invoke_list_and_status_load_no_s3_squawk_or_pglast(local_env):
    local_env.run("backup")  # a backup to list: status reads the catalog
    code = ("import contextlib, io, json, sys\nfrom invoke import Program\nfrom vetai_ops.cli import ns\n"
            "def run(*argv):\n"
            "    out = io.StringIO()\n"
            "    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):\n"
            "        Program(namespace=ns, name='invoke', binary='invoke').run(['invoke', *argv])\n"
            "    return out.getvalue()\n"
            "listed = run('--list')\nlisted_mods = sorted(sys.modules)\n"
            "status = json.loads(run('status', '--env=local', '--json'))\n"
            "print(json.dumps([listed, listed_mods, status, sorted(sys.modules)]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    listed, listed_mods, status, status_mods = json.loads(r.stdout.splitlines()[-1])
    assert "backups.list" in listed and "sandbox.down" in listed
    assert status["env"] == "local" and status["last_backup"]["id"] and status["backups"] == 1

    def loaded(mods):
        return {m for m in mods if m in NOT_FOR_STATUS or m.split(".")[0] in NOT_FOR_STATUS}

    assert not loaded(listed_mods), loaded(listed_mods)
    assert not loaded(status_mods), loaded(status_mods)
    assert "vetai_ops.ops.status" in status_mods  # the use case really ran in this interpreter


def test_the_step_map_names_the_module_of_every_step():
    import vetai_ops.steps as steps

    modules = steps.step_modules()
    steps._load()
    for name, fn in steps._REGISTRY.items():
        assert name in modules, f"step {name!r} is not found by steps.step_modules()"
        assert fn.__module__ == f"vetai_ops.steps.{modules[name]}", name
    assert set(modules) == set(steps._REGISTRY)


def test_git_head_reads_what_git_rev_parse_says(tmp_path):
    want = subprocess.run(["git", "-C", str(project_root()), "rev-parse", "--short=12", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    assert want and git_head() == want
    # a fresh repository: a loose ref, then a packed one, then a worktree's gitdir file
    repo = tmp_path / "r"
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "f").write_text("x")
    subprocess.run(git + ["add", "f"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "one"], check=True)
    full = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    assert git_head(repo) == full[:12]
    subprocess.run(git + ["pack-refs", "--all"], check=True)
    assert git_head(repo) == full[:12]
    subprocess.run(git + ["worktree", "add", "-q", "-b", "side", str(tmp_path / "wt")], check=True)
    assert git_head(tmp_path / "wt") == full[:12]
    assert git_head(tmp_path / "nowhere") is None  # no checkout above it


def test_the_archive_header_says_what_pg_dump_version_says(local_env, tmp_path):
    c = local_env.cluster()
    want = subprocess.run([c.bin("pg_dump"), "--version"], capture_output=True, text=True, check=True).stdout.strip()
    local_env.psql("create table t (id int primary key, s text); insert into t select i, md5(i::text) from generate_series(1, 5000) i")
    base = [c.bin("pg_dump"), "-h", str(c.socket_dir), "-p", str(c.port), "-U", "vetai", "-d", local_env.dbname]
    for z in (["-Z0"], []):  # uncompressed and pg_dump's own gzip: the header is never compressed
        raw = subprocess.run(base + ["-Fc", *z], capture_output=True, check=True).stdout
        hdr = parse_header(raw[:65536])
        assert hdr["database"] == local_env.dbname
        assert pg_dump_version(raw[:65536], "gzip" if not z else "none") == want
    zst = subprocess.run(base + ["-Fc", "-Z0"], capture_output=True, check=True).stdout
    zst = subprocess.run(["zstd", "-q", "-c", "-T0", "-1"], input=zst, capture_output=True, check=True).stdout
    assert pg_dump_version(zst[:65536], "zstd") == want
    assert pg_dump_version(b"not an archive", "none") is None
    with pytest.raises(ValueError):
        parse_header(b"PGDMP\x01")  # truncated


def test_a_backup_records_pg_dump_and_git_as_the_slow_way_would(local_env):
    c = local_env.cluster()
    rep = local_env.run("backup")
    m = Catalog(LocalStore(local_env.backups), "local").read_manifest(rep["backup_id"])
    want = subprocess.run([c.bin("pg_dump"), "--version"], capture_output=True, text=True, check=True).stdout.strip()
    assert m.pg_dump_version == want
    assert m.git_commit == subprocess.run(["git", "-C", str(project_root()), "rev-parse", "--short=12", "HEAD"],
                                          capture_output=True, text=True).stdout.strip()


def test_newest_reads_manifests_newest_first_and_skips_incomplete(local_env):
    first = local_env.run("backup")["backup_id"]
    import time

    time.sleep(1.1)  # ids are per second
    second = local_env.run("backup")["backup_id"]
    cat = Catalog(LocalStore(local_env.backups), "local")
    assert [m.id for m in cat.list()][:2] == [second, first]
    assert cat.newest().id == second
    assert cat.newest(lambda m: m.id == first).id == first
    assert cat.newest(lambda m: False) is None
    (local_env.backups / "local" / f"{second}.dump").unlink()  # a manifest without its dump: not a backup
    assert Catalog(LocalStore(local_env.backups), "local").newest().id == first  # (a catalog lists once)


def test_a_backup_and_a_rollback_list_the_store_once(local_env, monkeypatch):
    local_env.run("backup")
    import time

    time.sleep(1.1)
    calls: list[str] = []
    real = LocalStore.list_keys

    def counting(self, prefix=""):
        calls.append(prefix)
        return real(self, prefix)

    monkeypatch.setattr(LocalStore, "list_keys", counting)
    rep = local_env.run("backup")
    assert calls == ["local/"], calls
    calls.clear()
    local_env.psql("create table gone (id int)")  # the live DB drifts from the backup
    out = local_env.run("rollback", to=rep["backup_id"], yes=True)
    assert out["restored_id"] == rep["backup_id"]
    assert calls == ["local/"], calls  # the confirm step's selection; the restore reads that backup by id
    assert local_env.psql("select to_regclass('gone') is null") == "t"


# what a backup and a rollback must not import (issue: the fixed cost of a run): SQLAlchemy
# (~0.3 s) and Alembic (its RevisionMap imports all of SQLAlchemy, its utils Mako); they run
# on psycopg 3, and the post-check reads the history's cached lineage (database/reference.py)
HEAVY = {"sqlalchemy", "alembic", "mako"}


def _backup_then_rollback_in_one_interpreter(env: str):
    """``backup`` then ``rollback --to=latest`` of ``env`` through invoke's Program in one fresh
    interpreter: their exit codes, outputs and the modules loaded after each."""
    code = ("import contextlib, io, json, sys\nfrom invoke import Program\nfrom vetai_ops.cli import ns\n"
            "def run(*argv):\n"
            "    out = io.StringIO()\n"
            "    code = 0\n"
            "    with contextlib.redirect_stdout(out):\n"
            "        try:\n"
            "            Program(namespace=ns, name='invoke', binary='invoke').run(['invoke', *argv])\n"
            "        except SystemExit as e:\n"
            "            code = e.code or 0\n"
            "    return code, out.getvalue()\n"
            f"backup = run('backup', '--env={env}', '--json')\nbackup_mods = sorted(sys.modules)\n"
            "import time; time.sleep(1.1)\n"  # backup ids are per second
            f"rollback = run('rollback', '--env={env}', '--to=latest', '--yes', '--json')\n"
            "print(json.dumps([backup, backup_mods, rollback, sorted(sys.modules)]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    (b_code, b_out), b_mods, (r_code, r_out), r_mods = json.loads(r.stdout.splitlines()[-1])
    assert b_code == 0, (b_out, r.stderr)
    assert r_code == 0, (r_out, r.stderr)

    def heavy(mods):
        return sorted(m for m in mods if m.split(".")[0] in HEAVY)

    assert not heavy(b_mods), heavy(b_mods)
    assert not heavy(r_mods), heavy(r_mods)
    # both really ran in this interpreter: the backup's step, then the rollback's restore and post-check
    assert {"vetai_ops.steps.backup", "vetai_ops.ops.runs"} <= set(b_mods)
    assert {"vetai_ops.steps.restore", "vetai_ops.steps.checks", "vetai_ops.database.swap"} <= set(r_mods)
    rolled = json.loads(r_out)["report"]
    assert rolled["outcome"] == "success" and rolled["restored_id"] == json.loads(b_out)["id"], rolled
    post = next(s for s in rolled["steps"] if s["step"] == "postcheck")
    assert "schema matches the history at" in post["summary"], post  # the schema was really compared
    return json.loads(b_out)["id"], b_mods, r_mods


def test_a_backup_and_a_rollback_import_neither_sqlalchemy_nor_alembic(local_env):
    local_env.run("deploy", yes=True)  # the history's lineage and the reference at head are cached now
    before = {p.name for p in (local_env.backups / "local").glob("*.json")}
    backup_id, _, _ = _backup_then_rollback_in_one_interpreter("local")
    made = {p.name for p in (local_env.backups / "local").glob("*.json")} - before
    assert made == {f"{backup_id}.json"}, made  # the backup's manifest
    assert local_env.psql("select count(*) from pg_database where datname like '%_before_%'") != "0"


def test_over_ssh_and_s3_a_backup_and_a_rollback_import_neither_sqlalchemy_nor_alembic(remote_env):
    """The same over an SSH DB host (tunnelled connections), S3 storage and the non-superuser
    deploy role's production bed: only the targets and the store differ."""
    r = remote_env.cli("deploy", "--env=prod", "--yes")  # the lineage and the reference at head are cached now
    assert r.returncode == 0, r.stderr
    _, b_mods, r_mods = _backup_then_rollback_in_one_interpreter("prod")
    assert {"vetai_ops.targets.ssh.target", "vetai_ops.store.s3"} <= set(b_mods) & set(r_mods)
