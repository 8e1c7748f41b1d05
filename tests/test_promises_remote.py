"""Promises with no test of their own, on the SSH + S3 bed (sshd on loopback, scram PostgreSQL
over TCP, moto S3): Ctrl-C in the middle of an S3 upload, the password never in pg_restore's
argv or environment, secrets absent from the run log stored in S3 and from --verbose output.

The tool's processes are found on this machine (the loopback hosts run them here) by program
and database name, and frozen with SIGSTOP while the test looks at them or acts: no sleeps.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import procs
from fixtures_remote import PW_VAR, ROOT
from test_remote_e2e import add_bulk, assert_bulk_accepted, cut_after_first_part

pytestmark = pytest.mark.remote

AWS_SECRET = "testing-secret-key"  # fixtures_remote._AWS_ENV: what boto3 signs with


def deploy_lock_held(re_) -> bool:
    from vetai_ops.database.advisory import LOCK_CLASS

    return re_.pg.cluster.psql(
        f"select count(*) from pg_locks where locktype = 'advisory' and classid = {LOCK_CLASS}") != "0"


def test_sigint_during_an_s3_backup_leaves_no_upload(remote_env):
    """Ctrl-C once a part of the pre-deploy backup is in S3 (pg_dump frozen, so the stream is
    certainly mid-way): exit 130, no manifest, no object and no multipart upload left, the
    deploy lock released, the database not migrated."""
    add_bulk(remote_env, rows=400_000)
    rc, out, err = cut_after_first_part(remote_env, lambda p: p.send_signal(signal.SIGINT),
                                        ["deploy", "--env=prod", "--yes", "--accept-drift=table:bulk"])
    assert rc == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert remote_env.revision() == "base"
    assert_bulk_accepted(remote_env)
    assert remote_env.objects() == []
    assert remote_env.uploads() == []  # S3 was reachable: the multipart upload was aborted
    assert not deploy_lock_held(remote_env)
    assert not procs.pids("pg_dump", remote_env.dbname)  # and nothing still runs on the DB host


@pytest.mark.parametrize("verb", ["rollback", "backups.verify"])
def test_password_never_in_pg_restores_argv_or_environ(remote_env, verb):
    """pg_restore (frozen while the test reads /proc) gets the password only through the 0600
    passfile its PGPASSFILE names; that file is gone when the run ends."""
    assert remote_env.cli("deploy", "--env=prod", "--yes").returncode == 0
    r = remote_env.cli("backup", "--env=prod", "--json")
    assert r.returncode == 0, r.stderr
    bid = json.loads(r.stdout)["id"]
    pw = remote_env.password
    args = [verb, f"--to={bid}", "--env=prod"] + (["--yes"] if verb == "rollback" else [])
    p = remote_env.popen(*args)
    try:
        with procs.frozen(p, "pg_restore", remote_env.dbname) as found:
            for pid in found:
                assert not [a for a in procs.argv(pid) if pw in a], "the password is in pg_restore's argv"
                env = procs.environ(pid)
                assert not [k for k, v in env.items() if pw in v], "the password is in pg_restore's environment"
                passfile = Path(env["PGPASSFILE"])
                assert passfile.stat().st_mode & 0o777 == 0o600
                assert pw in passfile.read_text()  # it is the file that carries the password
    finally:
        out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert not passfile.exists()
    assert pw not in out + err


def test_secrets_absent_from_the_s3_run_log_and_verbose_output(remote_env):
    """The DB password and the AWS secret key appear in none of: the run log the deploy
    stores next to its backup in S3, --verbose stdout/stderr, and the operator's local log;
    nor does a wrong password in a failing --verbose run."""
    r = remote_env.cli("deploy", "--env=prod", "--yes", "--verbose")
    assert r.returncode == 0, r.stderr
    s3 = remote_env.s3.client()
    manifests = [k for k in remote_env.objects() if k.endswith(".json")]
    assert len(manifests) == 1
    man = json.loads(s3.get_object(Bucket=remote_env.bucket, Key=manifests[0])["Body"].read())
    log_key = next(k for k in remote_env.objects() if k.endswith(".log.jsonl"))
    run_log = s3.get_object(Bucket=remote_env.bucket, Key=log_key)["Body"].read().decode()
    assert len(run_log.splitlines()) > 5 and man["id"] in run_log  # a real log of this run
    local_log = (remote_env.tmp / "logs" / "migration.log").read_text()
    for secret in (remote_env.password, remote_env.pg.password, AWS_SECRET):
        for where, text in (("S3 run log", run_log), ("stderr", r.stderr), ("stdout", r.stdout),
                            ("manifest", json.dumps(man)), ("local log", local_log)):
            assert secret not in text, f"a secret is in the {where}"
    # a failing run with --verbose (the server refuses a wrong password): still no secret shown
    wrong = "wrong-" + secrets.token_urlsafe(12)
    env = dict(remote_env.env_vars(), **{PW_VAR: wrong})
    r = subprocess.run([sys.executable, "-m", "invoke", "backup", "--env=prod", "--verbose"], cwd=ROOT,
                       env=dict(os.environ, **env), capture_output=True, text=True, timeout=300,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and "password" in r.stderr.lower(), r.stderr
    for secret in (wrong, remote_env.password, AWS_SECRET):
        assert secret not in r.stderr + r.stdout
