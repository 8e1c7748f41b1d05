"""App hosts in parallel (issue 15): health checks on every app host at once, restarts in
batches with a health gate between them, ``services.max_fail``. Real sshd hosts on loopback
(the bed's three addresses are all app hosts here, the DB host included), a real HTTP
endpoint; every claim is proven by what the hosts' side recorded (times written by the
endpoint and by the restart command on each host), never by the wall clock of the test."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from fixtures_http import Endpoint

pytestmark = pytest.mark.remote


class SlowHealth(Endpoint):
    """A health endpoint that takes ``delay`` seconds to answer and records (start, end) of
    every request, as the server saw them."""

    def __init__(self, delay: float):
        self.delay = delay
        self.calls: list[tuple[float, float]] = []
        super().__init__()

    def answer(self, h) -> None:
        t0 = time.time()
        time.sleep(self.delay)
        self.calls.append((t0, time.time()))  # before answering: the host learns "ok" after this
        self.reply(h, 200)


@pytest.fixture
def slow_health():
    h = SlowHealth(0.5)
    yield h
    h.close()


def all_hosts_are_app_hosts(re_) -> list[str]:
    """Rewrite the env's inventory (after ``re_.write(...)``) so every bed host is an app host."""
    hosts = list(re_.bed.hosts)
    assert len(hosts) >= 3
    text = re_.inventory.read_text()
    old = f"app: ['{hosts[1]}']"
    assert old in text
    re_.inventory.write_text(text.replace(old, "app: [" + ", ".join(f"'{h}'" for h in hosts) + "]"))
    return hosts


def restart_cmd(log: str, fail_on: str = "", sleep: float = 0.3) -> str:
    """A restart that writes, ON the host, `<host address> <ssh client port> start|end <time>`
    (sshd's SSH_CONNECTION: which host ran it, over which connection) and fails on ``fail_on``."""
    script = (f'set -- $SSH_CONNECTION; echo "$3 $2 start $(date +%s.%N)" >> {log}; sleep {sleep}; '
              f'echo "$3 $2 end $(date +%s.%N)" >> {log}; [ "$3" != "{fail_on}" ]')
    return "[sh, -c, '" + script.replace("'", "''") + "']"


def read_log(log: str) -> list[dict]:
    """[{host, port, start, end}] in the order the restarts started."""
    runs: list[dict] = []
    for line in Path(log).read_text().splitlines():
        host, port, what, t = line.split()
        if what == "start":
            runs.append({"host": host, "port": port, "start": float(t), "end": None})
        else:
            run = next(r for r in runs if r["host"] == host and r["end"] is None)
            run["end"] = float(t)
    return sorted(runs, key=lambda r: r["start"])


@pytest.fixture
def restart_log():
    log = f"/tmp/vetai-fleet-{uuid.uuid4().hex[:8]}.log"
    yield log
    Path(log).unlink(missing_ok=True)


def test_health_checks_run_on_every_app_host_at_once(remote_env, slow_health):
    hosts = remote_env.bed.hosts
    remote_env.write(checks=f"{{http: ['{slow_health.url}'], timeout: 5, retries: 1}}")
    all_hosts_are_app_hosts(remote_env)
    r = remote_env.cli("deploy", "--env=prod", "--yes")
    assert r.returncode == 0, r.stderr
    # the post-check asked once per host; the endpoint saw the three requests in flight together
    assert len(slow_health.calls) == len(hosts), slow_health.calls
    starts, ends = [c[0] for c in slow_health.calls], [c[1] for c in slow_health.calls]
    assert max(starts) < min(ends), f"health requests did not overlap: {slow_health.calls}"
    # readable: one line per host, then a summary
    for h in hosts:
        assert f"health {slow_health.url} on {h}: ok" in r.stderr, r.stderr
    assert f"health: {len(hosts)} ok, 0 failed; slowest " in r.stderr, r.stderr


def test_restarts_run_in_batches_with_a_health_gate(remote_env, slow_health, restart_log):
    hosts = remote_env.bed.hosts
    remote_env.write(checks=f"{{http: ['{slow_health.url}'], timeout: 5, retries: 1}}",
                     services=f"{{restart: {restart_cmd(restart_log)}, batch: 2}}")
    all_hosts_are_app_hosts(remote_env)
    r = remote_env.cli("deploy", "--env=prod", "--yes")
    assert r.returncode == 0, r.stderr
    runs = read_log(restart_log)
    first, second = runs[:2], runs[2:]
    assert {x["host"] for x in first} == set(hosts[:2]) and [x["host"] for x in second] == [hosts[2]]
    # a batch restarts together...
    assert max(x["start"] for x in first) < min(x["end"] for x in first), runs
    # ...and the next batch starts only after the first one's hosts passed their health checks
    batch1_done = max(x["end"] for x in first)
    gate = [c for c in slow_health.calls if batch1_done <= c[0] and c[1] <= second[0]["start"]]
    assert len(gate) == 2, (runs, slow_health.calls)
    assert "batch 1/2" in r.stderr and "batch 2/2" in r.stderr
    assert f"restart: {len(hosts)} ok, 0 failed; slowest " in r.stderr, r.stderr


def test_max_fail_0_stops_the_rollout_and_the_deploy_recovers(remote_env, restart_log):
    hosts = remote_env.bed.hosts
    before = remote_env.revision()
    remote_env.write(services=f"{{restart: {restart_cmd(restart_log, fail_on=hosts[1], sleep=0)}}}")
    all_hosts_are_app_hosts(remote_env)
    r = remote_env.cli("deploy", "--env=prod", "--yes")
    assert r.returncode == 1, r.stderr  # README: 1 = the deploy failed (and was recovered)
    assert "rollout stopped after batch 2 of 3" in r.stderr and f"not restarted: {hosts[2]}" in r.stderr, r.stderr
    assert "recovered" in r.stderr and remote_env.revision() == before
    runs = read_log(restart_log)
    # the rollout: hosts[0] ok, hosts[1] failed, hosts[2] never reached; then the recovery's
    # restart visits every host (a failure there is reported, not fatal: the DB is back)
    assert [x["host"] for x in runs] == [hosts[0], hosts[1], hosts[0], hosts[1], hosts[2]], runs
    assert "RESTART FAILED on " + hosts[1] in r.stderr, r.stderr
    # one SSH connection per host for the whole run: the rollout and the recovery used the same one
    assert runs[0]["port"] == runs[2]["port"] and runs[1]["port"] == runs[3]["port"], runs


def test_max_fail_tolerates_that_many_failed_hosts(remote_env, restart_log):
    hosts = remote_env.bed.hosts
    remote_env.write(services=f"{{restart: {restart_cmd(restart_log, fail_on=hosts[1], sleep=0)}, max_fail: 1}}")
    all_hosts_are_app_hosts(remote_env)
    r = remote_env.cli("deploy", "--env=prod", "--yes")
    assert r.returncode == 0, r.stderr
    assert [x["host"] for x in read_log(restart_log)] == hosts  # the rollout went on past the failed host
    assert f"failed (within services.max_fail 1) on {hosts[1]}" in r.stderr, r.stderr
    assert remote_env.revision() == "0013"


def test_an_unreachable_app_host_refuses_the_deploy_before_the_backup(remote_env):
    hosts = remote_env.bed.hosts
    all_hosts_are_app_hosts(remote_env)
    before = remote_env.revision()
    remote_env.bed.kill(hosts[2])  # the fixture brings it back afterwards
    r = remote_env.cli("deploy", "--env=prod", "--yes")
    assert r.returncode == 2, r.stderr  # README: 2 = a refusal that changed nothing
    assert "app host(s) not reachable" in r.stderr and hosts[2] in r.stderr, r.stderr
    assert remote_env.revision() == before
    assert not [k for k in remote_env.objects() if k.endswith(".json")]  # no backup was taken
