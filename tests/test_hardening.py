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
