"""The write fence (issue 11, item 4b) on the SSH + S3 bed, with the app's own role writing:
refused during the window, accepted after; lifted after success, failure, SIGTERM, and a
killed run's fence by the next run."""

from __future__ import annotations

import json
import os
import signal
import uuid

import psycopg
import pytest

from procs import wait_for

pytestmark = pytest.mark.remote

READ_ONLY = "25006"  # read_only_sql_transaction



def app_write(re_) -> str:
    """One INSERT as the app role on a fresh connection: 'ok', or the refusal's SQLSTATE."""
    try:
        with psycopg.connect(**re_.pg.app_conninfo(re_.dbname), autocommit=True) as c:
            c.execute("INSERT INTO app_cache.sessions (id, data) VALUES (%s, 'w')", (int(uuid.uuid4().int % 10**9),))
        return "ok"
    except psycopg.Error as e:
        return e.sqlstate or type(e).__name__


def live_fence(re_) -> str | None:
    """The live database's own default_transaction_read_only (the fence's setting), or None."""
    rows = re_.pg.admin("SELECT x FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase,"
                        " unnest(s.setconfig) x WHERE s.setrole = 0 AND d.datname = %s"
                        " AND x LIKE 'default_transaction_read_only=%%'" % ("'" + re_.dbname + "'"))
    return rows[0][0].split("=", 1)[1] if rows else None


def writable_after_restore(re_) -> bool:
    """Not fenced, and the same database to the app: a new session is writable and the app's own
    write goes through (the restore kept its schema, object owners and grants)."""
    return (live_fence(re_) is None and re_.psql("SHOW default_transaction_read_only") == "off"
            and app_write(re_) == "ok")


def fenced(re_, **extra):
    re_.write(write_fence="read_only", **extra)


def checks(health) -> str:
    return f"{{http: ['{health.url}'], timeout: 2, retries: 1, retry_delay: 0.1}}"


def test_read_only_fence_refuses_the_apps_writes_in_the_window_only(remote_env, app_sessions, health):
    assert remote_env.cli("migrations.upgrade", "--env=prod", "--to=0012", "--yes").returncode == 0
    fenced(remote_env, checks=checks(health))
    during: list[str] = []
    health.on_request = lambda n: during.append(app_write(remote_env))  # in the post-check: inside the window
    idle = app_sessions.idle()  # a pooled app connection from before the deploy
    assert app_write(remote_env) == "ok"
    r = remote_env.cli("deploy", "--env=prod", "--yes", "--json")
    assert r.returncode == 0, r.stderr
    assert during == [READ_ONLY]  # the app's write was refused while the deploy ran
    assert app_write(remote_env) == "ok"  # and accepted after
    assert app_sessions.alive() == [False]  # its old sessions were ended to reconnect (read-only, then writable)
    rep = json.loads(r.stdout)["report"]
    assert rep["fence_status"] == "lifted"
    assert remote_env.revision() == "0013"
    # the database keeps no trace of the fence (nor the tool's record in the store)
    assert remote_env.pg.admin("SELECT count(*) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase"
                               f" WHERE d.datname = '{remote_env.dbname}'"
                               " AND array_to_string(s.setconfig, ',') LIKE '%default_transaction_read_only%'")[0][0] == 0
    assert "prod/fence.json" not in [k.split("/", 1)[1] for k in remote_env.objects()]
    del idle


def test_read_only_fence_is_lifted_after_a_failure_and_after_sigterm(remote_env, health, migrations_copy):
    assert remote_env.cli("migrations.upgrade", "--env=prod", "--to=0012", "--yes").returncode == 0
    fenced(remote_env, checks=checks(health))
    health.status = 503
    during: list[str] = []
    health.on_request = lambda n: during.append((app_write(remote_env), live_fence(remote_env)))
    r = remote_env.cli("deploy", "--env=prod", "--yes")
    assert r.returncode == 1 and "recovered" in r.stderr, r.stderr
    # refused in the deploy's post-check; in the recovery's, the live database is the restored
    # copy, fenced before its swap
    assert during[0] == (READ_ONLY, "on") and during[1][1] == "on" and len(during) == 2
    assert remote_env.revision() == "0012" and writable_after_restore(remote_env)

    health.status, health.on_request = 200, None
    migrations_copy.add("0013b", "0013", "op.execute('SELECT pg_sleep(20)')")
    p = remote_env.popen("deploy", "--env=prod", "--yes")  # waited for below in the real migrate (datname)
    assert wait_for(lambda: remote_env.pg.cluster.psql(
        "select count(*) from pg_stat_activity where query like 'SELECT pg_sleep(20)%'"
        f" and datname = '{remote_env.dbname}'") == "1", 180)
    # fenced (the live database is the copy the failure above restored; a new session is read-only)
    assert live_fence(remote_env) == "on" and remote_env.psql("SHOW default_transaction_read_only") == "on"
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert remote_env.revision() == "0012" and writable_after_restore(remote_env)


def test_a_fence_left_by_a_killed_run_is_lifted_by_the_next_run(remote_env, migrations_copy):
    assert remote_env.cli("migrations.upgrade", "--env=prod", "--to=0012", "--yes").returncode == 0
    fenced(remote_env)
    slow = migrations_copy.add("0013b", "0013", "op.execute('SELECT pg_sleep(30)')")
    p = remote_env.popen("deploy", "--env=prod", "--yes")  # waited for below in the real migrate (datname)
    if not wait_for(lambda: p.poll() is not None or remote_env.pg.cluster.psql(
            "select count(*) from pg_stat_activity where query like 'SELECT pg_sleep(30)%'"
            f" and datname = '{remote_env.dbname}'") == "1", 180) or p.poll() is not None:
        p.kill()
        pytest.fail("the deploy never reached the slow revision: " + p.communicate()[1][-3000:])
    p.kill()  # SIGKILL: nothing of the run can lift its fence
    p.communicate(timeout=60)
    remote_env.pg.cluster.psql("select pg_cancel_backend(pid) from pg_stat_activity where query like 'SELECT pg_sleep(30)%'"
                               f" and datname = '{remote_env.dbname}'")
    assert app_write(remote_env) == READ_ONLY  # the fence outlived its run
    slow.unlink()
    r = remote_env.cli("plan", "--env=prod")  # a plan changes nothing: it only says so
    assert r.returncode == 0, r.stderr
    assert "write fence left by run" in r.stderr and "still up" in r.stderr
    assert app_write(remote_env) == READ_ONLY
    r = remote_env.cli("deploy", "--env=prod", "--yes", "--json")
    assert r.returncode == 0, r.stderr
    assert "lifted a read_only write fence left by run" in r.stderr
    rep = json.loads(r.stdout)["report"]
    assert rep["fence_repaired"]["mode"] == "read_only" and rep["fence_repaired"]["action"] == "deploy"
    assert app_write(remote_env) == "ok"


def test_commands_fence_runs_maintenance_on_and_off_on_the_app_hosts(remote_env, health):
    log = f"/tmp/vetai-maint-{uuid.uuid4().hex[:8]}.log"
    svc = (f"{{maintenance_on: [sh, -c, 'echo on $SSH_CONNECTION >> {log}'],"
           f" maintenance_off: [sh, -c, 'echo off $SSH_CONNECTION >> {log}']}}")
    remote_env.write(write_fence="commands", services=svc, checks=checks(health))
    seen: list[str] = []
    health.on_request = lambda n: seen.append(open(log).read())
    try:
        r = remote_env.cli("deploy", "--env=prod", "--yes")
        assert r.returncode == 0, r.stderr
        app = remote_env.bed.hosts[1]
        assert [s.split()[0] for s in seen[0].splitlines()] == ["on"]  # maintenance on during the post-check
        lines = open(log).read().splitlines()
        assert [ln.split()[0] for ln in lines] == ["on", "off"] and all(ln.split()[3] == app for ln in lines)
        # a failure (the post-check of a deploy with nothing pending): maintenance is ended too
        health.status = 503
        r = remote_env.cli("deploy", "--env=prod", "--yes")
        assert r.returncode == 1 and "health" in r.stderr
        assert [ln.split()[0] for ln in open(log).read().splitlines()] == ["on", "off", "on", "off"]
    finally:
        import os

        if os.path.exists(log):
            os.unlink(log)
    # an inventory asking for commands without them is refused, naming the keys
    remote_env.write(write_fence="commands")
    r = remote_env.cli("status", "--env=prod")
    assert r.returncode != 0 and "maintenance_on" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_a_leftover_fence_is_lifted_is_delivered_once_it_is_down(sig):
    """Ctrl-C (or SIGTERM) that arrives while a killed run's fence is being lifted (signals held
    off) is not discarded: the lift finishes, then the signal takes effect, so a deploy does not
    go on to its backup and migration. At the run's end (``redeliver`` off) it is dropped."""
    from vetai_ops.steps.fence import _signals_held

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, interrupt)  # what the pipeline's _SignalGuard installs
    try:
        lifted = []
        with pytest.raises(KeyboardInterrupt):
            with _signals_held(redeliver=True):
                os.kill(os.getpid(), sig)  # delivered here, inside the window
                lifted.append("fence down")  # the lift is not cut short
        assert lifted == ["fence down"]
        with _signals_held():
            os.kill(os.getpid(), sig)
            lifted.append("again")
        assert lifted == ["fence down", "again"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert signal.getsignal(signal.SIGTERM) is interrupt
    finally:
        signal.signal(signal.SIGTERM, old)
