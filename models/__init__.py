"""Database models. Every model shares Flask-AppBuilder's declarative base, so one metadata holds the
security tables (``ab_*``) and ours, and Alembic compares all of them."""

import flask_appbuilder.security.sqla.models  # noqa: F401  (registers the ab_* tables)
from flask_appbuilder import Model

from models.crm import Company, Contact
from models.metadata import Entity, Field, SchemaChange, SchemaState
from models.records import FieldRule, RecordChange, TableRule
from models.system import AppSetting, JobRun, JobStatus, SeededGrant

__all__ = [
    "Model",
    "AppSetting",
    "Company",
    "Contact",
    "Entity",
    "Field",
    "FieldRule",
    "JobRun",
    "JobStatus",
    "RecordChange",
    "SchemaChange",
    "SchemaState",
    "SeededGrant",
    "TableRule",
]
