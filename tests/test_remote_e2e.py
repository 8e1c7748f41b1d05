"""Production path on the real test bed: the DB host and an app host are OpenSSH sshd
processes on loopback addresses, PostgreSQL speaks scram over TCP as seen from the DB
host, backups go to a real S3 endpoint (moto server) through boto3."""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.remote

import procs
from vetai_ops.journal import operator_id
from fixtures_remote import KEY_VAR, ROOT  # (RemoteEnv and remote_env live in fixtures_remote.py)





def add_bulk(re_, rows=150_000):
    """~10 MB of hard-to-compress rows so streams take long enough to interfere with."""
    re_.psql(f"create table bulk as select i, md5(random()::text) || md5(random()::text) || md5(random()::text) as x "
             f"from generate_series(1, {rows}) i")


def assert_bulk_accepted(re_) -> None:
    """A deploy run with ``--accept-drift=table:bulk`` (:func:`add_bulk`'s table, drift from
    the history) recorded that acceptance before its backup, so it stands even when the run
    then failed: which difference, who accepted it, by which action, at which revision, in
    which run (the last one of the run log: deploy_history may not have been reached)."""
    last_run = json.loads((re_.tmp / "logs" / "migration.log").read_text().splitlines()[-1])["run"]
    row = re_.psql("select kind || '|' || name || '|' || accepted_by || '|' || action || '|' || coalesce(revision, 'base')"
                   " || '|' || run_id from vetai_ops_accepted_drift")
    assert row == f"table|bulk|{operator_id()}|deploy|base|{last_run}", row


def test_deploy_backup_rollback_over_ssh_and_s3(remote_env):
    r = remote_env.cli("deploy", "--env=prod", "--yes")
    assert r.returncode == 0, r.stderr
    assert remote_env.revision() == "0013"
    keys = remote_env.objects()
    manifests = [k for k in keys if k.endswith(".json")]
    assert len(manifests) == 1 and manifests[0].startswith("prod/prod/")
    s3 = remote_env.s3.client()
    man = json.loads(s3.get_object(Bucket=remote_env.bucket, Key=manifests[0])["Body"].read())
    body = s3.get_object(Bucket=remote_env.bucket, Key="prod/" + man["dump_key"])["Body"].read()
    assert len(body) == man["size"] and hashlib.sha256(body).hexdigest() == man["sha256"]
    assert man["revision"] is None and man["reason"] == "pre-deploy"
    head = s3.head_object(Bucket=remote_env.bucket, Key="prod/" + man["dump_key"])
    assert head.get("ServerSideEncryption") == "AES256"
    assert remote_env.password not in json.dumps(man)

    # a manual backup at head, then damage, then rollback to it
    r = remote_env.cli("backup", "--env=prod", "--json")
    assert r.returncode == 0, r.stderr
    bid = json.loads(r.stdout)["id"]
    pets = remote_env.psql("select string_agg(name, ',' order by name) from pets")
    remote_env.psql("delete from pets; create table oops (x int)")
    r = remote_env.cli("rollback", f"--to={bid}", "--env=prod", "--yes")
    assert r.returncode == 0, r.stderr
    assert remote_env.psql("select string_agg(name, ',' order by name) from pets") == pets
    assert remote_env.psql("select to_regclass('public.oops')") == ""
    r = remote_env.cli("status", "--env=prod", "--json")
    s = json.loads(r.stdout)
    assert s["current"] == "0013" and s["last_backup"]["id"] == bid
    assert remote_env.password not in r.stdout
    logs = (remote_env.tmp / "logs" / "migration.log").read_text()
    assert remote_env.password not in logs


def test_password_never_in_ps_nor_environ_on_the_host(remote_env):
    """pg_dump is held on a table lock this test owns, so the check runs while it certainly
    runs: the password is in no process's argv, not in pg_dump's environment, and reaches it
    only through the 0600 passfile its PGPASSFILE names, which is gone after the run."""
    import psycopg

    assert remote_env.cli("deploy", "--env=prod", "--yes").returncode == 0
    add_bulk(remote_env, rows=1000)
    pw = remote_env.password
    holder = psycopg.connect(**remote_env.pg.conninfo(remote_env.dbname))
    holder.execute("LOCK TABLE bulk IN ACCESS EXCLUSIVE MODE")  # pg_dump waits for its ACCESS SHARE lock
    p = remote_env.popen("backup", "--env=prod")
    try:
        assert procs.wait_until(lambda: remote_env.psql(
            "select count(*) from pg_stat_activity where datname = current_database()"
            " and application_name = 'pg_dump' and wait_event_type = 'Lock'") == "1", p), "pg_dump never started"
        pids = procs.pids("pg_dump", remote_env.dbname)
        assert pids, "pg_dump is waiting in the server but was not found on the host"
        assert pw not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        env = procs.environ(pids[0])
        assert not [k for k, v in env.items() if pw in v], "the password is in pg_dump's environment"
        passfile = Path(env["PGPASSFILE"])
        assert passfile.stat().st_mode & 0o777 == 0o600
        assert pw in passfile.read_text()  # it really is the file that carries the password
    finally:
        holder.rollback()
        holder.close()
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert not passfile.exists()  # removed afterwards
    assert pw not in out + err


@pytest.mark.parametrize("kind", ["wrong", "unknown"])
def test_host_keys_are_checked(remote_env, kind, tmp_path):
    kh = tmp_path / "known_hosts"
    if kind == "wrong":
        remote_env.bed.known_hosts_with_wrong_key(kh)
    else:
        remote_env.bed.known_hosts_without(kh, remote_env.bed.hosts[0])
    remote_env.known_hosts = str(kh)
    remote_env.write()
    r = remote_env.cli("status", "--env=prod")
    assert r.returncode == 1 and "host key" in r.stderr.lower() and "Traceback" not in r.stderr
    r = remote_env.cli("deploy", "--env=prod", "--yes")
    assert r.returncode == 1 and "host key" in r.stderr.lower()
    assert remote_env.revision() == "base" and remote_env.objects() == []


def test_host_key_changed_between_runs(remote_env, tmp_path):
    r = remote_env.cli("status", "--env=prod")
    assert r.returncode == 0, r.stderr
    kh = tmp_path / "known_hosts"
    remote_env.bed.known_hosts_with_wrong_key(kh)
    remote_env.known_hosts = str(kh)
    remote_env.write()
    r = remote_env.cli("deploy", "--env=prod", "--yes")
    assert r.returncode == 1 and "host key" in r.stderr.lower()
    assert remote_env.revision() == "base" and remote_env.objects() == []


def test_protected_env_refuses_without_terminal_or_yes(remote_env):
    r = remote_env.cli("deploy", "--env=prod")
    assert r.returncode == 2 and "protected" in r.stderr and "--yes" in r.stderr
    assert remote_env.revision() == "base" and remote_env.objects() == []


def test_manifests_over_ssh_and_s3_are_signed_pinned_and_a_protected_env_needs_the_key(remote_env):
    """Issue 12 finding 5 on the production path: the manifest is signed with the operator's
    key (storage.manifest_key_env) and pins the S3 object; without the key a protected env
    refuses to back up (exit 2: it could never restore the result), and a forged manifest is
    refused by rollback (exit 4) with the live DB untouched."""
    r = remote_env.cli("backup", "--env=prod", "--json")
    assert r.returncode == 0, r.stderr
    bid = json.loads(r.stdout)["id"]
    s3 = remote_env.s3.client()
    man = json.loads(s3.get_object(Bucket=remote_env.bucket, Key=f"prod/prod/{bid}.json")["Body"].read())
    head = s3.head_object(Bucket=remote_env.bucket, Key=f"prod/prod/{bid}.dump")
    assert man["signature"]["alg"] == "hmac-sha256" and man["etag"] == head["ETag"]
    assert remote_env.manifest_key not in json.dumps(man)
    logs = (remote_env.tmp / "logs" / "migration.log").read_text()
    assert remote_env.manifest_key not in logs

    # forged: verified, without the key
    man["verifications"] = [{"at": "2026-01-01T00:00:00Z", "ok": True}]
    s3.put_object(Bucket=remote_env.bucket, Key=f"prod/prod/{bid}.json", Body=json.dumps(man).encode())
    r = remote_env.cli("backups.list", "--env=prod", "--json")
    row = [b for b in json.loads(r.stdout) if b["id"] == bid][0]
    assert row["verified"] is False and row["trust"] == "bad-signature"
    remote_env.psql("create table after_backup (x int)")
    r = remote_env.cli("rollback", f"--to={bid}", "--env=prod", "--yes", "--trust-unsigned")
    assert r.returncode == 4 and "protected" in r.stderr, r.stderr
    assert remote_env.psql("select to_regclass('public.after_backup')") == "after_backup"

    # the key variable not exported: a clear error naming it (exit 1), nothing stored
    before = remote_env.objects()
    env = dict(os.environ, **remote_env.env_vars())
    env.pop(KEY_VAR)
    r = subprocess.run([sys.executable, "-m", "invoke", "backup", "--env=prod"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and KEY_VAR in r.stderr and "not set" in r.stderr, r.stderr
    # no manifest key configured at all on a protected S3 env: refused before anything is dumped
    remote_env.inventory.write_text(remote_env.inventory.read_text().replace(f", manifest_key_env: {KEY_VAR}", ""))
    r = remote_env.cli("backup", "--env=prod")
    assert r.returncode == 2 and "manifest_key_env" in r.stderr, r.stderr
    assert remote_env.objects() == before and remote_env.revision() == "base"


def test_s3_down_before_backup_refuses_to_migrate(remote_env):
    remote_env.s3.stop()
    try:
        r = remote_env.cli("deploy", "--env=prod", "--yes")
    finally:
        remote_env.s3.start()
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert remote_env.revision() == "base"
    assert [k for k in remote_env.objects() if k.endswith(".json")] == [] and remote_env.uploads() == []


def part_uploaded(re_) -> bool:
    """Has a multipart upload in this env's bucket stored at least one part?"""
    s3 = re_.s3.client()
    return any(s3.list_parts(Bucket=re_.bucket, Key=up["Key"], UploadId=up["UploadId"]).get("Parts")
               for up in re_.uploads())


def cut_after_first_part(re_, cut, args):
    """Run the CLI; once a part of the backup is in S3, freeze pg_dump (so the stream cannot
    end meanwhile), make the cut, thaw it. The cut is mid-stream for certain: the dump is
    uncompressed (~55 MB) and the uploader holds at most 3 parts of 5 MiB in memory, so pg_dump
    cannot have finished when the first part is stored."""
    re_.write(backup="{compression: none}")
    re_.inventory.write_text(re_.inventory.read_text().replace(
        "region: us-east-1,", "region: us-east-1, multipart_chunk_mb: 5, max_concurrency: 1,"))
    p = re_.popen(*args)
    try:
        assert procs.wait_until(lambda: part_uploaded(re_), p), "no part of the backup was ever uploaded: " + (p.stderr.read() if p.poll() is not None else "")
        pids = procs.pids("pg_dump", re_.dbname)
        assert pids, "pg_dump had finished by the time the first part was stored"
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            cut(p)
        finally:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
    finally:
        out, err = p.communicate(timeout=300)
    return p.returncode, out, err


def test_s3_stopped_during_backup_leaves_nothing(remote_env):
    add_bulk(remote_env, rows=400_000)
    rc, out, err = cut_after_first_part(remote_env, lambda p: remote_env.s3.stop(),
                                        ["deploy", "--env=prod", "--yes", "--accept-drift=table:bulk"])
    remote_env.s3.start()
    assert rc == 1 and "Traceback" not in err, err
    assert remote_env.revision() == "base"  # protected env: no migration without a backup
    assert_bulk_accepted(remote_env)
    assert remote_env.objects() == []  # no manifest, no dump object
    # parts were stored and S3 was gone when the upload was aborted: the run says the
    # incomplete upload may remain and what removes it; it is never listed as a backup
    said = " ".join(err.split())
    assert "incomplete multipart upload may remain" in said and "backups.prune" in said, said
    assert all(u["Key"].startswith("prod/prod/") and u["Key"].endswith(".dump") for u in remote_env.uploads())
    r = remote_env.cli("backups.list", "--env=prod", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == [], r.stdout


def test_sshd_killed_mid_backup(remote_env):
    add_bulk(remote_env, rows=400_000)
    host = remote_env.bed.hosts[0]
    rc, out, err = cut_after_first_part(remote_env, lambda p: remote_env.bed.kill(host),
                                        ["deploy", "--env=prod", "--yes", "--accept-drift=table:bulk"])
    remote_env.bed.restart(host)
    assert rc == 1 and "Traceback" not in err, err
    assert remote_env.revision() == "base"
    assert_bulk_accepted(remote_env)
    assert [k for k in remote_env.objects() if k.endswith(".json")] == []
    assert remote_env.uploads() == []


def test_rollback_refuses_a_flipped_byte_in_s3(remote_env):
    assert remote_env.cli("deploy", "--env=prod", "--yes").returncode == 0
    r = remote_env.cli("backup", "--env=prod", "--json")
    bid = json.loads(r.stdout)["id"]
    s3 = remote_env.s3.client()
    key = f"prod/prod/{bid}.dump"
    data = bytearray(s3.get_object(Bucket=remote_env.bucket, Key=key)["Body"].read())
    data[len(data) // 3] ^= 0x40
    s3.put_object(Bucket=remote_env.bucket, Key=key, Body=bytes(data))
    remote_env.psql("delete from vaccinations")
    r = remote_env.cli("rollback", f"--to={bid}", "--env=prod", "--yes")
    # a rewritten object has another ETag: the pinned read (If-Match) refuses it before a byte
    # is spooled (a flipped byte the ETag cannot see is caught by the spool's sha256: test_speed_paths)
    assert r.returncode == 4 and "not the object this backup stored" in r.stderr, r.stderr
    assert remote_env.psql("select count(*) from vaccinations") == "0"
    assert remote_env.psql(f"select count(*) from pg_database where datname like '{remote_env.dbname}_restore%'") == "0"


def test_failing_health_on_app_host_restores_over_ssh(remote_env, health):
    """A post-check failure on the app host (fetched over SSH) restores the S3 backup on the DB host."""
    remote_env.write(checks=f"{{http: ['{health.url}'], timeout: 2, retries: 2, retry_delay: 0.1}}")
    assert remote_env.cli("migrations.upgrade", "--env=prod", "--to=0012", "--yes").returncode == 0
    remote_env.psql("insert into clients (first_name, last_name) values ('Ana', 'Ruiz'), ('Luis', 'Vega')")
    before = remote_env.psql("select md5(string_agg(c::text, '|' order by c::text)) from clients c")
    assert remote_env.revision() == "0012"
    health.status = 503
    r = remote_env.cli("deploy", "--env=prod", "--yes")
    assert r.returncode == 1 and "health" in r.stderr and "recovered" in r.stderr, r.stderr
    assert "HEALTH STILL FAILING" in r.stderr  # the app is still down: said plainly, the DB is back
    assert remote_env.revision() == "0012"
    assert remote_env.psql("select md5(string_agg(c::text, '|' order by c::text)) from clients c") == before
    health.status = 200
    r = remote_env.cli("deploy", "--env=prod", "--yes")
    assert r.returncode == 0, r.stderr
    assert remote_env.revision() == "0013"


def test_fab_dump_on_a_named_host(remote_env, health):
    """`fab -H <db host> dump --env=prod`: the per-host building block, same code as `invoke backup`."""
    assert remote_env.cli("deploy", "--env=prod", "--yes").returncode == 0
    env = dict(os.environ, **remote_env.env_vars())
    r = subprocess.run([sys.executable, "-m", "fabric", "-H", remote_env.bed.hosts[0], "dump", "--env=prod"], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    bid = r.stdout.split()[1]
    assert f"prod/prod/{bid}.json" in remote_env.objects()
    url = health.url
    remote_env.write(checks=f"{{http: ['{url}'], timeout: 2, retries: 1, retry_delay: 0.1}}")
    fab_health = [sys.executable, "-m", "fabric", "-H", remote_env.bed.hosts[1], "health", "--env=prod"]
    r = subprocess.run(fab_health, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert f"health {url} on {remote_env.bed.hosts[1]}: ok" in r.stderr
    health.status = 500
    r = subprocess.run(fab_health, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and "health checks failed" in r.stderr and "500" in r.stderr


def test_prune_aborts_multipart_debris(remote_env, monkeypatch):
    """Parts of an upload that failed while S3 was unreachable are removed by backups.prune."""
    from datetime import timedelta

    from vetai_ops.ops import prune as prune_mod

    remote_env.s3.client().create_multipart_upload(Bucket=remote_env.bucket, Key="prod/prod/20200101T000000Z.dump")
    assert len(remote_env.uploads()) == 1
    monkeypatch.setattr(prune_mod, "INCOMPLETE_GRACE", timedelta(0))  # the debris is "old enough" now
    res = prune_mod.prune("prod", keep_last=1, keep_days=7, yes=True)
    assert remote_env.uploads() == []
    assert "1 incomplete upload(s)" in res["done"]


def test_restart_rolls_over_every_app_host_over_ssh(remote_env):
    """services.restart runs on each app host in turn, over SSH (sshd's SSH_CONNECTION names
    the address each command really ran on)."""
    assert len(remote_env.bed.hosts) >= 3
    h1, h2 = remote_env.bed.hosts[1], remote_env.bed.hosts[2]
    log = f"/tmp/vetai-restart-{uuid.uuid4().hex[:8]}.log"
    remote_env.write(services=f"{{restart: [sh, -c, 'echo $SSH_CONNECTION >> {log}'], rolling_delay: 0.2}}")
    remote_env.inventory.write_text(remote_env.inventory.read_text().replace(f"app: ['{h1}']", f"app: ['{h1}', '{h2}']"))
    try:
        r = remote_env.cli("deploy", "--env=prod", "--yes")
        assert r.returncode == 0, r.stderr
        assert f"restarted on {h1}, {h2}" in r.stderr
        servers = [line.split()[2] for line in Path(log).read_text().splitlines()]
        assert servers == [h1, h2]  # one restart per app host, in inventory order
    finally:
        Path(log).unlink(missing_ok=True)


def test_bed_is_like_production(remote_env, app_sessions):
    """The bed is not friendly (docs/architecture.md, invariants): the tool runs as a non-superuser owner with CREATEDB;
    the app connects as its own role, which holds grants, settings and objects of its own."""
    pg, db = remote_env.pg, remote_env.dbname
    [(superuser, createdb, owner)] = pg.admin(
        f"SELECT r.rolsuper, r.rolcreatedb, pg_get_userbyid(d.datdba) FROM pg_roles r, pg_database d"
        f" WHERE r.rolname = '{pg.deploy_user}' AND d.datname = '{db}'")
    assert (superuser, createdb, owner) == (False, True, pg.deploy_user)
    acl = pg.admin(f"SELECT coalesce(pg_get_userbyid(a.grantee), 'PUBLIC'), a.privilege_type FROM pg_database d,"
                   f" aclexplode(d.datacl) a WHERE d.datname = '{db}'")
    assert ("PUBLIC", "CONNECT") not in acl and (pg.app_user, "CONNECT") in acl
    conn = app_sessions.idle()
    assert conn.execute("SHOW statement_timeout").fetchone()[0] == "30s"  # ALTER ROLE app IN DATABASE ... SET
    assert conn.execute("SHOW work_mem").fetchone()[0] == "8MB"  # ALTER DATABASE ... SET
    assert conn.execute("SELECT count(*) FROM app_cache.sessions").fetchone()[0] == 1
    assert remote_env.cli("deploy", "--env=prod", "--yes").returncode == 0
    assert conn.execute("SELECT count(*) FROM pets").fetchone()[0] > 0  # default privileges granted the app the tables
    assert app_sessions.alive() == [True]
