"""The live part of the pre-deploy gate on the local env: applied-file checksums,
ancestry, orphan rows for pending foreign keys. A refused deploy changes nothing."""

from __future__ import annotations

import json

import pytest

from procs import cli

from vetai_ops.errors import DeployFailed, GateRefused


def backups(le):
    return sorted(p.name for p in (le.backups / "local").glob("*.json"))


def test_edited_applied_revision_is_caught(local_env, migrations_copy):
    local_env.run("deploy", yes=True)
    r = cli("validate", "--env=local", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    f = migrations_copy.path / "versions" / "0005_align_appointment_structure.py"
    f.write_text(f.read_text() + "\n# edited after it was applied\n")
    r = cli("validate", "--env=local", "--json")
    assert r.returncode == 2
    data = json.loads(r.stdout)
    assert any("0005" in e and "0005_align_appointment_structure.py" in e for e in data["live_errors"])
    before = backups(local_env)
    with pytest.raises(GateRefused, match="0005"):
        local_env.run("deploy", yes=True)
    assert backups(local_env) == before  # refused before the backup: nothing changed


def test_unknown_current_revision_refused(local_env):
    local_env.run("deploy", yes=True)
    local_env.psql("update alembic_version set version_num = 'ffff0000'")
    with pytest.raises(GateRefused, match="ffff0000.*does not know"):
        local_env.run("deploy", yes=True)
    r = cli("status", "--env=local", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["state"] == "unknown revision"


def test_orphan_rows_for_a_pending_foreign_key(local_env, migrations_copy):
    local_env.run("deploy", yes=True)
    local_env.psql("alter table pets add column referrer_id uuid; update pets set referrer_id = gen_random_uuid() "
                   "where id in (select id from pets order by id limit 2)")
    migrations_copy.add("0014", "0013",
                        'op.create_foreign_key("fk_pets_referrer_id_clients", "pets", "clients", ["referrer_id"], ["id"])',
                        'op.drop_constraint("fk_pets_referrer_id_clients", "pets", type_="foreignkey")')
    before = backups(local_env)
    # the hand-added column is drift: refused, named, until accepted
    with pytest.raises(GateRefused, match="column pets.referrer_id"):
        local_env.run("deploy", yes=True)
    with pytest.raises(GateRefused) as ei:
        local_env.run("deploy", yes=True, accept_drift=["column:pets.referrer_id"])
    msg = ei.value.message
    assert "2 rows of pets(referrer_id) have no clients" in msg and "0014" in msg and "LEFT JOIN" in msg
    assert local_env.psql("select version_num from alembic_version") == "0013"
    assert backups(local_env) == before
    assert local_env.psql("select to_regclass('public.vetai_ops_accepted_drift')") == ""  # a refusal records nothing
    # once the orphans are fixed the gate passes; the history does not build at 0014 (its FK needs the
    # hand-made column), so the post-check cannot vouch for the schema: restored
    local_env.psql("update pets set referrer_id = null")
    with pytest.raises(DeployFailed, match="schema") as ei:
        local_env.run("deploy", yes=True, accept_drift=["column:pets.referrer_id"])
    assert ei.value.report["recovery"]["status"] == "ok"
    assert local_env.psql("select version_num from alembic_version") == "0013"


def test_acknowledged_destructive_revision_forces_a_verified_backup(local_env, migrations_copy):
    local_env.run("deploy", yes=True)
    migrations_copy.add("0014", "0013", 'op.drop_column("pets", "color")',
                        'op.add_column("pets", sa.Column("color", sa.String(40)))')
    # without the acknowledgement nothing runs
    with pytest.raises(GateRefused, match="drop_column pets.color"):
        local_env.run("deploy", yes=True)
    # acknowledged on the command line: the gate passes, the backup is restore-tested first;
    # the post-check compares with what the history builds at 0014 (no pets.color): the models
    # in the package are not consulted, so the new revision deploys as written
    rep = local_env.run("deploy", yes=True, allow=["drop_column pets.color"])
    assert rep["outcome"] == "success"
    mans = [json.loads(p.read_text()) for p in (local_env.backups / "local").glob("*.json")]
    newest = max(mans, key=lambda m: m["id"])
    assert newest["verifications"] and newest["verifications"][-1]["ok"] is True
    assert local_env.psql("select count(*) from information_schema.columns where table_name = 'pets' and column_name = 'color'") == "0"


def test_validate_env_reports_a_blocking_pending_revision(local_env, migrations_copy):
    local_env.run("deploy", yes=True)
    migrations_copy.add("0014", "0013", 'op.drop_table("notifications")', "pass")
    r = cli("validate", "--env=local", "--json")
    data = json.loads(r.stdout)
    assert r.returncode == 2 and data["ok"] is False
    assert any(f["operation"] == "drop_table notifications" for f in data["blocking"])


def test_broken_history_is_a_clear_refusal(local_env, migrations_copy):
    local_env.run("deploy", yes=True)
    migrations_copy.add("0014", "9999", "pass")  # parent does not exist
    r = cli("deploy", "--env=local", "--yes")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "KeyError" not in r.stderr.split("(")[0]
    assert "invoke validate" in r.stderr
    r = cli("validate", "--json")
    assert r.returncode == 2
    errs = json.loads(r.stdout)["errors"]
    assert any(e["revision"] == "0014" and "9999" in e["message"] for e in errs)


def test_destructive_operation_in_a_helper_function_is_refused(local_env, migrations_copy):
    """The AST walk only sees upgrade()'s own body; the rendered SQL shows what will run."""
    local_env.run("deploy", yes=True)
    f = migrations_copy.add("0014", "0013", "_cleanup()", 'op.add_column("pets", sa.Column("color", sa.String(40)))')
    f.write_text(f.read_text() + '\n\ndef _cleanup():\n    op.drop_column("pets", "color")\n')
    before = backups(local_env)
    with pytest.raises(GateRefused, match="drop_column pets.color"):
        local_env.run("deploy", yes=True)
    assert backups(local_env) == before
    assert local_env.psql("select count(*) from information_schema.columns where table_name = 'pets' "
                          "and column_name = 'color'") == "1"


def test_revision_edited_between_validation_and_migrate_is_refused(local_env, migrations_copy):
    """What was validated is what runs: a pending revision file rewritten after the gate passed
    (here: while the backup was being taken) is refused by migrate before anything is applied."""
    from vetai_ops.events import ListSink
    from vetai_ops.pipeline import run_playbook

    local_env.run("deploy", yes=True, target="0012")
    f = next((migrations_copy.path / "versions").glob("0013_*.py"))

    class EditAfterBackup(ListSink):
        def emit(self, event):
            super().emit(event)
            if event.kind == "step_finished" and event.step == "backup":
                f.write_text(f.read_text() + "\n# edited while the deploy was running\n")

    sink = EditAfterBackup()
    with pytest.raises(DeployFailed, match=r"0013 .*changed on disk after validation.*nothing to restore") as ei:
        run_playbook("deploy", "local", options={"yes": True}, sink=sink)
    assert ei.value.exit_code == 2  # a refusal after the backup that changed nothing keeps the gate's code
    assert local_env.psql("select version_num from alembic_version") == "0012"
    kinds = [(e.kind, e.step) for e in sink.events]
    assert ("step_failed", "migrate") in kinds
    assert not any(step and step.startswith("on_failure") or step == "restore" for _, step in kinds)


def test_concurrent_index_outside_autocommit_block_is_refused_inside_one_it_deploys(local_env, migrations_copy):
    """The gate refuses what PostgreSQL would refuse (REINDEX CONCURRENTLY in the revision's
    transaction) before a backup is taken; the fix its message names really deploys."""
    local_env.run("deploy", yes=True)
    reindex = "op.execute('REINDEX INDEX CONCURRENTLY ix_pets_client_id')"
    f = migrations_copy.add("0014", "0013", reindex)
    before = backups(local_env)
    with pytest.raises(GateRefused, match="REINDEX CONCURRENTLY.*autocommit_block"):
        local_env.run("deploy", yes=True)
    assert backups(local_env) == before
    assert local_env.psql("select version_num from alembic_version") == "0013"
    f.unlink()
    migrations_copy.add("0014", "0013", "with op.get_context().autocommit_block():\n    " + reindex)
    assert local_env.run("deploy", yes=True)["outcome"] == "success"
    assert local_env.psql("select indisvalid from pg_index where indexrelid = 'ix_pets_client_id'::regclass") == "t"
    assert local_env.psql("select version_num from alembic_version") == "0014"


def test_preflight_refuses_missing_client_tools_before_the_backup(local_env, tmp_path):
    from vetai_ops.steps.validate import tool_major

    assert tool_major("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)") == 15
    assert tool_major("pg_restore (PostgreSQL) 9.6.24") == 9 and tool_major("16.4") == 16
    local_env.run("deploy", yes=True, target="0012")
    before = backups(local_env)
    empty = tmp_path / "no-tools"
    empty.mkdir()
    text = local_env.inventory.read_text()
    local_env.inventory.write_text(text.replace("user: vetai}", f"user: vetai, bin_dir: '{empty}'}}"))
    with pytest.raises(GateRefused, match=r"pg_dump is not usable on DB host .*nothing changed") as ei:
        local_env.run("deploy", yes=True)
    assert "bin_dir" in ei.value.hint
    assert backups(local_env) == before
    assert local_env.psql("select version_num from alembic_version") == "0012"
