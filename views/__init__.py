"""Every screen of Tabula is registered here, each with the audience (role tier) it is meant for."""

from __future__ import annotations

from typing import Any

from flask import current_app, redirect, url_for
from flask_appbuilder import AppBuilder
from flask_babel import lazy_gettext as _l

from app.security import AUDIENCE_ROLES
from custom_fields.spec import CUSTOM_CATEGORY_NAME, SYSTEM_CATEGORY_NAME

WIDEST_FIRST = ("staff", "manager", "admin")


def add_view(
    appbuilder: AppBuilder,
    view: Any,
    name: str | None,
    *,
    audience: str,
    category: str | None = None,
    **kwargs: Any,
) -> Any:
    """Register a view and record who it is for; ``sync_roles`` grants from these records."""
    if audience not in AUDIENCE_ROLES:
        raise ValueError(f"unknown audience {audience!r}")
    if name is None:  # a screen without a menu entry (reached from other pages)
        instance = appbuilder.add_view_no_menu(view)
    else:
        instance = appbuilder.add_view(view, name, category=category or "", **kwargs)
    audiences: dict[str, str] = appbuilder.__dict__.setdefault("tabula_audiences", {})
    audiences[instance.class_permission_name] = audience
    for menu_name in (name, category):
        if menu_name:
            key = str(menu_name)
            current = audiences.get(key)
            if current is None or WIDEST_FIRST.index(audience) < WIDEST_FIRST.index(current):
                audiences[key] = audience
    return instance


#: The menu that gathers a user's own data work: exports, imports and the recycle bin.
DATA_MENU = {"category": "Data", "category_label": _l("Data"), "category_icon": "fa-database"}


#: The top bar's order, by menu name: the tables first, the daily screens next, administration last.
#: A menu not named here goes before "System".
MENU_ORDER = (
    SYSTEM_CATEGORY_NAME, CUSTOM_CATEGORY_NAME, "Deal board", "My tasks", "Reports", "Mailings", "Data",
    "System",
)  # fmt: skip


def order_menu(appbuilder: AppBuilder) -> None:
    """Put the top bar in ``MENU_ORDER`` (FAB appends categories in the order they are first used), with
    FAB's Security menu (users, roles) folded into System: one administration menu, and a top bar that fits
    a laptop in Russian."""
    menu = appbuilder.menu
    system, security = menu.find("System"), menu.find("Security")
    if system is not None and security is not None and system is not security:
        menu.add_separator("System")
        system.childs.extend(security.childs)
        menu.menu.remove(security)
    unnamed = MENU_ORDER.index("System") - 0.5
    appbuilder.menu.menu.sort(
        key=lambda item: MENU_ORDER.index(item.name) if item.name in MENU_ORDER else unnamed
    )


def add_system_view(appbuilder: AppBuilder, view: Any, name: str, label: Any, icon: str) -> Any:
    """An admin screen under the System menu."""
    return add_view(
        appbuilder,
        view,
        name,
        label=label,
        icon=icon,
        audience="admin",
        category="System",
        category_label=_l("System"),
        category_icon="fa-cogs",
    )


def register_views(appbuilder: AppBuilder) -> None:
    from views import (
        assets,
        generator,  # noqa: F401  (registers the view generator as a schema rebuild hook)
        tables,
    )
    from views.records_admin import AccessView, AuditLogView, RecycleBinView
    from views.schema_admin import SchemaAdminView
    from views.security_admin import SignInSecurityView
    from views.system import JobRunView, SystemView

    tables.register(appbuilder)
    assets.register(current_app)
    # Browsers ask for /favicon.ico on every site; without one each first page logs a 404.
    current_app.add_url_rule(
        "/favicon.ico", "favicon", lambda: redirect(url_for("static", filename="tabula/favicon.svg"), 301)
    )
    from views import (
        board,
        dashboard,
        data,
        exports,
        grid,
        imports,
        leads,
        live,
        mailings,
        my_tasks,
        reports,
        saved_views,
        schedules,
        search,
        teams,
    )

    for crm_screens in (
        dashboard, board, my_tasks, search, leads, teams, data, reports, mailings, exports, schedules,
        imports, grid, saved_views, live,
    ):  # fmt: skip
        crm_screens.register(appbuilder)
    add_system_view(appbuilder, SchemaAdminView, "Tables and fields", _l("Tables and fields"), "fa-th-list")

    add_system_view(appbuilder, AccessView, "Access rules", _l("Access rules"), "fa-lock")
    add_system_view(appbuilder, AuditLogView, "Audit log", _l("Audit log"), "fa-history")
    add_system_view(appbuilder, SignInSecurityView, "Sign-in security", _l("Sign-in security"), "fa-shield")
    add_view(
        appbuilder,
        RecycleBinView,
        "Recycle bin",
        label=_l("Recycle bin"),
        icon="fa-trash",
        audience="staff",
        **DATA_MENU,
    )
    add_system_view(appbuilder, SystemView, "System status", _l("System status"), "fa-heartbeat")
    add_system_view(appbuilder, JobRunView, "Background jobs", _l("Background jobs"), "fa-tasks")
    order_menu(appbuilder)
