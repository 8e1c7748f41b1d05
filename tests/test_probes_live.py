"""Data probes and lock impact, on the local env's real PostgreSQL (issue 14, items 1 and 4).

Each probe kind: a pending revision whose statement the live rows would make fail is
refused before the backup (exit 2, no new backup, the message naming revision, statement,
table/column, row count and example keys); once the rows are fixed the same revision
deploys. Passing revisions undo their schema change in the same revision, so the
post-check's comparison with the models stays green and the deploy really succeeds.
"""

from __future__ import annotations

import re

import pytest

from procs import cli

from vetai_ops.errors import GateRefused

ACK_ALL = "# vetai-ops: allow-destructive"


def backups(le):
    return sorted(p.name for p in (le.backups / "local").glob("*.json"))


def refused(le, match: str, at: str = "0013", **options) -> str:
    """Deploy; assert a refusal before the backup that changed nothing (still at ``at``); return the message."""
    before = backups(le)
    with pytest.raises(GateRefused) as ei:
        le.run("deploy", yes=True, **options)
    assert ei.value.exit_code == 2
    assert re.search(match, ei.value.message), ei.value.message
    assert backups(le) == before  # refused before the backup
    assert le.psql("select version_num from alembic_version") == at
    return ei.value.message


def deployed(le, at: str = "0014", **options):
    r = le.run("deploy", yes=True, **options)
    assert r["outcome"] == "success", r
    assert le.psql("select version_num from alembic_version") == at
    return r


def ids(le, where: str) -> list[str]:
    return le.psql(f"select id from pets where {where} order by id").split()


def set_checks(le, **checks):
    body = ", ".join(f"{k}: {v}" for k, v in checks.items())
    le.inventory.write_text(le.inventory.read_text() + f"    checks: {{{body}}}\n")


def test_duplicates_before_a_partial_unique_index(local_env, migrations_copy):
    local_env.run("deploy", yes=True)
    local_env.psql("update pets set name = 'Dup', species = 'cat' where name in ('Luna', 'Michi')")
    dups = ids(local_env, "name = 'Dup'")
    migrations_copy.add("0014", "0013",
                        'op.create_index("uq_pets_name_species", "pets", ["name", "species"], unique=True, '
                        'postgresql_where=sa.text("breed IS NOT NULL"))\n'
                        'op.drop_index("uq_pets_name_species", "pets")')
    msg = refused(local_env, r"0014: `CREATE UNIQUE INDEX uq_pets_name_species ON pets")
    assert "2 rows of pets(name, species)" in msg and "WHERE breed IS NOT NULL" in msg
    assert all(f"id={i}" in msg for i in dups)
    # outside the partial index's WHERE, the duplicate is no duplicate
    local_env.psql(f"update pets set breed = null where id = '{dups[0]}'")
    deployed(local_env)


def test_nulls_before_set_not_null_and_a_new_not_null_column(local_env, migrations_copy):
    local_env.run("deploy", yes=True)
    local_env.psql("update pets set breed = null where name in ('Kiwi', 'Coco', 'Max')")
    nulls = ids(local_env, "breed is null")
    f = migrations_copy.add("0014", "0013", 'op.alter_column("pets", "breed", nullable=False)\n'
                                            'op.alter_column("pets", "breed", nullable=True)')
    msg = refused(local_env, r"0014: `ALTER TABLE pets ALTER COLUMN breed SET NOT NULL` — 3 rows of pets\(breed\)")
    assert "NULL in breed" in msg and all(f"id={i}" in msg for i in nulls)
    f.unlink()
    migrations_copy.add("0014", "0013", 'op.add_column("pets", sa.Column("nick", sa.Text(), nullable=False))\n'
                                        'op.drop_column("pets", "nick")', header=ACK_ALL)
    msg = refused(local_env, r"8 rows of pets: new column nick is NOT NULL without a default")
    f = migrations_copy.path / "versions" / "0014_planted.py"
    f.unlink()
    migrations_copy.add("0014", "0013", 'op.alter_column("pets", "breed", nullable=False)\n'
                                        'op.alter_column("pets", "breed", nullable=True)')
    local_env.psql("update pets set breed = 'mestizo' where breed is null")
    deployed(local_env)


def test_rows_violating_a_new_check(local_env, migrations_copy):
    local_env.run("deploy", yes=True)
    local_env.psql("update pets set name = 'Bartolomeo' where name = 'Toby'")
    bad = ids(local_env, "name = 'Bartolomeo'")
    migrations_copy.add("0014", "0013",
                        'op.create_check_constraint("ck_pets_name_short", "pets", "char_length(name) < 6 OR name = \'x\'")\n'
                        'op.drop_constraint("ck_pets_name_short", "pets", type_="check")')
    msg = refused(local_env, r"0014: `ALTER TABLE pets ADD CONSTRAINT ck_pets_name_short CHECK")
    assert "1 rows of pets(name)" in msg and "violating CHECK ck_pets_name_short" in msg and f"id={bad[0]}" in msg
    local_env.psql("update pets set name = 'Toby' where name = 'Bartolomeo'")
    deployed(local_env)


def test_values_a_type_change_cast_rejects(local_env, migrations_copy):
    local_env.run("deploy", yes=True)
    local_env.psql("update pets set microchip = 'AB-' || name where name in ('Luna', 'Rocky')")
    bad = ids(local_env, "microchip like 'AB-%'")
    migrations_copy.add("0014", "0013",
                        'op.alter_column("pets", "microchip", type_=sa.BigInteger(), postgresql_using="microchip::bigint")\n'
                        'op.alter_column("pets", "microchip", type_=sa.String(15), postgresql_using="microchip::text")',
                        header=ACK_ALL)
    msg = refused(local_env, r"0014: `ALTER TABLE pets ALTER COLUMN microchip TYPE bigint USING")
    # counted one by one (the per-row fallback): exactly the two bad rows, named by key
    assert "2 rows of pets(microchip)" in msg and "cast to bigint rejects" in msg
    assert all(f"id={i}" in msg for i in bad)
    local_env.psql("update pets set microchip = null where microchip like 'AB-%'")
    deployed(local_env)


def test_type_change_without_using_and_no_assignment_cast(local_env, migrations_copy):
    """text -> bigint has no assignment cast: PostgreSQL refuses it whatever the data."""
    local_env.run("deploy", yes=True)
    migrations_copy.add("0014", "0013", 'op.alter_column("pets", "microchip", type_=sa.BigInteger())',
                        header=ACK_ALL)
    refused(local_env, r"0014: .*microchip .*cannot be cast automatically to bigint.*USING")


def test_values_over_a_shortened_varchar(local_env, migrations_copy):
    local_env.run("deploy", yes=True)
    local_env.psql("update pets set species = 'hamster dorado' where name = 'Coco'")
    bad = ids(local_env, "name = 'Coco'")
    migrations_copy.add("0014", "0013", 'op.alter_column("pets", "species", type_=sa.String(10))\n'
                                        'op.alter_column("pets", "species", type_=sa.String(30))', header=ACK_ALL)
    msg = refused(local_env, r"0014: `ALTER TABLE pets ALTER COLUMN species TYPE varchar\(10\)` — 1 rows of pets\(species\)")
    assert "longer than 10 characters" in msg and f"id={bad[0]}" in msg
    local_env.psql("update pets set species = 'rabbit' where name = 'Coco'")
    deployed(local_env)


# the enum and its column come from the history (a revision before the one under test), as an
# operator's would: made by hand they would be drift, refused before any probe runs
ENUM_ADD = """op.execute("CREATE TYPE pet_size AS ENUM ('small', 'medium', 'large', 'giant')")
op.add_column("pets", sa.Column("size", sa.Enum(name="pet_size", create_type=False)))"""
ENUM_ADD_DOWN = """op.drop_column("pets", "size")
op.execute("DROP TYPE pet_size")"""
ENUM_DATA = "update pets set size = 'small'; update pets set size = 'giant' where name in ('Max', 'Luna')"
ENUM_REVISION = """op.execute("ALTER TYPE pet_size RENAME TO pet_size_old")
op.execute("CREATE TYPE pet_size AS ENUM ('small', 'medium', 'large')")
op.execute("ALTER TABLE pets ALTER COLUMN size TYPE pet_size USING size::text::pet_size")
op.execute("DROP TYPE pet_size_old")
op.drop_column("pets", "size")
op.execute("DROP TYPE pet_size")"""


def test_enum_values_removed_while_still_used(local_env, migrations_copy):
    local_env.run("deploy", yes=True)
    migrations_copy.add("0014", "0013", ENUM_ADD, ENUM_ADD_DOWN)
    deployed(local_env)
    local_env.psql(ENUM_DATA)
    giants = ids(local_env, "size = 'giant'")
    migrations_copy.add("0015", "0014", ENUM_REVISION, header=ACK_ALL)
    msg = refused(local_env, r"0015: `ALTER TABLE pets ALTER COLUMN size TYPE pet_size USING", at="0014")
    assert "2 rows of pets(size)" in msg and "not labels of the new enum pet_size (small, medium, large)" in msg
    assert all(f"id={i}" in msg for i in giants)
    local_env.psql("update pets set size = 'large' where size = 'giant'")
    deployed(local_env, at="0015")


def test_data_lost_by_a_dropped_column_is_counted_in_the_plan(local_env, migrations_copy):
    local_env.run("deploy", yes=True)
    local_env.psql("update pets set color = null where name in ('Kiwi', 'Coco')")
    migrations_copy.add("0014", "0013", 'op.drop_column("pets", "color")',
                        'op.add_column("pets", sa.Column("color", sa.String(40)))')
    # not acknowledged: the destructive gate's refusal says what would be lost
    refused(local_env, r"drop_column pets.color, discards 6 non-NULL values \(")
    r = local_env.run("deploy", dry_run=True, allow=["drop_column pets.color"])
    assert r["outcome"] == "stopped"
    loss = [p for p in r["plan"]["probes"] if p["kind"] == "data_loss"]
    assert loss and loss[0]["count"] == 6 and loss[0]["columns"] == ["color"] and not loss[0]["refuses"]
    out = cli("plan", "--env=local", "--allow=drop_column pets.color")
    assert out.returncode == 0, out.stderr
    assert "data loss: DROP COLUMN pets.color discards 6 non-NULL values" in out.stderr + out.stdout


def test_lock_and_rewrite_line_for_a_type_change_on_a_filled_table(local_env, migrations_copy):
    local_env.run("deploy", yes=True)
    migrations_copy.add("0014", "0013", 'op.alter_column("pets", "weight_kg", type_=sa.Float())\n'
                                        'op.alter_column("pets", "name", type_=sa.String(100))', header=ACK_ALL)
    r = local_env.run("deploy", dry_run=True)
    size = int(local_env.psql("select pg_total_relation_size('pets')"))
    imps = {i["statement"].split(" TYPE ")[0]: i for i in r["plan"]["impacts"]}
    weight = imps["ALTER TABLE pets ALTER COLUMN weight_kg"]
    assert weight["lock"] == "ACCESS EXCLUSIVE" and weight["effect"] == "rewrite" and weight["size_bytes"] == size
    name = imps["ALTER TABLE pets ALTER COLUMN name"]  # varchar(80) -> varchar(100): catalog only
    assert name["lock"] == "ACCESS EXCLUSIVE" and name["effect"] == ""
    out = cli("plan", "--env=local")
    assert out.returncode == 0, out.stderr
    text = " ".join((out.stderr + out.stdout).split())
    assert re.search(r"ALTER TABLE pets ALTER COLUMN weight_kg TYPE (double precision|float8)\S* "
                     r"— ACCESS EXCLUSIVE, rewrites \d+\.\d KiB", text), text
    assert "ALTER TABLE pets ALTER COLUMN name TYPE varchar(100) — ACCESS EXCLUSIVE, no rewrite or scan" in text


def test_rewrite_over_max_rewrite_mb_is_refused_unless_acknowledged(local_env, migrations_copy):
    local_env.run("deploy", yes=True)
    set_checks(local_env, max_rewrite_mb=0)
    f = migrations_copy.add("0014", "0013", 'op.alter_column("pets", "weight_kg", type_=sa.Float())\n'
                                            'op.alter_column("pets", "weight_kg", type_=sa.Numeric(6, 2))',
                            header=ACK_ALL)
    msg = refused(local_env, r"rewrite tables over checks.max_rewrite_mb=0 MiB")
    assert "0014: ALTER TABLE pets ALTER COLUMN weight_kg TYPE" in msg and "ACCESS EXCLUSIVE, rewrites" in msg
    r = cli("deploy", "--env=local", "--yes")
    assert r.returncode == 2 and "--allow='rewrite pets'" in r.stderr
    # acknowledged on the command line (the issue's `rewrite:<table>` form) ...
    r = local_env.run("deploy", dry_run=True, allow=["rewrite:pets"])
    assert r["outcome"] == "stopped" and all(i["acknowledged"] for i in r["plan"]["impacts"] if i["effect"] == "rewrite")
    # ... or in the revision file: the deploy runs
    f.write_text(f.read_text().replace(ACK_ALL, ACK_ALL + "\n# vetai-ops: allow rewrite pets"))
    deployed(local_env)


def test_big_table_is_probed_on_a_sample_and_says_so(local_env, migrations_copy):
    local_env.run("deploy", yes=True)
    local_env.psql("analyze pets")  # reltuples = 8, above the threshold set below
    set_checks(local_env, probe_sample_rows=3)
    migrations_copy.add("0014", "0013", 'op.alter_column("pets", "species", nullable=False)')
    r = local_env.run("deploy", dry_run=True)
    probe = next(p for p in r["plan"]["probes"] if p["kind"] == "not_null")
    assert "TABLESAMPLE SYSTEM (37.5%) of ~8 rows (planner estimate) > checks.probe_sample_rows 3" in probe["sampled"]
    out = cli("plan", "--env=local")
    assert out.returncode == 0 and "probe not_null on pets sampled: TABLESAMPLE SYSTEM" in out.stderr + out.stdout


def test_probe_after_a_backfill_in_the_same_revision_is_not_a_refusal(local_env, migrations_copy):
    """An UPDATE before SET NOT NULL changes the rows the probe would read: the probe says it
    was skipped instead of refusing what the revision itself fixes."""
    local_env.run("deploy", yes=True)
    local_env.psql("update pets set breed = null where name = 'Kiwi'")
    migrations_copy.add("0014", "0013", 'op.execute("UPDATE pets SET breed = \'mestizo\' WHERE breed IS NULL")\n'
                                        'op.alter_column("pets", "breed", nullable=False)\n'
                                        'op.alter_column("pets", "breed", nullable=True)')
    r = deployed(local_env)
    assert r["plan"]["probes"][0]["skipped"].startswith("an earlier pending statement changes these rows")


REWRITE_CASES = [
    # (column type before, ALTER TABLE subcommand, PostgreSQL rewrites?)
    ("numeric(6,2)", "ALTER COLUMN c TYPE numeric(8,2)", False),
    ("numeric(6,2)", "ALTER COLUMN c TYPE numeric(5,2)", True),
    ("numeric(6,2)", "ALTER COLUMN c TYPE numeric", False),
    ("numeric(6,2)", "ALTER COLUMN c TYPE double precision", True),
    ("varchar(20)", "ALTER COLUMN c TYPE varchar(40)", False),
    ("varchar(20)", "ALTER COLUMN c TYPE varchar(10)", True),
    ("varchar(20)", "ALTER COLUMN c TYPE text", False),
    ("text", "ALTER COLUMN c TYPE varchar(10)", True),
    ("text", "ALTER COLUMN c TYPE varchar", False),
    ("integer", "ALTER COLUMN c TYPE bigint", True),
    ("varchar(20)", "ALTER COLUMN c TYPE varchar(40) USING c::varchar(40)", False),
    ("varchar(20)", "ALTER COLUMN c TYPE varchar(40) USING upper(c)", True),
    ("timestamp(3)", "ALTER COLUMN c TYPE timestamp(6)", False),
    ("integer", "ADD COLUMN d uuid DEFAULT gen_random_uuid()", True),
    ("integer", "ADD COLUMN d timestamptz DEFAULT now()", False),
    ("integer", "ADD COLUMN d bigserial", True),
    ("integer", "ADD COLUMN d integer NOT NULL DEFAULT 0", False),
]


@pytest.mark.parametrize("before,alter,rewrites", REWRITE_CASES)
def test_rewrite_prediction_matches_postgresql(pg_url, before, alter, rewrites):
    """The plan's 'rewrites' is checked against what PostgreSQL really does: the table's
    relfilenode changes exactly when it is rewritten."""
    from sqlalchemy import create_engine, text

    from vetai_ops.database.probes_live import measure_impacts
    from vetai_ops.validate.locks import statement_impacts

    engine = create_engine(pg_url)
    try:
        with engine.begin() as c:
            c.execute(text(f"CREATE TABLE t (id int PRIMARY KEY, c {before})"))
            c.execute(text("INSERT INTO t (id) SELECT g FROM generate_series(1, 50) g"))
        sql_text = f"ALTER TABLE t {alter};\n"
        with engine.connect() as c:
            imp, = measure_impacts(c, statement_impacts({"r1": sql_text}))
        assert imp.lock == "ACCESS EXCLUSIVE" and imp.size_bytes > 0
        with engine.begin() as c:
            node = c.execute(text("select pg_relation_filenode('t')")).scalar()
            c.exec_driver_sql(sql_text)
            rewritten = c.execute(text("select pg_relation_filenode('t')")).scalar() != node
        assert rewritten is rewrites  # the fixture itself
        assert (imp.effect == "rewrite") is rewrites, imp
    finally:
        engine.dispose()


def test_lock_levels_and_scans_from_the_sql():
    from vetai_ops.validate.locks import statement_impacts

    sql_text = """
    CREATE INDEX CONCURRENTLY ix_a ON pets (name);
    CREATE INDEX ix_b ON pets (name);
    ALTER TABLE pets ADD CONSTRAINT fk FOREIGN KEY (client_id) REFERENCES clients (id) NOT VALID;
    ALTER TABLE pets VALIDATE CONSTRAINT fk;
    ALTER TABLE pets ADD CONSTRAINT ck CHECK (weight_kg > 0) NOT VALID;
    ALTER TABLE pets ADD CONSTRAINT ck2 CHECK (weight_kg > 0);
    ALTER TABLE pets ALTER COLUMN name SET NOT NULL;
    ALTER TABLE pets DROP COLUMN color;
    ALTER TABLE pets SET TABLESPACE pg_default;
    UPDATE pets SET breed = 'x' WHERE breed IS NULL;
    """
    got = [(i.lock, i.effect) for i in statement_impacts({"r": sql_text})]
    assert got == [("SHARE UPDATE EXCLUSIVE", "scan"), ("SHARE", "scan"), ("SHARE ROW EXCLUSIVE", ""),
                   ("SHARE UPDATE EXCLUSIVE", "scan"), ("ACCESS EXCLUSIVE", ""), ("ACCESS EXCLUSIVE", "scan"),
                   ("ACCESS EXCLUSIVE", "scan"), ("ACCESS EXCLUSIVE", ""), ("ACCESS EXCLUSIVE", "rewrite"),
                   ("ROW EXCLUSIVE", "scan")]


def test_probe_answers_on_a_scratch_table(pg_url):
    """The probe kinds the deploy tests above do not plant, answered on real rows."""
    from sqlalchemy import create_engine, text

    from vetai_ops.database.probes import derive_probes
    from vetai_ops.database.probes_live import run_probes

    engine = create_engine(pg_url)
    try:
        with engine.begin() as c:
            c.execute(text("CREATE TABLE t (id int PRIMARY KEY, a int, b int, n numeric(6,2), s text)"))
            c.execute(text("INSERT INTO t VALUES (1, 1, NULL, 10, '5'), (2, 1, NULL, 9999.5, 'x'), "
                           "(3, 2, 7, -1, '7'), (4, 2, 7, 3, NULL)"))
            c.execute(text("CREATE TABLE nokey (a int)"))
            c.execute(text("INSERT INTO nokey VALUES (1), (1)"))
        sql_text = """
        ALTER TABLE t ADD CONSTRAINT uq_ab UNIQUE (a, b);
        ALTER TABLE t ADD CONSTRAINT uq_ab2 UNIQUE NULLS NOT DISTINCT (a, b);
        ALTER TABLE t ADD CONSTRAINT ck_n CHECK (n > 0) NOT VALID;
        ALTER TABLE t VALIDATE CONSTRAINT ck_n;
        ALTER TABLE t ALTER COLUMN n TYPE numeric(4,1);
        ALTER TABLE t ALTER COLUMN s TYPE integer USING s::integer;
        ALTER TABLE nokey ADD PRIMARY KEY (a);
        ALTER TABLE t ADD COLUMN z int, ADD CONSTRAINT ck_z CHECK (z > 0);
        ALTER TABLE t ALTER COLUMN a TYPE date USING a::date;
        """
        probes = run_probes(engine, derive_probes({"r1": sql_text}), sample_rows=1000, timeout="10s",
                            lock_timeout="2s")
        got = {(p.kind, p.statement.split("CONSTRAINT ")[-1].split(" ")[0] if "CONSTRAINT" in p.statement
                else p.columns[0] if p.columns else ""): (p.count, p.examples) for p in probes}
        assert got[("unique", "uq_ab")] == (2, ["id=3", "id=4"])  # NULLs are distinct
        assert got[("unique", "uq_ab2")][0] == 4  # ... unless NULLS NOT DISTINCT
        assert got[("check", "ck_n")] == (1, ["id=3"])  # VALIDATE of a pending NOT VALID check
        assert got[("cast", "n")] == (1, ["id=2"])  # 9999.5 overflows numeric(4,1)
        assert got[("cast", "s")] == (1, ["id=2"])  # 'x' is no integer
        pk = [p for p in probes if p.table == "nokey"]
        assert [(p.kind, p.count, p.examples) for p in pk] == [("unique", 2, ["ctid=(0,1)", "ctid=(0,2)"]),
                                                              ("not_null", 0, [])]
        assert not [p for p in probes if "ck_z" in p.statement and p.kind == "check"]  # new column: no live rows
        to_date = next(p for p in probes if p.kind == "cast" and p.columns == ["a"])  # int -> date: no cast at all
        assert to_date.failed and "PostgreSQL refuses the cast" in to_date.what and to_date.count == 4
    finally:
        engine.dispose()


def test_probes_over_ssh_as_the_unprivileged_deploy_role(remote_env, migrations_copy):
    """Through the SSH tunnel, as the non-superuser deploy role: the per-row cast count (a DO
    block in a READ ONLY transaction) works, the refusal comes before any backup reaches S3,
    and the plan carries the lock line."""
    r = remote_env.cli("deploy", "--env=prod", "--yes")
    assert r.returncode == 0, r.stderr
    remote_env.psql("update pets set microchip = 'AB-' || name where name in ('Luna', 'Rocky')")
    migrations_copy.add("0014", "0013",
                        'op.alter_column("pets", "microchip", type_=sa.BigInteger(), postgresql_using="microchip::bigint")',
                        header=ACK_ALL)
    objects = remote_env.objects()
    r = remote_env.cli("deploy", "--env=prod", "--yes")
    out = " ".join(r.stderr.split())
    assert r.returncode == 2 and "0014: `ALTER TABLE pets ALTER COLUMN microchip TYPE bigint" in out, r.stderr
    assert "2 rows of pets(microchip)" in out and "id=" in out
    assert remote_env.objects() == objects and remote_env.revision() == "0013"
    remote_env.psql("update pets set microchip = null where microchip like 'AB-%'")
    r = remote_env.cli("plan", "--env=prod")
    out = " ".join((r.stderr + r.stdout).split())
    assert r.returncode == 0 and "ALTER TABLE pets ALTER COLUMN microchip TYPE bigint USING CAST(microchip AS bigint) " \
        "— ACCESS EXCLUSIVE, rewrites" in out, out
