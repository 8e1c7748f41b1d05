"""The operator's verbs on real PostgreSQL (the embedded local env): backups.verify,
backups.prune, adopt (TypeORM-built DBs), migrations.*, confirmation on protected envs,
--json and --help coverage."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine, pool, text

from procs import cli

from vetai_ops.schema.typeorm import TYPEORM_MIGRATIONS

ROOT = Path(__file__).resolve().parents[1]


def manifest(le, bid) -> dict:
    return json.loads((le.backups / "local" / f"{bid}.json").read_text())


def write_signed(le, m: dict) -> None:
    """Rewrite a manifest as the tool does, signed with the env's key (a fake the operator
    made, not a forgery: test_manifest_trust.py covers those)."""
    from vetai_ops.store.manifest import Manifest
    from vetai_ops.store.factory import make_catalog

    make_catalog(le.env()).write_manifest(Manifest.from_json(m))


def databases(le) -> set[str]:
    return set(le.cluster().psql(f"select datname from pg_database where datname like '{le.dbname}%'").split())


def fingerprint(le) -> str:
    """Revision + schema + data of the live DB (changes if anything but deploy_history changes)."""
    schema = le.psql(
        "select md5(string_agg(table_name || '.' || column_name || ':' || data_type || is_nullable, ','"
        " order by table_name, column_name)) from information_schema.columns"
        " where table_schema = 'public' and table_name <> 'deploy_history'")
    pets = le.psql("select string_agg(id::text || name, ',' order by id) from pets") \
        if le.psql("select to_regclass('public.pets')") else ""
    return f"{_current(le)}|{schema}|{pets}"


# ------------------------------------------------------------------ backups.verify


def test_verify_ok_records_result_and_leaves_live_db_alone(local_env):
    local_env.run("deploy", yes=True)
    bid = local_env.run("backup")["backup_id"]
    live_before = fingerprint(local_env)
    dbs_before = databases(local_env)

    r = cli("backups.verify", f"--to={bid}", "--env=local", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["ok"] and res["id"] == bid
    v = manifest(local_env, bid)["verifications"][-1]
    assert set(v) >= {"at", "ok", "revision", "tables", "rows", "duration_s", "error"}
    assert v["ok"] is True and v["error"] is None
    assert v["revision"] == manifest(local_env, bid)["revision"]
    assert "pets" in v["tables"] and v["rows"]["pets"] == int(local_env.psql("select count(*) from pets")) > 0
    # scratch DB dropped, live DB untouched
    assert databases(local_env) == dbs_before
    assert fingerprint(local_env) == live_before
    # backups.list shows it verified; a second verification is appended
    from vetai_ops.ops.status import list_backups

    assert [b["verified"] for b in list_backups("local") if b["id"] == bid] == [True]
    r = cli("backups.verify", "--to=latest", "--env=local")
    assert r.returncode == 0, r.stderr
    assert "pets" in r.stdout
    assert len(manifest(local_env, bid)["verifications"]) == 2


def test_verify_corrupt_byte_fails_and_records_ok_false(local_env):
    local_env.run("deploy", yes=True)
    bid = local_env.run("backup")["backup_id"]
    m = manifest(local_env, bid)
    dump = local_env.backups / "local" / Path(m["dump_key"]).name
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))
    dbs_before = databases(local_env)

    r = cli("backups.verify", f"--to={bid}", "--env=local")
    assert r.returncode == 4
    assert "Traceback" not in r.stderr and "failed verification" in r.stderr and "sha256" in r.stderr
    v = manifest(local_env, bid)["verifications"][-1]
    assert v["ok"] is False and "corrupt" in v["error"]
    assert databases(local_env) == dbs_before
    from vetai_ops.ops.status import list_backups

    assert [b["verified"] for b in list_backups("local") if b["id"] == bid] == [False]
    r = cli("backups.verify", f"--to={bid}", "--env=local", "--json")
    assert r.returncode == 4 and json.loads(r.stdout)["ok"] is False


# ------------------------------------------------------------------ backups.prune


def _fake_backup(le, real_id: str, bid: str, verified: bool | None = None) -> None:
    """A copy of a real backup under an older id (as if taken back then)."""
    d = le.backups / "local"
    m = manifest(le, real_id)
    shutil.copy(d / Path(m["dump_key"]).name, d / f"{bid}.dump")
    m.update(id=bid, dump_key=f"local/{bid}.dump", log_key=f"local/{bid}.log.jsonl", verifications=[])
    if verified is not None:
        m["verifications"] = [{"at": "2020-01-01T00:00:00Z", "ok": verified, "revision": m["revision"], "tables": [],
                               "rows": {}, "duration_s": 1.0, "error": None}]
    write_signed(le, m)
    (d / f"{bid}.log.jsonl").write_text("{}\n")


def test_prune_keeps_newest_and_last_verified_removes_old_and_incomplete(local_env):
    from vetai_ops.store.manifest import new_id

    local_env.run("deploy", yes=True)  # one pre-deploy backup
    real = local_env.run("backup")["backup_id"]
    # the first deploy restore-tests its backup (its revisions carry acknowledged destructive changes); forget that
    # here so that the old fake 20200102 is the newest verified backup
    forget_verifications(local_env)
    for i, bid in enumerate(["20200101T000000Z", "20200102T000000Z", "20200103T000000Z", "20200104T000000Z"]):
        _fake_backup(local_env, real, bid, verified=True if bid == "20200102T000000Z" else
                     (False if bid == "20200104T000000Z" else None))
    d = local_env.backups / "local"
    (d / "20200105T000000Z.dump").write_bytes(b"PGDMP interrupted")  # incomplete, old
    fresh = new_id(time.time() - 120)  # 2 minutes ago, no manifest yet
    (d / f"{fresh}.dump.partial").write_bytes(b"PGDMP in progress")  # incomplete, may be running
    for bid in ("20200101t000000z", "20200103t000000z", "20200104t000000z"):
        local_env.cluster().psql(f'CREATE DATABASE "{local_env.dbname}_before_{bid}"')
    files_before = sorted(p.name for p in d.iterdir())

    r = cli("backups.prune", "--keep-last=2", "--keep-days=7", "--env=local", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["dry_run"] is True
    assert sorted(p.name for p in d.iterdir()) == files_before  # dry run deleted nothing
    removed = {(x["kind"], x["name"]) for x in plan["removed"]}
    assert removed == {
        ("backup", "20200101T000000Z"), ("backup", "20200103T000000Z"), ("backup", "20200104T000000Z"),
        ("incomplete", "local/20200105T000000Z.dump"),
        ("database", f"{local_env.dbname}_before_20200101t000000z"),
    }
    kept = {x["name"]: x["reason"] for x in plan["kept"]}
    assert "newest verified" in kept["20200102T000000Z"]  # older than everything kept, but the last verified one
    assert real in kept and f"local/{fresh}.dump.partial" in kept

    r = cli("backups.prune", "--keep-last=2", "--keep-days=7", "--env=local")
    assert r.returncode == 0, r.stderr
    assert "20200101T000000Z" in r.stdout  # the table of what was removed
    names = {p.name for p in d.iterdir()}
    for bid in ("20200101T000000Z", "20200103T000000Z", "20200104T000000Z"):
        assert not any(n.startswith(bid) for n in names), bid
    assert {"20200102T000000Z.json", "20200102T000000Z.dump", f"{real}.json", f"{real}.dump",
            f"{fresh}.dump.partial"} <= names
    assert "20200105T000000Z.dump" not in names
    dbs = databases(local_env)
    assert f"{local_env.dbname}_before_20200101t000000z" not in dbs
    assert {f"{local_env.dbname}_before_20200103t000000z", f"{local_env.dbname}_before_20200104t000000z"} <= dbs
    from vetai_ops.ops.status import list_backups

    assert len(list_backups("local")) == 3


def test_rollback_keeps_the_journal_and_stamps_the_retired_database_for_prune(local_env):
    """After a rollback the live DB is the backup's copy: the runs made since that backup are
    carried over from the retired DB, and prune ages retired DBs by the stamped retirement
    time (not by the id in their name), including the `_<n>` names of repeated restores."""
    local_env.run("deploy", yes=True, target="0012")
    bid = local_env.run("backup")["backup_id"]
    later = local_env.run("deploy", yes=True)["run_id"]  # a run made after the backup: 0012 -> 0013
    rb = local_env.run("rollback", to=bid, yes=True)["run_id"]
    r = cli("history", "--env=local", "--json")
    runs = [h["run_id"] for h in json.loads(r.stdout)]
    assert runs[0] == rb and later in runs  # newest first; the later run survived the swap
    retired = f"{local_env.dbname}_before_{bid.lower()}"
    assert local_env.psql(f"select shobj_description(oid, 'pg_database') from pg_database where datname = '{retired}'") \
        .startswith("vetai-ops retired ")
    c = local_env.cluster()
    old, young = (f"{local_env.dbname}_before_20200101t000000z_2", f"{local_env.dbname}_before_20200101t000000z_3")
    for name, when in ((old, "2020-01-02T00:00:00Z"), (young, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))):
        c.psql(f'CREATE DATABASE "{name}"')
        c.psql(f"COMMENT ON DATABASE \"{name}\" IS 'vetai-ops retired {when} (replaced by backup 20200101T000000Z)'")
    r = cli("backups.prune", "--keep-last=1", "--keep-days=7", "--env=local", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert {x["name"] for x in res["removed"] if x["kind"] == "database"} == {old}
    assert {young, retired} <= {x["name"] for x in res["kept"] if x["kind"] == "database"}
    assert old not in databases(local_env) and young in databases(local_env)


def test_prune_refuses_keep_last_zero(local_env):
    r = cli("backups.prune", "--keep-last=0", "--env=local")
    assert r.returncode == 1 and "at least one backup" in r.stderr and "Traceback" not in r.stderr


# ------------------------------------------------------------------ adopt


def _typeorm_built(le, upto: int, table: str = "migrations", rows: list[tuple[int, str]] | None = None) -> None:
    """A DB as TypeORM would have left it after the guide's first ``upto`` migrations: the
    history run to that revision, and TypeORM's journal (id serial, timestamp bigint, name
    varchar) in ``table`` holding ``rows`` (default: the guide's exact names and timestamps)."""
    from psycopg import sql

    from vetai_ops.database import migrations as mig

    eng = create_engine(le.cluster().url(le.dbname), poolclass=pool.NullPool)
    with eng.connect() as conn:
        mig.upgrade(conn, TYPEORM_MIGRATIONS[upto - 1].revision)
        conn.commit()
    ident = sql.Identifier(table).as_string()
    with eng.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
        conn.execute(text(f'CREATE TABLE {ident} ("id" SERIAL NOT NULL, "timestamp" bigint NOT NULL, '
                          '"name" character varying NOT NULL, CONSTRAINT "PK_8c82d7f526340ab734260ea46be" PRIMARY KEY ("id"))'))
        for ts, name in rows if rows is not None else [(m.timestamp, m.name) for m in TYPEORM_MIGRATIONS[:upto]]:
            conn.execute(text(f'INSERT INTO {ident} ("timestamp", name) VALUES (:t, :n)'), {"t": ts, "n": name})
    eng.dispose()


def _current(le) -> str:
    return le.psql("select coalesce((select version_num from alembic_version), 'none')") \
        if le.psql("select to_regclass('public.alembic_version')") else "no table"


def test_adopt_at_13th_then_deploy_has_nothing_pending(local_env):
    from vetai_ops.database import migrations as mig

    _typeorm_built(local_env, 13)
    local_env.psql("INSERT INTO users (email, password_hash, full_name, role) "
                   "VALUES ('vet@example.com', 'x', 'Ana García', 'veterinarian')")
    r = cli("adopt", "--env=local", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["ok"] and res["stamped"] == "0013" and res["typeorm_last"] == "ConsolidateSchema1750200000000"
    assert res["differences"] == [] and res["pending"] == []
    assert _current(local_env) == "0013" == mig.head()
    assert databases(local_env) == {local_env.dbname}  # the reference DB is gone
    # the adopted revisions' file hashes are recorded (Flyway-style checks work from now on)
    assert int(local_env.psql("select count(*) from vetai_ops_applied")) == 13
    rep = local_env.run("deploy", yes=True)
    assert rep["outcome"] == "success" and rep.get("revisions", []) == []
    assert local_env.psql("select count(*) from users") == "1"  # no demo seeds: not a first deploy
    # adopting twice is refused
    r = cli("adopt", "--env=local")
    assert r.returncode == 2 and "already managed by Alembic" in r.stderr


def test_adopt_at_12th_then_deploy_to_head(local_env):
    """TypeORM stopped at CreateDiagnosisTable: adopt stamps 0012, deploy applies ConsolidateSchema."""
    _typeorm_built(local_env, 12)
    r = cli("adopt", "--env=local")
    assert r.returncode == 0, r.stderr
    assert "0012" in r.stdout and "CreateDiagnosisTable1750120000000" in r.stdout and "1 pending" in r.stdout
    assert _current(local_env) == "0012"
    rep = local_env.run("deploy", yes=True)
    assert rep["outcome"] == "success"
    assert [x["revision"] for x in rep["revisions"]] == ["0013"]
    assert _current(local_env) == "0013"
    assert local_env.psql("select count(*) from information_schema.tables where table_name in "
                          "('prescriptions', 'vaccinations', 'notifications')") == "3"


def test_adopt_mismatch_is_refused_naming_the_difference(local_env):
    _typeorm_built(local_env, 13)
    local_env.psql("ALTER TABLE pets DROP COLUMN microchip")
    before = fingerprint(local_env)
    r = cli("adopt", "--env=local")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "does not match Alembic revision 0013" in r.stderr
    assert "pets.microchip" in r.stderr and "missing in the live database" in r.stderr
    assert _current(local_env) == "no table" and fingerprint(local_env) == before
    assert databases(local_env) == {local_env.dbname}
    r = cli("adopt", "--env=local", "--json")
    out = json.loads(r.stdout)
    assert out["ok"] is False and any("pets.microchip" in d for d in out["report"]["differences"])


def test_adopt_with_a_custom_migrations_table_name_then_deploy(local_env):
    """A backend that set migrationsTableName: --table names it; rows written out of
    timestamp order are ordered as TypeORM orders them; the journal stays out of the
    post-check of later deploys."""
    guide = [(m.timestamp, m.name) for m in TYPEORM_MIGRATIONS]
    _typeorm_built(local_env, 12, table="custom_name", rows=list(reversed(guide[:12])))
    r = cli("adopt", "--env=local")
    assert r.returncode == 2 and "no TypeORM 'migrations' table" in r.stderr and "--table" in r.stderr
    assert _current(local_env) == "no table"
    r = cli("adopt", "--env=local", "--table=custom_name", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["stamped"] == "0012" and res["typeorm_table"] == "custom_name"
    assert res["typeorm_last"] == "CreateDiagnosisTable1750120000000" and res["pending"] == ["0013"]
    assert res["typeorm_names"] == [n for _, n in guide[:12]]  # read in timestamp order, not id order
    rep = local_env.run("deploy", yes=True)
    assert rep["outcome"] == "success" and [x["revision"] for x in rep["revisions"]] == ["0013"]
    assert _current(local_env) == "0013"
    assert local_env.psql("select count(*) from custom_name") == "12"  # TypeORM's journal is left as it was


def test_adopt_refuses_a_table_name_that_is_not_an_identifier(local_env):
    _typeorm_built(local_env, 13)
    before = fingerprint(local_env)
    for bad in ('migrations"; DROP TABLE users; --', "1migrations", "public.migrations", "x" * 64):
        r = cli("adopt", "--env=local", f"--table={bad}")
        assert r.returncode == 2 and "is not a table name" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert fingerprint(local_env) == before and _current(local_env) == "no table"


def _refused(le, *names: str) -> dict:
    """adopt exits 2 naming each of ``names`` and changes nothing; returns the --json report."""
    before = fingerprint(le)
    r = cli("adopt", "--env=local")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "nothing changed" in r.stderr
    for n in names:
        assert n in r.stderr, (n, r.stderr)
    r = cli("adopt", "--env=local", "--json")
    assert r.returncode == 2
    out = json.loads(r.stdout)
    assert out["ok"] is False and out["report"]["refused_names"] == list(names)
    assert _current(le) == "no table" and fingerprint(le) == before  # nothing stamped, nothing changed
    assert int(le.psql("select count(*) from pg_tables where tablename = 'vetai_ops_applied'")) == 0
    assert databases(le) == {le.dbname}
    return out


def test_adopt_refuses_unknown_migration_names(local_env):
    local_env.cluster()
    r = cli("adopt", "--env=local")
    assert r.returncode == 2 and "no TypeORM 'migrations' table" in r.stderr
    guide = [(m.timestamp, m.name) for m in TYPEORM_MIGRATIONS]
    # the names this tool used to invent, and one the guide never had
    _typeorm_built(local_env, 5, rows=[(1749000000000, "InitialSchema1749000000000"), *guide[1:5],
                                       (1760000000000, "AddSpaceship1760000000000")])
    out = _refused(local_env, "InitialSchema1749000000000", "AddSpaceship1760000000000")
    assert "unknown TypeORM migrations 'InitialSchema1749000000000', 'AddSpaceship1760000000000'" in out["error"]


def test_adopt_refuses_duplicated_migration_names(local_env):
    guide = [(m.timestamp, m.name) for m in TYPEORM_MIGRATIONS]
    _typeorm_built(local_env, 13, rows=[*guide, guide[6]])
    out = _refused(local_env, "UpdateAppointmentsTable1750032503315")
    assert "more than once" in out["error"]


def test_adopt_refuses_names_that_are_not_a_prefix_of_the_guide(local_env):
    guide = [(m.timestamp, m.name) for m in TYPEORM_MIGRATIONS]
    # FixAppointmentColumnsNew and FixDatabaseColumns never ran, AddPetIdToMedicalRecords did
    _typeorm_built(local_env, 11, rows=[*guide[:8], guide[10]])
    out = _refused(local_env, "AddPetIdToMedicalRecords1750112631639", "FixAppointmentColumnsNew1750036733746",
                   "FixDatabaseColumns1750038234648")
    assert "not a prefix of the guide's order" in out["error"]


def test_adopt_on_a_protected_env_asks_and_is_journaled(local_env):
    """adopt runs as a playbook: the same confirmation as deploy, and a deploy_history row."""
    _typeorm_built(local_env, 13)
    inv = {"VETAI_OPS_INVENTORY": str(_protect(local_env))}
    r = cli("adopt", "--env=local", env_extra=inv)
    assert r.returncode == 2 and "protected" in r.stderr and "--yes" in r.stderr and "Traceback" not in r.stderr
    assert _current(local_env) == "no table"
    r = cli("adopt", "--env=local", "--yes", env_extra=inv)
    assert r.returncode == 0, r.stderr
    assert _current(local_env) == "0013"
    assert local_env.psql("select action || ' ' || outcome || ' ' || to_revision from deploy_history "
                          "order by id desc limit 1") == "adopt success 0013"


# ------------------------------------------------------------------ protected envs, no terminal


def _protect(le) -> Path:
    p = le.root / "protected.yml"
    p.write_text(le.inventory.read_text().replace("  local:\n", "  local:\n    protected: true\n"))
    return p


def forget_verifications(le) -> None:
    for mp in (le.backups / "local").glob("2*.json"):
        mj = json.loads(mp.read_text())
        mj["verifications"] = []
        write_signed(le, mj)


def _on_a_terminal(args: list[str], answer: str, env_extra: dict):
    """Run the CLI with a real pseudo-terminal on stdin and type ``answer``."""
    import pty

    master, slave = pty.openpty()
    try:
        p = subprocess.Popen([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=dict(os.environ, **env_extra),
                             stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        os.close(slave)
        os.write(master, (answer + "\n").encode())
        out, err = p.communicate(timeout=120)
    finally:
        os.close(master)
    return p.returncode, out, err


def test_protected_env_asks_for_its_name_on_a_terminal(local_env):
    local_env.run("deploy", yes=True, target="0012")
    inv = {"VETAI_OPS_INVENTORY": str(_protect(local_env))}
    rc, out, err = _on_a_terminal(["deploy", "--env=local"], "prod", inv)  # the wrong name
    assert rc == 2 and "Type the environment name (local)" in err and "not confirmed" in err
    assert _current(local_env) == "0012"
    rc, out, err = _on_a_terminal(["deploy", "--env=local"], "local", inv)
    assert rc == 0, err
    assert _current(local_env) == "0013"
    # --skip-backup is never allowed there, terminal or not
    r = cli("deploy", "--env=local", "--yes", "--skip-backup", env_extra=inv)
    assert r.returncode == 2 and "cannot be skipped" in r.stderr


def test_protected_env_without_terminal_or_yes_is_refused(local_env):
    local_env.run("deploy", yes=True)
    forget_verifications(local_env)
    bid = local_env.run("backup")["backup_id"]
    local_env.psql("INSERT INTO users (email, password_hash, full_name, role) "
                   "VALUES ('late@example.com', 'x', 'Late Row', 'staff')")
    inv = {"VETAI_OPS_INVENTORY": str(_protect(local_env))}
    before = fingerprint(local_env)
    users = local_env.psql("select count(*) from users")
    files = sorted(p.name for p in (local_env.backups / "local").iterdir())

    r = cli("rollback", f"--to={bid}", "--env=local", env_extra=inv)
    assert r.returncode == 2 and "protected" in r.stderr and "--yes" in r.stderr and "Traceback" not in r.stderr
    r = cli("migrations.downgrade", "--to=0011", "--env=local", env_extra=inv)
    assert r.returncode == 2 and "needs --yes" in r.stderr
    r = cli("migrations.downgrade", "--to=0011", "--env=local", "--dry-run", env_extra=inv)
    assert r.returncode == 0 and "0013" in r.stderr and "dry run" in r.stderr, r.stderr  # shows the plan, stops
    local_env.psql("DELETE FROM alembic_version")  # make a deploy have something to do
    local_env.psql("INSERT INTO alembic_version VALUES ('0013')")
    r = cli("deploy", "--env=local", env_extra=inv)
    assert r.returncode == 2 and "no terminal" in r.stderr
    # prune is a dry run there unless --yes
    r = cli("backups.prune", "--keep-last=1", "--keep-days=0", "--env=local", "--json", env_extra=inv)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["dry_run"] is True and res["removed"] and res["done"] == []

    assert fingerprint(local_env) == before
    assert local_env.psql("select count(*) from users") == users
    assert local_env.psql(f"select count(*) from pg_database where datname like '{local_env.dbname}_%'") == "0"
    assert sorted(p.name for p in (local_env.backups / "local").iterdir()) == files


# ------------------------------------------------------------------ migrations.*


def test_migrations_history_json():
    r = cli("migrations.history", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [x["id"] for x in rows] == [f"{i:04d}" for i in range(13, 0, -1)]
    assert rows[0]["head"] and rows[0]["file"].startswith("0013_") and rows[0]["message"]
    assert rows[-1]["down_revision"] is None and rows[0]["down_revision"] == "0012"


def test_migrations_new_uses_next_readable_id(tmp_path):
    mdir = tmp_path / "migrations"
    shutil.copytree(ROOT / "migrations", mdir, ignore=shutil.ignore_patterns("__pycache__"))
    r = cli("migrations.new", "-m", "add pets allergies", env_extra={"VETAI_OPS_MIGRATIONS": str(mdir)})
    assert r.returncode == 0, r.stderr
    files = sorted(p.name for p in (mdir / "versions").glob("0014_*.py"))
    assert files == ["0014_add_pets_allergies.py"], files
    body = (mdir / "versions" / files[0]).read_text()
    assert 'revision = "0014"' in body.replace("'", '"') and 'down_revision = "0013"' in body.replace("'", '"')
    r = cli("migrations.history", "--json", env_extra={"VETAI_OPS_MIGRATIONS": str(mdir)})
    assert json.loads(r.stdout)[0]["id"] == "0014"
    r = cli("migrations.new", env_extra={"VETAI_OPS_MIGRATIONS": str(mdir)})
    assert r.returncode == 1 and "--message is required" in r.stderr


def test_migrations_downgrade_and_upgrade(local_env):
    local_env.run("deploy", yes=True)
    r = cli("migrations.downgrade", "--to=0011", "--env=local", "--json")
    assert r.returncode == 0, r.stderr
    assert _current(local_env) == "0011"
    assert local_env.psql("select string_agg(revision, ',' order by revision) from vetai_ops_applied") == \
        ",".join(f"{i:04d}" for i in range(1, 12))
    r = cli("migrations.history", "--env=local", "--json")
    rows = {x["id"]: x for x in json.loads(r.stdout)}
    assert rows["0011"]["current"] and rows["0011"]["applied"] and not rows["0012"]["applied"]
    r = cli("migrations.downgrade", "--to=0012", "--env=local")
    assert r.returncode == 2 and "not below" in r.stderr
    r = cli("migrations.upgrade", "--to=0012", "--env=local")
    assert r.returncode == 0, r.stderr
    assert _current(local_env) == "0012"
    r = cli("migrations.upgrade", "--env=local", "--backup")
    assert r.returncode == 0, r.stderr
    assert _current(local_env) == "0013"
    reasons = [json.loads(p.read_text())["reason"] for p in (local_env.backups / "local").glob("*.json")]
    assert "pre-upgrade" in reasons


def test_upgrade_with_an_acknowledged_destructive_revision_verifies_a_backup_first(local_env, migrations_copy):
    """migrations.upgrade takes no backup on an unprotected env, except when a destructive
    revision was acknowledged: then one is taken and restore-tested before it runs."""
    local_env.run("deploy", yes=True)
    migrations_copy.add("0014", "0013", 'op.add_column("pets", sa.Column("tmp_note", sa.String(40)))',
                        'op.drop_column("pets", "tmp_note")  # vetai-ops: allow drop_column pets.tmp_note')
    migrations_copy.add("0015", "0014", 'op.drop_column("pets", "tmp_note")',
                        'op.add_column("pets", sa.Column("tmp_note", sa.String(40)))')
    before = set((local_env.backups / "local").glob("*.json"))
    r = cli("migrations.upgrade", "--env=local", "--allow=drop_column pets.tmp_note", "--json")
    assert r.returncode == 0, r.stderr
    steps = {s["step"]: s for s in json.loads(r.stdout)["report"]["steps"]}
    assert steps["backup"]["status"] == "ok" and steps["verify"]["status"] == "ok"
    assert "restored into a scratch DB" in steps["verify"]["summary"]
    new = set((local_env.backups / "local").glob("*.json")) - before
    assert len(new) == 1 and json.loads(next(iter(new)).read_text())["verifications"][-1]["ok"] is True
    assert _current(local_env) == "0015"


# ------------------------------------------------------------------ the task surface


def test_every_flag_is_documented_and_read_commands_have_json():
    from vetai_ops.cli import ns

    undocumented = []
    for name in ns.task_names:
        t = ns[name]
        for arg in t.get_arguments():
            if not (arg.help or "").strip():
                undocumented.append(f"{name} --{arg.name}")
        assert (t.__doc__ or t.body.__doc__ or "").strip(), name
    assert undocumented == []
    for name in ("status", "backups.list", "history", "plan", "validate", "migrations.history", "backups.verify",
                 "backups.prune", "adopt"):
        assert "json" in [a.name.rstrip("_") for a in ns[name].get_arguments()], name
    # --verbose works on every verb (the error path tells users to re-run with it)
    assert [n for n in ns.task_names if "verbose" not in [a.name for a in ns[n].get_arguments()]] == []
    from vetai_ops.cli import fab

    for t in (fab.dump, fab.restore, fab.health, fab.restart):
        assert "verbose" in [a.name for a in t.get_arguments()], t.name
    r = cli("--help", "backups.verify")
    assert r.returncode == 0 and "--to" in r.stdout and "--json" in r.stdout


def test_schema_compare_names_every_kind_of_difference(pg_cluster):
    """What adopt refuses on, one difference of each kind between a reference at 0013 and a
    live database that drifted from it (real catalogs, the comparison adopt uses)."""
    import uuid as _uuid

    from vetai_ops.database import migrations as mig
    from vetai_ops.database.catalog import compare, snapshot

    names = [f"cmp_{_uuid.uuid4().hex[:8]}" for _ in range(2)]
    engines = []
    try:
        for n in names:
            pg_cluster.psql(f"CREATE DATABASE {n}")
            eng = create_engine(pg_cluster.url(n), poolclass=pool.NullPool)
            engines.append(eng)
            with eng.connect() as conn:
                mig.upgrade(conn, "0013")
                conn.commit()
        with engines[1].begin() as conn:
            for sql in (
                "ALTER TABLE clients ALTER COLUMN phone TYPE varchar(40)",
                "ALTER TABLE clients ALTER COLUMN email SET NOT NULL",
                "ALTER TABLE clients ALTER COLUMN address SET DEFAULT 'unknown'",
                "ALTER TABLE clients DROP CONSTRAINT fk_clients_user_id, ADD CONSTRAINT fk_clients_user_id "
                "FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE",
                "ALTER INDEX ix_clients_email RENAME TO ix_clients_mail",
                "ALTER TYPE appointment_status ADD VALUE 'lost'",
                "CREATE TABLE legacy_notes (id int)",
            ):
                conn.execute(text(sql))
        with engines[0].connect() as a, engines[1].connect() as b:
            diffs = [str(d) for d in compare(snapshot(a), snapshot(b))]
    finally:
        for e in engines:
            e.dispose()
        for n in names:
            pg_cluster.psql(f"DROP DATABASE IF EXISTS {n} WITH (FORCE)")
    text_ = "\n".join(diffs)
    for expected in (
        "column clients.phone: type character varying(40) live, expected character varying(30)",
        "column clients.email: NOT NULL live, expected NULL",
        "column clients.address: default 'unknown'::text live, expected none",
        "constraint clients.fk_clients_user_id: foreign key FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE live",
        "index clients.ix_clients_email: named ix_clients_mail live",
        "enum appointment_status: values",
        "table legacy_notes: in the live database, not in the history",
    ):
        assert expected in text_, (expected, diffs)
    assert len(diffs) == 7, diffs


def test_cli_defaults_and_small_flags(local_env):
    """--env falls back to the inventory's default_env; history --limit; validate --sql shows
    the SQL; sandbox.up / sandbox.down on the env's sandbox; plain output off a terminal."""
    local_env.run("deploy", yes=True)
    local_env.run("backup")
    r = cli("status", "--json")  # no --env
    assert r.returncode == 0 and json.loads(r.stdout)["env"] == "local", r.stderr
    r = cli("history", "--limit=1", "--json")
    assert r.returncode == 0 and len(json.loads(r.stdout)) == 1
    r = cli("history")
    assert r.returncode == 0 and "deploy" in r.stdout and "\x1b[" not in r.stdout + r.stderr  # no ANSI off a tty
    r = cli("validate", "--sql")
    assert r.returncode == 0 and "-- 0001" in r.stdout and "CREATE TABLE users" in r.stdout
    r = cli("sandbox.up", "--env=local")
    assert r.returncode == 0 and "sandbox running" in r.stdout
    r = cli("sandbox.down", "--env=local")
    assert r.returncode == 0 and "stopped" in r.stdout
    r = cli("sandbox.up", "--env=local")  # back up for the rest of the session's tests
    assert r.returncode == 0
    assert local_env.psql("select version_num from alembic_version") == "0013"


def test_tables_are_not_truncated_off_a_terminal(local_env):
    """CI logs and `| tee` get whole backup ids and times, not rich's 80-column ellipses."""
    local_env.run("deploy", yes=True)
    bid = local_env.run("backup")["backup_id"]
    r = cli("backups.list", "--env=local", env_extra={"COLUMNS": ""})
    assert r.returncode == 0 and bid in r.stdout and "…" not in r.stdout
    r = cli("history", "--env=local", env_extra={"COLUMNS": ""})
    assert r.returncode == 0 and "…" not in r.stdout
    deploy_backup = local_env.psql("select backup_id from deploy_history where action = 'deploy' order by id limit 1")
    assert deploy_backup and deploy_backup in r.stdout  # whole ids, not cut


def test_plan_sql_is_printed_verbatim_off_a_terminal():
    """SQL is not rich markup: a regex like [a-z0-9] in a CHECK must come out as written."""
    import io

    from rich.console import Console

    from vetai_ops.cli.render import plan_sql

    buf = io.StringIO()
    sql = "ALTER TABLE users ADD CONSTRAINT ck_email CHECK (email ~ '^[a-z0-9.]+@[a-z]+$');"
    plan_sql(["0014"], {"0014": sql}, Console(file=buf, width=160))
    assert sql in buf.getvalue() and "-- 0014" in buf.getvalue()
