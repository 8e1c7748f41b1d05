"""consolidate schema: updated_at columns, unique keys, final indexes and constraints

- updated_at (timestamptz, default now()) on the tables the app edits; now() is stable,
  so PostgreSQL >= 11 adds the column without rewriting the table
- users.email: normalised to lower case and made unique (replaces the plain index)
- one client profile and one veterinarian profile per user account
- pets.microchip unique among chipped pets (partial unique index; '' becomes NULL)
- appointments: (pet_id, scheduled_at) replaces the single-column pet index;
  cancelled_at only on cancelled appointments
- clients: name and email lookups

TypeORM: ConsolidateSchema1750200000000

Revision ID: 0013
Revises: 0012
Create Date: 2025-06-16 00:00:00
"""
from alembic import op
import sqlalchemy as sa

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

UPDATED_AT_TABLES = (
    "users", "clients", "veterinarians", "pets", "appointments",
    "medical_records", "prescriptions", "vaccinations",
)


def upgrade() -> None:
    for table in UPDATED_AT_TABLES:
        op.add_column(
            table,
            sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        )

    op.execute(sa.text("UPDATE users SET email = lower(btrim(email)) WHERE email <> lower(btrim(email))"))
    op.drop_index("ix_users_email", table_name="users")
    op.create_unique_constraint("uq_users_email", "users", ["email"])

    op.create_unique_constraint("uq_clients_user_id", "clients", ["user_id"])
    op.create_unique_constraint("uq_veterinarians_user_id", "veterinarians", ["user_id"])
    op.create_index("ix_clients_last_name_first_name", "clients", ["last_name", "first_name"])
    op.create_index("ix_clients_email", "clients", ["email"])

    op.execute(sa.text("UPDATE pets SET microchip = NULL WHERE btrim(microchip) = ''"))
    op.create_index(
        "uq_pets_microchip", "pets", ["microchip"], unique=True,
        postgresql_where=sa.text("microchip IS NOT NULL"),
    )

    op.drop_index("ix_appointments_pet_id", table_name="appointments")
    op.create_index("ix_appointments_pet_id_scheduled_at", "appointments", ["pet_id", "scheduled_at"])
    op.create_check_constraint(
        "ck_appointments_cancelled_at", "appointments", "cancelled_at IS NULL OR status = 'cancelled'"
    )


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
