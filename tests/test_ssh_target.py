"""SSHTarget against real OpenSSH sshd processes on loopback (the ssh_bed fixture)."""

from __future__ import annotations

import hashlib
import os
import time
import uuid

import psycopg
import pytest

from vetai_ops.errors import CommandFailed, HostKeyError, TargetError
from vetai_ops.targets.base import Process, Target, pipeline
from vetai_ops.targets.factory import make_target
from vetai_ops.targets.local import LocalTarget
from vetai_ops.targets.ssh import SSHTarget


@pytest.fixture
def tgt(ssh_bed):
    t = ssh_bed.target()
    yield t
    t.close()


@pytest.fixture
def workdir(tgt):
    d = f"/tmp/vetai-ssh-test-{uuid.uuid4().hex[:8]}"
    tgt.run(["mkdir", "-p", d])
    yield d
    tgt.run(["rm", "-rf", d])


def test_protocol_and_factory(ssh_bed, tgt):
    assert isinstance(tgt, Target)
    assert tgt.host_path("/tmp") is None and tgt.name == ssh_bed.hosts[0]  # another machine
    assert isinstance(make_target("local", ssh_bed.ssh_config(), True), LocalTarget)
    assert isinstance(make_target("db1", None, True), LocalTarget)
    t = make_target(ssh_bed.hosts[1], ssh_bed.ssh_config(), True)
    assert isinstance(t, SSHTarget)
    assert t.run(["hostname"]).returncode == 0
    t.close()


def test_binary_output_is_exact(tgt, workdir):
    """5 MB of random bytes (NULs, invalid UTF-8, CR/LF) come back bit for bit."""
    f = f"{workdir}/rand.bin"
    res = tgt.run(pipeline(["head", "-c", "5000000", "/dev/urandom"], ["tee", f]))
    assert len(res.stdout) == 5_000_000
    remote_sum = tgt.run(["sha256sum", f]).text.split()[0]
    assert hashlib.sha256(res.stdout).hexdigest() == remote_sum
    # fixed bytes that text decoding would mangle
    raw = bytes(range(256)) * 3 + b"\r\n\x00\xff\xfe"
    assert tgt.run(["cat"], input=raw).stdout == raw


def test_streaming_stdout(tgt, workdir):
    f = f"{workdir}/big.bin"
    tgt.run(["sh", "-c", f"head -c 8000000 /dev/urandom > {f}"])
    proc = tgt.start(["cat", f])
    assert isinstance(proc, Process)
    h, n = hashlib.sha256(), 0
    while chunk := proc.stdout.read(1 << 16):
        h.update(chunk)
        n += len(chunk)
    assert proc.wait() == 0
    assert n == 8_000_000
    assert h.hexdigest() == tgt.run(["sha256sum", f]).text.split()[0]


def test_streaming_stdin(tgt):
    data = os.urandom(3_000_000) + b"\x00" * 1000
    proc = tgt.start(["sha256sum"], stdin=True)
    assert proc.stdin is not None
    for i in range(0, len(data), 100_000):
        proc.stdin.write(data[i:i + 100_000])
    proc.stdin.close()  # EOF reaches the remote command
    out = proc.stdout.read()
    assert proc.wait(timeout=30) == 0
    assert out.split()[0].decode() == hashlib.sha256(data).hexdigest()


def test_wait_closes_stdin(tgt):
    proc = tgt.start(["wc", "-c"], stdin=True)
    proc.stdin.write(b"x" * 12345)
    rc = proc.wait(timeout=30)  # must send EOF itself
    assert rc == 0
    assert proc.stdout.read().strip() == b"12345"


def test_exit_codes_and_stderr(tgt):
    r = tgt.run(["sh", "-c", "echo oops >&2; exit 3"], check=False)
    assert r.returncode == 3 and "oops" in r.stderr
    with pytest.raises(CommandFailed) as ei:
        tgt.run(["sh", "-c", "echo broken thing >&2; exit 7"])
    assert ei.value.returncode == 7 and "broken thing" in str(ei.value)
    assert tgt.name in str(ei.value)
    with pytest.raises(TargetError, match="command not found"):
        tgt.run(["no-such-command-vetai"])
    p = tgt.start(["sh", "-c", "echo err >&2; exit 4"])
    assert p.stdout.read() == b""
    assert p.wait() == 4 and p.stderr_text().strip() == "err"


def test_pipeline_fails_when_first_command_fails(tgt):
    with pytest.raises(CommandFailed):
        tgt.run(pipeline(["sh", "-c", "echo part; exit 9"], ["cat"]))


def test_shell_metacharacters_are_data(tgt, workdir):
    marker = f"/tmp/pwned-{uuid.uuid4().hex[:8]}"
    evil = f"a; touch {marker}; $(touch {marker}) `touch {marker}` | & > x 'q\" \n"
    r = tgt.run(["printf", "%s", evil])
    assert r.stdout == evil.encode()
    name = f"{workdir}/{evil.strip().replace('/', '_')}"
    tgt.put_file(b"data", name)
    assert tgt.run(["cat", name]).stdout == b"data"
    # env values are quoted as well
    r = tgt.run(["sh", "-c", 'printf %s "$X"'], env={"X": evil})
    assert r.stdout == evil.encode()
    assert tgt.run(["test", "-e", marker], check=False).returncode == 1
    assert not os.path.exists(marker)


def _running(tag: str) -> list[str]:
    """Commands on this machine (where the loopback hosts run them) whose argv holds ``tag``."""
    import subprocess

    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if tag in line and "ps -eo" not in line]


def _gone(tag: str, within: float = 60.0) -> bool:
    end = time.time() + within
    while time.time() < end:
        if not _running(tag):
            return True
        time.sleep(0.05)
    return False


def test_timeout(tgt):
    """The timed-out command is gone from the host, not merely detached (the login is root,
    so sshd ignores signal requests: the PID-based kill does it)."""
    with pytest.raises(TargetError, match="timed out"):
        tgt.run(["sleep", "30.101"], timeout=1)
    assert _gone("sleep 30.101")  # killed (a 30 s sleep cannot end by itself within _gone's wait)
    assert tgt.run(["true"]).returncode == 0  # connection still usable


@pytest.mark.parametrize("where", ["ssh", "local"])
def test_kill_stops_the_whole_pipeline(tgt, where):
    t = tgt if where == "ssh" else LocalTarget()
    tag = f"30.{uuid.uuid4().int % 100000:05d}"
    p = t.start(pipeline(["sleep", tag], ["sleep", tag + "1"]))
    end = time.time() + 60  # a bound for a hung start, not a speed requirement

    def sleeps():  # the two pipeline stages themselves, not the bash line that names them
        return [line for line in _running(f"sleep {tag}") if line.startswith("sleep ")]

    while len(sleeps()) < 2 and time.time() < end:
        time.sleep(0.02)
    assert len(sleeps()) == 2
    if where == "ssh":
        assert isinstance(p.pid, int)  # the PID line was read, so kill() takes the PID path
    p.kill()
    p.kill()  # idempotent
    assert p.wait(timeout=60) != 0  # returns (a hang raises TimeoutExpired), and not as a success
    assert _gone(f"sleep {tag}"), _running(f"sleep {tag}")


def test_first_stderr_line_is_not_eaten(tgt):
    """The PID line is taken off stderr; the command's own stderr stays whole."""
    r = tgt.run(["sh", "-c", "printf 'one\\ntwo' >&2; exit 3"], check=False)
    assert r.returncode == 3 and r.stderr == "one\ntwo"
    assert tgt.run(["sh", "-c", "printf x >&2"]).stderr == "x"


def test_put_file_mode_0600_and_helpers(tgt, workdir):
    path = f"{workdir}/secret.pgpass"
    tgt.put_file(b"127.0.0.1:5432:*:vetai:s3cret\n", path)
    st = tgt.run(["stat", "-c", "%a %s", path]).text.split()
    assert st == ["600", "30"]
    assert tgt.run(["cat", path]).stdout == b"127.0.0.1:5432:*:vetai:s3cret\n"
    # over an existing file from mktemp; mode kept private, content replaced
    tmp = tgt.mktemp(".pass")
    assert tmp.endswith(".pass")
    assert tgt.run(["stat", "-c", "%a", tmp]).text.strip() == "600"
    tgt.put_file(b"x" * 70000, tmp)
    assert tgt.run(["stat", "-c", "%a %s", tmp]).text.split() == ["600", "70000"]
    # other modes are applied (non-secret files)
    tgt.put_file(b"#!/bin/sh\necho hi\n", f"{workdir}/s.sh", mode=0o755)
    assert tgt.run([f"{workdir}/s.sh"]).stdout == b"hi\n"
    # no temp siblings left behind
    assert tgt.run(["ls", "-a", workdir]).text.split() == sorted([".", "..", "secret.pgpass", "s.sh"])
    tgt.remove(tmp)
    tgt.remove(tmp)  # missing is fine
    assert tgt.run(["test", "-e", tmp], check=False).returncode == 1
    assert tgt.free_bytes("/tmp") > 0
    local = os.statvfs("/tmp")
    assert abs(tgt.free_bytes("/tmp") - local.f_bavail * local.f_frsize) < 512 * 1024 * 1024
    assert tgt.cpu_count() == os.cpu_count()


def test_put_file_is_never_readable_by_others(tgt, workdir):
    """The file is created 0600 before data arrives: a watcher never sees a wider mode."""
    path = f"{workdir}/watch"
    watcher = tgt.start(["sh", "-c", f"for i in $(seq 400); do stat -c %a {workdir}/watch* 2>/dev/null; done"])
    for _ in range(5):
        tgt.put_file(os.urandom(200000), path)
    out = watcher.stdout.read().decode().split()
    watcher.wait()
    assert set(out) <= {"600"}


def test_unknown_host_key_refused(ssh_bed, tmp_path):
    host = ssh_bed.hosts[1]
    kh = ssh_bed.known_hosts_without(tmp_path / "kh", host)
    t = ssh_bed.target(host, known_hosts=kh)
    with pytest.raises(HostKeyError) as ei:
        t.run(["true"])
    msg = str(ei.value)
    assert "host key" in msg
    assert f"{host}:{ssh_bed.port}" in msg
    assert f"ssh-keyscan -p {ssh_bed.port} {host}" in msg and "SHA256:" in msg
    # an empty / missing known_hosts file refuses too: never auto-add
    t2 = ssh_bed.target(host, known_hosts=str(tmp_path / "missing"))
    with pytest.raises(HostKeyError, match="host key"):
        t2.run(["true"])
    assert not (tmp_path / "missing").exists()


def test_changed_host_key_refused(ssh_bed, tmp_path):
    kh = ssh_bed.known_hosts_with_wrong_key(tmp_path / "kh_wrong")
    before = open(kh).read()
    t = ssh_bed.target(ssh_bed.hosts[0], known_hosts=kh)
    with pytest.raises(HostKeyError) as ei:
        t.cpu_count()
    msg = str(ei.value)
    assert "host key CHANGED" in msg and f"{ssh_bed.hosts[0]}:{ssh_bed.port}" in msg
    assert msg.count("SHA256:") == 2  # both fingerprints
    assert open(kh).read() == before  # nothing rewritten


def test_connection_refused_is_clear(ssh_bed):
    t = ssh_bed.target("127.0.0.1", port=1)  # nothing listens there
    with pytest.raises(TargetError) as ei:
        t.run(["true"])
    assert "127.0.0.1:1" in str(ei.value) and ei.value.hint


def test_wrong_client_key_is_auth_error(ssh_bed, tmp_path):
    import subprocess

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
    t = ssh_bed.target(key_file=str(tmp_path / "k"))
    with pytest.raises(TargetError, match="authentication failed") as ei:
        t.run(["true"])
    assert not isinstance(ei.value, HostKeyError)


def test_forward_to_postgres_with_password(ssh_bed, pg_tcp):
    t = ssh_bed.target(ssh_bed.hosts[2])
    try:
        with t.forward("127.0.0.1", pg_tcp.port) as lport:
            assert lport != pg_tcp.port
            with psycopg.connect(**pg_tcp.conninfo(host="127.0.0.1", port=lport)) as conn:
                assert conn.execute("select 40 + 2").fetchone()[0] == 42
                # big result through the tunnel
                n = conn.execute("select sum(length(repeat('x', g))) from generate_series(1, 2000) g").fetchone()[0]
                assert n == 2001000
            # two connections at once
            with psycopg.connect(**pg_tcp.conninfo(port=lport)) as a, psycopg.connect(**pg_tcp.conninfo(port=lport)) as b:
                assert a.execute("select 1").fetchone()[0] + b.execute("select 2").fetchone()[0] == 3
            bad = dict(pg_tcp.conninfo(port=lport), password="wrong")
            with pytest.raises(psycopg.OperationalError, match="password"):
                psycopg.connect(**bad)
        # the port is closed after the block
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(**pg_tcp.conninfo(port=lport))
    finally:
        t.close()


def test_killed_sshd_mid_stream_is_an_error_then_recovers(ssh_bed):
    host = ssh_bed.hosts[2]
    t = ssh_bed.target(host)
    try:
        p = t.start(["sh", "-c", "head -c 100000000 /dev/zero"])
        assert len(p.stdout.read(1 << 20)) == 1 << 20
        ssh_bed.kill(host)
        rest = p.stdout.read()
        assert len(rest) < 100_000_000 - (1 << 20)
        assert p.wait(timeout=10) != 0
        with pytest.raises(TargetError) as ei:
            t.run(["true"])
        assert f"{host}:{ssh_bed.port}" in str(ei.value)
        ssh_bed.restart(host)
        assert t.run(["echo", "back"]).stdout == b"back\n"  # reconnects
    finally:
        if not ssh_bed.alive(host):
            ssh_bed.restart(host)
        t.close()


def test_warn_policy_only_for_unprotected_envs(ssh_bed, tmp_path):
    host = ssh_bed.hosts[1]
    kh = ssh_bed.known_hosts_without(tmp_path / "kh", host)
    # protected: "warn" is ignored, unknown keys are refused
    with pytest.raises(HostKeyError):
        ssh_bed.target(host, known_hosts=kh, host_key_policy="warn", protected=True).run(["true"])
    t = ssh_bed.target(host, known_hosts=kh, host_key_policy="warn", protected=False)
    with pytest.warns(UserWarning, match="host key"):
        assert t.run(["echo", "ok"]).stdout == b"ok\n"
    t.close()
    assert ssh_bed.known_hosts_name(host) not in open(kh).read()  # never saved
    # a CHANGED key is refused even when unprotected with "warn"
    wrong = ssh_bed.known_hosts_with_wrong_key(tmp_path / "wrong")
    with pytest.raises(HostKeyError, match="CHANGED"):
        ssh_bed.target(host, known_hosts=wrong, host_key_policy="warn", protected=False).run(["true"])
