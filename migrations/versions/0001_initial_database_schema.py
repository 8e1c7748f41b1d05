"""initial database schema: users, clients, veterinarians, pets, appointments, medical_records

TypeORM migration (guide #1):
    timestamp: 1749000000000
    class:     InitialDatabaseSchema1749000000000
    folder:    database/migrations  (file 1749000000000-InitialDatabaseSchema.ts)

The backend's first migration: accounts and the two profiles (client, veterinarian),
pets, appointments and the medical record of a visit. Its mistakes are what the next
migrations fix, and they are reproduced here on purpose, so that a database TypeORM left
at this migration is exactly this revision:

- users.phone_number varchar(15) NOT NULL (FixUserPhoneColumn, 0002); clients.phone was
  declared the same varchar(15) and only widened later by FixDatabaseColumns (0010);
- appointments kept the date and the time apart (appointment_date date, appointment_time
  'HH:MM' varchar(5)) until FixAppointmentColumns (0004) merged them into scheduled_at;
  status was a varchar with a CHECK until UpdateAppointmentsTable (0007) made it an enum;
  the veterinarian was mandatory with a plain FK until AlignAppointmentStructure (0005);
- medical_records belonged to an appointment only: the clinical fields came with
  UpdateMedicalRecordsTable (0008), the pet with AddPetIdToMedicalRecords (0011).

prescriptions, vaccinations and notifications are not created here: those entities were
added to the app while development databases ran with TypeORM ``synchronize``, so no
migration created them until ConsolidateSchema (0013) did, with IF NOT EXISTS. attachments
comes with AddImageSupport (0006), ai_diagnoses with CreateDiagnosisTable (0012).

Revision ID: 0001
Revises:
Create Date: 2025-06-04 01:20:00
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _id() -> sa.Column:
    return sa.Column("id", postgresql.UUID(as_uuid=True), server_default=sa.text("gen_random_uuid()"), nullable=False)


def _created_at() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "users",
        _id(),
        sa.Column("email", sa.String(255), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("full_name", sa.String(120), nullable=False),
        sa.Column("phone_number", sa.String(15), nullable=False),
        sa.Column("role", sa.String(20), server_default=sa.text("'client'"), nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.CheckConstraint("role IN ('admin', 'veterinarian', 'staff', 'client')", name="ck_users_role"),
    )
    op.create_index("ix_users_email", "users", ["email"])

    op.create_table(
        "clients",
        _id(),
        sa.Column("user_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("first_name", sa.String(80), nullable=False),
        sa.Column("last_name", sa.String(80), nullable=False),
        sa.Column("email", sa.String(255), nullable=True),
        sa.Column("phone", sa.String(15), nullable=True),
        sa.Column("address", sa.Text(), nullable=True),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_clients"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_clients_user_id", ondelete="SET NULL"),
    )

    op.create_table(
        "veterinarians",
        _id(),
        sa.Column("user_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("first_name", sa.String(80), nullable=False),
        sa.Column("last_name", sa.String(80), nullable=False),
        sa.Column("license_number", sa.String(50), nullable=False),
        sa.Column("specialty", sa.String(100), nullable=True),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_veterinarians"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_veterinarians_user_id", ondelete="SET NULL"),
        sa.UniqueConstraint("license_number", name="uq_veterinarians_license_number"),
    )

    op.create_table(
        "pets",
        _id(),
        sa.Column("client_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("species", sa.String(30), nullable=False),
        sa.Column("breed", sa.String(80), nullable=True),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_pets"),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"], name="fk_pets_client_id", ondelete="CASCADE"),
    )
    op.create_index("ix_pets_client_id", "pets", ["client_id"])

    op.create_table(
        "appointments",
        _id(),
        sa.Column("pet_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("veterinarian_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("appointment_date", sa.Date(), nullable=False),
        sa.Column("appointment_time", sa.String(5), nullable=False),  # 'HH:MM', clinic wall clock (UTC server)
        sa.Column("status", sa.String(20), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_appointments"),
        sa.ForeignKeyConstraint(["pet_id"], ["pets.id"], name="fk_appointments_pet_id", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["veterinarian_id"], ["veterinarians.id"], name="fk_appointments_veterinarian_id"),
        sa.CheckConstraint(
            "status IN ('pending', 'confirmed', 'completed', 'cancelled')", name="ck_appointments_status"
        ),
        sa.CheckConstraint("appointment_time ~ '^[0-2][0-9]:[0-5][0-9]$'", name="ck_appointments_appointment_time"),
    )

    op.create_table(
        "medical_records",
        _id(),
        sa.Column("appointment_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("veterinarian_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("visit_date", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("diagnosis", sa.Text(), nullable=True),
        sa.Column("treatment", sa.Text(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_medical_records"),
        sa.ForeignKeyConstraint(
            ["appointment_id"], ["appointments.id"], name="fk_medical_records_appointment_id", ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["veterinarian_id"], ["veterinarians.id"], name="fk_medical_records_veterinarian_id", ondelete="SET NULL"
        ),
    )


def downgrade() -> None:
    op.drop_table("medical_records")
    op.drop_table("appointments")
    op.drop_index("ix_pets_client_id", table_name="pets")
    op.drop_table("pets")
    op.drop_table("veterinarians")
    op.drop_table("clients")
    op.drop_index("ix_users_email", table_name="users")
    op.drop_table("users")
