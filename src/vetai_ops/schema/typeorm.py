"""The backend's TypeORM migration history (the guide's 13 migrations) and its Alembic twin.

Production was built by TypeORM, which records applied migrations in its ``migrations``
table (``id``, ``timestamp`` bigint ms, ``name`` = class name, e.g.
``ConsolidateSchema1750200000000``). The guide (``migration-guide.es.md``, "Orden de
Ejecución Actual") lists the 13 migrations TypeORM ran, from two folders
(``database/migrations`` and ``migrations``), in timestamp order. Each corresponds to
exactly one Alembic revision in ``migrations/versions`` whose docstring names it.
``invoke adopt`` reads the table, orders it by ``timestamp`` as TypeORM does, maps the
exact names with :func:`revision_for_typeorm`, checks the live schema against that
revision and stamps it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

DATABASE_MIGRATIONS = "database/migrations"
MIGRATIONS = "migrations"


@dataclass(frozen=True)
class TypeOrmMigration:
    timestamp: int  # ms since epoch, as in TypeORM's migrations.timestamp (and the class name's suffix)
    name: str  # class name, as in TypeORM's migrations.name
    folder: str  # where the .ts file lived: database/migrations or migrations
    revision: str  # the Alembic revision that leaves the schema in the same state
    summary: str

    @property
    def file(self) -> str:
        """The TypeScript file, as the guide lists it (``<folder>/<timestamp>-<Class>.ts``)."""
        stem = self.name[: -len(str(self.timestamp))]
        return f"{self.folder}/{self.timestamp}-{stem}.ts"


def _m(stem: str, timestamp: int, folder: str, revision: str, summary: str) -> TypeOrmMigration:
    return TypeOrmMigration(timestamp, f"{stem}{timestamp}", folder, revision, summary)


TYPEORM_MIGRATIONS: list[TypeOrmMigration] = [
    _m("InitialDatabaseSchema", 1749000000000, DATABASE_MIGRATIONS, "0001",
       "users, clients, veterinarians, pets, appointments, medical_records"),
    _m("FixUserPhoneColumn", 1749000001000, DATABASE_MIGRATIONS, "0002",
       "users.phone_number -> phone varchar(30) nullable"),
    _m("AddMissingPetColumns", 1749000002000, DATABASE_MIGRATIONS, "0003",
       "microchip, weight_kg, color, sterilized, birth_date, sex"),
    _m("FixAppointmentColumns", 1749000003000, DATABASE_MIGRATIONS, "0004",
       "appointment_date + appointment_time -> scheduled_at, duration_minutes"),
    _m("AlignAppointmentStructure", 1749000004000, DATABASE_MIGRATIONS, "0005",
       "veterinarian_id optional, SET NULL, appointment indexes"),
    _m("AddImageSupport", 1749000005000, DATABASE_MIGRATIONS, "0006", "pets.photo_url, attachments"),
    _m("UpdateAppointmentsTable", 1750032503315, MIGRATIONS, "0007",
       "appointment_status enum, cancellation fields"),
    _m("UpdateMedicalRecordsTable", 1750033552868, MIGRATIONS, "0008",
       "chief_complaint, findings, weight_kg, temperature_c"),
    _m("FixAppointmentColumnsNew", 1750036733746, MIGRATIONS, "0009",
       "cancelled_at timestamptz, cancellation_reason text"),
    _m("FixDatabaseColumns", 1750038234648, MIGRATIONS, "0010",
       "clients.phone varchar(30), medical_records numerics"),
    _m("AddPetIdToMedicalRecords", 1750112631639, MIGRATIONS, "0011", "medical_records.pet_id (backfilled)"),
    _m("CreateDiagnosisTable", 1750120000000, MIGRATIONS, "0012", "ai_diagnoses"),
    _m("ConsolidateSchema", 1750200000000, DATABASE_MIGRATIONS, "0013",
       "prescriptions, vaccinations, notifications, updated_at, unique keys (idempotent)"),
]

_BY_NAME = {m.name: i for i, m in enumerate(TYPEORM_MIGRATIONS)}
_TS_SUFFIX = re.compile(r"(\d{13})$")


class TypeOrmHistoryError(ValueError):
    """TypeORM's table cannot be mapped onto the guide's history; ``names`` are the culprits."""

    def __init__(self, message: str, names: list[str]):
        super().__init__(message)
        self.names = names


def typeorm_for_revision(revision: str) -> TypeOrmMigration | None:
    for m in TYPEORM_MIGRATIONS:
        if m.revision == revision:
            return m
    return None


def _timestamp_of(name: str) -> int:
    """TypeORM's own rule: a migration's timestamp is the last 13 digits of its class name."""
    m = _TS_SUFFIX.search(name)
    return int(m.group(1)) if m else 0


def typeorm_order(rows: Iterable[tuple[int, str] | str]) -> list[tuple[int, str]]:
    """``(timestamp, name)`` pairs sorted as TypeORM sorts migrations: by timestamp.

    A plain name stands for a row whose timestamp TypeORM derived from the name.
    Equal timestamps keep their given order (the table's id order).
    """
    pairs = [(_timestamp_of(r), r) if isinstance(r, str) else (int(r[0]), str(r[1])) for r in rows]
    return sorted(pairs, key=lambda p: p[0])


def revision_for_typeorm(rows: Iterable[tuple[int, str] | str]) -> str | None:
    """The Alembic revision equivalent to a database where TypeORM applied ``rows``.

    ``rows`` are TypeORM's ``migrations`` rows as ``(timestamp, name)`` (or bare names,
    whose timestamp is their 13-digit suffix, as TypeORM derives it). They are ordered
    by timestamp, as TypeORM orders them, and must then be exactly the guide's first N
    migrations. None when nothing was applied. :class:`TypeOrmHistoryError` naming the
    offending names when a name is not one of the guide's (exact match, timestamp
    included), is recorded with another timestamp than its own, appears more than once,
    or when the applied list is not a prefix of the guide's order.
    """
    ordered = typeorm_order(rows)
    if not ordered:
        return None
    names = [n for _, n in ordered]
    unknown = list(dict.fromkeys(n for n in names if n not in _BY_NAME))
    if unknown:
        known = ", ".join(m.name for m in TYPEORM_MIGRATIONS)
        raise TypeOrmHistoryError(
            f"unknown TypeORM migration{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(n) for n in unknown)}: not one of the guide's 13 ({known})", unknown)
    wrong_ts = [(ts, n) for ts, n in ordered if ts != TYPEORM_MIGRATIONS[_BY_NAME[n]].timestamp]
    if wrong_ts:
        raise TypeOrmHistoryError(
            "TypeORM migration(s) recorded with a timestamp that is not theirs: "
            + ", ".join(f"{n!r} has {ts}, expected {TYPEORM_MIGRATIONS[_BY_NAME[n]].timestamp}" for ts, n in wrong_ts),
            list(dict.fromkeys(n for _, n in wrong_ts)))
    dupes = [n for n, k in Counter(names).items() if k > 1]
    if dupes:
        raise TypeOrmHistoryError(
            f"TypeORM migration(s) recorded more than once: {', '.join(repr(n) for n in dupes)}", dupes)
    expected = [m.name for m in TYPEORM_MIGRATIONS[: len(names)]]
    if names != expected:
        last = max(names, key=_BY_NAME.__getitem__)
        missing = [m.name for m in TYPEORM_MIGRATIONS[: _BY_NAME[last]] if m.name not in names]
        raise TypeOrmHistoryError(
            "applied TypeORM migrations are not a prefix of the guide's order: "
            f"{last!r} is applied but {', '.join(repr(n) for n in missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not", [last, *missing])
    return TYPEORM_MIGRATIONS[len(names) - 1].revision
