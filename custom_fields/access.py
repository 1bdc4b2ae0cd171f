"""Who may do what with which table, field and row: the one place every screen, API, query and job asks.

The rules (``models.records.TableRule`` / ``FieldRule``) cascade per role: the role's default for every
table, overridden per table action by action, overridden per field (edit, view only, hidden). A user with
several roles gets the most permissive answer. The Admin role may do everything. The rules are metadata:
changing them bumps the schema version, so every process rebuilds its snapshot (``runtime.RuntimeSchema
.access``) and the per-user views generated from it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from flask import g, has_request_context
from flask_babel import gettext as _
from sqlalchemy import and_, false, or_, select

from app.extensions import db
from custom_fields.spec import EntitySpec, FieldSpec, category_of
from custom_fields.types import REGISTRY
from models.metadata import TABLE_PERMISSION_PREFIX
from models.records import FIELD_MODES, SCOPED_ACTIONS, SCOPES, TABLE_ACTIONS, FieldRule, TableRule
from models.teams import team_member

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
#: How far built-in roles reach by default (seeded once, as EspoCRM does: staff their own book, managers
#: their team's).
SEEDED_SCOPES = {"Manager": "team", "Staff": "own"}


@dataclass(frozen=True)
class AccessSnapshot:
    """Every rule, as plain data, for one schema version."""

    tables: dict[tuple[int, int | None], dict[str, bool | None]] = field(default_factory=dict)
    scopes: dict[tuple[int, int | None], dict[str, str | None]] = field(default_factory=dict)
    fields: dict[tuple[int, int], str] = field(default_factory=dict)
    admin_role_ids: frozenset[int] = frozenset()
    # user id -> the users sharing a team with them (themselves included)
    team_mates: dict[int, frozenset[int]] = field(default_factory=dict)

    def allowed(self, role_id: int, entity_id: int, action: str) -> bool:
        own = self.tables.get((role_id, entity_id), {}).get(action)
        if own is not None:
            return own
        return bool(self.tables.get((role_id, None), {}).get(action))

    def scope(self, role_id: int, entity_id: int, action: str) -> str:
        """How far ``action`` reaches for the role in the table (when the role may do it at all)."""
        own = self.scopes.get((role_id, entity_id), {}).get(action)
        if own is not None:
            return own
        return self.scopes.get((role_id, None), {}).get(action) or "all"


def load_snapshot() -> AccessSnapshot:
    from flask_appbuilder.security.sqla.models import Role

    # Fresh from the database, not from objects this session may already hold with older values.
    fresh = {"populate_existing": True}
    rules = list(db.session.scalars(select(TableRule).execution_options(**fresh)))
    tables = {(r.role_id, r.entity_id): {a: r.get(a) for a in TABLE_ACTIONS} for r in rules}
    scopes = {(r.role_id, r.entity_id): {a: r.get_scope(a) for a in SCOPED_ACTIONS} for r in rules}
    fields = {
        (r.role_id, r.field_id): r.mode
        for r in db.session.scalars(select(FieldRule).execution_options(**fresh))
    }
    admins = frozenset(db.session.scalars(select(Role.id).where(Role.name == ADMIN_ROLE)))
    teams: dict[int, set[int]] = {}
    for team_id, user_id in db.session.execute(select(team_member.c.team_id, team_member.c.user_id)):
        teams.setdefault(team_id, set()).add(user_id)
    mates: dict[int, set[int]] = {}
    for members in teams.values():
        for user_id in members:
            mates.setdefault(user_id, {user_id}).update(members)
    return AccessSnapshot(
        tables=tables,
        scopes=scopes,
        fields=fields,
        admin_role_ids=admins,
        team_mates={u: frozenset(m) for u, m in mates.items()},
    )


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

    @classmethod
    def job_of(cls, owner_id: int | None) -> Actor:
        """Work done for whoever owns it (a mailing, an automation): its owner, or the system once the
        owner is gone (a removed user leaves ``owner_id`` empty)."""
        return cls.for_user_id(owner_id, "job") if owner_id else cls.system_job()


# --- what they may do --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grants:
    """One actor's rights on one table."""

    entity: EntitySpec
    actions: frozenset[str]
    modes: dict[str, str]  # live field name -> edit | view | hidden
    is_admin: bool = False
    actor: Actor | None = None
    scopes: dict[str, str] = field(default_factory=dict)  # read/edit/delete -> own | team | all
    mates: frozenset[int] = frozenset()  # the actor and everyone sharing a team with them

    def can(self, action: str) -> bool:
        return action in self.actions

    def scope(self, action: str) -> str | None:
        """How far ``action`` reaches (own, team, all), or None when the actor may not do it at all."""
        if not self.can(action):
            return None
        return self.scopes.get(action, "all")

    def mode(self, name: str) -> str:
        return self.modes.get(name, "hidden")

    def reached_through(self, holders: Iterable[int], action: str = "read") -> bool:
        """Whether a record held by any of these users (its owner, or a user field that makes it someone's
        own) was within this actor's own or team scope: a live screen learns that a record it showed was
        handed to someone out of its reach. False for the "all" scope and scopes that follow a parent."""
        scope = self.scope(action)
        if scope not in ("own", "team") or self.actor is None or self.actor.user_id is None:
            return False
        if any(f.settings.get("scope_parent") for f in self.entity.live_fields):
            return False
        users = self.mates if scope == "team" else frozenset({self.actor.user_id})
        return not users.isdisjoint(holders)

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
        return Grants(
            entity, frozenset(TABLE_ACTIONS), {f.name: "edit" for f in live}, is_admin=True, actor=actor
        )
    actions = frozenset(
        a for a in TABLE_ACTIONS if any(snapshot.allowed(r, entity.id, a) for r in actor.role_ids)
    )
    scopes: dict[str, str] = {}
    for action in SCOPED_ACTIONS:
        reaches = [snapshot.scope(r, entity.id, action) for r in actor.role_ids]
        allowed = [
            s for r, s in zip(actor.role_ids, reaches, strict=True) if snapshot.allowed(r, entity.id, action)
        ]
        if allowed:
            scopes[action] = max(allowed, key=SCOPES.index)
    mates = snapshot.team_mates.get(actor.user_id, frozenset()) if actor.user_id is not None else frozenset()
    readers = [r for r in actor.role_ids if snapshot.allowed(r, entity.id, "read")]
    modes: dict[str, str] = {}
    for spec in live:
        found = [snapshot.fields.get((r, spec.id), "edit") for r in readers]
        modes[spec.name] = min(found, key=FIELD_MODES.index) if found else "hidden"
    own = frozenset({actor.user_id}) if actor.user_id is not None else frozenset()
    return Grants(entity, actions, modes, actor=actor, scopes=scopes, mates=mates | own)


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

    allowed: set[str] = set()
    for entity in runtime.current().entities.values():
        if entity.archived or (menu_names is not None and entity.permission_name not in menu_names):
            continue
        if current_grants(entity).can("read"):
            allowed.add(entity.permission_name)
            allowed.add(category_of(entity))
    return allowed


def row_filter(model: type, rights: Grants, action: str = "read", *, in_bin: bool = False) -> Any:
    """The rows ``action`` may reach: not in the recycle bin (``in_bin``: in it), and within the actor's
    scope."""
    live = model.deleted_at.is_not(None) if in_bin else model.deleted_at.is_(None)
    scope = rights.scope(action)
    if scope == "all":
        return live
    if scope is None or rights.actor is None or rights.actor.user_id is None:
        return false()
    parent = next((f for f in rights.entity.live_fields if f.settings.get("scope_parent")), None)
    if parent is not None:
        return and_(live, _parent_visible(model, parent, rights.actor, action))
    users = rights.mates if scope == "team" else frozenset({rights.actor.user_id})
    holders = [model.owner_id, *(getattr(model, f.name) for f in scope_user_fields(rights.entity))]
    return and_(live, or_(*(column.in_(sorted(users)) for column in holders)))


def scope_holder_ids(entity: EntitySpec) -> frozenset[int]:
    """The ids of the fields that make a record someone's own (its owner, user fields such as an assignee)."""
    owner = entity.field_by_name("owner_id")
    return frozenset(f.id for f in (owner, *scope_user_fields(entity)) if f is not None)


def scope_user_fields(entity: EntitySpec) -> list[FieldSpec]:
    """The user fields (besides the owner) that make a record someone's own, e.g. a task's assignee."""
    return [f for f in entity.live_fields if REGISTRY[f.type].reference == "user" and f.name != "owner_id"]


def _parent_visible(model: type, link: FieldSpec, actor: Actor, action: str) -> Any:
    from custom_fields import runtime

    schema = runtime.current()
    parent_entity = schema.by_id.get(int(link.settings["target"]))
    parent_model = schema.model(parent_entity.id) if parent_entity else None
    if parent_model is None:
        return false()
    parent_rights = grants(actor, parent_entity, schema.access)
    parent_action = "read" if action == "read" else "edit"
    visible = select(parent_model.id).where(row_filter(parent_model, parent_rights, parent_action))
    return getattr(model, link.name).in_(visible)


# --- seeding -----------------------------------------------------------------------------------------------


def seed_defaults() -> int:
    """Give the built-in roles their defaults once: for every table (actions and scopes), for the reference
    tables and fields ``custom_fields.core`` names. What an admin later changes stays changed (each seed is
    remembered in ``SeededGrant``). Returns how many seeds were applied."""
    from flask_appbuilder.security.sqla.models import Role

    from custom_fields.core import SEEDED_FIELD_MODES, SEEDED_TABLE_RULES
    from models import Entity, Field

    applied = 0
    roles = {name: rid for name, rid in db.session.execute(select(Role.name, Role.id))}
    entities = {slug: eid for slug, eid in db.session.execute(select(Entity.slug, Entity.id))}

    for name, rights in SEEDED_DEFAULTS.items():
        if name not in roles:
            continue
        if _seed_once(name, "default"):
            rule = _table_rule(roles[name], None)
            for action, value in rights.items():
                if rule.get(action) is None:
                    rule.set(action, value)
            applied += 1
        if _seed_once(name, "default-scope"):
            rule = _table_rule(roles[name], None)
            for action in SCOPED_ACTIONS:
                if rule.get_scope(action) is None:
                    rule.set_scope(action, SEEDED_SCOPES[name])
            applied += 1
    for (name, slug), rights in SEEDED_TABLE_RULES.items():
        if name in roles and slug in entities and _seed_once(name, f"table:{slug}"):
            rule = _table_rule(roles[name], entities[slug])
            for key, value in rights.items():
                if key.endswith("_scope"):
                    rule.set_scope(key.removesuffix("_scope"), value)
                else:
                    rule.set(key, value)
            applied += 1
    for (name, slug, field_name), mode in SEEDED_FIELD_MODES.items():
        field_id = db.session.scalar(
            select(Field.id).where(Field.entity_id == entities.get(slug), Field.name == field_name)
        )
        if name in roles and field_id is not None and _seed_once(name, f"field:{slug}.{field_name}"):
            if (
                db.session.scalar(
                    select(FieldRule.id).where(
                        FieldRule.role_id == roles[name], FieldRule.field_id == field_id
                    )
                )
                is None
            ):
                db.session.add(FieldRule(role_id=roles[name], field_id=field_id, mode=mode))
            applied += 1
    if applied:
        from custom_fields.service import bump_schema_version

        bump_schema_version(None, "access", f"Seeded the built-in roles' access ({applied})", None, None)
    db.session.commit()
    return applied


def _table_rule(role_id: int, entity_id: int | None) -> TableRule:
    """The role's rule row for a table (None: its default for all tables), created when missing."""
    rule = db.session.scalar(
        select(TableRule).where(
            TableRule.role_id == role_id,
            TableRule.entity_id.is_(None) if entity_id is None else TableRule.entity_id == entity_id,
        )
    )
    if rule is None:
        rule = TableRule(role_id=role_id, entity_id=entity_id)
        db.session.add(rule)
    return rule


def _seed_once(role_name: str, what: str) -> bool:
    """True (and remembered) the first time ``what`` is seeded for the role."""
    from models import SeededGrant

    key = {"role_name": role_name, "permission": "tabula-access", "view_menu": what}
    if db.session.scalar(select(SeededGrant.id).filter_by(**key)) is not None:
        return False
    db.session.add(SeededGrant(**key))
    return True


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
    """Change a role's rules in one transaction. ``tables`` maps a table (None: the default for all) to
    actions (True/False) and scopes (``read_scope`` ... : own, team, all). For a table, None means "as the
    default for all tables"; the default itself must allow or deny each action it names. Bumps the schema
    version, so every process (web and worker) applies the change at once."""
    from custom_fields.service import SchemaError, bump_schema_version, field_row, run_schema_change

    def change() -> None:
        role = _role(role_id)
        changes: list[str] = []
        for entity_id, rights in (tables or {}).items():
            unset = [k for k, v in rights.items() if v is None]
            if entity_id is None and unset:
                raise SchemaError(_("The default for all tables must allow or deny each action."))
            rule = _table_rule(role_id, entity_id)
            for action, value in rights.items():
                where = "*" if entity_id is None else f"#{entity_id}"
                if action.endswith("_scope") and action.removesuffix("_scope") in SCOPED_ACTIONS:
                    scoped = action.removesuffix("_scope")
                    if value is not None and value not in SCOPES:
                        raise SchemaError(f"unknown scope {value!r}")
                    if rule.get_scope(scoped) != value:
                        changes.append(f"{where}.{action}={value}")
                    rule.set_scope(scoped, value)
                    continue
                if action not in TABLE_ACTIONS:
                    raise SchemaError(f"unknown action {action!r}")
                if rule.get(action) != value:
                    changes.append(f"{where}.{action}={value}")
                rule.set(action, value)
        for field_id, mode in (fields or {}).items():
            row = field_row(field_id)
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
            bump_schema_version(user_id, "access", summary[:2000], None, None)

    run_schema_change(change)


def _role(role_id: int) -> Any:
    from flask_appbuilder.security.sqla.models import Role

    from custom_fields.service import SchemaError

    role = db.session.get(Role, role_id)
    if role is None:
        raise SchemaError(_("No such role."))
    if role.name == ADMIN_ROLE:
        raise SchemaError(_("The Admin role may always do everything."))
    return role
