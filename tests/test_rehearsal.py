"""The rehearsal on a copy of the data, and the estimates from history (issue 14 items 2, 3),
on the embedded local env (real PostgreSQL). A failing rehearsal leaves the live database
exactly as it was: same OID, same revision, no retired database, no restore, no copy left."""

from __future__ import annotations

import json

import pytest

from procs import cli

from vetai_ops.errors import DeployFailed, GateRefused


# a data fix no probe can foresee: it divides by zero on exactly one row
DIV_BY_ZERO = ("op.execute(\"UPDATE pets SET color = (100 / (CASE WHEN id = (SELECT id FROM pets ORDER BY id LIMIT 1)"
               " THEN 0 ELSE 1 END))::text\")")
BACKFILL = "op.execute(\"UPDATE pets SET color = coalesce(color, 'unknown')\")"


def oid(le) -> str:
    return le.cluster().psql(f"select oid from pg_database where datname = '{le.dbname}'")


def databases(le) -> list[str]:
    return le.cluster().psql(f"select string_agg(datname, ' ' order by datname) from pg_database "
                             f"where datname like '{le.dbname}%'").split()


def manifests(le) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((le.backups / "local").glob("*.json"))]


def last_history(le) -> dict:
    row = le.psql("select row_to_json(h) from deploy_history h order by id desc limit 1")
    return json.loads(row)


def test_rehearsal_stops_a_failure_no_probe_foresees(local_env, migrations_copy):
    local_env.configure(deploy="{rehearsal: auto}")
    local_env.run("deploy", yes=True)  # first deploy: seeds 8 pets (auto does not rehearse a first deploy)
    live_oid, colors = oid(local_env), local_env.psql("select string_agg(coalesce(color, '-'), ',' order by id) from pets")
    migrations_copy.add("0014", "0013", DIV_BY_ZERO)
    with pytest.raises(DeployFailed) as ei:
        local_env.run("deploy", yes=True)
    e = ei.value
    rep = e.report
    assert e.exit_code == 2  # a refusal: nothing live changed
    assert rep["failed_step"] == "rehearse"
    assert "0014" in rep["error"] and "division by zero" in rep["error"] and "not touched" in rep["error"]
    assert "recovery" not in rep and "restored_id" not in rep  # no restore ran
    assert [s["step"] for s in rep["steps"]][-1] == "rehearse"  # migrate never started
    # the live database: the same one (OID), at the same revision, with the same rows; no copy, no retired DB
    assert oid(local_env) == live_oid
    assert local_env.psql("select version_num from alembic_version") == "0013"
    assert local_env.psql("select string_agg(coalesce(color, '-'), ',' order by id) from pets") == colors
    assert databases(local_env) == [local_env.dbname]
    # journaled: the failure, the revision and the error; the manifest records the rehearsal's restore
    h = last_history(local_env)
    assert h["outcome"] == "failed" and "division by zero" in h["error"]
    detail = next(s for s in h["steps"] if s["step"] == "rehearse")["detail"]
    assert detail["ok"] is False and detail["failed_revision"] == "0014" and detail["dropped"] is True
    kinds = [r["kind"] for m in manifests(local_env) for r in m.get("restores", [])]
    assert kinds == ["rehearsal"]
    # fixed, the same deploy passes
    migrations_copy.add("0014", "0013", BACKFILL)
    local_env.run("deploy", yes=True)
    assert local_env.psql("select version_num from alembic_version") == "0014"


def test_protected_env_confirms_after_a_passing_rehearsal_with_its_durations(local_env, migrations_copy):
    local_env.run("deploy", yes=True)
    local_env.configure(protected="true", deploy="{rehearsal: auto}")
    migrations_copy.add("0014", "0013", BACKFILL)
    migrations_copy.add("0015", "0014", "op.execute(\"UPDATE clients SET phone = phone\")")
    asked = []

    def confirm(env_name, plan):
        # asked after the backup and the rehearsal, before the live database moved
        asked.append({"plan": json.loads(json.dumps(plan, default=str)), "backups": len(manifests(local_env)),
                      "revision": local_env.psql("select version_num from alembic_version")})
        return True

    from vetai_ops.pipeline import run_playbook

    rep = run_playbook("deploy", "local", options={}, confirm=confirm)
    assert rep["outcome"] == "success" and len(asked) == 1
    a = asked[0]
    assert a["backups"] == 2 and a["revision"] == "0013"
    res = a["plan"]["rehearsal"]["result"]
    assert [r["revision"] for r in res["revisions"]] == ["0014", "0015"]
    assert all(r["duration_s"] >= 0 for r in res["revisions"])
    assert a["plan"]["migrate_by_revision"]["0014"]["source"] == "this rehearsal"
    assert a["plan"]["estimates"]["migrate_s"] is not None
    steps = [s["step"] for s in rep["steps"]]
    assert steps.index("rehearse") < steps.index("confirm-rehearsed") < steps.index("migrate")
    # the journal: the rehearse step's per-revision durations, beside the live ones
    h = last_history(local_env)
    detail = next(s for s in h["steps"] if s["step"] == "rehearse")["detail"]
    assert detail["ok"] is True and [r["revision"] for r in detail["revisions"]] == ["0014", "0015"]
    assert [r["revision"] for r in h["revisions"]] == ["0014", "0015"]
    log = (local_env.root / "logs" / "migration.log").read_text()
    assert '"event": "rehearsal"' in log
    assert databases(local_env) == [local_env.dbname]  # the copy was dropped
    # undone, the next plan takes each revision's time from the journal: the rehearsal's first
    local_env.configure()  # unprotected: the rollback and the plan ask nothing
    local_env.run("rollback", to="pre-deploy", yes=True)
    plan = local_env.run("deploy", dry_run=True)["plan"]
    assert plan["pending"] == ["0014", "0015"]
    assert {plan["migrate_by_revision"][r]["source"] for r in ("0014", "0015")} == {"rehearsal"}
    assert plan["estimates"]["rollback_s"] is not None and plan["estimates"]["migrate_s"] is not None


def test_no_rehearsal_is_refused_on_a_protected_env_and_off_skips_it(local_env, migrations_copy):
    local_env.run("deploy", yes=True)
    migrations_copy.add("0014", "0013", BACKFILL)
    local_env.configure(protected="true")
    before = manifests(local_env)
    with pytest.raises(GateRefused, match="--no-rehearsal is refused"):
        local_env.run("deploy", yes=True, no_rehearsal=True)
    r = cli("deploy", "--env=local", "--yes", "--no-rehearsal")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "--no-rehearsal is refused" in r.stderr
    assert manifests(local_env) == before  # refused before the backup
    # an unprotected env with the rehearsal off: the deploy goes on without one
    local_env.configure(deploy="{rehearsal: off}")
    rep = local_env.run("deploy", yes=True)
    step = next(s for s in rep["steps"] if s["step"] == "rehearse")
    assert step["summary"] == "not run: deploy.rehearsal is off for this env"
    assert rep["plan"]["rehearsal"]["will"] is False
    assert not [r for m in manifests(local_env) for r in m.get("restores", [])]


def test_plan_estimates_from_history_and_the_recovery_time_objective(local_env):
    r = cli("plan", "--env=local", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["plan"]["estimates"] == {"backup_s": None, "rehearsal_s": None, "migrate_s": None,
                                                         "rollback_s": None}
    local_env.run("deploy", yes=True)
    local_env.run("rollback", to="pre-deploy", yes=True)
    m = manifests(local_env)[0]
    assert m["db_size"] > 0 and [x["kind"] for x in m["restores"]] == ["rollback"]
    r = cli("plan", "--env=local", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    plan = json.loads(r.stdout)["plan"]
    est = plan["estimates"]
    assert set(est) == {"backup_s", "rehearsal_s", "migrate_s", "rollback_s"}
    assert all(isinstance(v, (int, float)) for v in est.values()), est
    assert plan["migrate_by_revision"]["0001"]["source"] == "deploy"
    # an RTO the predicted rollback exceeds: refused before the backup, nothing changed
    local_env.configure(deploy="{rehearsal: off, max_rollback_s: 0.0001}")
    before = manifests(local_env)
    with pytest.raises(GateRefused, match="max_rollback_s") as ei:
        local_env.run("deploy", yes=True)
    assert ei.value.exit_code == 2
    assert manifests(local_env) == before
    assert local_env.psql("select to_regclass('public.pets') is null") == "t"  # still the rolled-back (empty) one


def test_what_auto_counts_as_data_dependent():
    """validate/datadep.py on rendered SQL and the validator's findings (no database needed)."""
    from vetai_ops.validate.datadep import data_dependent, decide

    sql = {
        "a": "CREATE TABLE promo (code text PRIMARY KEY, n int UNIQUE CHECK (n > 0));\n"
             "ALTER TABLE promo ADD CONSTRAINT ck CHECK (n < 10);\nCREATE INDEX ix ON pets (name);",
        "b": "ALTER TABLE pets ADD CONSTRAINT ck_w CHECK (weight_kg < 500) NOT VALID;",
        "c": "ALTER TABLE pets ALTER COLUMN breed SET NOT NULL;",
        "d": "UPDATE pets SET color = 'x';",
        "e": "CREATE UNIQUE INDEX uq ON clients (email);",
        "f": "ALTER TABLE pets ADD CONSTRAINT fk FOREIGN KEY (client_id) REFERENCES clients (id);",
        "g": "",
    }
    why = data_dependent(list(sql), [{"revision": "b", "rule": "raw-sql", "operation": "execute ALTER"}], sql)
    assert "a" not in why  # a new table has no rows; a plain index depends on no value
    assert why["b"] == ["raw SQL (execute ALTER)"]  # NOT VALID reads no rows; the finding still counts
    assert why["c"] == ["NOT NULL pets.breed"] and why["d"] == ["backfill (UPDATE pets)"]
    assert why["e"] == ["unique index on clients"] and why["f"] == ["FOREIGN KEY on pets"]
    assert "could not be rendered" in why["g"][0]
    args = dict(pending=["c"], first_deploy=False, no_flag=False, skip_backup=False)
    assert decide("auto", protected=False, reasons={"c": why["c"]}, **args).will
    assert not decide("auto", protected=False, reasons={}, **args).will
    assert decide("auto", protected=True, reasons={}, **args).will  # always on protected envs
    assert not decide("off", protected=True, reasons=why, **args).will
    assert not decide("auto", protected=False, reasons=why, **{**args, "first_deploy": True}).will


def test_a_rehearsal_copy_left_by_a_killed_run_is_dropped_by_the_next_run(local_env):
    local_env.run("deploy", yes=True)
    dead = f"{local_env.dbname}_rehearse_20260101t000000z"
    local_env.cluster().psql(f'CREATE DATABASE "{dead}" OWNER vetai')
    assert dead in databases(local_env)
    local_env.run("deploy", yes=True)  # its lock step repairs before anything else
    assert databases(local_env) == [local_env.dbname]
