"""Playbooks are checked when loaded (issue 13): an unknown step (in ``steps:`` or
``on_failure:``), an option its step does not take, or an unknown ``when:`` condition is
refused with exit 2 naming the file and the key, before any lock, backup or journal line."""

from __future__ import annotations

import re
import inspect
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vetai_ops.config import Playbook, StepSpec, load_playbook
from vetai_ops.errors import PlaybookError
from vetai_ops.steps import _REGISTRY, _load, check_playbook, playbook_problems

ROOT = Path(__file__).resolve().parents[1]


def _builtin_playbooks() -> list[Playbook]:
    from vetai_ops.ops.adopt import adopt_playbook
    from vetai_ops.ops.revisions import downgrade_playbook, upgrade_playbook

    pbs = [load_playbook(p.stem) for p in sorted((ROOT / "playbooks").glob("*.yml")) if p.stem != "inventory"]
    pbs += [upgrade_playbook(), downgrade_playbook(), adopt_playbook()]
    # fab's per-host playbooks (every fab task is one of them)
    from vetai_ops.cli import fab
    from vetai_ops.ops.hosts import HOST_TASKS, host_playbook

    assert {n for n in HOST_TASKS if hasattr(getattr(fab, n, None), "body")} == set(HOST_TASKS) == \
        {"dump", "restore", "health", "restart"}
    pbs += [host_playbook(t) for t in HOST_TASKS]
    return pbs


def test_every_shipped_and_builtin_playbook_passes_the_check():
    pbs = _builtin_playbooks()
    assert {"deploy", "backup", "rollback", "migrations.upgrade", "adopt", "fab-lock"} <= {p.name for p in pbs}
    for pb in pbs:
        assert playbook_problems(pb) == [], pb.name


def test_steps_declare_their_options_no_catch_all():
    _load()
    for name, fn in _REGISTRY.items():
        kinds = [p.kind for p in inspect.signature(fn).parameters.values()]
        assert inspect.Parameter.VAR_KEYWORD not in kinds, f"step {name!r} takes **kwargs: name its options"


def _deploy_with(tmp_path, old: str, new: str) -> Path:
    d = tmp_path / "playbooks"
    shutil.copytree(ROOT / "playbooks", d)
    text = (d / "deploy.yml").read_text()
    changed = re.sub(old, new, text, count=1, flags=re.M)
    assert changed != text, f"{old!r} not in deploy.yml"
    (d / "deploy.yml").write_text(changed)
    return d


BAD = [
    # (a regex in playbooks/deploy.yml, its replacement, the refusal's message: {i} is the entry's index)
    (r"^(\s*- step:) migrate\b", r"\1 migrat", "deploy.yml: steps[{i}].step: unknown step 'migrat'"),
    (r"^(\s*- step:) restore\b", r"\1 restor", "deploy.yml: on_failure[{i}].step: unknown step 'restor'"),
    (r"options: \{reason: pre-deploy\}", "options: {reson: pre-deploy}",
     "deploy.yml: steps[{i}].options.reson: step 'backup' has no option 'reson'"),
    (r"when: first_deploy\b", "when: first_deploi", "deploy.yml: steps[{i}].when: unknown condition 'first_deploi'"),
]


def _expected(folder: Path, msg: str) -> str:
    """``msg`` with the index of the entry the replacement changed, found in the YAML."""
    data = yaml.safe_load((folder / "deploy.yml").read_text())
    section = "on_failure" if "on_failure[" in msg else "steps"
    bad = {"migrat", "restor"}
    for i, e in enumerate(data[section]):
        if e["step"] in bad or "reson" in (e.get("options") or {}) or e.get("when") == "first_deploi":
            return msg.format(i=i)
    raise AssertionError("the changed entry is not in the playbook")


@pytest.mark.parametrize("old,new,msg", BAD, ids=["step", "on_failure-step", "option", "when"])
def test_a_bad_playbook_names_the_file_and_key(tmp_path, monkeypatch, old, new, msg):
    folder = _deploy_with(tmp_path, old, new)
    monkeypatch.setenv("VETAI_OPS_PLAYBOOKS", str(folder))
    with pytest.raises(PlaybookError) as ei:
        check_playbook(load_playbook("deploy"))
    assert ei.value.exit_code == 2
    assert _expected(folder, msg) in ei.value.message, ei.value.message


def test_not_prefix_and_on_failure_after_are_checked():
    ok = Playbook(name="x", steps=[StepSpec(step="lock"), StepSpec(step="seed", when="not first_deploy")],
                  on_failure_after=None)
    assert playbook_problems(ok) == []
    bad = Playbook(name="x", steps=[StepSpec(step="lock")], on_failure_after="backup")
    assert playbook_problems(bad) == ["on_failure_after: 'backup' is not a step of this playbook"]


def test_a_malformed_playbook_key_is_exit_2_with_its_path(tmp_path, monkeypatch):
    monkeypatch.setenv("VETAI_OPS_PLAYBOOKS", str(_deploy_with(tmp_path, r"^(\s*)name: confirm-rehearsed",
                                                                   r"\1nmae: confirm-rehearsed")))
    with pytest.raises(PlaybookError) as ei:
        load_playbook("deploy")
    assert ei.value.exit_code == 2 and "deploy.yml: steps[" in ei.value.message, ei.value.message
    assert "].nmae: Extra inputs are not permitted" in ei.value.message, ei.value.message


def test_a_bad_playbook_is_refused_before_anything_runs(local_env, tmp_path):
    """`invoke deploy` with each bad deploy.yml: exit 2 naming the file and key, and nothing
    run: not even the lock (another session holds it, yet the answer is 2, not 3), no
    backup, no deploy_history row, no log line."""
    import psycopg

    from vetai_ops.database.advisory import LOCK_CLASS, lock_key

    local_env.run("deploy", yes=True)
    backups = sorted(p.name for p in local_env.backups.rglob("*"))
    rows = local_env.psql("select count(*) from deploy_history")
    log = tmp_path / "logs" / "migration.log"
    log_before = log.read_bytes() if log.exists() else b""
    c = local_env.cluster()
    with psycopg.connect(host=str(c.socket_dir), port=c.port, user="vetai", dbname="postgres", autocommit=True) as held:
        held.execute("select pg_advisory_lock(%s, %s)", (LOCK_CLASS, lock_key(local_env.dbname)))
        for i, (old, new, msg) in enumerate(BAD):
            folder = _deploy_with(tmp_path / str(i), old, new)
            env = dict(os.environ, VETAI_OPS_PLAYBOOKS=str(folder))
            r = subprocess.run([sys.executable, "-m", "invoke", "deploy", "--env=local", "--yes"], cwd=ROOT, env=env,
                               capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
            assert r.returncode == 2, (msg, r.stdout, r.stderr)
            assert _expected(folder, msg) in " ".join(r.stderr.split()), r.stderr
    assert sorted(p.name for p in local_env.backups.rglob("*")) == backups
    assert local_env.psql("select count(*) from deploy_history") == rows
    assert (log.read_bytes() if log.exists() else b"") == log_before
