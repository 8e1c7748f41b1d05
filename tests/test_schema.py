"""The VetAI Connect schema: Alembic history, models == head, seeds, FK behaviour, TypeORM map."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from vetai_ops.schema.seeds import SEED_TABLES, is_empty, seed_demo
from vetai_ops.schema.typeorm import (
    TYPEORM_MIGRATIONS,
    TypeOrmHistoryError,
    revision_for_typeorm,
    typeorm_for_revision,
)

ROOT = Path(__file__).resolve().parents[1]
APP_TABLES = {
    "users", "clients", "veterinarians", "pets", "appointments", "ai_diagnoses", "medical_records",
    "prescriptions", "vaccinations", "attachments", "notifications",
}


def _config(connection=None) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@pytest.fixture
def engine(pg_url):
    eng = sa.create_engine(pg_url)
    yield eng
    eng.dispose()


@pytest.fixture
def conn(engine):
    with engine.connect() as c:
        yield c


def _migrate(conn, fn, target: str) -> None:
    fn(_config(conn), target)
    if conn.in_transaction():
        conn.commit()


def _current(conn) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _tables(conn) -> set[str]:
    return set(sa.inspect(conn).get_table_names()) - {"alembic_version"}


def _diff(conn) -> list:
    """The post-check's own comparison (Alembic compare_metadata against the models)."""
    from vetai_ops.database.migrations import schema_diff

    return schema_diff(conn)


@pytest.fixture
def head_conn(conn):
    _migrate(conn, command.upgrade, "head")
    return conn


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


# --- the history --------------------------------------------------------------------------


# The guide's "Orden de Ejecución Actual", verbatim (migration-guide.es.md): the order TypeORM ran them.
GUIDE_ORDER = """
1. 1749000000000-InitialDatabaseSchema.ts       (database/migrations)
2. 1749000001000-FixUserPhoneColumn.ts          (database/migrations)
3. 1749000002000-AddMissingPetColumns.ts        (database/migrations)
4. 1749000003000-FixAppointmentColumns.ts       (database/migrations)
5. 1749000004000-AlignAppointmentStructure.ts   (database/migrations)
6. 1749000005000-AddImageSupport.ts             (database/migrations)
7. 1750032503315-UpdateAppointmentsTable.ts     (migrations)
8. 1750033552868-UpdateMedicalRecordsTable.ts   (migrations)
9. 1750036733746-FixAppointmentColumnsNew.ts    (migrations)
10. 1750038234648-FixDatabaseColumns.ts         (migrations)
11. 1750112631639-AddPetIdToMedicalRecords.ts   (migrations)
12. 1750120000000-CreateDiagnosisTable.ts       (migrations)
13. 1750200000000-ConsolidateSchema.ts          (database/migrations)
"""


def _guide() -> list[tuple[int, str, str]]:
    """(timestamp, class name, folder) of each line of the guide's list."""
    out = []
    for line in GUIDE_ORDER.strip().splitlines():
        m = re.fullmatch(r"(\d+)\. (\d{13})-(\w+)\.ts\s+\(([\w/]+)\)", line.strip())
        assert m, line
        assert int(m.group(1)) == len(out) + 1
        out.append((int(m.group(2)), f"{m.group(3)}{m.group(2)}", m.group(4)))
    return out


def _chain():
    return list(reversed(list(_script().walk_revisions("base", "heads"))))


def test_history_is_one_linear_chain_of_13_revisions():
    script = _script()
    assert script.get_heads() == ["0013"]
    revs = _chain()
    ids = [r.revision for r in revs]
    assert ids == [f"{i:04d}" for i in range(1, 14)]
    assert [r.down_revision for r in revs] == [None, *ids[:-1]]
    for r in revs:
        assert Path(r.path).name.startswith(f"{r.revision}_")


def test_history_is_the_guides_13_migrations_one_to_one():
    """One revision per guide migration, in the guide's order; each docstring names its
    TypeORM migration (timestamp, class, folder) and typeorm.py maps exactly those."""
    guide = _guide()
    assert [t for t, _, _ in guide] == sorted(t for t, _, _ in guide)  # the guide's order is timestamp order
    revs = _chain()
    assert len(revs) == len(guide) == len(TYPEORM_MIGRATIONS) == 13
    for (ts, cls, folder), rev, m in zip(guide, revs, TYPEORM_MIGRATIONS):
        doc = rev.module.__doc__
        assert re.search(rf"^\s*timestamp:\s*{ts}\s*$", doc, re.M), (rev.revision, cls)
        assert re.search(rf"^\s*class:\s*{cls}\s*$", doc, re.M), (rev.revision, cls)
        assert re.search(rf"^\s*folder:\s*{re.escape(folder)}\s", doc, re.M), (rev.revision, cls)
        assert (m.timestamp, m.name, m.folder, m.revision) == (ts, cls, folder, rev.revision)
        assert m.file == f"{folder}/{ts}-{cls[:-13]}.ts"
        assert typeorm_for_revision(rev.revision) is m
        # the file name follows the class name (InitialDatabaseSchema -> 0001_initial_database_schema.py)
        snake = re.sub(r"(?<!^)(?=[A-Z])", "_", cls[:-13]).lower()
        assert Path(rev.path).name == f"{rev.revision}_{snake}.py"
    # every app table is created by some revision of this history
    created = {t for rev in revs for t in re.findall(r'create_table\(\s*"(\w+)"', Path(rev.path).read_text())}
    assert created == APP_TABLES


def test_upgrade_base_head_base_head(conn):
    _migrate(conn, command.upgrade, "head")
    assert _current(conn) == "0013"
    assert _tables(conn) == APP_TABLES
    _migrate(conn, command.downgrade, "base")
    assert _current(conn) is None
    assert _tables(conn) == set()
    enums = conn.execute(sa.text("SELECT typname FROM pg_type WHERE typtype = 'e'")).scalars().all()
    assert enums == []
    _migrate(conn, command.upgrade, "head")
    assert _current(conn) == "0013"
    assert _tables(conn) == APP_TABLES


def test_models_match_head(head_conn):
    assert _diff(head_conn) == []


def test_models_differ_from_an_older_revision(conn):
    _migrate(conn, command.upgrade, "0012")
    assert _diff(conn) != []  # the check has teeth


def test_every_revision_downgrades_one_step_and_upgrades_again(conn):
    for rev in reversed(list(_script().walk_revisions("base", "heads"))):
        _migrate(conn, command.upgrade, rev.revision)
        _migrate(conn, command.downgrade, "-1")
        assert _current(conn) == rev.down_revision
        _migrate(conn, command.upgrade, rev.revision)
        assert _current(conn) == rev.revision
    assert _diff(conn) == []


def test_offline_sql_renders_the_whole_chain():
    cfg = _config()
    cfg.output_buffer = io.StringIO()
    command.upgrade(cfg, "base:head", sql=True)
    sql = cfg.output_buffer.getvalue()
    assert "CREATE TABLE users" in sql
    assert "CREATE TYPE appointment_status" in sql
    assert "UPDATE alembic_version SET version_num='0013'" in sql
    for rev in _script().walk_revisions("base", "heads"):
        assert f"'{rev.revision}'" in sql  # each revision rendered and stamped

    cfg.output_buffer = io.StringIO()
    command.downgrade(cfg, "head:base", sql=True)
    down = cfg.output_buffer.getvalue()
    assert "DROP TABLE users" in down and "DROP TYPE appointment_status" in down


# --- data-carrying revisions ----------------------------------------------------------------


def test_data_carrying_revisions_keep_existing_rows_up_and_down(conn):
    """Rows written at InitialDatabaseSchema survive the fixes up to 0011 and back."""
    _migrate(conn, command.upgrade, "0001")
    conn.execute(sa.text(
        "INSERT INTO users (email, password_hash, full_name, phone_number) VALUES "
        "('a@x.es', 'h', 'A', ''), ('b@x.es', 'h', 'B', '+34600111222')"
    ))
    conn.execute(sa.text(
        "WITH c AS (INSERT INTO clients (first_name, last_name, phone) VALUES ('C', 'D', '') RETURNING id), "
        "p AS (INSERT INTO pets (client_id, name, species) SELECT id, 'Luna', 'dog' FROM c RETURNING id), "
        "v AS (INSERT INTO veterinarians (first_name, last_name, license_number) VALUES ('V', 'W', 'L1') RETURNING id) "
        "INSERT INTO appointments (pet_id, veterinarian_id, appointment_date, appointment_time, status) "
        "SELECT p.id, v.id, DATE '2025-06-01', '10:30', s FROM p, v, unnest(ARRAY['pending', 'completed']) AS s"
    ))
    conn.execute(sa.text("INSERT INTO medical_records (appointment_id) SELECT id FROM appointments"))
    conn.commit()
    _migrate(conn, command.upgrade, "0008")  # float vitals and a naive cancelled_at, as TypeORM generated them
    conn.execute(sa.text("UPDATE medical_records SET weight_kg = 12.5, temperature_c = 38.5"))
    conn.execute(sa.text("UPDATE appointments SET status = 'cancelled', cancelled_at = '2025-06-02 09:00' "
                         "WHERE status = 'completed'"))
    conn.commit()
    _migrate(conn, command.upgrade, "0011")
    phones = dict(conn.execute(sa.text("SELECT email, phone FROM users")).all())
    assert phones == {"a@x.es": None, "b@x.es": "+34600111222"}
    assert conn.execute(sa.text("SELECT phone FROM clients")).scalar_one() is None
    rows = conn.execute(sa.text(
        "SELECT status::text, scheduled_at = TIMESTAMPTZ '2025-06-01 10:30+00', "
        "cancelled_at = TIMESTAMPTZ '2025-06-02 09:00+00' FROM appointments ORDER BY status")).all()
    assert [tuple(r) for r in rows] == [("cancelled", True, True), ("scheduled", True, None)]
    vitals = conn.execute(sa.text("SELECT DISTINCT weight_kg::text, temperature_c::text FROM medical_records")).all()
    assert [tuple(r) for r in vitals] == [("12.50", "38.5")]
    # medical record backfill: pet_id comes from the appointment
    assert conn.execute(sa.text(
        "SELECT count(*) FROM medical_records mr JOIN appointments a ON a.id = mr.appointment_id "
        "WHERE mr.pet_id = a.pet_id"
    )).scalar_one() == 2
    conn.rollback()
    _migrate(conn, command.downgrade, "0001")
    phones = dict(conn.execute(sa.text("SELECT email, phone_number FROM users")).all())
    assert phones == {"a@x.es": "", "b@x.es": "+34600111222"}
    rows = conn.execute(sa.text(
        "SELECT status, appointment_date::text, appointment_time FROM appointments ORDER BY status")).all()
    assert [tuple(r) for r in rows] == [("cancelled", "2025-06-01", "10:30"), ("pending", "2025-06-01", "10:30")]
    assert conn.execute(sa.text("SELECT count(*) FROM medical_records")).scalar_one() == 2


def test_consolidate_schema_is_idempotent_over_synchronized_tables(conn):
    """ConsolidateSchema (0013) runs over a database where TypeORM ``synchronize`` already
    made some of its objects (the guide's "Column already exists" case)."""
    _migrate(conn, command.upgrade, "0012")
    conn.execute(sa.text("ALTER TABLE users ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now()"))
    conn.execute(sa.text("ALTER TABLE users ADD CONSTRAINT uq_users_email UNIQUE (email)"))
    conn.execute(sa.text("CREATE INDEX ix_clients_email ON clients (email)"))
    conn.commit()
    _migrate(conn, command.upgrade, "0013")
    assert _current(conn) == "0013"
    assert _diff(conn) == []


# --- seeds ----------------------------------------------------------------------------------


def test_seed_demo_inserts_and_is_idempotent(head_conn):
    assert is_empty(head_conn)
    head_conn.rollback()  # no transaction open: seed_demo runs and commits its own
    counts = seed_demo(head_conn)
    assert not head_conn.in_transaction()  # committed by itself
    assert set(counts) == set(SEED_TABLES)
    assert counts["users"] == 3 and counts["veterinarians"] == 2 and counts["clients"] == 5
    assert counts["pets"] == 8 and counts["appointments"] == 10
    assert all(counts[t] > 0 for t in SEED_TABLES)
    for table, n in counts.items():
        assert head_conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one() == n
    assert not is_empty(head_conn)
    with head_conn.engine.connect() as other:  # really committed, not just visible to us
        assert other.execute(sa.text("SELECT count(*) FROM appointments")).scalar_one() == 10
    head_conn.rollback()

    again = seed_demo(head_conn)
    assert again == {t: 0 for t in SEED_TABLES}
    assert head_conn.execute(sa.text("SELECT count(*) FROM pets")).scalar_one() == 8
    assert _diff(head_conn) == []


def test_seed_demo_inside_callers_transaction_rolls_back_with_it(head_conn):
    with head_conn.begin() as tx:
        assert seed_demo(head_conn)["clients"] == 5
        tx.rollback()
    assert is_empty(head_conn)


def test_seeded_database_survives_downgrade_to_base_and_back(head_conn):
    seed_demo(head_conn)
    _migrate(head_conn, command.downgrade, "base")
    _migrate(head_conn, command.upgrade, "head")
    assert _diff(head_conn) == []


# --- foreign key behaviour ------------------------------------------------------------------


def test_deleting_a_client_cascades_to_pets_and_their_history(head_conn):
    seed_demo(head_conn)
    c = head_conn
    client_id = c.execute(sa.text("SELECT id FROM clients WHERE last_name = 'Ruiz'")).scalar_one()
    pet_ids = c.execute(sa.text("SELECT id FROM pets WHERE client_id = :c"), {"c": client_id}).scalars().all()
    assert len(pet_ids) == 2
    before = {t: c.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
              for t in ("appointments", "medical_records", "vaccinations", "users")}
    c.execute(sa.text("DELETE FROM clients WHERE id = :c"), {"c": client_id})
    for table in ("pets",):
        assert c.execute(sa.text(f"SELECT count(*) FROM {table} WHERE client_id = :c"), {"c": client_id}).scalar_one() == 0
    for table in ("appointments", "medical_records", "vaccinations", "ai_diagnoses", "prescriptions", "attachments"):
        left = c.execute(sa.text(f"SELECT count(*) FROM {table} WHERE pet_id = ANY(:p)"), {"p": pet_ids}).scalar_one()
        assert left == 0, table
    assert c.execute(sa.text("SELECT count(*) FROM appointments")).scalar_one() < before["appointments"]
    # the client's login account is not the client: it stays
    assert c.execute(sa.text("SELECT count(*) FROM users")).scalar_one() == before["users"]
    c.rollback()


def test_deleting_a_veterinarian_keeps_appointments_unassigned(head_conn):
    seed_demo(head_conn)
    c = head_conn
    vet_id = c.execute(sa.text("SELECT id FROM veterinarians WHERE last_name = 'Molina'")).scalar_one()
    n = c.execute(sa.text("SELECT count(*) FROM appointments WHERE veterinarian_id = :v"), {"v": vet_id}).scalar_one()
    total = c.execute(sa.text("SELECT count(*) FROM appointments")).scalar_one()
    assert n > 0
    c.execute(sa.text("DELETE FROM veterinarians WHERE id = :v"), {"v": vet_id})
    assert c.execute(sa.text("SELECT count(*) FROM appointments")).scalar_one() == total
    assert c.execute(sa.text("SELECT count(*) FROM appointments WHERE veterinarian_id IS NULL")).scalar_one() == n
    for table in ("medical_records", "prescriptions", "vaccinations"):
        assert c.execute(sa.text(f"SELECT count(*) FROM {table} WHERE veterinarian_id = :v"), {"v": vet_id}).scalar_one() == 0
    c.rollback()


def test_constraints_reject_bad_rows(head_conn):
    seed_demo(head_conn)
    c = head_conn
    pet_id = c.execute(sa.text("SELECT id FROM pets LIMIT 1")).scalar_one()
    bad = [
        ("INSERT INTO ai_diagnoses (pet_id, model, confidence) VALUES (:p, 'm', 1.5)", "ck_ai_diagnoses_confidence"),
        ("UPDATE pets SET microchip = (SELECT microchip FROM pets WHERE microchip IS NOT NULL LIMIT 1) "
         "WHERE microchip IS NULL AND id <> :p", "uq_pets_microchip"),
        ("INSERT INTO users (email, password_hash, full_name) VALUES ('admin@vetai.demo', 'x', 'x')", "uq_users_email"),
        ("UPDATE appointments SET status = 'lost' WHERE pet_id = :p", "appointment_status"),
        ("UPDATE appointments SET duration_minutes = 0 WHERE pet_id = :p", "ck_appointments_duration_minutes"),
    ]
    for sql, name in bad:
        with pytest.raises(sa.exc.DBAPIError) as exc:
            with c.begin_nested():
                c.execute(sa.text(sql), {"p": pet_id})
        assert name in str(exc.value), sql
    # several pets without a microchip are fine (partial unique index)
    assert c.execute(sa.text("SELECT count(*) FROM pets WHERE microchip IS NULL")).scalar_one() >= 2


# --- TypeORM adoption map -------------------------------------------------------------------


def test_typeorm_history_maps_13_migrations_onto_the_alembic_chain():
    assert len(TYPEORM_MIGRATIONS) == 13
    assert TYPEORM_MIGRATIONS[0].name == "InitialDatabaseSchema1749000000000"
    last = TYPEORM_MIGRATIONS[-1]
    assert (last.timestamp, last.name, last.revision) == (1750200000000, "ConsolidateSchema1750200000000", "0013")
    assert last.file == "database/migrations/1750200000000-ConsolidateSchema.ts"
    stamps = [m.timestamp for m in TYPEORM_MIGRATIONS]
    assert stamps == sorted(stamps) and len(set(stamps)) == 13
    assert all(m.name.endswith(str(m.timestamp)) for m in TYPEORM_MIGRATIONS)
    assert [m.revision for m in TYPEORM_MIGRATIONS] == [r.revision for r in _chain()]
    assert typeorm_for_revision("0012").name == "CreateDiagnosisTable1750120000000"
    assert typeorm_for_revision("0009").name == "FixAppointmentColumnsNew1750036733746"
    assert typeorm_for_revision("9999") is None


def test_revision_for_typeorm_prefixes():
    names = [m.name for m in TYPEORM_MIGRATIONS]
    rows = [(m.timestamp, m.name) for m in TYPEORM_MIGRATIONS]
    assert revision_for_typeorm([]) is None
    assert revision_for_typeorm(names[:1]) == "0001"
    assert revision_for_typeorm(names[:8]) == "0008"
    assert revision_for_typeorm(names[:12]) == "0012"
    assert revision_for_typeorm(rows) == "0013"
    # TypeORM orders by timestamp, not by the table's id: rows written in another order map the same
    assert revision_for_typeorm(list(reversed(rows[:5]))) == "0005"


def test_revision_for_typeorm_errors_name_the_offending_migrations():
    names = [m.name for m in TYPEORM_MIGRATIONS]
    with pytest.raises(TypeOrmHistoryError, match="AddLoyaltyPoints1750300000000") as ei:
        revision_for_typeorm([*names, "AddLoyaltyPoints1750300000000"])
    assert ei.value.names == ["AddLoyaltyPoints1750300000000"]
    # the old, invented names are not the guide's
    with pytest.raises(TypeOrmHistoryError, match="InitialSchema1749000000000"):
        revision_for_typeorm(["InitialSchema1749000000000"])
    with pytest.raises(TypeOrmHistoryError, match="not a prefix.*FixUserPhoneColumn1749000001000") as ei:
        revision_for_typeorm([names[0], names[2]])
    assert ei.value.names == [names[2], names[1]]
    with pytest.raises(TypeOrmHistoryError, match="more than once.*InitialDatabaseSchema1749000000000"):
        revision_for_typeorm([names[0], names[0]])
    with pytest.raises(TypeOrmHistoryError, match="timestamp that is not theirs.*ConsolidateSchema"):
        revision_for_typeorm([*[(m.timestamp, m.name) for m in TYPEORM_MIGRATIONS[:12]],
                              (1750200000001, "ConsolidateSchema1750200000000")])


def test_typeorm_mapping_matches_schema_at_each_mapped_revision(conn):
    """The revision a TypeORM DB maps to is a real, reachable state of the chain."""
    names = [m.name for m in TYPEORM_MIGRATIONS]
    _migrate(conn, command.upgrade, revision_for_typeorm(names[:12]))
    assert "ai_diagnoses" in _tables(conn) and "prescriptions" not in _tables(conn)
