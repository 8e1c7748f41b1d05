"""Network and terminal faults on the SSH + S3 bed (issue 11, item 5), injected for real:
a terminated lock session, an sshd connection cut under the operator, a stopped pg_dump /
pg_restore on the DB host, a terminal that goes away (SIGHUP through a real pty)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from procs import pty_cli, wait_for

from fixtures_remote import _comm, _descendants
from test_remote_e2e import add_bulk, assert_bulk_accepted

pytestmark = pytest.mark.remote


def _run_while(remote_env, action, trigger, args):
    """Run the CLI in the background; when trigger() says so, call action(); return
    (exit code, stdout, stderr, whether the action ran)."""
    p = remote_env.popen(*args)
    end = time.time() + 60
    fired = False
    while time.time() < end and p.poll() is None:
        if trigger():
            action()
            fired = True
            break
        time.sleep(0.01)
    try:
        out, err = p.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    return p.returncode, out, err, fired


def procs(name: str, needle: str) -> list[int]:
    """PIDs of processes called ``name`` whose command line contains ``needle``."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0].decode(errors="replace")) == name and needle.encode() in b" ".join(argv):
            out.append(int(d))
    return out



def kill_lock(re_) -> str:
    """Terminate the session holding THIS env's deploy lock (found by its key: other tests
    may hold their own locks at the same time); returns how many were terminated."""
    from vetai_ops.database.advisory import LOCK_CLASS, lock_key

    return re_.pg.cluster.psql(
        "select count(pg_terminate_backend(l.pid)) from pg_locks l where l.locktype = 'advisory' and l.granted"
        f" and l.classid = {LOCK_CLASS} and l.objid = {lock_key(re_.dbname) & 0xFFFFFFFF} and l.objsubid = 2")


def history_outcome(re_) -> str:
    return re_.psql("select outcome from deploy_history order by id desc limit 1")


def _pets(re_) -> str:
    return re_.psql("select md5(string_agg(p::text, '|' order by p::text)) from pets p")


def with_checks(re_, health, **extra):
    re_.write(checks=f"{{http: ['{health.url}'], timeout: 2, retries: 1, retry_delay: 0.1}}", **extra)


# ------------------------------------------------------------------ the lock, asked again


def test_lock_lost_before_migrate_stops_with_nothing_applied(remote_env):
    """The lock session is terminated during the backup: the run stops before migrate."""
    add_bulk(remote_env, rows=300_000)
    terminated = []

    def terminate():
        terminated.append(kill_lock(remote_env))

    rc, out, err, fired = _run_while(remote_env, terminate, lambda: bool(procs("pg_dump", remote_env.dbname)),
                                     ["deploy", "--env=prod", "--yes", "--accept-drift=table:bulk"])
    assert fired and terminated == ["1"], err
    assert rc == 1, err
    assert "lock" in err and "was lost" in err and "stopped before migrate" in err, err
    assert "Traceback" not in err
    assert remote_env.revision() == "base"  # nothing applied
    assert_bulk_accepted(remote_env)


def test_recovery_retakes_a_lost_lock_and_a_second_deployer_is_never_silent(remote_env, health):
    """Lock session terminated during the post-check: the recovery takes the lock again
    (nobody else holds it) before its swap. When someone else grabbed it, the recovery
    stops before the swap and says so."""
    assert remote_env.cli("migrations.upgrade", "--env=prod", "--to=0012", "--yes").returncode == 0
    before = _pets(remote_env)
    with_checks(remote_env, health)
    health.status = 503
    health.on_request = lambda n: n == 1 and kill_lock(remote_env)
    r = remote_env.cli("deploy", "--env=prod", "--yes")
    assert r.returncode == 1 and "recovered" in r.stderr, r.stderr
    assert "taken again before the swap" in r.stderr
    assert remote_env.revision() == "0012" and _pets(remote_env) == before

    # now a "second deployer" takes the lock as soon as ours is gone: the swap must not happen
    import psycopg

    from vetai_ops.database.advisory import LOCK_CLASS, lock_key

    thief: list = []

    def steal(n):
        if n != 1:
            return
        kill_lock(remote_env)
        c = psycopg.connect(**remote_env.pg.conninfo("postgres"), autocommit=True, application_name="vetai-ops deploy by thief@elsewhere")
        assert wait_for(lambda: c.execute("select pg_try_advisory_lock(%s, %s)",
                                          (LOCK_CLASS, lock_key(remote_env.dbname))).fetchone()[0], 10)
        thief.append(c)

    health.on_request, health.hits = steal, 0
    try:
        r = remote_env.cli("deploy", "--env=prod", "--yes")
    finally:
        for c in thief:
            c.close()
    assert r.returncode == 1, r.stderr
    assert "RECOVERY FAILED" in r.stderr and "another run holds it" in r.stderr and "thief@elsewhere" in r.stderr, r.stderr
    assert remote_env.revision() == "0013"  # not swapped under the other run; the report says how to restore
    assert remote_env.psql(f"select count(*) from pg_database where datname like '{remote_env.dbname}_restore%'") == "0"


# ------------------------------------------------------------------ SSH reconnect: tunnel rebuilt


def test_tunnel_and_connections_rebuilt_after_the_ssh_connection_is_cut(remote_env, health):
    """The sshd process serving the operator's connection to the DB host is killed during the
    post-check (the listener stays): the recovery reconnects, its tunnel and DB connections
    work over the new connection, the lock is taken again, the backup is restored."""
    assert remote_env.cli("migrations.upgrade", "--env=prod", "--to=0012", "--yes").returncode == 0
    before = _pets(remote_env)
    with_checks(remote_env, health)
    health.status = 503
    bed, db_host = remote_env.bed, remote_env.bed.hosts[0]
    cut = []

    def cut_connection(n):
        if n != 1:
            return
        listener = bed.procs[db_host].pid
        children = [p for p in _descendants(listener) if _comm(p).startswith("sshd")]
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        cut.append(len(children))

    health.on_request = cut_connection
    r = remote_env.cli("deploy", "--env=prod", "--yes", "--json")
    assert cut and cut[0] >= 1 and bed.alive(db_host)
    assert r.returncode == 1, r.stderr
    rep = json.loads(r.stdout)["report"]
    assert rep["recovery"]["status"] == "ok", rep["recovery"]
    assert "taken again" in r.stderr
    assert remote_env.revision() == "0012" and _pets(remote_env) == before
    assert history_outcome(remote_env) == "failed+restored"


# ------------------------------------------------------------------ stalled streams


def _stop_and_wait(name: str, needle: str, r_holder: list):
    """SIGSTOP every ``name`` process of this test's database; remember them."""
    pids = procs(name, needle)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    r_holder.extend(pids)


def _release(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_stalled_pg_dump_is_killed_and_reported(remote_env):
    add_bulk(remote_env, rows=300_000)
    remote_env.write(backup="{stall_timeout: 2}")
    stopped: list[int] = []
    try:
        rc, out, err, fired = _run_while(remote_env, lambda: _stop_and_wait("pg_dump", remote_env.dbname, stopped),
                                         lambda: bool(procs("pg_dump", remote_env.dbname)),
                                         ["deploy", "--env=prod", "--yes", "--accept-drift=table:bulk"])
        assert fired and stopped
        assert rc == 1, err
        assert "moved no bytes for 2s" in err and "backup.stall_timeout" in err and "no backup was registered" in err, err
        assert not any(os.path.exists(f"/proc/{p}") and _state(p) != "Z" for p in stopped)  # killed on the host
    finally:
        _release(stopped)
    assert remote_env.revision() == "base"
    assert_bulk_accepted(remote_env)
    assert [k for k in remote_env.objects() if k.endswith(".json")] == [] and remote_env.uploads() == []


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


# ------------------------------------------------------------------ SIGHUP: the terminal goes away


def test_terminal_hangup_recovers_like_sigterm(remote_env, migrations_copy):
    """The deploy runs on a real pseudo-terminal; mid-migration the terminal is closed (the
    kernel sends SIGHUP and later writes fail): the backup is restored, exit 130."""
    assert remote_env.cli("migrations.upgrade", "--env=prod", "--to=0012", "--yes").returncode == 0
    before = _pets(remote_env)
    migrations_copy.add("0013b", "0013", "op.execute('SELECT pg_sleep(30)')")
    with pty_cli(dict(os.environ, **remote_env.env_vars()), "deploy", "--env=prod", "--yes") as run:
        # in the real migrate, on the live database (a rehearsal runs it on a copy first)
        assert wait_for(lambda: remote_env.pg.cluster.psql(
            "select count(*) from pg_stat_activity where query like 'SELECT pg_sleep(30)%'"
            f" and datname = '{remote_env.dbname}'") == "1", 180), bytes(run.seen)
        assert b"backup" in bytes(run.seen)  # the run really wrote to that terminal
        run.hangup()  # SIGHUP to the terminal's session
        code = run.wait()
    log = (remote_env.tmp / "logs" / "migration.log").read_text()
    assert code == 130, log[-3000:]
    assert remote_env.revision() == "0012" and _pets(remote_env) == before
    assert history_outcome(remote_env) == "interrupted+restored"
    assert remote_env.psql("select error from deploy_history order by id desc limit 1") == "interrupted (SIGHUP)"
