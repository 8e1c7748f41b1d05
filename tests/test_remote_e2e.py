"""Production path on the real test bed: the DB host and an app host are OpenSSH sshd
processes on loopback addresses, PostgreSQL speaks scram over TCP as seen from the DB
host, backups go to a real S3 endpoint (moto server) through boto3."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.remote

ROOT = Path(__file__).resolve().parents[1]
PW_VAR = "VETAI_TEST_DB_PASSWORD"
KEY_VAR = "VETAI_TEST_MANIFEST_KEY"  # storage.manifest_key_env: the key the bucket never holds


class RemoteEnv:
    def __init__(self, tmp: Path, bed, pg, s3, known_hosts: str | None = None):
        self.bed, self.pg, self.s3 = bed, pg, s3
        self.dbname = "prod_" + uuid.uuid4().hex[:8]
        self.bucket = s3.create_bucket()
        self.inventory = tmp / "inventory.yml"
        self.tmp = tmp
        self.known_hosts = known_hosts or bed.known_hosts
        self.manifest_key = "mk-" + uuid.uuid4().hex + uuid.uuid4().hex
        pg.cluster.psql(f'CREATE DATABASE "{self.dbname}"')
        self.write()

    def write(self, **extra):
        app = self.bed.hosts[1] if len(self.bed.hosts) > 1 else self.bed.hosts[0]
        lines = [
            "default_env: prod",
            "environments:",
            "  prod:",
            "    protected: true",
            f"    ssh: {{user: {self.bed.user}, port: {self.bed.port}, key_file: '{self.bed.key_file}', known_hosts: '{self.known_hosts}'}}",
            f"    hosts: {{db: ['{self.bed.hosts[0]}'], app: ['{app}']}}",
            f"    database: {{name: {self.dbname}, user: vetai, host: 127.0.0.1, port: {self.pg.port}, password_env: {PW_VAR},"
            f" bin_dir: '{self.pg.cluster.bindir}'}}",
            f"    storage: {{type: s3, bucket: {self.bucket}, prefix: prod, region: us-east-1, endpoint_url: '{self.s3.endpoint_url}',"
            f" manifest_key_env: {KEY_VAR}}}",
        ]
        for k, v in extra.items():
            lines.append(f"    {k}: {v}")
        self.inventory.write_text("\n".join(lines) + "\n")

    def env_vars(self) -> dict:
        return {"VETAI_OPS_INVENTORY": str(self.inventory), PW_VAR: self.pg.password, "VETAI_OPS_LOGS": str(self.tmp / "logs"),
                KEY_VAR: self.manifest_key}

    def cli(self, *args, timeout=300):
        env = dict(os.environ, **self.env_vars())
        return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def psql(self, sql: str) -> str:
        return self.pg.cluster.psql(sql, db=self.dbname)

    def objects(self) -> list[str]:
        resp = self.s3.client().list_objects_v2(Bucket=self.bucket)
        return sorted(o["Key"] for o in resp.get("Contents", []))

    def uploads(self) -> list:
        return self.s3.client().list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])

    def revision(self) -> str:
        if not self.psql("select to_regclass('public.alembic_version')"):
            return "base"
        return self.psql("select coalesce((select version_num from alembic_version), 'base')")


@pytest.fixture
def remote_env(tmp_path, ssh_bed, pg_tcp, s3_server, monkeypatch):
    if not s3_server.running:
        s3_server.start()
    re_ = RemoteEnv(tmp_path, ssh_bed, pg_tcp, s3_server)
    for k, v in re_.env_vars().items():
        monkeypatch.setenv(k, v)
    yield re_
    for h in ssh_bed.hosts:
        if not ssh_bed.alive(h):
            ssh_bed.restart(h)
    pg_tcp.cluster.psql(f"select pg_terminate_backend(pid) from pg_stat_activity where datname like '{re_.dbname}%'")
    for db in pg_tcp.cluster.psql(f"select datname from pg_database where datname like '{re_.dbname}%'").split():
        pg_tcp.cluster.psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def add_bulk(re_, rows=150_000):
    """~10 MB of hard-to-compress rows so streams take long enough to interfere with."""
    re_.psql(f"create table bulk as select i, md5(random()::text) || md5(random()::text) || md5(random()::text) as x "
             f"from generate_series(1, {rows}) i")


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
    assert remote_env.pg.password not in json.dumps(man)

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
    assert remote_env.pg.password not in r.stdout
    logs = (remote_env.tmp / "logs" / "migration.log").read_text()
    assert remote_env.pg.password not in logs


def test_password_never_in_ps_on_the_host(remote_env):
    remote_env.cli("deploy", "--env=prod", "--yes")
    add_bulk(remote_env)
    seen, leaked, passfiles, stop = [], [], {}, threading.Event()
    tmp = Path(tempfile.gettempdir())  # the loopback hosts are this machine: their /tmp is ours
    existing = set(tmp.glob("vetai-ops-*.pgpass"))

    def sample():
        while not stop.is_set():
            out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
            if "pg_dump" in out:
                seen.append(1)
            if remote_env.pg.password in out:
                leaked.append(out)
            for f in set(tmp.glob("vetai-ops-*.pgpass")) - existing:
                try:
                    passfiles[f] = f.stat().st_mode & 0o777
                except FileNotFoundError:
                    pass
            time.sleep(0.01)

    t = threading.Thread(target=sample)
    t.start()
    try:
        r = remote_env.cli("backup", "--env=prod")
    finally:
        stop.set()
        t.join()
    assert r.returncode == 0, r.stderr
    assert seen, "the sampler never saw pg_dump running"
    assert not leaked
    # the password reached pg_dump through a 0600 passfile on the host, removed afterwards
    assert passfiles and set(passfiles.values()) == {0o600}
    assert not (set(tmp.glob("vetai-ops-*.pgpass")) - existing)


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
    assert r.returncode != 0 and "host key" in r.stderr.lower() and "Traceback" not in r.stderr
    r = remote_env.cli("deploy", "--env=prod", "--yes")
    assert r.returncode != 0 and "host key" in r.stderr.lower()
    assert remote_env.revision() == "base" and remote_env.objects() == []


def test_host_key_changed_between_runs(remote_env, tmp_path):
    r = remote_env.cli("status", "--env=prod")
    assert r.returncode == 0, r.stderr
    kh = tmp_path / "known_hosts"
    remote_env.bed.known_hosts_with_wrong_key(kh)
    remote_env.known_hosts = str(kh)
    remote_env.write()
    r = remote_env.cli("deploy", "--env=prod", "--yes")
    assert r.returncode != 0 and "host key" in r.stderr.lower()
    assert remote_env.revision() == "base" and remote_env.objects() == []


def test_protected_env_refuses_without_terminal_or_yes(remote_env):
    r = remote_env.cli("deploy", "--env=prod")
    assert r.returncode != 0 and "protected" in r.stderr and "--yes" in r.stderr
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
    r = remote_env.cli("deploy", "--env=prod", "--yes")
    assert r.returncode == 2 and "manifest_key_env" in r.stderr, r.stderr
    assert remote_env.objects() == before and remote_env.revision() == "base"


def test_s3_down_before_backup_refuses_to_migrate(remote_env):
    remote_env.s3.stop()
    try:
        r = remote_env.cli("deploy", "--env=prod", "--yes")
    finally:
        remote_env.s3.start()
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert remote_env.revision() == "base"
    assert [k for k in remote_env.objects() if k.endswith(".json")] == [] and remote_env.uploads() == []


def _run_while(remote_env, action, trigger, args):
    """Run the CLI in the background; when trigger() says so, call action(); return the result."""
    env = dict(os.environ, **remote_env.env_vars())
    p = subprocess.Popen([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    end = time.time() + 60
    fired = False
    while time.time() < end and p.poll() is None:
        if trigger():
            action()
            fired = True
            break
        time.sleep(0.01)
    out, err = p.communicate(timeout=180)
    return p.returncode, out, err, fired


def _dump_running() -> bool:
    return "pg_dump" in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout


def test_s3_stopped_during_backup_leaves_nothing(remote_env):
    add_bulk(remote_env, rows=400_000)
    rc, out, err, fired = _run_while(remote_env, remote_env.s3.stop, _dump_running, ["deploy", "--env=prod", "--yes"])
    remote_env.s3.start()
    assert fired, "pg_dump was never seen running"
    assert rc != 0 and "Traceback" not in err
    assert remote_env.revision() == "base"  # protected env: no migration without a backup
    assert [k for k in remote_env.objects() if k.endswith(".json")] == []
    assert remote_env.uploads() == []


def test_sshd_killed_mid_backup(remote_env):
    add_bulk(remote_env, rows=400_000)
    host = remote_env.bed.hosts[0]
    rc, out, err, fired = _run_while(remote_env, lambda: remote_env.bed.kill(host), _dump_running,
                                     ["deploy", "--env=prod", "--yes"])
    remote_env.bed.restart(host)
    assert fired
    assert rc != 0 and "Traceback" not in err
    assert remote_env.revision() == "base"
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
    remote_env.psql("delete from vaccinations where id in (select id from vaccinations limit 2)")
    before = remote_env.psql("select md5(string_agg(v::text, '|' order by v::text)) from vaccinations v")
    assert remote_env.revision() == "0012"
    health.status = 503
    r = remote_env.cli("deploy", "--env=prod", "--yes")
    assert r.returncode != 0 and "health" in r.stderr and "recovered" in r.stderr, r.stderr
    assert "HEALTH STILL FAILING" in r.stderr  # the app is still down: said plainly, the DB is back
    assert remote_env.revision() == "0012"
    assert remote_env.psql("select md5(string_agg(v::text, '|' order by v::text)) from vaccinations v") == before
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
    assert r.returncode != 0 and "health checks failed" in r.stderr and "500" in r.stderr


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
