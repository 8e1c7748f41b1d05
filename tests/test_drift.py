"""Schema drift (issue 10.3) and `invoke check` (10.4) on real PostgreSQL (the embedded local env).

The expected schema is the reference the history builds at the database's revision; the
drift recipes below pick their objects from the live catalog, so they hold whatever the
history contains."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import create_engine, pool, text

import procs
from vetai_ops.database import migrations as mig
from vetai_ops.database.catalog import compare, snapshot
from vetai_ops.errors import DeployFailed, GateRefused
from vetai_ops.journal import operator_id


def cli(*args, env_extra=None):
    """The real CLI without COLUMNS: a pytest worker's (e.g. 80 under xdist) would fold long
    object names inside the check table, where an operator's log gets the CLI's own
    off-terminal width."""
    return procs.cli(*args, env_extra=env_extra, without=("COLUMNS",))


def backups(le) -> list[str]:
    return sorted(p.name for p in (le.backups / "local").glob("*.json"))


def live_snapshot(le) -> dict:
    eng = create_engine(le.cluster().url(le.dbname), poolclass=pool.NullPool)
    try:
        with eng.connect() as c:
            return snapshot(c)
    finally:
        eng.dispose()


def _pk_columns(s: dict, t: str) -> set[str]:
    for c in s["constraints"].get(t, {}).values():
        if c["kind"] == "primary key":
            return {x.strip().strip('"') for x in re.search(r"\((.*?)\)", c["definition"]).group(1).split(",")}
    return set()


def drift_recipe(s: dict, kind: str) -> tuple[str, str, str, str]:
    """(SQL that makes the drift, kind, name, a fragment of the detail) from the live catalog."""
    tables = sorted(s["tables"])
    cols = [(t, c, v) for t in tables for c, v in sorted(s["tables"][t].items())]
    fks = [(t, n, v) for t in tables for n, v in sorted(s["constraints"].get(t, {}).items()) if v["kind"] == "foreign key"]
    t0, c0 = tables[0], min(s["tables"][tables[0]])
    if kind == "index":
        return (f'CREATE INDEX ix_drift_hotfix ON "{t0}" ("{c0}")', "index", f"{t0}.ix_drift_hotfix", "not in the history")
    if kind == "extra_column":
        return (f'ALTER TABLE "{t0}" ADD COLUMN drift_note text', "column", f"{t0}.drift_note", "text NULL")
    if kind == "column_type":
        t, c, v = next((t, c, v) for t, c, v in cols if v["type"].startswith("character varying("))
        n = int(re.search(r"\((\d+)\)", v["type"]).group(1)) + 7
        return (f'ALTER TABLE "{t}" ALTER COLUMN "{c}" TYPE varchar({n})', "column", f"{t}.{c}",
                f"type character varying({n}) live, expected {v['type']}")
    if kind == "nullability":
        t, c, v = next((t, c, v) for t, c, v in cols if not v["nullable"] and c not in _pk_columns(s, t))
        return (f'ALTER TABLE "{t}" ALTER COLUMN "{c}" DROP NOT NULL', "column", f"{t}.{c}", "NULL live, expected NOT NULL")
    if kind == "default":
        t, c, v = next((t, c, v) for t, c, v in cols if v["default"] and not v["default"].startswith("generated"))
        return (f'ALTER TABLE "{t}" ALTER COLUMN "{c}" DROP DEFAULT', "column", f"{t}.{c}",
                f"default none live, expected {v['default']}")
    if kind == "dropped_constraint":
        t, n, v = fks[0]
        return (f'ALTER TABLE "{t}" DROP CONSTRAINT "{n}"', "constraint", f"{t}.{n}", "missing in the live database")
    if kind == "changed_constraint":
        t, n, v = fks[-1]
        return (f'ALTER TABLE "{t}" DROP CONSTRAINT "{n}", ADD CONSTRAINT "{n}" {v["definition"]} NOT VALID',
                "constraint", f"{t}.{n}", "NOT VALID live, expected")
    if kind == "enum_value":
        e = min(s["enums"])
        return (f"ALTER TYPE \"{e}\" ADD VALUE 'drift_value'", "enum", e, "added drift_value")
    if kind == "extra_table":
        return ("CREATE TABLE legacy_notes (id int, note text)", "table", "legacy_notes", "not in the history")
    raise AssertionError(kind)


KINDS = ["index", "extra_column", "column_type", "nullability", "default", "dropped_constraint",
         "changed_constraint", "enum_value", "extra_table"]


@pytest.mark.parametrize("case", KINDS)
def test_each_kind_of_drift_is_refused_before_the_backup_and_named(local_env, case):
    local_env.run("deploy", yes=True)
    sql_, kind, name, fragment = drift_recipe(live_snapshot(local_env), case)
    local_env.psql(sql_)
    before = backups(local_env)
    with pytest.raises(GateRefused) as ei:
        local_env.run("deploy", yes=True)
    e = ei.value
    assert e.exit_code == 2
    assert f"{kind} {name}: " in e.message and fragment in e.message, e.message
    assert f"--accept-drift={kind}:{name}" in e.hint
    assert backups(local_env) == before  # refused in preflight: no backup was taken
    drift = e.details["report"]["drift"]
    assert [(d["kind"], d["name"], d["accepted"]) for d in drift] == [(kind, name, False)], drift


def test_drift_refusal_through_the_cli_names_every_difference(local_env):
    local_env.run("deploy", yes=True)
    s = live_snapshot(local_env)
    recipes = [drift_recipe(s, k) for k in ("index", "column_type", "extra_table", "enum_value")]
    for r in recipes:
        local_env.psql(r[0])
    before = backups(local_env)
    r = cli("deploy", "--env=local", "--yes")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "4 unaccepted difference(s), nothing changed" in r.stderr
    for _, kind, name, fragment in recipes:
        assert f"{kind} {name}: " in r.stderr and fragment in r.stderr
    assert backups(local_env) == before
    r = cli("deploy", "--env=local", "--yes", "--json")
    assert r.returncode == 2
    out = json.loads(r.stdout)
    assert out["ok"] is False and {(d["kind"], d["name"]) for d in out["report"]["drift"]} == \
        {(k, n) for _, k, n, _ in recipes}


def test_accepted_drift_is_recorded_deployed_over_and_new_drift_refused_again(local_env, migrations_copy):
    local_env.run("deploy", yes=True)
    s = live_snapshot(local_env)
    sql_, kind, name, _ = drift_recipe(s, "index")
    local_env.psql(sql_)
    start = mig.head()
    # a revision added to the history (VETAI_OPS_MIGRATIONS), the models untouched
    migrations_copy.add("9001", start, 'op.create_table("promo_codes", sa.Column("code", sa.Text, primary_key=True),\n'
                                       '                sa.Column("percent", sa.Integer, nullable=False))',
                        'op.drop_table("promo_codes")')
    before = backups(local_env)
    r = cli("deploy", "--env=local", "--yes")
    assert r.returncode == 2 and f"--accept-drift={kind}:{name}" in r.stderr
    assert backups(local_env) == before
    assert local_env.psql("select version_num from alembic_version") == start

    r = cli("deploy", "--env=local", "--yes", f"--accept-drift={kind}:{name}", "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)["report"]
    assert rep["outcome"] == "success" and [x["revision"] for x in rep["revisions"]] == ["9001"]
    post = next(s for s in rep["steps"] if s["step"] == "postcheck")
    assert "schema matches the history at 9001 (1 accepted difference(s))" in post["summary"]
    assert local_env.psql("select to_regclass('public.promo_codes')") == "promo_codes"
    row = local_env.psql("select kind || '|' || name || '|' || accepted_by || '|' || revision || '|' || action || '|' || "
                         "(accepted_at > now() - interval '1 hour') from vetai_ops_accepted_drift")
    assert row == f"{kind}|{name}|{operator_id()}|{start}|deploy|true"
    assert len(backups(local_env)) == len(before) + 1

    # accepted: the next deploy passes without the flag; `check` shows it accepted
    assert local_env.run("deploy", yes=True)["outcome"] == "success"
    r = cli("check", "--env=local", "--json")
    res = json.loads(r.stdout)
    assert [(d["kind"], d["name"], d["accepted"]) for d in res["drift"]] == [(kind, name, True)]
    # the models do not know promo_codes: check says so (they serve autogenerate), the deploy did not care
    assert res["models"]["checked"] and any("promo_codes" in d for d in res["models"]["differences"])
    assert r.returncode == 1 and res["ok"] is False

    # a new difference is refused again, the accepted one is not listed as refused
    sql2, kind2, name2, _ = drift_recipe(s, "extra_column")
    local_env.psql(sql2)
    before = backups(local_env)
    with pytest.raises(GateRefused) as ei:
        local_env.run("deploy", yes=True)
    assert f"{kind2} {name2}" in ei.value.message and name not in ei.value.message
    assert "1 unaccepted difference(s)" in ei.value.message
    local_env.psql(f'ALTER TABLE "{name2.split(".")[0]}" DROP COLUMN drift_note')
    # the accepted object changing again is a new difference too
    table = name.split(".")[0]
    other = max(s["tables"][table])
    local_env.psql(f'DROP INDEX ix_drift_hotfix; CREATE INDEX ix_drift_hotfix ON "{table}" ("{other}")')
    with pytest.raises(GateRefused) as ei:
        local_env.run("deploy", yes=True)
    assert f"{kind} {name}: in the live database" in ei.value.message and f'("{other}")' in ei.value.message \
        or f"({other})" in ei.value.message
    assert backups(local_env) == before


def test_a_revision_whose_result_differs_from_the_history_fails_the_postcheck_and_restores(local_env, migrations_copy):
    """The post-check compares with what the history builds: a data-dependent revision that
    does something else on the live data than on an empty database is caught, and restored."""
    local_env.run("deploy", yes=True)
    table = min(live_snapshot(local_env)["tables"])
    migrations_copy.add("9001", mig.head(),
                        f'op.execute("DO $$ BEGIN IF EXISTS (SELECT 1 FROM {table}) THEN '
                        f'CREATE TABLE half_done (x int); END IF; END $$")',
                        'op.execute("DROP TABLE IF EXISTS half_done")')
    start = local_env.psql("select version_num from alembic_version")
    with pytest.raises(DeployFailed, match="differs from the history at 9001") as ei:
        local_env.run("deploy", yes=True)
    assert "table half_done" in ei.value.message
    assert ei.value.report["recovery"]["status"] == "ok", ei.value.report["recovery"].get("error")
    assert local_env.psql("select version_num from alembic_version") == start
    assert local_env.psql("select to_regclass('public.half_done')") == ""


def test_the_reference_is_cached_by_the_history_hash(local_env, migrations_copy, tmp_path, monkeypatch):
    from vetai_ops.database import reference as ref
    from vetai_ops.pipeline import run_context

    monkeypatch.setenv("VETAI_OPS_CACHE", str(tmp_path / "cache"))
    ref._memo.clear()
    local_env.cluster()
    with run_context("local", "test", journaled=False) as ctx:
        head = mig.head()
        snap, info = ref.reference(ctx.access, head)
        assert info["cached"] is False and "pets" in snap["tables"] or snap["tables"]
        f = tmp_path / "cache" / "reference" / f"{info['key']}.json"
        assert f.stat().st_mode & 0o777 == 0o600 and f.parent.stat().st_mode & 0o777 == 0o700
        assert json.loads(f.read_text()) == snap
        ref._memo.clear()
        again, info2 = ref.reference(ctx.access, head)
        assert info2["cached"] is True and info2["key"] == info["key"] and again == snap
        # a damaged cache file is not trusted: rebuilt
        f.write_text('{"format": ')
        ref._memo.clear()
        rebuilt, info3 = ref.reference(ctx.access, head)
        assert info3["cached"] is False and rebuilt == snap and json.loads(f.read_text()) == snap
        # no scratch database is left behind
        assert local_env.cluster().psql(f"select count(*) from pg_database where datname like '{local_env.dbname}_ref_%'") == "0"
        # a revision added below head changes the key of the new head, not of the old one
        migrations_copy.add("9001", head, 'op.add_column("pets", sa.Column("allergies", sa.Text))'
                            if "pets" in snap["tables"] else 'op.create_table("t9001", sa.Column("x", sa.Integer))',
                            "pass")
        _, same = ref.reference(ctx.access, head)
        assert same["key"] == info["key"] and same["cached"]
        snap2, new = ref.reference(ctx.access, "9001")
        assert new["key"] != info["key"] and new["cached"] is False
        assert [d.kind for d in compare(snap, snap2)] == ["column" if "pets" in snap["tables"] else "table"]


def test_models_equal_the_head_reference(local_env):
    """The models (kept for autogenerate) are the schema the history builds at head."""
    from vetai_ops.database.introspect import drop_database, new_database
    from vetai_ops.database.reference import reference
    from vetai_ops.pipeline import run_context
    from vetai_ops.schema.models import Base

    local_env.cluster()
    with run_context("local", "test", journaled=False) as ctx:
        expected, _ = reference(ctx.access, mig.head())
        name = f"{local_env.dbname}_models"
        maint = ctx.access.admin
        with new_database(maint, name):
            eng = ctx.access.engine(name)
            try:
                with eng.begin() as c:
                    Base.metadata.create_all(c)
                with eng.connect() as c:
                    from_models = snapshot(c)
            finally:
                eng.dispose()
                drop_database(maint, name)
    assert [str(d) for d in compare(expected, from_models)] == []


# ------------------------------------------------------------------ adopt


def _typeorm_built(le) -> None:
    """A DB as TypeORM would have left it after all of the guide's migrations."""
    from vetai_ops.schema.typeorm import TYPEORM_MIGRATIONS

    eng = create_engine(le.cluster().url(le.dbname), poolclass=pool.NullPool)
    with eng.connect() as conn:
        mig.upgrade(conn, TYPEORM_MIGRATIONS[-1].revision)
        conn.commit()
    with eng.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
        conn.execute(text('CREATE TABLE "migrations" ("id" SERIAL NOT NULL, "timestamp" bigint NOT NULL, '
                          '"name" character varying NOT NULL, CONSTRAINT "PK_8c82d7f526340ab734260ea46be" PRIMARY KEY ("id"))'))
        for m in TYPEORM_MIGRATIONS:
            conn.execute(text('INSERT INTO migrations ("timestamp", name) VALUES (:t, :n)'), {"t": m.timestamp, "n": m.name})
    eng.dispose()


def test_adopt_refuses_drift_then_accept_drift_records_it(local_env):
    _typeorm_built(local_env)
    sql_, kind, name, _ = drift_recipe(live_snapshot(local_env), "index")
    local_env.psql(sql_)
    r = cli("adopt", "--env=local")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{kind} {name}: " in r.stderr and f"--accept-drift={kind}:{name}" in r.stderr
    assert local_env.psql("select to_regclass('public.alembic_version')") == ""
    r = cli("adopt", "--env=local", "--accept-drift=column:nothing.here", "--json")
    assert r.returncode == 2 and json.loads(r.stdout)["ok"] is False

    r = cli("adopt", "--env=local", "--accept-drift", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["ok"] and [(d["kind"], d["name"], d["accepted"]) for d in res["drift"]] == [(kind, name, True)]
    assert local_env.psql("select action || '|' || accepted_by || '|' || revision from vetai_ops_accepted_drift") == \
        f"adopt|{operator_id()}|{res['stamped']}"
    # stamped with the drift accepted: the next deploy goes through
    assert local_env.run("deploy", yes=True)["outcome"] == "success"


# ------------------------------------------------------------------ check


def test_check_json_true_when_all_hold_false_on_drift_pending_and_orphans(local_env, migrations_copy):
    local_env.run("deploy", yes=True)
    r = cli("check", "--env=local", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(r.stdout)
    assert res["ok"] is True and res["current"] == res["head"] == mig.head() and res["pending"] == []
    assert res["drift"] == [] and res["orphans"] == [] and res["health"] == []
    assert res["models"] == {"checked": True, "differences": []} and res["foreign_keys_checked"] > 0
    r = cli("check", "--env=local")
    assert r.returncode == 0 and "all checks hold" in r.stdout

    # drift
    s = live_snapshot(local_env)
    sql_, kind, name, _ = drift_recipe(s, "index")
    local_env.psql(sql_)
    r = cli("check", "--env=local", "--json")
    res = json.loads(r.stdout)
    assert r.returncode == 1 and res["ok"] is False
    assert [{k: d[k] for k in ("kind", "name", "accepted")} for d in res["drift"]] == \
        [{"kind": kind, "name": name, "accepted": False}]
    assert res["drift"][0]["detail"]
    r = cli("check", "--env=local")
    assert r.returncode == 1 and name in r.stdout and "problem" in r.stderr
    local_env.psql("DROP INDEX ix_drift_hotfix")

    # pending
    planted = migrations_copy.add("9001", mig.head(), 'op.create_table("t9001", sa.Column("x", sa.Integer))',
                                  'op.drop_table("t9001")')
    r = cli("check", "--env=local", "--json")
    res = json.loads(r.stdout)
    assert r.returncode == 1 and res["ok"] is False and res["pending"] == ["9001"] and res["head"] == "9001"
    assert res["drift"] == [] and res["models"]["checked"] is False
    planted.unlink()

    # orphans: a child row pointing at no parent (loaded with triggers off, as replication-role loads do)
    fk = next(f for f in _fks_with_rows(local_env, s))
    t, col, parent = fk
    local_env.psql(f"SET session_replication_role = replica; UPDATE \"{t}\" SET \"{col}\" = gen_random_uuid() "
                   f"WHERE ctid = (SELECT ctid FROM \"{t}\" WHERE \"{col}\" IS NOT NULL LIMIT 1)")
    r = cli("check", "--env=local", "--json")
    res = json.loads(r.stdout)
    assert r.returncode == 1 and res["ok"] is False and res["drift"] == []
    assert [(o["table"], o["columns"], o["ref_table"], o["orphans"]) for o in res["orphans"]] == [(t, [col], parent, 1)]
    assert "LEFT JOIN" in res["orphans"][0]["query"]
    assert local_env.psql(res["orphans"][0]["query"].replace("c.*", "count(*)")) == "1"  # the query lists them


def test_another_schema_first_on_the_search_path_is_no_drift(local_env, migrations_copy):
    """Only the app's schema (public, the one the migrations own) is compared. A database whose
    search_path puts another schema first (an extension's), holding a table named like an app
    table that foreign keys reference, an index and an enum type named like the app's, reads
    the same: `check` finds no drift, no model difference, no orphan query gone astray; a
    deploy's preflight and post-check pass; the database's search_path is left as it was."""
    db = local_env.dbname
    local_env.run("deploy", yes=True)
    s = live_snapshot(local_env)
    parent = sorted(re.search(r"REFERENCES (\w+)\(", v["definition"]).group(1)
                    for cons in s["constraints"].values() for v in cons.values() if v["kind"] == "foreign key")[0]
    enum = sorted(s["enums"])[0]
    local_env.psql(f'CREATE SCHEMA ext; CREATE TABLE ext."{parent}" (id int PRIMARY KEY, note text);'
                   f' CREATE INDEX ix_ext_note ON ext."{parent}" (note); CREATE TYPE ext."{enum}" AS ENUM (\'x\')')
    local_env.psql(f'ALTER DATABASE "{db}" SET search_path = ext, public')

    r = cli("check", "--env=local", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(r.stdout)
    assert res["ok"] is True and res["drift"] == [] and res["models"] == {"checked": True, "differences": []}
    assert res["orphans"] == [] and res["foreign_keys_checked"] > 0

    rev = mig.head()
    migrations_copy.add("9003", rev, "op.execute('SELECT 1')")
    r = cli("deploy", "--env=local", "--yes", "--json")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rep = json.loads(r.stdout)["report"]
    pre = next(x for x in rep["steps"] if x["step"] == "preflight")
    post = next(x for x in rep["steps"] if x["step"] == "postcheck")
    assert f"schema matches the history at {rev}" in pre["summary"], pre
    assert post["summary"] == "revision 9003, schema matches the history at 9003", post
    assert local_env.psql("SHOW search_path") == "ext, public"


def _fks_with_rows(le, s):
    for t in sorted(s["constraints"]):
        for n, v in sorted(s["constraints"][t].items()):
            m = re.match(r'FOREIGN KEY \((\w+)\) REFERENCES (\w+)\(', v["definition"])
            if v["kind"] == "foreign key" and m and s["tables"][t][m.group(1)]["type"] == "uuid" \
                    and le.psql(f'select count(*) from "{t}" where "{m.group(1)}" is not null') != "0":
                yield t, m.group(1), m.group(2)


def test_a_revision_added_to_the_history_deploys_and_postchecks_without_touching_the_models(local_env, migrations_copy):
    local_env.run("deploy", yes=True)
    s = live_snapshot(local_env)
    table = min(s["tables"])
    start = mig.head()
    migrations_copy.add("9001", start, f'op.add_column("{table}", sa.Column("loyalty_points", sa.Integer, '
                                       'server_default="0", nullable=False))\n'
                                       f'op.create_index("ix_{table}_loyalty_points", "{table}", ["loyalty_points"])',
                        f'op.drop_index("ix_{table}_loyalty_points", "{table}")\nop.drop_column("{table}", "loyalty_points")')
    r = cli("deploy", "--env=local", "--yes", "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)["report"]
    assert [x["revision"] for x in rep["revisions"]] == ["9001"]
    post = next(x for x in rep["steps"] if x["step"] == "postcheck")
    assert post["status"] == "ok" and "schema matches the history at 9001" in post["summary"]
    # the models were not edited: `check` says they lag behind (they serve autogenerate), drift is none
    res = json.loads(cli("check", "--env=local", "--json").stdout)
    assert res["drift"] == [] and res["current"] == "9001"
    assert any("loyalty_points" in d for d in res["models"]["differences"])


def test_plan_shows_accepted_drift_and_records_nothing(local_env):
    local_env.run("deploy", yes=True)
    sql_, kind, name, _ = drift_recipe(live_snapshot(local_env), "index")
    local_env.psql(sql_)
    r = cli("plan", "--env=local")
    assert r.returncode == 2 and f"{kind} {name}" in r.stderr
    r = cli("plan", "--env=local", f"--accept-drift={kind}:{name}", "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)["plan"]
    assert plan["accepting_drift"] == [f"{kind}:{name}"] and [d["name"] for d in plan["drift"]] == [name]
    r = cli("plan", "--env=local", f"--accept-drift={kind}:{name}")
    assert r.returncode == 0 and f"accepting now {kind} {name}" in r.stderr
    assert local_env.psql("select to_regclass('public.vetai_ops_accepted_drift')") == ""  # a plan writes nothing
