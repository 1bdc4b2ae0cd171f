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
    Stage,
    Task,
)
from models.exports import ExportFile, ExportStatus, StoredFileChunk
from models.metadata import Entity, Field, SchemaChange, SchemaState
from models.records import FieldRule, RecordChange, TableRule
from models.system import AppSetting, JobRun, JobStatus, SeededGrant
from models.teams import Team, team_member

__all__ = [
    "Model",
    "Activity",
    "AppSetting",
    "Company",
    "Contact",
    "Deal",
    "DealLine",
    "Invoice",
    "Lead",
    "Pipeline",
    "Product",
    "Stage",
    "Task",
    "Team",
    "team_member",
    "Entity",
    "ExportFile",
    "ExportStatus",
    "Field",
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
