"""Data probes and lock impact, on the local env's real PostgreSQL (issue 14, items 1 and 4).

Each probe kind: a pending revision whose statement the live rows would make fail is
refused before the backup (exit 2, no new backup, the message naming revision, statement,
table/column, row count and example keys); once the rows are fixed the same revision
deploys. Passing revisions undo their schema change in the same revision, so the
post-check's comparison with the models stays green and the deploy really succeeds.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from vetai_ops.errors import GateRefused

ROOT = Path(__file__).resolve().parents[1]
ACK_ALL = "# vetai-ops: allow-destructive"


def backups(le):
    return sorted(p.name for p in (le.backups / "local").glob("*.json"))


def cli(*args):
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=dict(os.environ),
                          capture_output=True, text=True, timeout=300)


def refused(le, match: str, **options) -> str:
    """Deploy; assert a refusal before the backup that changed nothing; return the message."""
    before = backups(le)
    with pytest.raises(GateRefused) as ei:
        le.run("deploy", yes=True, **options)
    assert ei.value.exit_code == 2
    assert re.search(match, ei.value.message), ei.value.message
    assert backups(le) == before  # refused before the backup
    assert le.psql("select version_num from alembic_version") == "0013"
    return ei.value.message


def deployed(le, **options):
    r = le.run("deploy", yes=True, **options)
    assert r["outcome"] == "success", r
    assert le.psql("select version_num from alembic_version") == "0014"
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


ENUM_SETUP = ("create type pet_size as enum ('small', 'medium', 'large', 'giant'); "
              "alter table pets add column size pet_size; update pets set size = 'small'; "
              "update pets set size = 'giant' where name in ('Max', 'Luna')")
ENUM_REVISION = """op.execute("ALTER TYPE pet_size RENAME TO pet_size_old")
op.execute("CREATE TYPE pet_size AS ENUM ('small', 'medium', 'large')")
op.execute("ALTER TABLE pets ALTER COLUMN size TYPE pet_size USING size::text::pet_size")
op.execute("DROP TYPE pet_size_old")
op.drop_column("pets", "size")
op.execute("DROP TYPE pet_size")"""


def test_enum_values_removed_while_still_used(local_env, migrations_copy):
    local_env.run("deploy", yes=True)
    local_env.psql(ENUM_SETUP)
    giants = ids(local_env, "size = 'giant'")
    migrations_copy.add("0014", "0013", ENUM_REVISION, header=ACK_ALL)
    msg = refused(local_env, r"0014: `ALTER TABLE pets ALTER COLUMN size TYPE pet_size USING")
    assert "2 rows of pets(size)" in msg and "not labels of the new enum pet_size (small, medium, large)" in msg
    assert all(f"id={i}" in msg for i in giants)
    local_env.psql("update pets set size = 'large' where size = 'giant'")
    deployed(local_env)


def test_data_lost_by_a_dropped_column_is_counted_in_the_plan(local_env, migrations_copy):
    local_env.run("deploy", yes=True)
    local_env.psql("update pets set color = null where name in ('Kiwi', 'Coco')")
    migrations_copy.add("0014", "0013", 'op.drop_column("pets", "color")',
                        'op.add_column("pets", sa.Column("color", sa.String(40)))')
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
