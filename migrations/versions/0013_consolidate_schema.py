"""consolidate schema: the missing tables, updated_at, unique keys, final indexes -- idempotent

TypeORM migration (guide #13):
    timestamp: 1750200000000
    class:     ConsolidateSchema1750200000000
    folder:    database/migrations  (file 1750200000000-ConsolidateSchema.ts)

The guide's "safe consolidation migration": written to run unchanged on production and on
the development databases, where TypeORM ``synchronize`` had already created some of
these objects, so every step checks first (IF NOT EXISTS, or a catalog check for the
constraints PostgreSQL cannot add IF NOT EXISTS). It is the answer the guide gives to
"Column already exists". Nothing is dropped but the index its replacement supersedes.

- prescriptions, vaccinations, notifications: entities added to the app while
  development ran with ``synchronize``; no migration had created them, so production
  lacked them. Created here (IF NOT EXISTS), with their indexes;
- updated_at (timestamptz, default now()) on the tables the app edits; now() is stable,
  so PostgreSQL >= 11 adds the column without rewriting the table;
- users.email: normalised to lower case and made unique (replaces the plain index);
- one client profile and one veterinarian profile per user account;
- pets.microchip unique among chipped pets (partial unique index; '' becomes NULL);
- appointments: (pet_id, scheduled_at) replaces the single-column pet index;
  cancelled_at only on cancelled appointments;
- clients: name and email lookups.

Downgrading drops the three tables: in this history nothing older created them.

Revision ID: 0013
Revises: 0012
Create Date: 2025-06-17 22:40:00
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

UPDATED_AT_TABLES = (
    "users", "clients", "veterinarians", "pets", "appointments",
    "medical_records", "prescriptions", "vaccinations",
)


def _uuid(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, postgresql.UUID(as_uuid=True), nullable=nullable)


def _id() -> sa.Column:
    return sa.Column("id", postgresql.UUID(as_uuid=True), server_default=sa.text("gen_random_uuid()"), nullable=False)


def _created_at() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False)


def upgrade() -> None:
    # the tables no migration had created (IF NOT EXISTS: synchronize made them on dev databases)
    op.create_table(
        "prescriptions",
        _id(),
        _uuid("medical_record_id"),
        _uuid("pet_id"),
        _uuid("veterinarian_id", nullable=True),
        sa.Column("medication", sa.String(150), nullable=False),
        sa.Column("dosage", sa.String(100), nullable=False),
        sa.Column("frequency", sa.String(100), nullable=False),
        sa.Column("duration_days", sa.Integer(), nullable=True),
        sa.Column("instructions", sa.Text(), nullable=True),
        sa.Column("start_date", sa.Date(), server_default=sa.text("CURRENT_DATE"), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_prescriptions"),
        sa.ForeignKeyConstraint(
            ["medical_record_id"], ["medical_records.id"], name="fk_prescriptions_medical_record_id", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["pet_id"], ["pets.id"], name="fk_prescriptions_pet_id", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["veterinarian_id"], ["veterinarians.id"], name="fk_prescriptions_veterinarian_id", ondelete="SET NULL"
        ),
        sa.CheckConstraint("duration_days IS NULL OR duration_days > 0", name="ck_prescriptions_duration_days"),
        if_not_exists=True,
    )
    op.create_index("ix_prescriptions_medical_record_id", "prescriptions", ["medical_record_id"], if_not_exists=True)
    op.create_index("ix_prescriptions_pet_id", "prescriptions", ["pet_id"], if_not_exists=True)

    op.create_table(
        "vaccinations",
        _id(),
        _uuid("pet_id"),
        _uuid("veterinarian_id", nullable=True),
        sa.Column("vaccine_name", sa.String(120), nullable=False),
        sa.Column("batch_number", sa.String(60), nullable=True),
        sa.Column("administered_on", sa.Date(), nullable=False),
        sa.Column("next_due_on", sa.Date(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_vaccinations"),
        sa.ForeignKeyConstraint(["pet_id"], ["pets.id"], name="fk_vaccinations_pet_id", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["veterinarian_id"], ["veterinarians.id"], name="fk_vaccinations_veterinarian_id", ondelete="SET NULL"
        ),
        sa.CheckConstraint(
            "next_due_on IS NULL OR next_due_on > administered_on", name="ck_vaccinations_next_due_after_administered"
        ),
        if_not_exists=True,
    )
    op.create_index("ix_vaccinations_pet_id", "vaccinations", ["pet_id"], if_not_exists=True)
    # reminder job: "which vaccines fall due next week"
    op.create_index("ix_vaccinations_next_due_on", "vaccinations", ["next_due_on"], if_not_exists=True)

    op.create_table(
        "notifications",
        _id(),
        _uuid("user_id"),
        _uuid("appointment_id", nullable=True),
        sa.Column("channel", sa.String(20), server_default=sa.text("'in_app'"), nullable=False),
        sa.Column("type", sa.String(50), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_notifications"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_notifications_user_id", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["appointment_id"], ["appointments.id"], name="fk_notifications_appointment_id", ondelete="CASCADE"
        ),
        sa.CheckConstraint("channel IN ('email', 'sms', 'push', 'in_app')", name="ck_notifications_channel"),
        if_not_exists=True,
    )
    op.create_index("ix_notifications_user_id_created_at", "notifications", ["user_id", "created_at"],
                    if_not_exists=True)
    # the badge counter: unread notifications of a user
    op.create_index("ix_notifications_user_id_unread", "notifications", ["user_id"],
                    postgresql_where=sa.text("read_at IS NULL"), if_not_exists=True)
    # the sender job: due and not sent yet
    op.create_index("ix_notifications_pending", "notifications", ["scheduled_for"],
                    postgresql_where=sa.text("sent_at IS NULL"), if_not_exists=True)
    op.create_index("ix_notifications_appointment_id", "notifications", ["appointment_id"], if_not_exists=True)


    for table in UPDATED_AT_TABLES:
        op.add_column(
            table,
            sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
            if_not_exists=True,
        )

    # constraints have no IF NOT EXISTS in PostgreSQL: each is added only when the catalog lacks it
    op.execute(sa.text("UPDATE users SET email = lower(btrim(email)) WHERE email <> lower(btrim(email))"))
    op.drop_index("ix_users_email", table_name="users", if_exists=True)
    op.execute(sa.text(
        "DO $$ BEGIN "
        "IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'uq_users_email' "
        "AND conrelid = 'public.users'::regclass) THEN "
        "ALTER TABLE users ADD CONSTRAINT uq_users_email UNIQUE (email); "
        "END IF; END $$"
    ))
    op.execute(sa.text(
        "DO $$ BEGIN "
        "IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'uq_clients_user_id' "
        "AND conrelid = 'public.clients'::regclass) THEN "
        "ALTER TABLE clients ADD CONSTRAINT uq_clients_user_id UNIQUE (user_id); "
        "END IF; END $$"
    ))
    op.execute(sa.text(
        "DO $$ BEGIN "
        "IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'uq_veterinarians_user_id' "
        "AND conrelid = 'public.veterinarians'::regclass) THEN "
        "ALTER TABLE veterinarians ADD CONSTRAINT uq_veterinarians_user_id UNIQUE (user_id); "
        "END IF; END $$"
    ))
    op.create_index("ix_clients_last_name_first_name", "clients", ["last_name", "first_name"], if_not_exists=True)
    op.create_index("ix_clients_email", "clients", ["email"], if_not_exists=True)

    op.execute(sa.text("UPDATE pets SET microchip = NULL WHERE btrim(microchip) = ''"))
    op.create_index(
        "uq_pets_microchip", "pets", ["microchip"], unique=True,
        postgresql_where=sa.text("microchip IS NOT NULL"), if_not_exists=True,
    )

    op.drop_index("ix_appointments_pet_id", table_name="appointments", if_exists=True)
    op.create_index("ix_appointments_pet_id_scheduled_at", "appointments", ["pet_id", "scheduled_at"],
                    if_not_exists=True)
    op.execute(sa.text(
        "DO $$ BEGIN "
        "IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'ck_appointments_cancelled_at' "
        "AND conrelid = 'public.appointments'::regclass) THEN "
        "ALTER TABLE appointments ADD CONSTRAINT ck_appointments_cancelled_at "
        "CHECK (cancelled_at IS NULL OR status = 'cancelled'); "
        "END IF; END $$"
    ))


def downgrade() -> None:
    op.drop_constraint("ck_appointments_cancelled_at", "appointments", type_="check")
    op.drop_index("ix_appointments_pet_id_scheduled_at", table_name="appointments")
    op.create_index("ix_appointments_pet_id", "appointments", ["pet_id"])

    op.drop_index("uq_pets_microchip", table_name="pets")

    op.drop_index("ix_clients_email", table_name="clients")
    op.drop_index("ix_clients_last_name_first_name", table_name="clients")
    op.drop_constraint("uq_veterinarians_user_id", "veterinarians", type_="unique")
    op.drop_constraint("uq_clients_user_id", "clients", type_="unique")

    op.drop_constraint("uq_users_email", "users", type_="unique")
    op.create_index("ix_users_email", "users", ["email"])

    for table in reversed(UPDATED_AT_TABLES):
        op.drop_column(table, "updated_at")

    op.drop_table("notifications")
    op.drop_table("vaccinations")
    op.drop_table("prescriptions")
