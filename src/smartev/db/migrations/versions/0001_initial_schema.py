"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-21 10:34:51.092881
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "platform_state",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_platform_state")),
    )
    op.create_table(
        "signal_paths",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signal_paths")),
        sa.UniqueConstraint("path", name=op.f("uq_signal_paths_path")),
    )
    op.create_table(
        "telemetry_history",
        sa.Column("vehicle_id", sa.Integer(), nullable=False),
        sa.Column("signal_id", sa.Integer(), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("value_num", sa.Float(), nullable=True),
        sa.Column("value_text", sa.Text(), nullable=True),
    )
    with op.batch_alter_table("telemetry_history", schema=None) as batch_op:
        batch_op.create_index(
            "ix_telemetry_history_vehicle_signal_ts", ["vehicle_id", "signal_id", "ts"], unique=False
        )

    op.create_table(
        "telemetry_marks",
        sa.Column("vehicle_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("stored_ms", sa.BigInteger(), nullable=False),
        sa.Column("min_ts", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("vehicle_id", "seq", name=op.f("pk_telemetry_marks")),
    )
    with op.batch_alter_table("telemetry_marks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_telemetry_marks_stored_ms"), ["stored_ms"], unique=False)

    op.create_table(
        "twin_values",
        sa.Column("vehicle_id", sa.Integer(), nullable=False),
        sa.Column("signal_id", sa.Integer(), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("value_num", sa.Float(), nullable=True),
        sa.Column("value_text", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("vehicle_id", "signal_id", name=op.f("pk_twin_values")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("token_epoch", sa.Integer(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )
    op.create_table(
        "vehicles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("vin", sa.String(length=17), nullable=False),
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("mqtt_secret_hash", sa.String(length=255), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("last_seen_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name=op.f("fk_vehicles_owner_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vehicles")),
        sa.UniqueConstraint("vin", name=op.f("uq_vehicles_vin")),
    )
    with op.batch_alter_table("vehicles", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_vehicles_owner_id"), ["owner_id"], unique=False)

    op.create_table(
        "commands",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("vehicle_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("args", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name=op.f("fk_commands_created_by_users")),
        sa.ForeignKeyConstraint(
            ["vehicle_id"], ["vehicles.id"], name=op.f("fk_commands_vehicle_id_vehicles")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_commands")),
    )
    with op.batch_alter_table("commands", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_commands_status"), ["status"], unique=False)
        batch_op.create_index("ix_commands_vehicle_created", ["vehicle_id", "created_ms"], unique=False)

    op.create_table(
        "command_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("command_id", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=254), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["command_id"], ["commands.id"], name=op.f("fk_command_events_command_id_commands")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_command_events")),
    )
    with op.batch_alter_table("command_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_command_events_command_id"), ["command_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("command_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_command_events_command_id"))

    op.drop_table("command_events")
    with op.batch_alter_table("commands", schema=None) as batch_op:
        batch_op.drop_index("ix_commands_vehicle_created")
        batch_op.drop_index(batch_op.f("ix_commands_status"))

    op.drop_table("commands")
    with op.batch_alter_table("vehicles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_vehicles_owner_id"))

    op.drop_table("vehicles")
    op.drop_table("users")
    op.drop_table("twin_values")
    with op.batch_alter_table("telemetry_marks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_telemetry_marks_stored_ms"))

    op.drop_table("telemetry_marks")
    with op.batch_alter_table("telemetry_history", schema=None) as batch_op:
        batch_op.drop_index("ix_telemetry_history_vehicle_signal_ts")

    op.drop_table("telemetry_history")
    op.drop_table("signal_paths")
    op.drop_table("platform_state")
