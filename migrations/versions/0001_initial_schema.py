"""initial schema: users, clients, veterinarians, pets, appointments

TypeORM: InitialSchema1749000000000

Revision ID: 0001
Revises:
Create Date: 2025-06-04 00:00:00
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
        # the guide's first version: short, mandatory, named phone_number (fixed in 0002)
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
        sa.Column("phone", sa.String(30), nullable=True),
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
        # first version: mandatory vet, plain FK (no ON DELETE) -- aligned in 0005
        sa.Column("veterinarian_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=False),
        # first version: free varchar with a CHECK -- turned into an enum in 0004
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
    )


def downgrade() -> None:
    op.drop_table("appointments")
    op.drop_index("ix_pets_client_id", table_name="pets")
    op.drop_table("pets")
    op.drop_table("veterinarians")
    op.drop_table("clients")
    op.drop_index("ix_users_email", table_name="users")
    op.drop_table("users")
