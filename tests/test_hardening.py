"""Security hardening (issue 12): the linter found without an activated venv, the sandbox
folder and its socket, the restore spool, local store permissions, rich markup in dynamic
text, input validators, redaction, locks of prune and verify, SSH key permissions, and the
environment of local children. Real parts only: the sandbox cluster, sshd, files."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BARE_PATH = "/usr/bin:/bin"  # neither the venv nor a global squawk


def bare_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV",)}
    env["PATH"] = BARE_PATH
    env.update(extra)
    return env


# ------------------------------------------------------------------ squawk lookup


def test_lint_finds_squawk_next_to_the_interpreter_without_path():
    code = ("from vetai_ops.validate import lint_sql\n"
            "fs = lint_sql({'r2': 'ALTER TABLE pets DROP COLUMN name;'}, {'r2': 'r2.py'})\n"
            "print(sorted({f.rule for f in fs}))\n")
    r = subprocess.run([sys.executable, "-c", code], env=bare_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "squawk:ban-drop-column" in r.stdout and "squawk-missing" not in r.stdout


def test_invoke_validate_lints_from_the_venv_without_activation(migrations_copy):
    migrations_copy.add("0014", "0013", 'op.drop_column("pets", "color")',
                        'op.add_column("pets", sa.Column("color", sa.Text()))')
    invoke = Path(sys.executable).parent / "invoke"  # README: `.venv/bin/invoke`, venv not activated
    r = subprocess.run([str(invoke), "validate", "--sql", "--json"], cwd=ROOT, env=bare_env(), capture_output=True,
                       text=True, stdin=subprocess.DEVNULL, timeout=300)
    data = json.loads(r.stdout)
    rules = {f["rule"] for f in data["findings"]}
    assert "squawk:ban-drop-column" in rules, (rules, r.stderr)
    assert "squawk-missing" not in rules


def _protected_inventory(le) -> Path:
    p = le.root / "protected.yml"
    p.write_text(le.inventory.read_text().replace("  local:\n", "  local:\n    protected: true\n"))
    return p


def test_missing_squawk_refuses_a_protected_deploy_and_warns_elsewhere(local_env, migrations_copy, monkeypatch):
    from vetai_ops.errors import GateRefused
    from vetai_ops.events import ListSink
    from vetai_ops.pipeline import run_playbook
    from vetai_ops.validate import lint

    local_env.run("deploy", yes=True, target="0012")
    monkeypatch.setattr(lint, "find_tool", lambda name: None)  # a machine where squawk is nowhere
    before = local_env.psql("select version_num from alembic_version")
    monkeypatch.setenv("VETAI_OPS_INVENTORY", str(_protected_inventory(local_env)))
    with pytest.raises(GateRefused) as ei:
        run_playbook("deploy", "local", options={"yes": True})
    assert ei.value.exit_code == 2 and "squawk" in ei.value.message
    assert local_env.psql("select version_num from alembic_version") == before  # nothing changed
    from vetai_ops.ops.validate import validate

    v = validate("local", None, render_sql=True)  # `invoke validate --env=local --sql`: exit 2
    assert not v.ok and any("squawk" in e and "cannot be linted" in e for e in v.data["live_errors"]), v.data

    monkeypatch.setenv("VETAI_OPS_INVENTORY", str(local_env.inventory))
    sink = ListSink()
    report = run_playbook("deploy", "local", options={"yes": True}, sink=sink)
    assert report["outcome"] == "success"
    assert any(e.kind == "warning" and "squawk" in e.message for e in sink.events)


# ------------------------------------------------------------------ 4. local store permissions


def test_local_store_dumps_are_0600_and_folders_0700(local_env):
    old = os.umask(0o022)
    try:
        local_env.backups.mkdir(mode=0o755)  # made by an older version (or by hand), world-readable
        local_env.backups.chmod(0o755)
        local_env.run("deploy", yes=True)
        bid = local_env.run("backup")["backup_id"]
    finally:
        os.umask(old)
    files = [p for p in local_env.backups.rglob("*") if p.is_file()]
    assert any(p.name == f"{bid}.dump" for p in files) and any(p.name == f"{bid}.json" for p in files)
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    for d in [local_env.backups, *[p for p in local_env.backups.rglob("*") if p.is_dir()]]:
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d


# ------------------------------------------------------------------ 3. restore spool


def test_restore_spool_is_private_and_removed_and_dead_runs_cleaned(local_env, monkeypatch):
    from vetai_ops.transfer import restore as restore_mod

    local_env.inventory.write_text(local_env.inventory.read_text() + "    backup: {restore_jobs: 2}\n")
    local_env.run("deploy", yes=True)
    bid = local_env.run("backup")["backup_id"]
    # a spool folder of this database left by a run that was SIGKILLed, and one of another database
    dead = Path(f"/tmp/vetai-ops-spool-{local_env.dbname}.deadrun000")
    other = Path("/tmp/vetai-ops-spool-someotherdb.deadrun000")
    for d in (dead, other):
        d.mkdir(mode=0o700, exist_ok=True)
        (d / "backup.dump").write_bytes(b"clinic data")
    legacy = Path("/tmp/vetai-ops-0ldVers10n.dump")  # what older versions left, world-readable, a day ago
    legacy.write_bytes(b"clinic data")
    os.utime(legacy, (legacy.stat().st_atime - 2 * 86400, legacy.stat().st_mtime - 2 * 86400))
    seen = []
    real = restore_mod.materialise

    def observe(route, m, *a, **kw):
        path, folder = real(route, m, *a, **kw)
        seen.append((path, stat.S_IMODE(os.stat(path).st_mode), stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode),
                     dead.exists()))
        return path, folder

    monkeypatch.setattr(restore_mod, "materialise", observe)
    old = os.umask(0o022)
    try:
        local_env.run("rollback", to=bid, yes=True)
    finally:
        os.umask(old)
    try:
        assert len(seen) == 1
        path, file_mode, dir_mode, dead_still_there = seen[0]
        assert file_mode == 0o600 and dir_mode == 0o700, (oct(file_mode), oct(dir_mode))
        assert not dead_still_there  # the dead run's spool went before this one was written
        assert not os.path.exists(os.path.dirname(path))  # removed after pg_restore
        assert other.exists()  # another database's spool is not ours to judge
        assert not legacy.exists()
    finally:
        import shutil

        shutil.rmtree(other, ignore_errors=True)
        shutil.rmtree(dead, ignore_errors=True)
        legacy.unlink(missing_ok=True)


def test_restore_spool_removed_when_the_backup_is_corrupt(local_env):
    from vetai_ops.errors import ChecksumMismatch

    local_env.inventory.write_text(local_env.inventory.read_text()
                                   + "    backup: {restore_jobs: 2, compression: zstd, compress_on: operator}\n")
    local_env.run("deploy", yes=True)
    bid = local_env.run("backup")["backup_id"]
    dump = local_env.backups / "local" / f"{bid}.dump"
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0x01
    dump.write_bytes(bytes(data))
    before = set(Path("/tmp").glob(f"vetai-ops-spool-{local_env.dbname}.*"))
    with pytest.raises(ChecksumMismatch):
        local_env.run("rollback", to=bid, yes=True)
    assert set(Path("/tmp").glob(f"vetai-ops-spool-{local_env.dbname}.*")) == before == set()


# ------------------------------------------------------------------ 6. rich markup in dynamic text

EVIL = "[/] [bold]down[/bold] [red"  # what an app may put in its reason phrase or body


@pytest.fixture
def evil_health():
    import http.server
    import threading

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(503, EVIL)
            self.end_headers()
            self.wfile.write(EVIL.encode())

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/health"
    srv.shutdown()


def test_markup_in_a_health_reason_phrase_gives_the_normal_recovery_and_report(local_env, evil_health):
    local_env.run("deploy", yes=True, target="0012")
    local_env.inventory.write_text(local_env.inventory.read_text().replace(
        "    storage:", f"    checks: {{http: ['{evil_health}'], timeout: 2, retries: 1, retry_delay: 0.1}}\n    storage:"))
    logs = Path(os.environ["VETAI_OPS_LOGS"])
    r = subprocess.run([sys.executable, "-m", "invoke", "deploy", "--env=local", "--yes"], cwd=ROOT,
                       env=dict(os.environ, COLUMNS="400"), capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=300)
    assert r.returncode == 1, r.stderr
    assert "MarkupError" not in r.stderr and "unexpected error" not in r.stderr
    assert "RECOVERY FAILED" not in r.stderr and "recovered:" in r.stderr
    assert EVIL in r.stderr  # shown as the app sent it
    assert local_env.psql("select version_num from alembic_version") == "0012"
    journal = [json.loads(ln) for f in logs.glob("*") for ln in f.read_text().splitlines() if ln.strip()]
    deploy = [e for e in journal if e["action"] == "deploy"]
    finished = [e for e in deploy if e["event"] == "run_finished"]
    assert finished and finished[-1]["data"]["outcome"] == "failed"  # journaled to the end
    assert any(e["event"] == "step_finished" and e["step"] == "restore" for e in deploy)  # the recovery ran
    assert any(EVIL in e["message"] for e in deploy)  # the reason phrase, as sent, in the journal


def test_tables_and_errors_show_brackets_as_text(capsys):
    from vetai_ops.cli import render
    from vetai_ops.events import Event

    render.table("t [/]", ["a[/]"], [["[bold]x[/]", None]])
    sink = render.ConsoleSink(render.out)
    for kind in ("run_started", "step_failed", "warning", "info", "revision_applied", "run_finished"):
        sink.emit(Event(kind, "st[/]ep", f"{kind} {EVIL}", {"outcome": "failed", "duration_s": 1.0}))
    from vetai_ops.plan import DeployPlan

    render.render_plan(DeployPlan(env="e[/]", database="d", protected=False, db_host="[/]", app_hosts=[],
                                  from_rev=None, to_rev="r[/]", backup_store="s", pending=["r[/]"],
                                  findings=[{"revision": "r[/]", "rule": "x[/]", "severity": "error", "file": "[/]f",
                                             "line": 1}]))
    out = capsys.readouterr().out
    assert "[bold]x[/]" in out and out.count(EVIL) == 6 and "st[/]ep" in out and "x[/]" in out


# ------------------------------------------------------------------ 1. sandbox folder under /var/tmp

FAKE_TOOL = "#!/bin/sh\ntouch {marker}\nexit 0\n"


@pytest.fixture
def relocation(tmp_path, monkeypatch):
    """A project folder the server user cannot reach (so the sandbox relocates), a private
    relocation base instead of the machine's /var/tmp/vetai-ops (other runs share that one),
    and a planted engine: binaries that leave a marker when anyone runs them."""
    import shutil
    import tempfile

    from vetai_ops.database import sandbox

    if os.geteuid() != 0:
        pytest.fail("these tests play the root operator (the relocation only happens under root)")
    top = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="vetai-reloc-"))
    top.chmod(0o755)
    base = top / "vetai-ops"
    monkeypatch.setattr(sandbox, "RELOCATED_BASE", base)
    project = tmp_path / "project"  # under pytest's 0700 tmp tree: unreachable for the server user
    project.mkdir()
    evil = top / "evil-bin"
    evil.mkdir()
    marker = top / "RAN-AS-ROOT"
    for tool in ("postgres", "pg_ctl", "pg_isready", "psql", "initdb"):
        (evil / tool).write_text(FAKE_TOOL.format(marker=marker))
        (evil / tool).chmod(0o755)

    class R:
        pass

    r = R()
    r.base, r.project, r.evil, r.marker, r.top = base, project, evil, marker, top
    r.alt = base / __import__("hashlib").sha256(str(project / "sb").encode()).hexdigest()[:16]
    r.env = lambda: _sandbox_env(project / "sb")
    yield r
    from vetai_ops.database.cluster import Cluster, resolve_bindir

    if (r.alt / "data" / "PG_VERSION").exists():
        Cluster(r.alt, 0, resolve_bindir()).stop("immediate")
    shutil.rmtree(top, ignore_errors=True)


def _sandbox_env(sbdir: Path):
    from vetai_ops.config import Inventory

    from fixtures_pg import free_port

    inv = Inventory.model_validate({"environments": {"local": {
        "sandbox": {"dir": str(sbdir), "port": free_port()}, "database": {"name": "relocated", "user": "vetai"}}}})
    e = inv.env("local")
    e.name = "local"
    return e


def _nobody() -> tuple[int, int]:
    import pwd

    pw = pwd.getpwnam("nobody")
    return pw.pw_uid, pw.pw_gid


def _plant(path: Path, engine_dir: Path, owner: tuple[int, int]) -> None:
    path.mkdir(mode=0o755)
    (path / "engine").write_text(f"{engine_dir}\n")
    (path / "data").mkdir()
    (path / "data" / "PG_VERSION").write_text("15\n")
    for p in (path, path / "engine", path / "data", path / "data" / "PG_VERSION"):
        os.chown(p, *owner)


def test_sandbox_folder_planted_by_another_user_is_refused(relocation):
    from vetai_ops.database.sandbox import ensure_sandbox
    from vetai_ops.errors import OpsError

    relocation.base.mkdir(mode=0o755)
    _plant(relocation.alt, relocation.evil, _nobody())
    with pytest.raises(OpsError) as ei:
        ensure_sandbox(relocation.env())
    assert str(relocation.alt) in ei.value.message and "nobody" in ei.value.message
    assert not relocation.marker.exists()  # none of the planted binaries ran


def test_relocation_base_made_by_another_user_is_refused(relocation):
    from vetai_ops.database.sandbox import ensure_sandbox
    from vetai_ops.errors import OpsError

    relocation.base.mkdir(mode=0o777)
    relocation.base.chmod(0o777)
    os.chown(relocation.base, *_nobody())
    with pytest.raises(OpsError) as ei:
        ensure_sandbox(relocation.env())
    assert str(relocation.base) in ei.value.message and "nobody" in ei.value.message
    assert not relocation.alt.exists() and not relocation.marker.exists()


def test_engine_file_someone_else_could_write_is_never_used(relocation):
    from vetai_ops.database.sandbox import ensure_sandbox
    from vetai_ops.errors import OpsError

    relocation.base.mkdir(mode=0o755)
    _plant(relocation.alt, relocation.evil, (0, 0))  # folder ours...
    os.chown(relocation.alt / "engine", *_nobody())  # ...but its engine file is not
    with pytest.raises(OpsError, match="engine"):
        ensure_sandbox(relocation.env())
    (relocation.alt / "engine").chmod(0o666)
    os.chown(relocation.alt / "engine", 0, 0)  # ours, but writable by everyone
    with pytest.raises(OpsError, match="writable by other users"):
        ensure_sandbox(relocation.env())
    assert not relocation.marker.exists()


# ------------------------------------------------------------------ 2. sandbox socket and auth


def test_relocated_sandbox_is_ours_and_only_its_operator_connects(relocation):
    from vetai_ops.database.sandbox import ensure_sandbox

    c = ensure_sandbox(relocation.env())  # a real relocated cluster, created from scratch
    assert c.root == relocation.alt
    for p, mode in ((relocation.base, 0o755), (relocation.alt, 0o755), (relocation.alt / "engine", 0o644)):
        st = os.lstat(p)
        assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == mode, (p, st.st_uid, oct(st.st_mode))
    assert stat.S_IMODE(c.socket_dir.stat().st_mode) == 0o700
    sock = c.socket_dir / f".s.PGSQL.{c.port}"
    assert stat.S_IMODE(sock.stat().st_mode) == 0o700
    rules = c.psql("select type || ':' || auth_method from pg_hba_file_rules")
    assert "trust" not in rules and "local:peer" in rules
    # another local user: neither the socket folder nor peer auth lets it in
    r = subprocess.run(["runuser", "-u", "nobody", "--", c.bin("psql"), "-X", "-h", str(c.socket_dir),
                        "-p", str(c.port), "-U", "vetai", "-d", "postgres", "-c", "select 1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "Permission denied" in r.stderr or "authentication failed" in r.stderr, r.stderr
    # the operator (root here) still works, as the tool's own connections above showed
    assert c.psql("select current_user") == "vetai"
    c.stop()


def test_an_older_trusting_sandbox_is_tightened_on_start(local_env):
    c = local_env.cluster()
    (c.data / "pg_hba.conf").write_text("local all all trust\n")  # what older versions wrote
    c.socket_dir.chmod(0o755)
    c = local_env.cluster()  # the next run of the tool
    assert stat.S_IMODE(c.socket_dir.stat().st_mode) == 0o700
    assert "trust" not in c.psql("select auth_method from pg_hba_file_rules")


NON_ROOT_RUN = r'''
import os, sys, pwd
pw = pwd.getpwnam("nobody")
os.setgroups([]); os.setgid(pw.pw_gid); os.setuid(pw.pw_uid)  # from here on: an ordinary user
os.environ["HOME"] = sys.argv[1]
from vetai_ops.pipeline import run_playbook
from vetai_ops.config import load_inventory
from vetai_ops.database.sandbox import stop_sandbox
try:
    r = run_playbook("deploy", "local", options={"yes": True})
    print("deploy", r["outcome"], r.get("to_rev"))
    b = run_playbook("backup", "local")
    print("backup", b["outcome"])
    r = run_playbook("rollback", "local", options={"yes": True, "to": b["backup_id"]})
    print("rollback", r["outcome"])
finally:
    stop_sandbox(load_inventory().env("local"), destroy=True)
'''


def test_local_deploy_backup_rollback_as_an_unprivileged_user(tmp_path):
    """Without root the server runs as the operator's own user: the sandbox checks and the
    peer map must let that user in (the suite otherwise runs everything as root)."""
    import shutil
    import tempfile

    from fixtures_pg import free_port

    home = Path(tempfile.mkdtemp(prefix="vetai-nonroot-"))
    opened: list[tuple[Path, int]] = []
    try:
        (home / "inventory.yml").write_text(
            "default_env: local\nenvironments:\n  local:\n"
            f"    sandbox: {{dir: '{home}/sb', port: {free_port()}}}\n"
            "    database: {name: nonroot, user: vetai}\n"
            f"    storage: {{type: local, path: '{home}/backups'}}\n")
        (home / "run.py").write_text(NON_ROOT_RUN)
        os.chown(home, *_nobody())
        # that user runs this checkout's code and files, as an operator runs a tool installed in
        # their own home: a folder above it that only root may enter (a `mktemp -d` clone is
        # 0700) gets search permission for others while the test runs, and its mode back after
        # The same for the interpreter: this suite's Python may live under /root (pyenv), which an
        # operator's own Python never does. Nothing is imported ahead as root: that user loads
        # every module it needs itself, lazily, as a real run does.
        interpreter = Path(sys.base_prefix).resolve()
        for d in {p for top in (ROOT, interpreter) for p in (top, *top.parents)}:
            mode = d.stat().st_mode & 0o7777
            if not mode & 0o001:
                opened.append((d, mode))
                os.chmod(d, mode | 0o001)
        env = dict(os.environ, VETAI_OPS_INVENTORY=str(home / "inventory.yml"), VETAI_OPS_LOGS=str(home / "logs"),
                   VETAI_OPS_KEYS=str(home / "keys"))  # the manifest key: that user's own
        r = subprocess.run([sys.executable, str(home / "run.py"), str(home)], env=env, capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        assert "deploy success 0013" in r.stdout and "backup success" in r.stdout and "rollback success" in r.stdout
    finally:
        if (home / "sb" / "data" / "PG_VERSION").exists():
            from vetai_ops.database.cluster import resolve_bindir

            subprocess.run(["runuser", "-u", "nobody", "--", str(resolve_bindir() / "pg_ctl"), "stop", "-m", "immediate",
                            "-D", str(home / "sb" / "data")], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
        for d, mode in opened:
            os.chmod(d, mode)


# ------------------------------------------------------------------ 7. validators


@pytest.mark.parametrize("key,value", [
    ("name", "vc\n"), ("user", "vetai\n"), ("host", "db1\n"), ("env", "prod\n"), ("name", "vc١٢"), ("host", "db١"),
])
def test_validators_refuse_trailing_newlines_and_non_ascii_digits(tmp_path, key, value):
    from vetai_ops.config import load_inventory
    from vetai_ops.errors import ConfigError

    env, db = ("prod", {"name": "vc", "user": "vetai"})
    hosts = {"db": ["db1"]}
    if key == "env":
        env = value
    elif key == "host":
        hosts = {"db": [value]}
    else:
        db[key] = value
    inv = tmp_path / "inv.yml"
    inv.write_text(json.dumps({"environments": {env: {"ssh": {}, "hosts": hosts, "database": db}}}))  # JSON is YAML
    with pytest.raises(ConfigError):
        load_inventory(inv)
    ok = json.loads(inv.read_text().replace(json.dumps(value)[1:-1], "x1"))
    inv.write_text(json.dumps(ok))
    load_inventory(inv)  # the same file with a plain value loads


@pytest.mark.parametrize("to", ["20261124T013200Z\n", "２０２６", "٢٠٢٦١١٢٤T013200Z"])
def test_backup_ids_are_ascii_and_whole(local_env, to):
    from vetai_ops.database.retired import _SUFFIX
    from vetai_ops.errors import BackupNotFound
    from vetai_ops.store.catalog import Catalog
    from vetai_ops.store.manifest import ID_RE
    from vetai_ops.store.local import LocalStore

    assert not ID_RE.match(to) and not _SUFFIX.match(to.lower())
    if not to.endswith("\n"):  # --to is stripped of whitespace first; Unicode digits are refused
        with pytest.raises(BackupNotFound, match="not a backup id"):
            Catalog(LocalStore(local_env.backups), "local").resolve(to)


def test_fab_dash_h_host_is_validated(tmp_path, ssh_bed):
    inv = tmp_path / "inv.yml"
    inv.write_text(json.dumps({"environments": {"prod": {
        "ssh": {"user": "root", "port": ssh_bed.port, "key_file": ssh_bed.key_file, "known_hosts": ssh_bed.known_hosts},
        "hosts": {"db": [ssh_bed.hosts[0]]}, "database": {"name": "vc", "user": "vetai"}}}}))
    r = subprocess.run([sys.executable, "-m", "fabric", "-H", "127.0.0.2;touch /tmp/vetai-fab-pwned", "dump",
                        "--env=prod"], cwd=ROOT, env=dict(os.environ, VETAI_OPS_INVENTORY=str(inv)),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "invalid host name" in r.stderr and "-H" in r.stderr, r.stderr
    assert "cannot connect" not in r.stderr and not Path("/tmp/vetai-fab-pwned").exists()


def test_fab_reaches_the_host_as_fabric_was_told(tmp_path, ssh_bed):
    """fab builds the run's SSH target from Fabric's Connection: the host, user, port and key
    Fabric was given (-H user@host:port, -i) win; what Fabric only defaults to (its port, the
    login user) leaves the inventory's ssh: values; known_hosts stays the inventory's."""
    from fixtures_pg import free_port

    host = ssh_bed.hosts[1]
    marker = tmp_path / "restarted"
    inv = tmp_path / "inv.yml"
    inv.write_text(json.dumps({"environments": {"prod": {
        # a port nothing listens on, a user the bed refuses, no key: only Fabric's values reach the host
        "ssh": {"user": "nobody", "port": free_port(), "known_hosts": ssh_bed.known_hosts},
        "hosts": {"db": [ssh_bed.hosts[0]], "app": ["app.invalid"]}, "database": {"name": "vc", "user": "vetai"},
        "services": {"restart": ["sh", "-c", f'echo "$SSH_CONNECTION $(id -un)" > {marker}']}}}}))
    # FABRIC_USER: Fabric's default login user, so that -H root@ differs from it even when run as root
    env = dict(os.environ, VETAI_OPS_INVENTORY=str(inv), VETAI_OPS_LOGS=str(tmp_path / "logs"), FABRIC_USER="alice")
    fab = [sys.executable, "-m", "fabric"]
    r = subprocess.run(fab + ["-H", host, "restart", "--env=prod"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and f"cannot connect to {host}:" in r.stderr, r.stderr  # the inventory's port
    assert not marker.exists()
    r = subprocess.run(fab + ["-H", f"{ssh_bed.user}@{host}:{ssh_bed.port}", "-i", ssh_bed.key_file, "restart",
                              "--env=prod"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    client, _, server, port, user = marker.read_text().split()
    assert (server, int(port), user) == (host, ssh_bed.port, ssh_bed.user)
    # the host key is still checked against the inventory's known_hosts, not Fabric's ~/.ssh/known_hosts
    inv.write_text(inv.read_text().replace(ssh_bed.known_hosts, str(tmp_path / "empty_known_hosts")))
    r = subprocess.run(fab + ["-H", f"{ssh_bed.user}@{host}:{ssh_bed.port}", "-i", ssh_bed.key_file, "restart",
                              "--env=prod"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and "unknown SSH host key" in r.stderr, r.stderr


def test_health_urls_must_be_http(tmp_path):
    from vetai_ops.config import load_inventory
    from vetai_ops.errors import ConfigError

    inv = tmp_path / "inv.yml"
    inv.write_text(json.dumps({"environments": {"e": {"checks": {"http": ["-K/etc/evil.cfg"]}}}}))
    with pytest.raises(ConfigError, match="health check URL"):
        load_inventory(inv)


def test_curl_fallback_never_reads_the_url_as_an_option(tmp_path, health):
    """A DB host without python3 falls back to curl: a URL that looks like an option (here a
    config file that fetches the endpoint and writes a file) must stay a URL."""
    from vetai_ops.steps.checks import http_check
    from vetai_ops.targets.local import LocalTarget

    class NoPython3(LocalTarget):  # a real host where python3 is not installed (the shell says 127)
        def run(self, argv, **kw):
            if argv[0] == "python3":
                argv = ["sh", "-c", "exit 127"]
            return super().run(argv, **kw)

    marker = tmp_path / "written-by-curl"
    cfg = tmp_path / "evil.cfg"
    cfg.write_text(f'url = "{health.url}"\noutput = "{marker}"\n')
    ok, _ = http_check(NoPython3(), health.url, 5)
    assert ok  # the fallback works for a real URL
    ok, detail = http_check(NoPython3(), f"-K{cfg}", 5)
    assert not ok and not marker.exists(), detail


# ------------------------------------------------------------------ 7. redaction


def test_redaction_of_key_value_dsns_and_url_encoded_secrets():
    from vetai_ops import secrets

    out = secrets.redact("connect failed: host=db port=5432 password=hunter2x user=app; "
                         "dsn=\"host=db password='two words'\" ?password=q1w2e3&sslmode=require PGPASSWORD=zz9")
    for leaked in ("hunter2x", "two words", "q1w2e3", "zz9"):
        assert leaked not in out, out
    pw = "p@ss:w/rd!"
    secrets.register(pw)
    try:
        out = secrets.redact("psql: p%40ss%3Aw%2Frd%21 rejected; form p%40ss%3Aw/rd%21 too; plus p%40ss%3Aw%2Frd%21")
        assert "p%40ss" not in out and "rd%21" not in out, out
    finally:
        secrets.forget(pw)


# ------------------------------------------------------------------ 7. password variable and local children


def test_local_children_never_inherit_the_password_variables(local_env, monkeypatch):
    """A real deploy whose service restart command dumps its environment: neither the
    password_env variable nor PGPASSWORD reaches it (pg tools get a 0600 PGPASSFILE)."""
    out = local_env.root / "restart-env"
    monkeypatch.setenv("VETAI_TEST_DB_PW", "pw-only-for-pg-tools")
    monkeypatch.setenv("PGPASSWORD", "pw-from-the-shell")
    local_env.inventory.write_text(
        local_env.inventory.read_text().replace("user: vetai}", "user: vetai, password_env: VETAI_TEST_DB_PW}")
        + f"    services: {{restart: [sh, -c, 'env > {out}']}}\n")
    local_env.run("deploy", yes=True)
    env = out.read_text()
    assert "pw-only-for-pg-tools" not in env and "VETAI_TEST_DB_PW" not in env
    assert "pw-from-the-shell" not in env and "PGPASSWORD" not in env
    assert "PATH=" in env  # the rest of the environment is still there


# ------------------------------------------------------------------ 7. SSH key file permissions


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_ssh_key_readable_by_others_is_refused(ssh_bed, tmp_path, mode):
    import shutil

    from vetai_ops.errors import ConfigError

    key = tmp_path / "id_ed25519"
    shutil.copy(ssh_bed.key_file, key)
    key.chmod(0o600)
    assert ssh_bed.target(key_file=str(key)).run(["true"]).returncode == 0  # 0600: fine
    key.chmod(mode)
    with pytest.raises(ConfigError) as ei:
        ssh_bed.target(key_file=str(key)).run(["true"])
    assert str(key) in ei.value.message and f"{mode:04o}" in ei.value.message and ei.value.hint == f"chmod 600 {key}"


# ------------------------------------------------------------------ 7. prune and verify take locks


def test_every_backup_holds_the_backup_lock_while_it_writes(local_env, monkeypatch):
    from vetai_ops.database.locks import running_backups
    from vetai_ops.store.local import LocalStore

    local_env.run("deploy", yes=True)
    seen = []
    real = LocalStore.put_stream

    def observe(self, key, reader, **kw):  # the store is being written: who holds the lock now?
        seen.append([r["application_name"] for r in running_backups(local_env_admin(local_env), local_env.dbname)])
        return real(self, key, reader, **kw)

    monkeypatch.setattr(LocalStore, "put_stream", observe)
    local_env.run("backup")
    assert len(seen) == 1 and len(seen[0]) == 1 and seen[0][0].startswith("vetai-ops backup (backup) by ")
    assert running_backups(local_env_admin(local_env), local_env.dbname) == []  # released with the backup


def local_env_admin(le):
    """Opens an autocommit connection to the sandbox's maintenance database (what ``access.admin`` is)."""
    import psycopg

    c = le.cluster()
    return lambda: psycopg.connect(host=str(c.socket_dir), port=c.port, user=c.superuser, dbname="postgres",
                                   autocommit=True)


def _old_incomplete(le) -> Path:
    d = le.backups / "local"
    d.mkdir(parents=True, exist_ok=True)
    p = d / "20200105T000000Z.dump"  # an upload older than the grace period: dead, or a very long backup
    p.write_bytes(b"PGDMP still being written")
    return p


def test_prune_deletes_nothing_while_a_backup_is_being_written(local_env):
    from vetai_ops.database.locks import backup_in_progress

    local_env.run("deploy", yes=True)
    dump = _old_incomplete(local_env)
    with backup_in_progress(local_env_admin(local_env), local_env.dbname, "vetai-ops backup (backup) by someone@elsewhere"):
        r = subprocess.run([sys.executable, "-m", "invoke", "backups.prune", "--env=local", "--keep-last=1",
                            "--keep-days=0"], cwd=ROOT, env=dict(os.environ), capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=300)
        assert r.returncode == 3, r.stderr
        assert "backup" in r.stderr and "someone@elsewhere" in r.stderr and "deleted nothing" in r.stderr
        assert dump.exists()
    r = subprocess.run([sys.executable, "-m", "invoke", "backups.prune", "--env=local", "--keep-last=1", "--keep-days=0"],
                       cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, stdin=subprocess.DEVNULL,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert not dump.exists()  # with no backup running, the dead upload goes


def test_prune_and_verify_refuse_while_another_run_holds_the_env_lock(local_env):
    from vetai_ops.pipeline import run_context
    from vetai_ops.steps.lock import lock

    local_env.run("deploy", yes=True)
    bid = local_env.run("backup")["backup_id"]
    dump = _old_incomplete(local_env)
    manifest = local_env.backups / "local" / f"{bid}.json"
    before = manifest.read_bytes()
    with run_context("local", "deploy") as holder:
        lock(holder)  # a deploy (or another verify) is running
        for args in (["backups.prune", "--keep-last=1", "--keep-days=0"], ["backups.verify", f"--to={bid}"]):
            r = subprocess.run([sys.executable, "-m", "invoke", *args, "--env=local"], cwd=ROOT, env=dict(os.environ),
                               capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
            assert r.returncode == 3, (args, r.stderr)
            assert "deploy by" in r.stderr  # names the holder
    assert dump.exists() and manifest.read_bytes() == before  # nothing deleted, no verification lost or written
    local_env.run("deploy", yes=True)  # the lock is free again
    from vetai_ops.ops.verify import verify_backup

    verify_backup("local", bid)
    verify_backup("local", bid)
    assert len(json.loads(manifest.read_text())["verifications"]) == 2  # one after the other, both recorded


def test_a_restore_without_a_spool_still_removes_dead_runs_spools(local_env):
    """The default local restore (zstd, one job) reads the store's own file and writes no
    spool: the spool folders a SIGKILLed run left are removed all the same, another
    database's are left alone."""
    local_env.run("deploy", yes=True)
    bid = local_env.run("backup")["backup_id"]
    dead = Path(f"/tmp/vetai-ops-spool-{local_env.dbname}.deadpipe00")
    other = Path("/tmp/vetai-ops-spool-someotherdb.deadpipe00")
    try:
        for d in (dead, other):
            d.mkdir(mode=0o700, exist_ok=True)
            (d / "backup.dump").write_bytes(b"clinic data")
        rep = local_env.run("rollback", to=bid, yes=True)
        assert rep["outcome"] == "success"
        assert not dead.exists() and other.exists()
    finally:
        import shutil

        shutil.rmtree(other, ignore_errors=True)
        shutil.rmtree(dead, ignore_errors=True)


def test_a_dead_connections_ignored_rollback_prints_nothing_outside_the_run(local_env):
    """A `with` block over a connection the server already ended (as a failed swap leaves one)
    makes psycopg log "error ignored in rollback"; the tool's output must not carry it (Python's
    last-resort handler would print it on stderr, outside the run's rendering)."""
    import subprocess
    import sys

    c = local_env.cluster()
    code = (
        "import psycopg, sys\n"
        "import vetai_ops.database.access\n"
        f"kw = dict(host={str(c.socket_dir)!r}, port={c.port}, user='vetai', dbname='postgres', autocommit=True)\n"
        "with psycopg.connect(**kw) as killer:\n"
        "    try:\n"
        "        with psycopg.connect(**{**kw, 'autocommit': False}) as victim:\n"
        "            pid = victim.execute('select pg_backend_pid()').fetchone()[0]\n"
        "            killer.execute('select pg_terminate_backend(%s, 5000)', [pid])\n"
        "            raise RuntimeError('the run failed')\n"
        "    except RuntimeError:\n"
        "        print('failed as expected')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and "failed as expected" in r.stdout, r.stderr
    assert "error ignored" not in r.stderr and r.stderr.strip() == "", r.stderr
