"""Database models. Every model shares Flask-AppBuilder's declarative base, so one metadata holds the
security tables (``ab_*``) and ours, and Alembic compares all of them."""

import flask_appbuilder.security.sqla.models  # noqa: F401  (registers the ab_* tables)
from flask_appbuilder import Model

from models.crm import (
    Activity,
    Company,
    Contact,
    Deal,
    DealLine,
    Invoice,
    Lead,
    Pipeline,
    Product,
    SalesPlan,
    Stage,
    Task,
)
from models.dashboards import DashboardLayout
from models.exports import ExportFile, ExportSchedule, ExportScheduleRun, ExportStatus, StoredFileChunk
from models.imports import ImportItem, ImportRun, ImportStatus
from models.mailings import (
    MailAutomation,
    MailAutomationLog,
    Mailing,
    MailOptOut,
    MailRecipient,
    MailTemplate,
)
from models.metadata import Entity, Field, FieldConversion, SchemaChange, SchemaState
from models.records import FieldRule, RecordChange, TableRule
from models.reports import SavedReport, saved_report_role
from models.saved_views import SavedView, saved_view_role
from models.system import AppSetting, JobRun, JobStatus, SeededGrant
from models.teams import Team, team_member

__all__ = [
    "DashboardLayout",
    "ImportItem",
    "ImportRun",
    "ImportStatus",
    "Model",
    "MailAutomation",
    "MailAutomationLog",
    "Mailing",
    "MailOptOut",
    "MailRecipient",
    "MailTemplate",
    "SavedReport",
    "saved_report_role",
    "SavedView",
    "saved_view_role",
    "Activity",
    "AppSetting",
    "Company",
    "Contact",
    "Deal",
    "DealLine",
    "Invoice",
    "SalesPlan",
    "Lead",
    "Pipeline",
    "Product",
    "Stage",
    "Task",
    "Team",
    "team_member",
    "Entity",
    "ExportFile",
    "ExportSchedule",
    "ExportScheduleRun",
    "ExportStatus",
    "Field",
    "FieldConversion",
    "FieldRule",
    "JobRun",
    "JobStatus",
    "RecordChange",
    "SchemaChange",
    "SchemaState",
    "SeededGrant",
    "StoredFileChunk",
    "TableRule",
]
