"""fix user phone column: rename phone_number -> phone, varchar(15) -> varchar(30), nullable

TypeORM migration (guide #2):
    timestamp: 1749000001000
    class:     FixUserPhoneColumn1749000001000
    folder:    database/migrations  (file 1749000001000-FixUserPhoneColumn.ts)

The entity says ``phone?: string`` (nullable, 30 characters) but InitialDatabaseSchema
created ``phone_number varchar(15) NOT NULL``: numbers with country code and extension
did not fit, and users created through the clinic's invite flow have no phone yet, so
the API stored '' placeholders. The column is renamed, widened and made nullable; ''
becomes NULL. (clients.phone had the same varchar(15) and was forgotten here: it is
widened by FixDatabaseColumns, 0010.)

Revision ID: 0002
Revises: 0001
Create Date: 2025-06-04 01:20:01
"""
from alembic import op
# Reviewed 2025-06: the rename keeps the data and the widening is lossless.
# vetai-ops: allow rename_column users.phone_number, change_column_type users.phone
import sqlalchemy as sa

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column("users", "phone_number", new_column_name="phone")
    op.alter_column(
        "users", "phone",
        existing_type=sa.String(15), type_=sa.String(30), nullable=True,
    )
    op.execute(sa.text("UPDATE users SET phone = NULL WHERE btrim(phone) = ''"))


def downgrade() -> None:
    # back to the old shape: NULL -> '' and numbers cut to the old 15 characters
    op.execute(sa.text("UPDATE users SET phone = '' WHERE phone IS NULL"))
    op.alter_column(
        "users", "phone",
        existing_type=sa.String(30), type_=sa.String(15), nullable=False,
        postgresql_using="left(phone, 15)",
    )
    op.alter_column("users", "phone", new_column_name="phone_number")
