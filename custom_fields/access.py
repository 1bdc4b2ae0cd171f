"""Who may do what with which table, field and (later) row: the one place every screen, API, query and
job asks.

The rules (``models.records.TableRule`` / ``FieldRule``) cascade per role: the role's default for every
table, overridden per table action by action, overridden per field (edit, view only, hidden). A user with
several roles gets the most permissive answer. The Admin role may do everything. The rules are metadata:
changing them bumps the schema version, so every process rebuilds its snapshot (``runtime.RuntimeSchema
.access``) and the per-user views generated from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import g, has_request_context
from flask_babel import gettext as _
from sqlalchemy import select

from app.extensions import db
from custom_fields.spec import EntitySpec, FieldSpec
from models.metadata import TABLE_PERMISSION_PREFIX
from models.records import FIELD_MODES, TABLE_ACTIONS, FieldRule, TableRule

ADMIN_ROLE = "Admin"
SOURCES = ("ui", "api", "import", "job")
#: FAB permission names on a table's view-menu -> our actions.
PERMISSION_ACTIONS = {
    "can_read": "read",
    "menu_access": "read",
    "can_add": "add",
    "can_edit": "edit",
    "can_delete": "delete",
}
#: What built-in roles may do on every table until an admin changes it (seeded once).
SEEDED_DEFAULTS = {
    "Manager": dict.fromkeys(TABLE_ACTIONS, True),
    "Staff": {**dict.fromkeys(TABLE_ACTIONS, False), "read": True, "add": True, "edit": True, "delete": True},
}


@dataclass(frozen=True)
class AccessSnapshot:
    """Every rule, as plain data, for one schema version."""

    tables: dict[tuple[int, int | None], dict[str, bool | None]] = field(default_factory=dict)
    fields: dict[tuple[int, int], str] = field(default_factory=dict)
    admin_role_ids: frozenset[int] = frozenset()

    def allowed(self, role_id: int, entity_id: int, action: str) -> bool:
        own = self.tables.get((role_id, entity_id), {}).get(action)
        if own is not None:
            return own
        return bool(self.tables.get((role_id, None), {}).get(action))


def load_snapshot() -> AccessSnapshot:
    from flask_appbuilder.security.sqla.models import Role

    tables = {
        (rule.role_id, rule.entity_id): {a: rule.get(a) for a in TABLE_ACTIONS}
        for rule in db.session.scalars(select(TableRule))
    }
    fields = {(r.role_id, r.field_id): r.mode for r in db.session.scalars(select(FieldRule))}
    admins = frozenset(db.session.scalars(select(Role.id).where(Role.name == ADMIN_ROLE)))
    return AccessSnapshot(tables=tables, fields=fields, admin_role_ids=admins)


# --- who is acting -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Actor:
    """A user (or the system) doing something, and the route: ``ui``, ``api``, ``import`` or ``job``."""

    user_id: int | None
    role_ids: frozenset[int]
    source: str = "ui"
    system: bool = False

    @classmethod
    def of_user(cls, user: Any, source: str = "ui") -> Actor:
        if (
            user is None
            or not getattr(user, "is_authenticated", False)
            or not getattr(user, "is_active", True)
        ):
            return cls(None, frozenset(), source)
        return cls(user.id, frozenset(role.id for role in user.roles), source)

    @classmethod
    def current(cls, source: str = "ui") -> Actor:
        """The signed-in user of this request (browser session or API token)."""
        from flask_login import current_user

        if not has_request_context():
            return cls(None, frozenset(), source)
        if current_user.is_authenticated:
            return cls.of_user(current_user, source)
        # An API token (flask-jwt-extended keeps the user it loaded here once FAB's @protect verified it).
        token_user = (g.get("_jwt_extended_jwt_user") or {}).get("loaded_user")
        return cls.of_user(token_user, source)

    @classmethod
    def for_user_id(cls, user_id: int, source: str = "job") -> Actor:
        """A job acting for the user who started it."""
        from flask_appbuilder.security.sqla.models import User

        return cls.of_user(db.session.get(User, user_id), source)

    @classmethod
    def system_job(cls) -> Actor:
        """Housekeeping that answers to no user (the recycle-bin purge)."""
        return cls(None, frozenset(), "job", system=True)


# --- what they may do --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grants:
    """One actor's rights on one table."""

    entity: EntitySpec
    actions: frozenset[str]
    modes: dict[str, str]  # live field name -> edit | view | hidden
    is_admin: bool = False

    def can(self, action: str) -> bool:
        return action in self.actions

    def mode(self, name: str) -> str:
        return self.modes.get(name, "hidden")

    @property
    def hidden(self) -> frozenset[str]:
        return frozenset(n for n, m in self.modes.items() if m == "hidden")

    @property
    def read_only(self) -> frozenset[str]:
        return frozenset(n for n, m in self.modes.items() if m == "view")

    @property
    def signature(self) -> tuple[frozenset[str], frozenset[str]]:
        """What the generated views depend on: users with the same signature share them."""
        return self.hidden, self.read_only

    @property
    def visible_fields(self) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.entity.live_fields if self.mode(f.name) != "hidden")

    @property
    def editable_fields(self) -> tuple[FieldSpec, ...]:
        """Fields this actor may set: visible, not view-only, not filled in automatically."""
        return tuple(
            f for f in self.entity.live_fields if self.mode(f.name) == "edit" and not f.settings.get("auto")
        )


def is_admin(actor: Actor, snapshot: AccessSnapshot | None = None) -> bool:
    if snapshot is None:
        from custom_fields import runtime

        snapshot = runtime.current().access
    return actor.system or bool(actor.role_ids & snapshot.admin_role_ids)


def grants(actor: Actor, entity: EntitySpec, snapshot: AccessSnapshot | None = None) -> Grants:
    if snapshot is None:
        from custom_fields import runtime

        snapshot = runtime.current().access
    live = entity.live_fields
    if is_admin(actor, snapshot):
        return Grants(entity, frozenset(TABLE_ACTIONS), {f.name: "edit" for f in live}, is_admin=True)
    actions = frozenset(
        a for a in TABLE_ACTIONS if any(snapshot.allowed(r, entity.id, a) for r in actor.role_ids)
    )
    readers = [r for r in actor.role_ids if snapshot.allowed(r, entity.id, "read")]
    modes: dict[str, str] = {}
    for spec in live:
        found = [snapshot.fields.get((r, spec.id), "edit") for r in readers]
        modes[spec.name] = min(found, key=FIELD_MODES.index) if found else "hidden"
    return Grants(entity, actions, modes)


def current_grants(entity: EntitySpec, source: str = "ui") -> Grants:
    """The signed-in user's rights on a table, computed once per request and user (FAB asks as anonymous
    first, then again once it has verified an API token)."""
    from custom_fields import runtime

    schema = runtime.current()
    actor = Actor.current(source)
    if not has_request_context():
        return grants(actor, entity, schema.access)
    memo = g.setdefault("tabula_grants", {})
    key = (schema.version, entity.slug, actor.user_id)
    if key not in memo:
        memo[key] = grants(actor, entity, schema.access)
    return memo[key]


def table_allowed(view_menu: str, permission: str) -> bool:
    """FAB's ``has_access`` for a table's view-menu (``Table <slug>``): answered from the rules."""
    from custom_fields import runtime

    action = PERMISSION_ACTIONS.get(permission)
    entity = runtime.current().entity(view_menu[len(TABLE_PERMISSION_PREFIX) :])
    if action is None or entity is None or entity.archived:
        return False
    return current_grants(entity).can(action)


def table_menu_access(menu_names: list[str] | None) -> set[str]:
    """The menu entries of tables the user may read (among ``menu_names``, or all), and the categories
    holding them."""
    from custom_fields import runtime
    from views.tables import category_of

    allowed: set[str] = set()
    for entity in runtime.current().entities.values():
        if entity.archived or (menu_names is not None and entity.permission_name not in menu_names):
            continue
        if current_grants(entity).can("read"):
            allowed.add(entity.permission_name)
            allowed.add(category_of(entity))
    return allowed


def row_filter(model: type, grants: Grants) -> Any:
    """The rows an actor may see: not in the recycle bin (row scopes join here with the core CRM)."""
    return model.deleted_at.is_(None)


# --- seeding -----------------------------------------------------------------------------------------------


def seed_defaults() -> int:
    """Give each built-in role its default for every table, once: an admin's later change stays."""
    from flask_appbuilder.security.sqla.models import Role

    added = 0
    for name, rights in SEEDED_DEFAULTS.items():
        role_id = db.session.scalar(select(Role.id).where(Role.name == name))
        if role_id is None:
            continue
        exists = db.session.scalar(
            select(TableRule.id).where(TableRule.role_id == role_id, TableRule.entity_id.is_(None))
        )
        if exists is None:
            rule = TableRule(role_id=role_id, entity_id=None)
            for action, value in rights.items():
                rule.set(action, value)
            db.session.add(rule)
            added += 1
    db.session.commit()
    return added


# --- changing the rules (the access screen) ----------------------------------------------------------------


def set_table_rights(
    role_id: int, entity_id: int | None, rights: dict[str, bool | None], *, user_id: int | None = None
) -> None:
    """Set a role's rights on one table (``entity_id``) or its default for all tables (None)."""
    save_rules(role_id, tables={entity_id: rights}, user_id=user_id)


def set_field_mode(role_id: int, field_id: int, mode: str | None, *, user_id: int | None = None) -> None:
    """Set a role's mode for one field (``edit``, ``view``, ``hidden``; None = edit, as the table allows)."""
    save_rules(role_id, fields={field_id: mode}, user_id=user_id)


def save_rules(
    role_id: int,
    *,
    tables: dict[int | None, dict[str, bool | None]] | None = None,
    fields: dict[int, str | None] | None = None,
    user_id: int | None = None,
) -> None:
    """Change a role's rules in one transaction. For a table, None for an action means "as the default
    for all tables"; the default itself must allow or deny each action. Bumps the schema version, so
    every process (web and worker) applies the change at once."""
    from custom_fields.service import SchemaError, _bump, _field, _run

    def change() -> None:
        role = _role(role_id)
        changes: list[str] = []
        for entity_id, rights in (tables or {}).items():
            if entity_id is None and any(v is None for v in rights.values()):
                raise SchemaError(_("The default for all tables must allow or deny each action."))
            rule = db.session.scalar(
                select(TableRule).where(
                    TableRule.role_id == role_id,
                    TableRule.entity_id.is_(None) if entity_id is None else TableRule.entity_id == entity_id,
                )
            )
            if rule is None:
                rule = TableRule(role_id=role_id, entity_id=entity_id)
                db.session.add(rule)
            for action, value in rights.items():
                if action not in TABLE_ACTIONS:
                    raise SchemaError(f"unknown action {action!r}")
                if rule.get(action) != value:
                    changes.append(f"{'*' if entity_id is None else f'#{entity_id}'}.{action}={value}")
                rule.set(action, value)
        for field_id, mode in (fields or {}).items():
            row = _field(field_id)
            if mode is not None and mode not in FIELD_MODES:
                raise SchemaError(f"unknown field mode {mode!r}")
            rule = db.session.scalar(
                select(FieldRule).where(FieldRule.role_id == role_id, FieldRule.field_id == field_id)
            )
            before = rule.mode if rule is not None else "edit"
            if mode is None or mode == "edit":
                if rule is not None:
                    db.session.delete(rule)
            elif rule is None:
                db.session.add(FieldRule(role_id=role_id, field_id=field_id, mode=mode))
            else:
                rule.mode = mode
            if before != (mode or "edit"):
                changes.append(f"{row.label}={mode or 'edit'}")
        if changes:
            summary = f"Access of role “{role.name}”: " + ", ".join(changes)
            _bump(user_id, "access", summary[:2000], None, None)

    _run(change)


def _role(role_id: int) -> Any:
    from flask_appbuilder.security.sqla.models import Role

    from custom_fields.service import SchemaError

    role = db.session.get(Role, role_id)
    if role is None:
        raise SchemaError(_("No such role."))
    if role.name == ADMIN_ROLE:
        raise SchemaError(_("The Admin role may always do everything."))
    return role
