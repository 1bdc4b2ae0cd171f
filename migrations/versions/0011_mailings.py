"""mailings: e-mail templates, mailings, one recipient row per contact, opt-outs

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 18:40:00.000000

"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "tabula_mail_template",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=False),
        sa.Column("html", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["ab_user.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_tabula_mail_template_owner_id", "tabula_mail_template", ["owner_id"])
    op.create_table(
        "tabula_mailing",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("template_id", sa.Integer(), nullable=True),
        sa.Column("view_id", sa.Integer(), nullable=True),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("sender", sa.String(length=320), nullable=False),
        sa.Column("reply_to", sa.String(length=320), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=False),
        sa.Column("html", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("control_share", sa.Float(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("rate_per_second", sa.Float(), nullable=False),
        sa.Column("rate_per_hour", sa.Integer(), nullable=False),
        sa.Column("conversion", sa.String(length=16), nullable=False),
        sa.Column("conversion_days", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("exclusions", sa.JSON(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["template_id"], ["tabula_mail_template.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["view_id"], ["tabula_saved_view.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["owner_id"], ["ab_user.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_tabula_mailing_template_id", "tabula_mailing", ["template_id"])
    op.create_index("ix_tabula_mailing_view_id", "tabula_mailing", ["view_id"])
    op.create_index("ix_tabula_mailing_owner_id", "tabula_mailing", ["owner_id"])
    op.create_index("ix_tabula_mailing_status", "tabula_mailing", ["status"])
    op.create_table(
        "tabula_mail_recipient",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailing_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claim", sa.String(length=64), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("logged", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["mailing_id"], ["tabula_mailing.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["contact_id"], ["crm_contact.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("mailing_id", "contact_id", name="uq_tabula_mail_recipient_contact"),
    )
    op.create_index(
        "ix_tabula_mail_recipient_mailing_state", "tabula_mail_recipient", ["mailing_id", "state"]
    )
    op.create_index("ix_tabula_mail_recipient_contact_id", "tabula_mail_recipient", ["contact_id"])
    op.create_index("ix_tabula_mail_recipient_claim", "tabula_mail_recipient", ["claim"])
    op.create_table(
        "tabula_mail_opt_out",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("mailing_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["mailing_id"], ["tabula_mailing.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
    )
    op.create_table(
        "tabula_mail_automation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("template_id", sa.Integer(), nullable=True),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("first_after_days", sa.Integer(), nullable=False),
        sa.Column("every_days", sa.Integer(), nullable=False),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["template_id"], ["tabula_mail_template.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["owner_id"], ["ab_user.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind"),
    )
    op.create_index("ix_tabula_mail_automation_template_id", "tabula_mail_automation", ["template_id"])
    op.create_index("ix_tabula_mail_automation_owner_id", "tabula_mail_automation", ["owner_id"])
    op.create_table(
        "tabula_mail_automation_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("automation_id", sa.Integer(), nullable=False),
        sa.Column("record_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.String(length=40), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["automation_id"], ["tabula_mail_automation.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("automation_id", "record_id", "step", name="uq_tabula_mail_automation_log_step"),
    )


def downgrade():
    op.drop_table("tabula_mail_automation_log")
    op.drop_index("ix_tabula_mail_automation_owner_id", table_name="tabula_mail_automation")
    op.drop_index("ix_tabula_mail_automation_template_id", table_name="tabula_mail_automation")
    op.drop_table("tabula_mail_automation")
    op.drop_table("tabula_mail_opt_out")
    op.drop_index("ix_tabula_mail_recipient_claim", table_name="tabula_mail_recipient")
    op.drop_index("ix_tabula_mail_recipient_contact_id", table_name="tabula_mail_recipient")
    op.drop_index("ix_tabula_mail_recipient_mailing_state", table_name="tabula_mail_recipient")
    op.drop_table("tabula_mail_recipient")
    op.drop_index("ix_tabula_mailing_status", table_name="tabula_mailing")
    op.drop_index("ix_tabula_mailing_owner_id", table_name="tabula_mailing")
    op.drop_index("ix_tabula_mailing_view_id", table_name="tabula_mailing")
    op.drop_index("ix_tabula_mailing_template_id", table_name="tabula_mailing")
    op.drop_table("tabula_mailing")
    op.drop_index("ix_tabula_mail_template_owner_id", table_name="tabula_mail_template")
    op.drop_table("tabula_mail_template")
