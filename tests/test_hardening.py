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
    from vetai_ops.steps import restore as restore_mod

    local_env.inventory.write_text(local_env.inventory.read_text() + "    backup: {restore_jobs: 2}\n")
    local_env.run("deploy", yes=True)
    bid = local_env.run("backup")["backup_id"]
    # a spool folder of this database left by a run that was SIGKILLed, and one of another database
    dead = Path(f"/tmp/vetai-ops-spool-{local_env.dbname}.deadrun000")
    other = Path("/tmp/vetai-ops-spool-someotherdb.deadrun000")
    for d in (dead, other):
        d.mkdir(mode=0o700, exist_ok=True)
        (d / "backup.dump").write_bytes(b"clinic data")
    seen = []
    real = restore_mod.materialise

    def observe(ctx, m):
        path, folder = real(ctx, m)
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
    finally:
        import shutil

        shutil.rmtree(other, ignore_errors=True)
        shutil.rmtree(dead, ignore_errors=True)


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
    runs = [json.loads(ln) for f in logs.glob("*") for ln in f.read_text().splitlines() if ln.strip()]
    finished = [e for e in runs if e.get("kind") == "run_finished" or e.get("event") == "run_finished"]
    assert finished and "failed" in json.dumps(finished[-1])


def test_tables_and_errors_show_brackets_as_text(capsys):
    from vetai_ops.cli import render
    from vetai_ops.events import Event

    render.table("t [/]", ["a[/]"], [["[bold]x[/]", None]])
    sink = render.ConsoleSink(render.out)
    for kind in ("run_started", "step_failed", "warning", "info", "revision_applied", "run_finished"):
        sink.emit(Event(kind, "st[/]ep", f"{kind} {EVIL}", {"outcome": "failed", "duration_s": 1.0}))
    render.render_plan({"env": "e[/]", "db_host": "[/]", "database": "d", "pending": ["r[/]"],
                        "findings": [{"revision": "r[/]", "rule": "x[/]", "severity": "error", "file": "[/]f",
                                      "line": 1}]})
    out = capsys.readouterr().out
    assert "[bold]x[/]" in out and out.count(EVIL) == 6 and "st[/]ep" in out and "x[/]" in out
