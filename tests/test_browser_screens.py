"""Every screen the product has, walked in chromium at 1366×768, in Russian, as an admin and as a staff user,
over hostile labels (tables, fields, options, help texts) and hostile values in a custom table of every
field type and in custom fields of every core table.

The screens are discovered from the app itself: each GET route of the URL map (arguments filled with real
ids: every table's list, list with a filter on every column, add, show with timeline and related lists,
edit; admin screens; FAB's security screens) plus every menu entry, so a screen added later is walked
without touching this file. A route that cannot be walked is named in ``SKIPPED`` with the reason; a route
with an argument nobody knows how to fill fails the test, so it gets a filler or a reason.

A page fails on a JavaScript dialog (a script planted in a label ran), a console error or an uncaught
exception, any response >= 500 (the page's own requests included), or a known English label (a core table's
label, option or help text, or a short UI string of the catalog) visible in the Russian UI. Everything found
is reported at the end, page by page.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from babel.messages.pofile import read_po
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from werkzeug.serving import make_server

from tests.conftest import ADMIN_PASSWORD, ROOT

pytestmark = pytest.mark.browser

WALKER_PASSWORD = "walker-Пароль-1"
SCRIPT = "<script>alert(1)</script>"
IMG = "\"'><img src=x onerror=alert(1)>"
QUOTES = "Кавычки \"двойные\", 'одинарные' и «ёлочки» & </td>"
LONG = ("Очень длинное название поля с кириллицей, чтобы проверить перенос строк в таблицах " * 2)[:100]
HOSTILE = (SCRIPT, IMG, QUOTES)

#: Routes not walked, by endpoint, with the reason. Anything else with GET is visited.
SKIPPED = {
    "AuthDBView.logout": "ends the session of the walking user",
    "LocaleView.index": "switches the language; the walk stays in Russian",
    "health.health": "JSON for load balancers; answers 503 by design while no worker runs (none here)",
    "static": "files, not screens",
    "ImportView.refused_rows": "a file download (the refused rows of an import), not a screen",
    "GridView.bulk_status": "JSON progress of a bulk-edit job, for its starter only (test_grid_bulk.py)",
    "vendor": "front-end libraries from npm (files, not screens)",
    "appbuilder.static": "files, not screens",
    "UserStatsChartView.chart": "FAB's user statistics chart loads Google Charts from gstatic.com, which no "
    "offline install reaches (reported; it is not in Tabula's menu)",
}
SKIPPED_SUFFIXES = {
    ".delete": "deletes a record (GET in FAB's security screens); the write path has its own tests",
    ".action": "runs a bulk action on records",
    ".download": "a file download, not a screen",
}
#: Routes that answer JSON to scripts and API clients, not screens: fetched, not rendered.
DATA_ROUTES = re.compile(
    r"^/api/|/lookup(\?|$)|^/search/api|/state$|^/exports/\d+/status$|^/grid/[^/]+/views$|^/reports/(fields/|saved)"
    r"|^/imports/\d+/(status|preview)$|^/admin/tables/conversions/\d+/status$"
)
#: Arguments that only select a variant of a screen already walked without them.
SKIPPED_ARGUMENTS = {"group_by": "FAB's user statistics chart, walked without a grouping"}

#: English words allowed in the Russian UI: names, not labels.
ALLOWED_ENGLISH = {"Tabula CRM", "Tabula", "Swagger", "OpenAPI", "API", "CRM", "VIP", "SMS", "IT", "SKU"}
#: FAB's security screens (by path) show permission and view-menu names, which are identifiers, not labels
#: (e.g. "Deal board", "Audit log"); and FAB's own catalog leaves a few of its labels untranslated.
FAB_SCREENS = ("/roles/", "/permissions/", "/viewmenus/", "/permissionviews/", "/users/", "/groups/",
               "/userinfoeditview/", "/resetmypassword/", "/resetpassword/")  # fmt: skip
ADMIN_AREAS = ("/admin/", "/system/", "/jobs/", *FAB_SCREENS)
FAB_UNTRANSLATED = {
    "E-mail": "FAB's Russian catalog keeps 'E-mail' for the user form's e-mail field",
    "Name": "FAB's Groups form (Name, Label, Description, Add) has no Russian in FAB's catalog",
    "Label": "same", "Description": "same", "Add": "same",
    "Edit": "FAB's user-info form heading 'Edit User' is shown untranslated", "User": "same",
}  # fmt: skip


def _english_labels() -> set[str]:
    """The core tables' shipped labels and options, and the catalog's short UI strings, that have a Russian
    translation different from the English: none of them may show in the Russian UI."""
    from custom_fields.core import CORE

    with open(ROOT / "app/translations/ru/LC_MESSAGES/messages.po", "rb") as handle:
        catalog = read_po(handle)
    translated = {
        m.id: m.string
        for m in catalog
        if isinstance(m.id, str) and isinstance(m.string, str) and m.string and m.string != m.id
    }
    core: set[str] = set()
    for _model, label, plural, _icon, _display, columns in CORE.values():
        core |= {label, plural}
        for hints in columns.values():
            core.add(hints["label"])
            core |= {o["label"] for o in hints.get("options", ())}
    short_ui = {
        msgid
        for msgid in translated
        if re.fullmatch(r"[A-Z][A-Za-z]*(?:[ -][A-Za-z]+){0,2}", msgid) and len(msgid) > 2
    }
    return {w for w in core | short_ui if w in translated and w not in ALLOWED_ENGLISH}


# --- a database of its own, with hostile metadata and values ----------------------------------------------


def _fresh_database(env: dict[str, str], tmp: Path) -> tuple[str, Any]:
    """A new empty database next to the session's one (the hostile labels stay out of other tests)."""
    url = make_url(env["DATABASE_URL"])
    if url.get_backend_name() == "sqlite":
        return f"sqlite:///{tmp / 'walk.db'}", lambda: None
    name = f"tabula_walk_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url.set(database=name).render_as_string(hide_password=False), drop


@dataclass
class Planted:
    """What the walk needs to fill route arguments: ids of real things, hostile ones first."""

    ids: dict[str, list[int]] = field(default_factory=dict)  # table slug -> record ids
    staff_id: int = 0
    exports: list[int] = field(default_factory=list)
    schedules: list[int] = field(default_factory=list)
    reports: list[int] = field(default_factory=list)
    imports: list[int] = field(default_factory=list)
    conversions: list[int] = field(default_factory=list)


def _plant(app: Any) -> Planted:
    from app.bootstrap import create_user
    from app.extensions import db
    from custom_fields import records, service
    from custom_fields.access import Actor
    from custom_fields.runtime import current, refresh
    from models import Entity, Field
    from models.exports import ExportFile, ExportStatus
    from models.system import JobRun
    from views.teams import create_team

    planted = Planted()
    with app.test_request_context():
        create_user("walker", SCRIPT, IMG, "walker@example.com", "Staff", WALKER_PASSWORD)
        staff = app.appbuilder.sm.find_user(username="walker")
        planted.staff_id = staff.id
        admin = Actor.of_user(app.appbuilder.sm.find_user(username="admin"), "ui")
        walker = Actor.for_user_id(staff.id, "ui")
        create_team(SCRIPT, [staff.id])
        db.session.add(JobRun(kind="selfcheck", message=IMG, created_by_fk=staff.id))
        for status in (ExportStatus.failed, ExportStatus.running):
            export = ExportFile(
                owner_id=staff.id, title=SCRIPT, status=status, message=IMG, source_url="/t/companies/list/",
                rows_written=1234, rows_expected=20_000, rows_estimated=True,
            )  # fmt: skip
            db.session.add(export)
            db.session.flush()
            planted.exports.append(export.id)
        from models.imports import ImportRun

        for status in ("finished", "failed"):
            item = ImportRun(
                owner_id=staff.id, file_name=f"{SCRIPT}.csv", status=status, message=IMG, rows_total=10,
                created=3, updated=2, refused=5,
                report={"errors": {SCRIPT: {"count": 5, "first": [[2, IMG]]}}},
                options={"header_row": 1, "header_rows": 1},
            )  # fmt: skip
            db.session.add(item)
            db.session.flush()
            planted.imports.append(item.id)
        db.session.commit()

        # Every core table gets a hostile text field (with hostile help) and a hostile select.
        core = db.session.scalars(select(Entity).where(Entity.is_system.is_(True))).all()
        for entity in core:
            service.add_field(entity.id, f"{IMG} текст", "text", help_text=SCRIPT)
            service.add_field(
                entity.id, f"{SCRIPT} выбор", "single_select", settings={"options": [SCRIPT, IMG, QUOTES]}
            )
        position = db.session.scalar(select(Field).where(Field.entity_id == core[0].id, Field.name == "name"))
        service.update_field(position.id, label=f"{QUOTES} имя")  # a renamed core label shows as typed

        table = service.create_entity(SCRIPT, IMG, "fa-table")
        companies = next(e for e in core if e.slug == "companies")
        settings = {
            "text": {"max_length": 255}, "money": {"currency": "RUB"}, "decimal": {"scale": 2},
            "single_select": {"options": [SCRIPT, IMG, QUOTES]},
            "multi_select": {"options": [SCRIPT, IMG, QUOTES]}, "link": {"target": companies.id},
        }  # fmt: skip
        from custom_fields.types import REGISTRY

        labels: dict[str, str] = {}
        field_ids: dict[str, int] = {}
        for index, type_name in enumerate(REGISTRY):
            label = LONG if index == 0 else f"{HOSTILE[index % 3]} {type_name}"
            row = service.add_field(
                table.id, label, type_name, settings=settings.get(type_name), help_text=HOSTILE[index % 3]
            )
            labels[type_name] = row.name
            field_ids[type_name] = row.id
        # A type change running as a job (the field shows "converting" everywhere), and one refused with
        # the values that did not convert.
        from models import FieldConversion

        for type_name, status in (("text", "running"), ("long_text", "refused")):
            conversion = FieldConversion(
                field_id=field_ids[type_name], from_type=type_name, to_type="integer", settings={},
                status=status, rows_done=1234, rows_total=20_000, offenders=[[1, SCRIPT, IMG]],
                offenders_total=7, message=QUOTES, started_at=dt.datetime.now(dt.UTC),
                finished_at=None if status == "running" else dt.datetime.now(dt.UTC),
            )  # fmt: skip
            db.session.add(conversion)
            db.session.flush()
            planted.conversions.append(conversion.id)
        db.session.get(Field, field_ids["text"]).converting_to = "integer"
        service.bump_schema_version(None, "change_type", "", table.id, field_ids["text"], log=False)
        db.session.commit()
        refresh()
        schema = current()
        today = dt.date.today()
        values = {
            "text": SCRIPT, "long_text": f"{IMG}\n{QUOTES}", "integer": 2747000, "decimal": "2747000.5",
            "money": "2747000", "percent": "15", "boolean": True, "date": today.isoformat(),
            "datetime": dt.datetime.now(dt.UTC).isoformat(), "single_select": SCRIPT,
            "multi_select": [IMG, QUOTES], "email": "walker@example.com", "phone": "+7 916 123-45-67",
            "url": "https://example.com/?q=%22%3E%3Cscript%3Ealert(1)%3C/script%3E",
        }  # fmt: skip

        def custom(slug: str) -> dict[str, Any]:
            fields = {f.label: f.name for f in schema.entities[slug].live_fields if not f.is_system}
            if f"{IMG} текст" not in fields:  # the custom table: its values are given whole
                return {}
            return {fields[f"{IMG} текст"]: QUOTES, fields[f"{SCRIPT} выбор"]: IMG}

        def add(slug: str, actor: Any, **given: Any) -> int:
            saved = records.create(slug, {**given, **custom(slug)}, actor)
            planted.ids.setdefault(slug, []).append(saved.id)
            return saved.id

        pipeline = add("pipelines", admin, name=SCRIPT)
        stage = add("stages", admin, name=IMG, pipeline_id=pipeline, probability="40")
        product = add("products", admin, name=SCRIPT, sku="WALK-1", price="2747000")
        company = add("companies", walker, name=SCRIPT, tax_id="7707083893", email="a@example.com")
        other = add("companies", walker, name=IMG)
        contact = add("contacts", walker, first_name=IMG, last_name=SCRIPT, company_id=company)
        add("contacts", walker, first_name=QUOTES, company_id=other)
        deal = add(
            "deals", walker, title=SCRIPT, company_id=company, contact_id=contact, stage_id=stage,
            amount="2747000",
        )  # fmt: skip
        add("deal_lines", walker, deal_id=deal, product_id=product, description=IMG, quantity="3")
        add("activities", walker, kind="call", subject=SCRIPT, body=IMG, company_id=company, deal_id=deal)
        add("tasks", walker, title=IMG, company_id=company, deal_id=deal, due_at=today.isoformat())
        add("invoices", walker, number=SCRIPT, company_id=company, deal_id=deal, amount="2747000.5")
        add("leads", walker, title=SCRIPT, contact_name=IMG, company_name=QUOTES, email="l@example.com")
        from custom_fields import saved_views
        from jobs import mailings

        view = saved_views.save("contacts", admin, SCRIPT, {"q": IMG})
        template = mailings.save_template(
            admin, {"name": SCRIPT, "subject": IMG, "html": f"<p>{{{{ contact.first_name }}}} {QUOTES}</p>"}
        )
        mailings.create(admin, {"name": IMG, "template_id": template.id, "view_id": view.id})
        row = {labels[t]: v for t, v in values.items()}
        row[labels["link"]], row[labels["user"]] = company, staff.id
        name = schema.entities[table.slug].display_field.name
        add(table.slug, walker, **row, **{name: QUOTES})
        add(table.slug, walker, **{name: IMG})
        # History for the timelines, and something in the recycle bin.
        records.update("companies", company, {"name": f"{SCRIPT} 2"}, walker, expected_version=None)
        gone = records.create("companies", {"name": f"{IMG} в корзине"}, walker).id
        records.delete("companies", gone, walker)
        # Scheduled e-mails of saved views with hostile names, one stopped with a hostile reason and log.
        from custom_fields import saved_views
        from models.exports import ExportSchedule, ExportScheduleRun
        from models.system import utcnow

        for owner, slug, view_name in ((walker, "companies", IMG), (admin, table.slug, SCRIPT)):
            view = saved_views.save(slug, owner, view_name, {"q": QUOTES})
            schedule = ExportSchedule(
                owner_id=owner.user_id, view_id=view.id, frequency="weekly", weekdays=[0, 6],
                at_time="08:00", recipient_ids=[staff.id], active=owner is admin, stopped_reason=IMG,
                next_run_at=utcnow(),
            )  # fmt: skip
            db.session.add(schedule)
            db.session.flush()
            db.session.add(
                ExportScheduleRun(
                    schedule_id=schedule.id, slot_at=utcnow(), status="failed", message=QUOTES,
                    export_id=planted.exports[0], recipients=1,
                )
            )  # fmt: skip
            planted.schedules.append(schedule.id)
        db.session.commit()
        # A saved report with a hostile name, shared with Staff, and its scheduled e-mail.
        from exports import saved_reports

        staff_role = [r.id for r in app.appbuilder.sm.find_user(username="walker").roles]
        definition = {
            "table": "deals",
            "rows": ["stage_id"],
            "measures": [{"function": "count"}],
            "chart": "pie",
        }
        report = saved_reports.save(walker, SCRIPT, definition, staff_role)
        planted.reports.append(report.id)
        schedule = ExportSchedule(
            owner_id=staff.id, report_id=report.id, frequency="daily", at_time="08:00", recipient_ids=[],
            stopped_reason=QUOTES, active=False, next_run_at=utcnow(),
        )  # fmt: skip
        db.session.add(schedule)
        db.session.commit()
        planted.schedules.append(schedule.id)
        for slug in schema.entities:
            if slug not in planted.ids:
                planted.ids[slug] = []
            model = schema.classes[slug]
            if not planted.ids[slug]:
                first = db.session.scalar(select(func.min(model.id)))
                planted.ids[slug] = [first] if first else []
        db.session.remove()
    return planted


@pytest.fixture(scope="module")
def walk_server(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    from app import create_app
    from app.bootstrap import initialize

    tmp = tmp_path_factory.mktemp("walk")
    url, drop = _fresh_database(env, tmp)
    walk_env = {
        **env, "DATABASE_URL": url, "TABULA_INSTANCE_DIR": str(tmp / "instance"), "TABULA_DEMO": "false",
        "TABULA_DEFAULT_LOCALE": "ru",
    }  # fmt: skip
    app = create_app(walk_env, {"SEND_FILE_MAX_AGE_DEFAULT": 3600})  # static files once per browser
    initialize(app, echo=lambda _msg: None)
    planted = _plant(app)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", (app, planted)
    server.shutdown()
    drop()


# --- which screens ------------------------------------------------------------------------------------------


def _first_ids(app: Any, endpoint: str) -> list[int]:
    """A FAB model view's first record (its security screens, the job list)."""
    from app.extensions import db

    name = endpoint.split(".")[0]
    view = next((v for v in app.appbuilder.baseviews if v.__class__.__name__ == name), None)
    model = getattr(getattr(view, "datamodel", None), "obj", None)
    if model is None:
        return []
    first = db.session.scalar(select(func.min(model.id)))
    return [first] if first is not None else []


def _fillers(app: Any, planted: Planted) -> dict[str, Any]:
    """For each route argument: the values to walk, given the endpoint."""
    from flask_appbuilder.security.sqla.models import Role

    from app.crm.mail_render import unsubscribe_token
    from app.extensions import db
    from custom_fields.runtime import current
    from models import Entity, Mailing, MailTemplate, Team
    from models.system import JobRun

    schema = current()
    slugs = sorted(schema.entities)
    staff_role = db.session.scalar(select(Role.id).where(Role.name == "Staff"))
    # Every field of the custom table; of the core ones, the companies' hostile and two shipped fields.
    companies = schema.entities["companies"]
    custom_table = max(schema.entities.values(), key=lambda e: e.id)
    walked_fields = [f.id for f in custom_table.fields] + [
        f.id for f in companies.fields if not f.is_system or f.name in ("name", "kind")
    ]
    return {
        "slug": lambda ep: ["companies", "contacts"] if ep.startswith("MergeView") else slugs,
        "pk": lambda ep, slug=None: planted.ids.get(slug, [])[:1] if slug else _first_ids(app, ep),
        "keep": lambda ep, slug=None: planted.ids.get(slug, [])[:1],
        "drop": lambda ep, slug=None: planted.ids.get(slug, [])[1:2],
        "role_id": lambda ep: [staff_role],
        "entity_id": lambda ep: db.session.scalars(select(Entity.id)).all(),
        "field_id": lambda ep: walked_fields,
        "team_id": lambda ep: db.session.scalars(select(Team.id)).all(),
        "run_id": lambda ep: db.session.scalars(select(JobRun.id)).all(),
        "pipeline_id": lambda ep: planted.ids["pipelines"],
        "version": lambda ep: ["v1"],
        "export_id": lambda ep: planted.exports,
        "schedule_id": lambda ep: planted.schedules,
        "report_id": lambda ep: planted.reports,
        "token": lambda ep: [unsubscribe_token(f"{IMG}@example.com", None)],
        "template_id": lambda ep: db.session.scalars(select(MailTemplate.id)).all(),
        "mailing_id": lambda ep: db.session.scalars(select(Mailing.id)).all(),
        "import_id": lambda ep: planted.imports,
        "conversion_id": lambda ep: planted.conversions,
    }


def _urls_of_rule(rule: Any, fillers: dict[str, Any]) -> list[str]:
    args = sorted(rule.arguments)
    endpoint = rule.endpoint
    combos: list[dict[str, Any]] = [{}]
    if "slug" in args:
        combos = [{"slug": s} for s in fillers["slug"](endpoint)]
    for name in args:
        if name == "slug":
            continue
        if name not in fillers:
            raise AssertionError(
                f"{rule.rule} ({endpoint}) has an argument {name!r} the walk cannot fill: add a filler or a "
                "reason to SKIPPED"
            )
        next_combos = []
        for combo in combos:
            filler = fillers[name]
            by_table = "slug" in combo and name in ("pk", "keep", "drop")
            values = filler(endpoint, combo["slug"]) if by_table else filler(endpoint)
            next_combos += [{**combo, name: v} for v in values]
        combos = next_combos
    urls = []
    for combo in combos:
        path = rule.rule
        for name, value in combo.items():
            path = re.sub(rf"<(?:[^:<>]+:)?{name}(?:\([^)]*\))?>", quote(str(value)), path)
        urls.append(path)
    return urls


def _screens(app: Any, planted: Planted) -> list[str]:
    from custom_fields.runtime import current

    with app.test_request_context():
        fillers = _fillers(app, planted)
        urls: list[str] = []
        for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
            if "GET" not in rule.methods or rule.endpoint in SKIPPED:
                continue
            if any(rule.endpoint.endswith(s) for s in SKIPPED_SUFFIXES) or set(rule.arguments) & set(
                SKIPPED_ARGUMENTS
            ):
                continue
            urls += _urls_of_rule(rule, fillers)
        adapter = app.url_map.bind("localhost")
        for href in _menu_items(app.appbuilder.menu.get_list()):
            endpoint, _args = adapter.match(href.split("?")[0])
            if endpoint not in SKIPPED:
                urls.append(href)
        schema = current()
        for slug, entity in sorted(schema.entities.items()):
            # The list filtered on every column at once: FAB's filter script draws a row per label.
            columns = [f.name for f in entity.live_fields if f.searchable]
            urls.append(f"/t/{slug}/list/?" + "&".join(f"_flt_0_{c}=x" for c in columns))
        company = planted.ids["companies"][0]
        urls += [
            f"/t/contacts/add?company_id={company}",
            f"/t/deals/add?company_id={company}&contact_id={planted.ids['contacts'][0]}",
            f"/search/?q={quote(SCRIPT)}",
            f"/search/?q={quote(IMG)}",
            f"/search/api?q={quote(SCRIPT)}",
            "/t/_users/lookup?q=%3Cscript",
        ]
    return list(dict.fromkeys(u for u in urls if not u.startswith(("/static", "http"))))


def _menu_items(items: list[Any]) -> Iterator[str]:
    for item in items:
        href = item.get_url() if hasattr(item, "get_url") else ""
        if href and href.startswith("/"):
            yield href
        yield from _menu_items(getattr(item, "childs", []) or [])


# --- the walk -----------------------------------------------------------------------------------------------


@dataclass
class Findings:
    problems: list[str] = field(default_factory=list)
    url: str = ""

    def add(self, kind: str, detail: str) -> None:
        self.problems.append(f"{self.url}: {kind}: {detail[:300]}")


def _watch(page: Any, found: Findings) -> None:
    def on_dialog(dialog: Any) -> None:
        found.add("JavaScript dialog", f"{dialog.type} {dialog.message!r}")
        dialog.dismiss()

    refused: set[str] = set()  # pages the user may not see: the server's 403/404 is the right answer

    def on_console(message: Any) -> None:
        where = message.location.get("url", "")
        if message.type == "error" and not (message.text.startswith("Failed to load") and where in refused):
            found.add("console error", f"{message.text} at {where}")

    def on_response(response: Any) -> None:
        if response.status >= 500:
            found.add(f"HTTP {response.status}", response.url)
        elif response.status >= 400 and response.request.resource_type == "document":
            refused.add(response.url)

    page.on("dialog", on_dialog)
    page.on("console", on_console)
    page.on("pageerror", lambda error: found.add("page error", str(error)))
    page.on("response", on_response)


def _english_on_page(page: Any, url: str, found: Findings, pattern: re.Pattern[str], names: set[str]) -> None:
    visible = page.inner_text("body")
    allowed = names | set(FAB_UNTRANSLATED) if url.startswith(FAB_SCREENS) else set()
    for hit in sorted(set(pattern.findall(visible)) - allowed):
        found.add("English label in the Russian UI", hit)


def _permission_names(app: Any) -> set[str]:
    from flask_appbuilder.security.sqla.models import Permission, ViewMenu

    from app.extensions import db

    with app.app_context():
        names = set(db.session.scalars(select(ViewMenu.name))) | set(
            db.session.scalars(select(Permission.name))
        )
        db.session.remove()
    return names


def _sign_in(page: Any, base: str, username: str, password: str) -> None:
    page.goto(f"{base}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url(f"{base}/")


def _walk(browser: Any, base: str, urls: list[str], user: tuple[str, str], names: set[str]) -> list[str]:
    words = _english_labels()
    pattern = re.compile(
        r"(?<![\w-])(" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) + r")(?![\w-])"
    )
    context = browser.new_context(locale="ru-RU", viewport={"width": 1366, "height": 768})
    page = context.new_page()
    username, password = user
    found = Findings()
    _watch(page, found)
    try:
        found.url = f"{username} /login/"
        _sign_in(page, base, username, password)
        for url in urls:
            found.url = f"{username} {url}"
            if DATA_ROUTES.search(url):  # JSON for scripts and API clients: only its status matters here
                answer = context.request.get(base + url)
                if answer.status >= 500:
                    found.add(f"HTTP {answer.status}", url)
                continue
            response = page.goto(base + url, wait_until="load")
            kind = (response.headers.get("content-type", "") if response else "") or ""
            if os.environ.get("TABULA_WALK_DUMP") and found.problems:
                Path(os.environ["TABULA_WALK_DUMP"]).write_text(page.content())
            if "text/html" in kind and "/login/" not in page.url:
                _english_on_page(page, url, found, pattern, names)
        # The top bar's search answers while typing (results drawn by script).
        found.url = f"{username} top bar search"
        page.goto(f"{base}/")
        page.fill("#global-search-input", "<script")
        page.wait_for_timeout(0)
        page.wait_for_load_state("networkidle")
    finally:
        context.close()
    return found.problems


# Hundreds of pages, twice: minutes alone, longer while the other workers of a parallel run share the cores.
@pytest.mark.timeout(900)
def test_every_screen_in_russian_with_hostile_labels(browser, walk_server) -> None:  # noqa: ANN001
    base, (app, planted) = walk_server
    urls = _screens(app, planted)
    only = os.environ.get("TABULA_WALK_ONLY")  # e.g. "/admin/" while fixing what the walk found
    urls = [u for u in urls if re.search(only, u)] if only else urls
    assert only or len(urls) > 100, urls  # the discovery found the tables' screens, not only a few routes
    names = _permission_names(app)
    problems = _walk(browser, base, urls, ("admin", ADMIN_PASSWORD), names)
    # Staff are refused the admin and security screens: their index pages show the refusal is clean; the
    # same refusal for every id of them adds nothing.
    staff_urls = [u for u in urls if not (u.startswith(ADMIN_AREAS) and re.search(r"\d", u))]
    problems += _walk(browser, base, staff_urls, ("walker", WALKER_PASSWORD), names)
    assert not problems, f"{len(problems)} problems on {len(urls)} screens:\n" + "\n".join(problems)
