"""SQLAlchemy 2 models of the VetAI Connect schema at Alembic head (revision 0013).

They exist for the deploy post-check: ``alembic.autogenerate.compare_metadata`` against a
database at head must return an empty diff. Every change to ``migrations/versions`` must be
mirrored here (and vice versa) -- ``tests/test_schema.py`` enforces it.

Conventions (the migrations follow the same ones, with explicit names):

- primary keys: ``id uuid DEFAULT gen_random_uuid()`` everywhere (TypeORM's
  ``@PrimaryGeneratedColumn('uuid')``); foreign keys are ``<thing>_id uuid``.
- timestamps: ``timestamptz``; ``created_at``/``updated_at`` default ``now()``
  (``updated_at`` is refreshed by the app / ORM ``onupdate``, there is no trigger).
- constraint / index names: ``pk_<table>``, ``fk_<table>_<column>``,
  ``uq_<table>_<columns>``, ``ix_<table>_<columns>``, ``ck_<table>_<what>``; partial
  indexes carry a descriptive suffix (``ix_notifications_user_id_unread``).
- statuses with a life cycle use a native enum (``appointment_status``); small closed
  vocabularies use ``varchar`` + CHECK (cheaper to extend).
- ON DELETE: owned data cascades from its owner (client -> pets -> appointments,
  records, diagnoses, vaccinations, attachments; user -> notifications); references to
  people who may leave (veterinarians, uploading/requesting users) are SET NULL.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "pk": "pk_%(table_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
}

APPOINTMENT_STATUSES = ("scheduled", "confirmed", "in_progress", "completed", "cancelled", "no_show")
USER_ROLES = ("admin", "veterinarian", "staff", "client")
PET_SEXES = ("male", "female", "unknown")
NOTIFICATION_CHANNELS = ("email", "sms", "push", "in_app")

UUID = postgresql.UUID(as_uuid=True)
TSTZ = sa.DateTime(timezone=True)
JSONB = postgresql.JSONB(astext_type=sa.Text())


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


def _pk() -> Mapped[uuid.UUID]:
    return mapped_column(UUID, primary_key=True, server_default=sa.text("gen_random_uuid()"))


def _fk(target: str, ondelete: str | None = None, *, nullable: bool) -> Mapped[Any]:
    return mapped_column(UUID, sa.ForeignKey(target, ondelete=ondelete), nullable=nullable)


def _created_at() -> Mapped[dt.datetime]:
    return mapped_column(TSTZ, server_default=sa.text("now()"), nullable=False)


def _updated_at() -> Mapped[dt.datetime]:
    return mapped_column(TSTZ, server_default=sa.text("now()"), onupdate=sa.func.now(), nullable=False)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        sa.UniqueConstraint("email", name="uq_users_email"),
        sa.CheckConstraint(_in("role", USER_ROLES), name="ck_users_role"),
    )

    id: Mapped[uuid.UUID] = _pk()
    email: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    password_hash: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    full_name: Mapped[str] = mapped_column(sa.String(120), nullable=False)
    phone: Mapped[str | None] = mapped_column(sa.String(30), nullable=True)
    role: Mapped[str] = mapped_column(sa.String(20), server_default=sa.text("'client'"), nullable=False)
    is_active: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.text("true"), nullable=False)
    created_at: Mapped[dt.datetime] = _created_at()
    updated_at: Mapped[dt.datetime] = _updated_at()


class Client(Base):
    __tablename__ = "clients"
    __table_args__ = (
        sa.UniqueConstraint("user_id", name="uq_clients_user_id"),
        sa.Index("ix_clients_last_name_first_name", "last_name", "first_name"),
        sa.Index("ix_clients_email", "email"),
    )

    id: Mapped[uuid.UUID] = _pk()
    user_id: Mapped[uuid.UUID | None] = _fk("users.id", "SET NULL", nullable=True)
    first_name: Mapped[str] = mapped_column(sa.String(80), nullable=False)
    last_name: Mapped[str] = mapped_column(sa.String(80), nullable=False)
    email: Mapped[str | None] = mapped_column(sa.String(255), nullable=True)
    phone: Mapped[str | None] = mapped_column(sa.String(30), nullable=True)
    address: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    created_at: Mapped[dt.datetime] = _created_at()
    updated_at: Mapped[dt.datetime] = _updated_at()


class Veterinarian(Base):
    __tablename__ = "veterinarians"
    __table_args__ = (
        sa.UniqueConstraint("license_number", name="uq_veterinarians_license_number"),
        sa.UniqueConstraint("user_id", name="uq_veterinarians_user_id"),
    )

    id: Mapped[uuid.UUID] = _pk()
    user_id: Mapped[uuid.UUID | None] = _fk("users.id", "SET NULL", nullable=True)
    first_name: Mapped[str] = mapped_column(sa.String(80), nullable=False)
    last_name: Mapped[str] = mapped_column(sa.String(80), nullable=False)
    license_number: Mapped[str] = mapped_column(sa.String(50), nullable=False)
    specialty: Mapped[str | None] = mapped_column(sa.String(100), nullable=True)
    created_at: Mapped[dt.datetime] = _created_at()
    updated_at: Mapped[dt.datetime] = _updated_at()


class Pet(Base):
    __tablename__ = "pets"
    __table_args__ = (
        sa.Index("ix_pets_client_id", "client_id"),
        sa.Index("uq_pets_microchip", "microchip", unique=True, postgresql_where=sa.text("microchip IS NOT NULL")),
        sa.CheckConstraint("weight_kg IS NULL OR weight_kg > 0", name="ck_pets_weight_kg_positive"),
        sa.CheckConstraint(_in("sex", PET_SEXES), name="ck_pets_sex"),
    )

    id: Mapped[uuid.UUID] = _pk()
    client_id: Mapped[uuid.UUID] = _fk("clients.id", "CASCADE", nullable=False)
    name: Mapped[str] = mapped_column(sa.String(80), nullable=False)
    species: Mapped[str] = mapped_column(sa.String(30), nullable=False)
    breed: Mapped[str | None] = mapped_column(sa.String(80), nullable=True)
    created_at: Mapped[dt.datetime] = _created_at()
    microchip: Mapped[str | None] = mapped_column(sa.String(15), nullable=True)
    weight_kg: Mapped[Decimal | None] = mapped_column(sa.Numeric(6, 2), nullable=True)
    color: Mapped[str | None] = mapped_column(sa.String(40), nullable=True)
    sterilized: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.text("false"), nullable=False)
    birth_date: Mapped[dt.date | None] = mapped_column(sa.Date, nullable=True)
    sex: Mapped[str] = mapped_column(sa.String(10), server_default=sa.text("'unknown'"), nullable=False)
    photo_url: Mapped[str | None] = mapped_column(sa.String(500), nullable=True)
    updated_at: Mapped[dt.datetime] = _updated_at()


class Appointment(Base):
    __tablename__ = "appointments"
    __table_args__ = (
        sa.Index("ix_appointments_pet_id_scheduled_at", "pet_id", "scheduled_at"),
        sa.Index("ix_appointments_veterinarian_id_scheduled_at", "veterinarian_id", "scheduled_at"),
        sa.Index("ix_appointments_scheduled_at", "scheduled_at"),
        sa.CheckConstraint("duration_minutes BETWEEN 5 AND 480", name="ck_appointments_duration_minutes"),
        sa.CheckConstraint("cancelled_at IS NULL OR status = 'cancelled'", name="ck_appointments_cancelled_at"),
    )

    id: Mapped[uuid.UUID] = _pk()
    pet_id: Mapped[uuid.UUID] = _fk("pets.id", "CASCADE", nullable=False)
    veterinarian_id: Mapped[uuid.UUID | None] = _fk("veterinarians.id", "SET NULL", nullable=True)
    scheduled_at: Mapped[dt.datetime] = mapped_column(TSTZ, nullable=False)
    status: Mapped[str] = mapped_column(
        sa.Enum(*APPOINTMENT_STATUSES, name="appointment_status"),
        server_default=sa.text("'scheduled'"), nullable=False,
    )
    reason: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    notes: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    created_at: Mapped[dt.datetime] = _created_at()
    duration_minutes: Mapped[int] = mapped_column(sa.Integer, server_default=sa.text("30"), nullable=False)
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(TSTZ, nullable=True)
    cancellation_reason: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    updated_at: Mapped[dt.datetime] = _updated_at()


class MedicalRecord(Base):
    __tablename__ = "medical_records"
    __table_args__ = (
        sa.Index("ix_medical_records_appointment_id", "appointment_id"),
        sa.Index("ix_medical_records_pet_id_visit_date", "pet_id", "visit_date"),
        sa.CheckConstraint(
            "temperature_c IS NULL OR temperature_c BETWEEN 30 AND 45", name="ck_medical_records_temperature_c"
        ),
    )

    id: Mapped[uuid.UUID] = _pk()
    appointment_id: Mapped[uuid.UUID | None] = _fk("appointments.id", "SET NULL", nullable=True)
    veterinarian_id: Mapped[uuid.UUID | None] = _fk("veterinarians.id", "SET NULL", nullable=True)
    visit_date: Mapped[dt.datetime] = mapped_column(TSTZ, server_default=sa.text("now()"), nullable=False)
    chief_complaint: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    findings: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    diagnosis: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    treatment: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    notes: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    weight_kg: Mapped[Decimal | None] = mapped_column(sa.Numeric(6, 2), nullable=True)
    temperature_c: Mapped[Decimal | None] = mapped_column(sa.Numeric(4, 1), nullable=True)
    created_at: Mapped[dt.datetime] = _created_at()
    pet_id: Mapped[uuid.UUID] = _fk("pets.id", "CASCADE", nullable=False)
    updated_at: Mapped[dt.datetime] = _updated_at()


class Attachment(Base):
    __tablename__ = "attachments"
    __table_args__ = (
        sa.UniqueConstraint("storage_key", name="uq_attachments_storage_key"),
        sa.Index("ix_attachments_pet_id", "pet_id"),
        sa.Index("ix_attachments_appointment_id", "appointment_id"),
        sa.Index("ix_attachments_medical_record_id", "medical_record_id"),
        sa.CheckConstraint("size_bytes >= 0", name="ck_attachments_size_bytes"),
    )

    id: Mapped[uuid.UUID] = _pk()
    pet_id: Mapped[uuid.UUID] = _fk("pets.id", "CASCADE", nullable=False)
    appointment_id: Mapped[uuid.UUID | None] = _fk("appointments.id", "SET NULL", nullable=True)
    uploaded_by_id: Mapped[uuid.UUID | None] = _fk("users.id", "SET NULL", nullable=True)
    file_name: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    content_type: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    storage_key: Mapped[str] = mapped_column(sa.String(500), nullable=False)
    created_at: Mapped[dt.datetime] = _created_at()
    medical_record_id: Mapped[uuid.UUID | None] = _fk("medical_records.id", "CASCADE", nullable=True)


class AIDiagnosis(Base):
    __tablename__ = "ai_diagnoses"
    __table_args__ = (
        sa.Index("ix_ai_diagnoses_pet_id_created_at", "pet_id", "created_at"),
        sa.Index("ix_ai_diagnoses_appointment_id", "appointment_id"),
        sa.CheckConstraint("confidence >= 0 AND confidence <= 1", name="ck_ai_diagnoses_confidence"),
    )

    id: Mapped[uuid.UUID] = _pk()
    pet_id: Mapped[uuid.UUID] = _fk("pets.id", "CASCADE", nullable=False)
    appointment_id: Mapped[uuid.UUID | None] = _fk("appointments.id", "SET NULL", nullable=True)
    requested_by_id: Mapped[uuid.UUID | None] = _fk("users.id", "SET NULL", nullable=True)
    model: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    model_version: Mapped[str | None] = mapped_column(sa.String(50), nullable=True)
    symptoms: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    confidence: Mapped[Decimal] = mapped_column(sa.Numeric(5, 4), nullable=False)
    result: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=sa.text("'{}'::jsonb"), nullable=False)
    reviewed: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.text("false"), nullable=False)
    created_at: Mapped[dt.datetime] = _created_at()


class Prescription(Base):
    __tablename__ = "prescriptions"
    __table_args__ = (
        sa.Index("ix_prescriptions_medical_record_id", "medical_record_id"),
        sa.Index("ix_prescriptions_pet_id", "pet_id"),
        sa.CheckConstraint("duration_days IS NULL OR duration_days > 0", name="ck_prescriptions_duration_days"),
    )

    id: Mapped[uuid.UUID] = _pk()
    medical_record_id: Mapped[uuid.UUID] = _fk("medical_records.id", "CASCADE", nullable=False)
    pet_id: Mapped[uuid.UUID] = _fk("pets.id", "CASCADE", nullable=False)
    veterinarian_id: Mapped[uuid.UUID | None] = _fk("veterinarians.id", "SET NULL", nullable=True)
    medication: Mapped[str] = mapped_column(sa.String(150), nullable=False)
    dosage: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    frequency: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    duration_days: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    instructions: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    start_date: Mapped[dt.date] = mapped_column(sa.Date, server_default=sa.text("CURRENT_DATE"), nullable=False)
    created_at: Mapped[dt.datetime] = _created_at()
    updated_at: Mapped[dt.datetime] = _updated_at()


class Vaccination(Base):
    __tablename__ = "vaccinations"
    __table_args__ = (
        sa.Index("ix_vaccinations_pet_id", "pet_id"),
        sa.Index("ix_vaccinations_next_due_on", "next_due_on"),
        sa.CheckConstraint(
            "next_due_on IS NULL OR next_due_on > administered_on", name="ck_vaccinations_next_due_after_administered"
        ),
    )

    id: Mapped[uuid.UUID] = _pk()
    pet_id: Mapped[uuid.UUID] = _fk("pets.id", "CASCADE", nullable=False)
    veterinarian_id: Mapped[uuid.UUID | None] = _fk("veterinarians.id", "SET NULL", nullable=True)
    vaccine_name: Mapped[str] = mapped_column(sa.String(120), nullable=False)
    batch_number: Mapped[str | None] = mapped_column(sa.String(60), nullable=True)
    administered_on: Mapped[dt.date] = mapped_column(sa.Date, nullable=False)
    next_due_on: Mapped[dt.date | None] = mapped_column(sa.Date, nullable=True)
    notes: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    created_at: Mapped[dt.datetime] = _created_at()
    updated_at: Mapped[dt.datetime] = _updated_at()


class Notification(Base):
    __tablename__ = "notifications"
    __table_args__ = (
        sa.Index("ix_notifications_user_id_created_at", "user_id", "created_at"),
        sa.Index("ix_notifications_user_id_unread", "user_id", postgresql_where=sa.text("read_at IS NULL")),
        sa.Index("ix_notifications_pending", "scheduled_for", postgresql_where=sa.text("sent_at IS NULL")),
        sa.Index("ix_notifications_appointment_id", "appointment_id"),
        sa.CheckConstraint(_in("channel", NOTIFICATION_CHANNELS), name="ck_notifications_channel"),
    )

    id: Mapped[uuid.UUID] = _pk()
    user_id: Mapped[uuid.UUID] = _fk("users.id", "CASCADE", nullable=False)
    appointment_id: Mapped[uuid.UUID | None] = _fk("appointments.id", "CASCADE", nullable=True)
    channel: Mapped[str] = mapped_column(sa.String(20), server_default=sa.text("'in_app'"), nullable=False)
    type: Mapped[str] = mapped_column(sa.String(50), nullable=False)
    title: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    body: Mapped[str] = mapped_column(sa.Text, nullable=False)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)
    scheduled_for: Mapped[dt.datetime | None] = mapped_column(TSTZ, nullable=True)
    sent_at: Mapped[dt.datetime | None] = mapped_column(TSTZ, nullable=True)
    read_at: Mapped[dt.datetime | None] = mapped_column(TSTZ, nullable=True)
    created_at: Mapped[dt.datetime] = _created_at()


APP_TABLES = tuple(sorted(Base.metadata.tables))
