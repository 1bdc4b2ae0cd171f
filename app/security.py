"""Security manager and the seeding of Tabula's built-in roles.

Roles: **Admin** gets every permission (Flask-AppBuilder grants new permissions to it as views appear);
**Manager** and **Staff** get the permissions of the views whose ``tabula_audience`` admits them, plus the
self-service screens every signed-in user needs. Seeding runs on every ``tabula init`` and is idempotent: it
grants only what it never granted before, so a permission an admin revokes in the browser stays revoked.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, g
from flask_appbuilder.security.sqla.manager import SecurityManager
from flask_jwt_extended import JWTManager
from flask_login import LoginManager
from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from app import login_throttle, sessions, user_cache
from app.bounded_filters import BoundedInterface
from app.security_api import TabulaSecurityApi
from app.security_auth import TabulaAuthDBView
from app.token_cache import RememberingJWTManager
from models.metadata import TABLE_PERMISSION_PREFIX

ADMIN = "Admin"
MANAGER = "Manager"
STAFF = "Staff"

# Who may use a view, from the narrowest audience to the widest; views declare it as `tabula_audience`.
AUDIENCE_ROLES = {
    "admin": (ADMIN,),
    "manager": (ADMIN, MANAGER),
    "staff": (ADMIN, MANAGER, STAFF),
}

# Flask-AppBuilder's own screens that every signed-in user needs (own profile, own password, menu, locale).
SELF_SERVICE = {
    ("can_this_form_get", "ResetMyPasswordView"),
    ("can_this_form_post", "ResetMyPasswordView"),
    ("can_this_form_get", "UserInfoEditView"),
    ("can_this_form_post", "UserInfoEditView"),
    ("can_userinfo", "UserDBModelView"),
    ("resetmypassword", "UserDBModelView"),
    ("userinfoedit", "UserDBModelView"),
    ("can_get", "MenuApi"),
}

#: FAB's model screens, as its security manager names them (their ``datamodel`` is set in its ``__init__``).
SECURITY_VIEWS = (
    "userdbmodelview",
    "userstatschartview",
    "rolemodelview",
    "groupmodelview",
    "permissionmodelview",
    "viewmenumodelview",
    "permissionviewmodelview",
)


class TabulaSecurityManager(SecurityManager):
    """Flask-AppBuilder's SQLAlchemy security manager; the place for Tabula's role and row rules."""

    security_api = TabulaSecurityApi
    authdbview = TabulaAuthDBView

    def auth_user_db(self, username: str, password: str) -> Any:
        """FAB's password check behind the brute-force lockout (``app.login_throttle``), for the sign-in
        form and ``POST /api/v1/security/login`` alike; raises ``LoginLocked`` without checking."""
        if not username:
            return None
        account = login_throttle.account_key(username, self._username_named(username))
        login_throttle.count_attempt(account)
        user = super().auth_user_db(username, password)
        if user is None:
            login_throttle.record_failure(account, username)
        else:
            login_throttle.record_success(account)
        return user

    def _username_named(self, typed: str) -> str | None:
        """The user FAB's ``auth_user_db`` would check the password of: by user name, else by e-mail
        (both case-insensitively here, so no case variant gets a count of its own)."""
        user = self.find_user(username=typed)
        if user is None:
            typed = typed.strip().lower()
            user = (
                self.session.query(self.user_model).filter(func.lower(self.user_model.email) == typed).first()
            )
        return user.username if user is not None else None

    def create_login_manager(self, app: Flask) -> LoginManager:
        manager = super().create_login_manager(app)
        manager.user_loader(self.load_session_user)
        return manager

    def load_session_user(self, pk: str) -> Any:
        """The session's user, unless their sessions were ended since it began (``app.sessions``)."""
        user = self.load_user(pk)
        return user if user is not None and sessions.is_current(user.id) else None

    def create_jwt_manager(self, app: Flask) -> JWTManager:
        """FAB's, remembering the tokens it verified (``app.token_cache``), with the session generation
        among a token's claims."""
        manager = RememberingJWTManager()
        manager.init_app(app)
        manager.user_lookup_loader(self.load_user_jwt)
        manager.additional_claims_loader(sessions.token_claims)
        return manager

    def get_user_by_id(self, pk: Any) -> Any:
        """The signed-in user with their roles: this process's copy while no user or role changed
        (``app.user_cache``), else one SELECT of both."""
        session, model = self.session, self.user_model
        return user_cache.signed_in_user(
            session, model, pk, lambda: session.get(model, pk, options=[joinedload(model.roles)])
        )

    def load_user_jwt(self, jwt_header: dict, jwt_data: dict) -> Any:
        """FAB's, with the token's session generation checked (and the user read once, not twice)."""
        user = self.load_user(jwt_data["sub"])
        if user is None or not sessions.token_is_current(user.id, jwt_data):
            return None
        g.user = user  # as FAB does: its views read the token's user there
        return user

    def __init__(self, appbuilder: object) -> None:
        super().__init__(appbuilder)
        # FAB gives its screens plain interfaces; ours refuse a list filter the screen does not have (400).
        for name in SECURITY_VIEWS:
            view = getattr(self, name, None)
            if view is not None and getattr(view, "datamodel", None) is not None:
                view.datamodel = BoundedInterface(view.datamodel.obj)

    def has_access(self, permission_name: str, view_name: str) -> bool:
        """Tables' rights come from the access rules (``custom_fields.access``), everything else from FAB."""
        if view_name.startswith(TABLE_PERMISSION_PREFIX):
            from custom_fields.access import table_allowed

            return table_allowed(view_name, permission_name)
        from views.tables import TABLE_CATEGORIES

        if permission_name == "menu_access" and view_name in TABLE_CATEGORIES:
            from custom_fields.access import table_menu_access

            return view_name in table_menu_access(None)
        return super().has_access(permission_name, view_name)

    def is_item_public(self, permission_name: str, view_name: str) -> bool:
        """Tables are never public (their rights are rules for roles, not FAB permissions the Public role
        could hold), so asking FAB's tables for them would only cost every request two SELECTs."""
        if view_name.startswith(TABLE_PERMISSION_PREFIX):
            return False
        return super().is_item_public(permission_name, view_name)

    def add_permissions_view(self, base_permissions: list[str], view_menu: str) -> None:
        if not view_menu.startswith(TABLE_PERMISSION_PREFIX):  # tables' rights are not FAB permissions
            super().add_permissions_view(base_permissions, view_menu)

    def add_permissions_menu(self, view_menu_name: str) -> None:
        """Menu entries of tables and their categories are answered by ``has_access``, not FAB's tables."""
        from views.tables import TABLE_CATEGORIES

        name = str(view_menu_name)
        if not name.startswith(TABLE_PERMISSION_PREFIX) and name not in TABLE_CATEGORIES:
            super().add_permissions_menu(view_menu_name)

    def get_user_menu_access(self, menu_names: list[str] | None = None) -> set[str]:
        allowed = set(super().get_user_menu_access(menu_names))
        from custom_fields.access import table_menu_access

        return allowed | table_menu_access(menu_names)

    def view_audiences(self) -> dict[str, str]:
        """View and menu permission names -> audience, as recorded by ``views.add_view``."""
        return getattr(self.appbuilder, "tabula_audiences", {})

    def roles_for(self, permission: str, view_menu: str, audiences: dict[str, str]) -> tuple:
        if (permission, view_menu) in SELF_SERVICE:
            return AUDIENCE_ROLES["staff"]
        audience = audiences.get(view_menu)
        return AUDIENCE_ROLES[audience] if audience else (ADMIN,)

    def ensure_roles(self) -> None:
        for name in (ADMIN, MANAGER, STAFF, self.auth_role_public):
            if self.find_role(name) is None:
                self.add_role(name)

    def sync_roles(self) -> dict[str, int]:
        """Create the built-in roles and grant what the policy says; returns grants made per role."""
        from models import SeededGrant

        self.ensure_roles()
        session = self.session
        audiences = self.view_audiences()
        everything = self.get_all_permissions_views_objs()
        granted: dict[str, int] = {}
        for role_name in (MANAGER, STAFF):
            role = self.find_role(role_name)
            if not role.permissions:
                # A new (or re-created) role starts from the full policy again.
                session.query(SeededGrant).filter_by(role_name=role_name).delete()
            seeded = {
                (g.permission, g.view_menu)
                for g in session.scalars(select(SeededGrant).filter_by(role_name=role_name))
            }
            count = 0
            for pvm in everything:
                key = (pvm.permission.name, pvm.view_menu.name)
                if key in seeded or role_name not in self.roles_for(*key, audiences):
                    continue
                if pvm not in role.permissions:
                    role.permissions.append(pvm)
                session.add(SeededGrant(role_name=role_name, permission=key[0], view_menu=key[1]))
                count += 1
            granted[role_name] = count
        admin = self.find_role(ADMIN)
        missing = [p for p in everything if p not in admin.permissions]
        admin.permissions.extend(missing)
        granted[ADMIN] = len(missing)
        session.commit()
        return granted

    def get_all_permissions_views_objs(self) -> list:
        return self.session.scalars(select(self.permissionview_model)).all()
