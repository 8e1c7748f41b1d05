"""The backend's TypeORM migration history (the guide's 13 migrations) and its Alembic twin.

Production was built by TypeORM, which records applied migrations in its ``migrations``
table (``id``, ``timestamp`` bigint ms, ``name`` = class name, e.g.
``ConsolidateSchema1750200000000``). Each TypeORM migration corresponds to exactly one
Alembic revision in ``migrations/versions``; ``invoke adopt`` reads the table, maps the
last applied migration with :func:`revision_for_typeorm`, checks the live schema against
that revision and stamps it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class TypeOrmMigration:
    timestamp: int  # ms since epoch, as in TypeORM's migrations.timestamp
    name: str  # class name, as in TypeORM's migrations.name
    revision: str  # the Alembic revision that leaves the schema in the same state
    summary: str


def _m(stem: str, timestamp: int, revision: str, summary: str) -> TypeOrmMigration:
    return TypeOrmMigration(timestamp, f"{stem}{timestamp}", revision, summary)


TYPEORM_MIGRATIONS: list[TypeOrmMigration] = [
    _m("InitialSchema", 1749000000000, "0001", "users, clients, veterinarians, pets, appointments"),
    _m("FixUserPhoneColumn", 1749100000000, "0002", "users.phone_number -> phone varchar(30) nullable"),
    _m("AddPetColumns", 1749200000000, "0003", "microchip, weight_kg, color, sterilized, birth_date, sex"),
    _m("FixAppointments", 1749300000000, "0004", "appointment_status enum, duration_minutes"),
    _m("AlignAppointments", 1749400000000, "0005", "veterinarian_id SET NULL, appointment indexes"),
    _m("AddImageSupport", 1749500000000, "0006", "pets.photo_url, attachments"),
    _m("UpdateAppointmentsAndMedicalRecords", 1749600000000, "0007", "cancellation fields, medical_records"),
    _m("AddPetIdToMedicalRecords", 1749700000000, "0008", "medical_records.pet_id (backfilled)"),
    _m("CreateDiagnosisTable", 1749800000000, "0009", "ai_diagnoses"),
    _m("CreatePrescriptions", 1749900000000, "0010", "prescriptions"),
    _m("CreateVaccinations", 1750000000000, "0011", "vaccinations"),
    _m("CreateNotifications", 1750100000000, "0012", "notifications"),
    _m("ConsolidateSchema", 1750200000000, "0013", "updated_at, unique keys, final indexes"),
]

_BY_NAME = {m.name: i for i, m in enumerate(TYPEORM_MIGRATIONS)}


def typeorm_for_revision(revision: str) -> TypeOrmMigration | None:
    for m in TYPEORM_MIGRATIONS:
        if m.revision == revision:
            return m
    return None


def revision_for_typeorm(names: Iterable[str]) -> str | None:
    """The Alembic revision equivalent to a database where TypeORM applied ``names``.

    ``names`` are the ``name`` values of TypeORM's ``migrations`` table (any order: they are
    placed by their position in the guide). None when nothing was applied. ValueError when
    a name is not one of the guide's migrations, appears twice, or when the applied set is
    not a prefix of the history (a gap means the schema is in no state Alembic knows).
    """
    names = list(names)
    if not names:
        return None
    positions = []
    for name in names:
        if name not in _BY_NAME:
            known = ", ".join(m.name for m in TYPEORM_MIGRATIONS)
            raise ValueError(f"unknown TypeORM migration {name!r}: not one of the guide's migrations ({known})")
        positions.append(_BY_NAME[name])
    dupes = sorted({TYPEORM_MIGRATIONS[p].name for p in positions if positions.count(p) > 1})
    if dupes:
        raise ValueError(f"TypeORM migration(s) recorded more than once: {', '.join(dupes)}")
    positions.sort()
    if positions != list(range(len(positions))):
        missing = [TYPEORM_MIGRATIONS[i].name for i in range(positions[-1]) if i not in positions]
        raise ValueError(
            "applied TypeORM migrations are not a prefix of the guide's history: "
            f"{TYPEORM_MIGRATIONS[positions[-1]].name} is applied but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not"
        )
    return TYPEORM_MIGRATIONS[positions[-1]].revision
