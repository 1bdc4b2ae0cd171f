"""Core CRM models become system entities: their code-defined columns are recorded as system fields, so
the same generator serves them as custom tables, and admins add custom fields to them.

``sync_core_entities`` runs in ``tabula init``: it adds what is missing and never touches an admin's
labels or custom fields.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, Date, DateTime, Integer, Numeric, String, Text, func, select, text, update

from app.extensions import db
from custom_fields import schema_signal
from models import (
    Activity,
    Company,
    Contact,
    Deal,
    DealLine,
    Entity,
    Field,
    Invoice,
    Lead,
    Pipeline,
    Product,
    SalesPlan,
    SchemaState,
    Stage,
    Task,
)


def N_(text: str) -> str:  # noqa: N802
    """Marks a core label for translation (``make extract-messages``); it is stored in English and shown
    translated, unless an admin renames it."""
    return text


COLORS = ("#dbeafe", "#dcfce7", "#fef9c3", "#fee2e2", "#ede9fe", "#fce7f3", "#e0f2fe", "#f3f4f6")


def _options(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    """Options of a core choice field: readable ids that code and reports can rely on, English labels
    (shown translated)."""
    return [
        {"id": oid, "label": label, "color": COLORS[i % len(COLORS)]} for i, (oid, label) in enumerate(pairs)
    ]


CURRENCIES = _options(*((code.lower(), code) for code in ("RUB", "USD", "EUR", "CNY", "KZT", "BYN")))
SOURCES = _options(
    ("web_form", N_("Web form")),
    ("call", N_("Call")),
    ("email", N_("E-mail")),
    ("import", N_("Import")),
    ("manual", N_("Manual")),
    ("referral", N_("Referral")),
    ("exhibition", N_("Exhibition")),
)
ACTIVITY_KINDS = _options(
    ("call", N_("Call")),
    ("email", N_("Letter")),
    ("meeting", N_("Meeting")),
    ("note", N_("Note")),
    ("sms", N_("SMS")),
    ("complaint", N_("Complaint")),
)
TASK_STATUSES = _options(
    ("open", N_("Not started")),
    ("in_progress", N_("In progress")),
    ("done", N_("Done")),
    ("cancelled", N_("Cancelled")),
)
LOST_BECAUSE = _options(
    ("price", N_("Price")),
    ("competitor", N_("Chose a competitor")),
    ("budget", N_("No budget")),
    ("needs", N_("Did not fit the needs")),
    ("timing", N_("Not now")),
    ("silence", N_("Stopped responding")),
    ("other", N_("Other")),
)
INVOICE_STATUSES = _options(
    ("draft", N_("Draft")),
    ("issued", N_("Issued")),
    ("partly_paid", N_("Partly paid")),
    ("paid", N_("Paid")),
    ("cancelled", N_("Cancelled")),
)
CURRENCY = {"label": N_("Currency"), "type": "single_select", "default": "rub", "options": CURRENCIES}
OWNER = {"label": N_("Owner"), "type": "user"}
CREATED = {"label": N_("Created"), "auto": True}


def _to(label: str, target: str, *, hidden: bool = False, **hints: Any) -> dict[str, Any]:
    """A link to another core table."""
    return {"label": label, "type": "link", "target": target, "show_in_list": not hidden, **hints}


def _derived(label: str, **hints: Any) -> dict[str, Any]:
    return {"label": label, "auto": True, "derived": True, **hints}


# slug -> (model, label, plural label, icon, display column, {column: field settings})
CORE: dict[str, tuple[type, str, str, str, str, dict[str, dict[str, Any]]]] = {
    "companies": (
        Company, N_("Company"), N_("Companies"), "fa-building", "name",
        {
            "name": {"label": N_("Name"), "required": True},
            "kind": {"label": N_("Kind"), "type": "single_select", "options": _options(
                ("customer", N_("Customer")), ("supplier", N_("Supplier")), ("partner", N_("Partner")),
                ("competitor", N_("Competitor")), ("other", N_("Other")))},
            "tax_id": {"label": N_("Tax ID"), "type": "tax_id", "kind": "inn", "foreign_field": "is_foreign"},
            "is_foreign": {"label": N_("Foreign company"), "show_in_list": False,
                           "help": N_("Its tax ID need not be a Russian INN.")},
            "industry": {"label": N_("Industry"), "type": "single_select", "options": _options(
                ("retail", N_("Retail")), ("wholesale", N_("Wholesale")),
                ("manufacturing", N_("Manufacturing")),
                ("construction", N_("Construction")), ("it", N_("IT")), ("services", N_("Services")),
                ("logistics", N_("Logistics")), ("finance", N_("Finance")), ("public", N_("Public sector")),
                ("other", N_("Other")))},
            "region": {"label": N_("Region")},
            "email": {"label": N_("E-mail"), "type": "email"},
            "phone": {"label": N_("Phone"), "type": "phone"},
            "phone2": {"label": N_("Other phone"), "type": "phone", "show_in_list": False},
            "website": {"label": N_("Website"), "type": "url", "show_in_list": False},
            "address": {"label": N_("Address"), "show_in_list": False},
            "tags": {"label": N_("Tags"), "type": "multi_select", "options": _options(
                ("vip", N_("VIP")), ("key", N_("Key account")), ("new", N_("New")),
                ("at_risk", N_("At risk")), ("dormant", N_("Dormant")))},
            "notes": {"label": N_("Notes"), "show_in_list": False},
            "last_activity_at": _derived(
                N_("Last activity"), show_in_list=False,
                help=N_("When its newest activity happened; empty if it never had one.")),
            "owner_id": OWNER,
            "created_at": CREATED,
        },
    ),
    "contacts": (
        Contact, N_("Contact"), N_("Contacts"), "fa-user", "full_name",
        {
            "full_name": _derived(N_("Full name")),
            "last_name": {"label": N_("Last name"), "show_in_list": False},
            "first_name": {"label": N_("First name"), "required": True, "show_in_list": False},
            "middle_name": {"label": N_("Middle name"), "show_in_list": False},
            "company_id": _to(N_("Company"), "companies"),
            "position": {"label": N_("Job title")},
            "email": {"label": N_("E-mail"), "type": "email"},
            "email2": {"label": N_("Other e-mail"), "type": "email", "show_in_list": False},
            "phone": {"label": N_("Phone"), "type": "phone"},
            "mobile": {"label": N_("Mobile"), "type": "phone"},
            "birthday": {"label": N_("Birthday"), "show_in_list": False},
            "preferred_channel": {"label": N_("Preferred channel"), "type": "single_select",
                                  "show_in_list": False, "options": _options(
                ("phone", N_("Phone")), ("email", N_("E-mail")), ("sms", N_("SMS")),
                ("messenger", N_("Messenger")), ("meeting", N_("Meeting")))},
            "email_consent": {"label": N_("Agrees to e-mails"), "show_in_list": False},
            "email_consent_at": {"label": N_("E-mail consent given"), "show_in_list": False},
            "email_consent_source": {"label": N_("E-mail consent source"), "show_in_list": False},
            "sms_consent": {"label": N_("Agrees to SMS"), "show_in_list": False},
            "sms_consent_at": {"label": N_("SMS consent given"), "show_in_list": False},
            "sms_consent_source": {"label": N_("SMS consent source"), "show_in_list": False},
            "notes": {"label": N_("Notes"), "show_in_list": False},
            "owner_id": OWNER,
            "created_at": CREATED,
        },
    ),
    "leads": (
        Lead, N_("Lead"), N_("Leads"), "fa-inbox", "title",
        {
            "title": {"label": N_("Request"), "required": True},
            "source": {"label": N_("Source"), "type": "single_select", "options": SOURCES},
            "status": {"label": N_("Status"), "type": "single_select", "default": "new", "options": _options(
                ("new", N_("New")), ("in_progress", N_("In progress")), ("converted", N_("Converted")),
                ("rejected", N_("Rejected")))},
            "contact_name": {"label": N_("Contact person")},
            "company_name": {"label": N_("Company name")},
            "email": {"label": N_("E-mail"), "type": "email"},
            "phone": {"label": N_("Phone"), "type": "phone"},
            "tax_id": {"label": N_("Tax ID"), "type": "tax_id", "kind": "inn", "foreign_field": "is_foreign",
                       "show_in_list": False},
            "is_foreign": {"label": N_("Foreign company"), "show_in_list": False,
                           "help": N_("Its tax ID need not be a Russian INN.")},
            "message": {"label": N_("Message"), "show_in_list": False},
            "company_id": _to(N_("Company"), "companies", hidden=True),
            "contact_id": _to(N_("Contact"), "contacts", hidden=True),
            "deal_id": _to(N_("Deal"), "deals", hidden=True),
            "converted_at": _derived(N_("Converted"), show_in_list=False),
            "first_response_at": _derived(
                N_("First response"), show_in_list=False,
                help=N_("The first outbound call, letter, meeting or SMS with the lead (failed attempts "
                        "included).")),
            "response_hours": _derived(
                N_("Response time, h"), show_in_list=False,
                help=N_("Hours from the lead's arrival to its first response.")),
            "owner_id": OWNER,
            "created_at": CREATED,
        },
    ),
    "pipelines": (
        Pipeline, N_("Pipeline"), N_("Pipelines"), "fa-filter", "name",
        {
            "name": {"label": N_("Name"), "required": True},
            "position": {"label": N_("Order")},
            "active": {"label": N_("Active"), "default": "true"},
            "owner_id": OWNER,
            "created_at": CREATED,
        },
    ),
    "stages": (
        Stage, N_("Stage"), N_("Stages"), "fa-columns", "name",
        {
            "name": {"label": N_("Name"), "required": True},
            "pipeline_id": _to(N_("Pipeline"), "pipelines", required=True),
            "position": {"label": N_("Order")},
            "probability": {"label": N_("Probability"), "type": "percent"},
            "is_won": {"label": N_("Won"), "default": "false"},
            "is_lost": {"label": N_("Lost"), "default": "false"},
            "owner_id": OWNER,
            "created_at": CREATED,
        },
    ),
    "products": (
        Product, N_("Product"), N_("Products"), "fa-cube", "name",
        {
            "name": {"label": N_("Name"), "required": True},
            "sku": {"label": N_("SKU"), "unique": True},
            "unit": {"label": N_("Unit")},
            "price": {"label": N_("Price"), "scale": 2},
            "currency": CURRENCY,
            "active": {"label": N_("Active"), "default": "true"},
            "description": {"label": N_("Description"), "show_in_list": False},
            "owner_id": OWNER,
            "created_at": CREATED,
        },
    ),
    "deals": (
        Deal, N_("Deal"), N_("Deals"), "fa-handshake-o", "title",
        {
            "title": {"label": N_("Title"), "required": True},
            "company_id": _to(N_("Company"), "companies"),
            "contact_id": _to(N_("Contact"), "contacts", hidden=True),
            "pipeline_id": _derived(N_("Pipeline"), type="link", target="pipelines", show_in_list=False),
            "stage_id": _to(N_("Stage"), "stages", required=True),
            "reached_stage_id": _derived(
                N_("Furthest stage reached"), type="link", target="stages", show_in_list=False,
                help=N_("The furthest open or won stage the deal has been at; a lost deal keeps the stage it "
                        "was lost after.")),
            "amount": {"label": N_("Amount"), "scale": 2,
                       "help": N_("Computed from the deal's lines when it has any.")},
            "currency": CURRENCY,
            "probability": {"label": N_("Probability"), "type": "percent",
                            "help": N_("Taken from the stage when left empty.")},
            "weighted_amount": _derived(
                N_("Weighted amount"), scale=2, show_in_list=False,
                help=N_("The amount times the probability: what the forecast counts.")),
            "expected_close": {"label": N_("Expected close")},
            "source": {"label": N_("Source"), "type": "single_select", "show_in_list": False,
                       "options": SOURCES},
            "lost_because": {"label": N_("Why lost"), "type": "single_select", "show_in_list": False,
                             "options": LOST_BECAUSE},
            "lost_reason": {"label": N_("Lost reason"), "show_in_list": False},
            "closed_at": _derived(N_("Closed"), show_in_list=False),
            "won": _derived(N_("At a won stage"), show_in_list=False),
            "notes": {"label": N_("Notes"), "show_in_list": False},
            "owner_id": OWNER,
            "created_at": CREATED,
        },
    ),
    "deal_lines": (
        DealLine, N_("Deal line"), N_("Deal lines"), "fa-list-ol", "description",
        {
            "deal_id": _to(N_("Deal"), "deals", required=True, scope_parent=True),
            "product_id": _to(N_("Product"), "products"),
            "description": {"label": N_("Description")},
            "quantity": {"label": N_("Quantity"), "required": True, "default": "1"},
            "price": {"label": N_("Price"), "scale": 2,
                      "help": N_("Taken from the product when left empty.")},
            "discount": {"label": N_("Discount"), "type": "percent"},
            "total": _derived(N_("Total")),
            "owner_id": OWNER,
            "created_at": CREATED,
        },
    ),
    "activities": (
        Activity, N_("Activity"), N_("Activities"), "fa-comments", "subject",
        {
            "kind": {"label": N_("Type"), "type": "single_select", "required": True, "default": "call",
                     "options": ACTIVITY_KINDS},
            "direction": {"label": N_("Direction"), "type": "single_select", "default": "outbound",
                          "options": _options(("inbound", N_("Inbound")), ("outbound", N_("Outbound")))},
            "outcome": {"label": N_("Outcome"), "type": "single_select", "default": "done",
                        "options": _options(
                ("done", N_("Done")), ("no_answer", N_("No answer")), ("busy", N_("Busy")),
                ("failed", N_("Failed")))},
            "occurred_at": {"label": N_("When"), "help": N_("Now, when left empty.")},
            "duration_min": {"label": N_("Duration, min"), "show_in_list": False},
            "subject": {"label": N_("Subject")},
            "body": {"label": N_("Details"), "show_in_list": False},
            "company_id": _to(N_("Company"), "companies"),
            "contact_id": _to(N_("Contact"), "contacts"),
            "deal_id": _to(N_("Deal"), "deals", hidden=True),
            "lead_id": _to(N_("Lead"), "leads", hidden=True),
            "complaint_category": {"label": N_("Complaint category"), "type": "single_select",
                                   "show_in_list": False, "options": _options(
                ("quality", N_("Quality")), ("delivery", N_("Delivery")), ("billing", N_("Billing")),
                ("service", N_("Service")), ("other", N_("Other")))},
            "resolution": {"label": N_("Resolution"), "type": "single_select", "show_in_list": False,
                           "options": _options(
                ("open", N_("Unresolved")), ("in_progress", N_("In progress")), ("resolved", N_("Resolved")),
                ("rejected", N_("Rejected")))},
            "resolved_at": _derived(
                N_("Resolved on"), show_in_list=False,
                help=N_("When the complaint was resolved or rejected.")),
            "resolution_days": _derived(
                N_("Days to resolve"), show_in_list=False,
                help=N_("Days from the complaint to its resolution.")),
            "owner_id": OWNER,
            "created_at": CREATED,
        },
    ),
    "tasks": (
        Task, N_("Task"), N_("Tasks"), "fa-check-square-o", "title",
        {
            "title": {"label": N_("Title"), "required": True},
            "due_at": {"label": N_("Due")},
            "assignee_id": {"label": N_("Assignee"), "type": "user",
                            "help": N_("Whoever creates the task, when left empty.")},
            "status": {"label": N_("Status"), "type": "single_select", "default": "open",
                       "options": TASK_STATUSES},
            "priority": {"label": N_("Priority"), "type": "single_select", "default": "normal",
                         "options": _options(("low", N_("Low")), ("normal", N_("Normal")),
                                             ("high", N_("High")), ("urgent", N_("Urgent")))},
            "company_id": _to(N_("Company"), "companies"),
            "contact_id": _to(N_("Contact"), "contacts", hidden=True),
            "deal_id": _to(N_("Deal"), "deals", hidden=True),
            "reminder_at": {"label": N_("Remind at"), "show_in_list": False},
            "description": {"label": N_("Description"), "show_in_list": False},
            "completed_at": _derived(N_("Completed"), show_in_list=False),
            "owner_id": OWNER,
            "created_at": CREATED,
        },
    ),
    "invoices": (
        Invoice, N_("Invoice"), N_("Invoices"), "fa-file-text-o", "number",
        {
            "number": {"label": N_("Number"), "required": True, "unique": True},
            "company_id": _to(N_("Company"), "companies"),
            "deal_id": _to(N_("Deal"), "deals", hidden=True),
            "amount": {"label": N_("Amount"), "scale": 2, "required": True},
            "currency": CURRENCY,
            "issued_on": {"label": N_("Issued")},
            "due_on": {"label": N_("Due")},
            "paid_amount": {"label": N_("Paid"), "scale": 2},
            "status": {"label": N_("Status"), "type": "single_select", "default": "issued",
                       "help": N_("Becomes “Paid” by itself once the paid amount covers the invoice."),
                       "options": INVOICE_STATUSES},
            "balance": _derived(N_("Balance due"), scale=2),
            "overdue_days": _derived(N_("Days overdue")),
            "paid_on": {"label": N_("Paid on"), "show_in_list": False,
                        "help": N_("The day the invoice was paid in full: today when it becomes “Paid”, "
                                   "unless you give another day; cleared while it is not paid.")},
            "owner_id": OWNER,
            "created_at": CREATED,
        },
    ),
    "sales_plans": (
        SalesPlan, N_("Sales plan"), N_("Sales plans"), "fa-bullseye", "name",
        {
            "name": _derived(N_("Plan")),
            "manager_id": {"label": N_("Salesperson"), "type": "user", "required": True},
            "month": {"label": N_("Month"), "required": True,
                      "help": N_("Any day of the month: the plan is for the whole month.")},
            "amount": {"label": N_("Planned amount"), "scale": 2,
                       "help": N_("The amount of deals won in the month.")},
            "currency": CURRENCY,
            "deals_count": {"label": N_("Planned won deals")},
            "notes": {"label": N_("Notes"), "show_in_list": False},
            "owner_id": OWNER,
            "created_at": CREATED,
        },
    ),
}  # fmt: skip

#: Rights the built-in roles get on reference tables, once (see ``access.seed_defaults``): everyone reads
#: every pipeline, stage and product; only admins change pipelines; managers keep the price list.
_READ_ONLY_ALL = {"read": True, "add": False, "edit": False, "delete": False, "read_scope": "all"}
SEEDED_TABLE_RULES: dict[tuple[str, str], dict[str, Any]] = {
    ("Staff", "pipelines"): _READ_ONLY_ALL,
    ("Staff", "stages"): _READ_ONLY_ALL,
    ("Staff", "products"): _READ_ONLY_ALL,
    ("Manager", "pipelines"): _READ_ONLY_ALL,
    ("Manager", "stages"): _READ_ONLY_ALL,
    ("Manager", "products"): {"read_scope": "all", "edit_scope": "all", "delete_scope": "all"},
    # Staff read their own plans (their own: the salesperson field); managers set their team's.
    ("Staff", "sales_plans"): {**_READ_ONLY_ALL, "read_scope": "own"},
}
#: Staff see who owns a record but may not hand it over; managers reassign owners.
SEEDED_FIELD_MODES: dict[tuple[str, str, str], str] = {("Staff", slug, "owner_id"): "view" for slug in CORE}


def _type_of(col: Any, hints: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if "type" in hints:
        return hints["type"], {}
    sql_type = col.type
    if isinstance(sql_type, Boolean):
        return "boolean", {}
    if isinstance(sql_type, DateTime):
        return "datetime", {}
    if isinstance(sql_type, Date):
        return "date", {}
    if isinstance(sql_type, Numeric):
        return "decimal", {"scale": sql_type.scale or 0}
    if isinstance(sql_type, Integer):
        return "integer", {}
    if isinstance(sql_type, Text):
        return "long_text", {}
    if isinstance(sql_type, String):
        return "text", {"max_length": sql_type.length or 255}
    raise TypeError(f"no field type for {col}")


def sync_core_entities() -> int:
    """Record every core model and its columns as system metadata; returns how many rows were added."""
    added = 0
    slugs = {e.slug: e for e in db.session.scalars(select(Entity).where(Entity.is_system.is_(True)))}
    for position, (slug, (model, label, plural, icon, _display, _fields)) in enumerate(CORE.items(), start=1):
        if slug not in slugs:
            entity = Entity(
                slug=slug, table_name=model.__tablename__, label=label, plural_label=plural, icon=icon,
                is_system=True, position=-100 + position,
            )  # fmt: skip
            db.session.add(entity)
            db.session.flush()
            slugs[slug] = entity
            added += 1
    for slug, (model, _label, _plural, _icon, display, columns) in CORE.items():
        entity = slugs[slug]
        existing = {f.name: f for f in db.session.scalars(select(Field).where(Field.entity_id == entity.id))}
        for position, (name, hints) in enumerate(columns.items(), start=1):
            if name in existing:
                continue
            col = model.__table__.c[name]
            type_name, settings = _type_of(col, hints)
            if "target" in hints:  # a link: the target table, by its id here
                settings = {"target": slugs[hints["target"]].id}
            if "options" in hints:
                settings = {"options": hints["options"]}
            for key in ("scale", "auto", "derived", "scope_parent", "kind", "foreign_field"):
                if key in hints:
                    settings[key] = hints[key]
            row = Field(
                entity_id=entity.id, name=name, column_name=name, label=hints["label"], type=type_name,
                required=bool(hints.get("required")), unique=bool(hints.get("unique")),
                default=hints.get("default"), help_text=hints.get("help", ""), settings=settings,
                position=position, show_in_list=hints.get("show_in_list", True),
                searchable=not hints.get("auto"), is_system=True,
            )  # fmt: skip
            db.session.add(row)
            db.session.flush()
            existing[name] = row
            added += 1
        if entity.display_field_id is None:
            entity.display_field_id = existing[display].id
    if added:
        db.session.execute(
            update(SchemaState).where(SchemaState.id == 1).values(version=SchemaState.version + 1)
        )
        schema_signal.mark_changed(db.session)
    db.session.commit()
    return added


def _has_index(conn: Any, name: str) -> bool:
    # By name: SQLAlchemy's inspector skips expression indexes on SQLite.
    if conn.dialect.name == "sqlite":
        query = text("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = :name")
    else:
        query = text("SELECT 1 FROM pg_indexes WHERE indexname = :name")
    return conn.execute(query, {"name": name}).first() is not None


def ensure_unique_indexes() -> list[str]:
    """Create the core tables' unique indexes that are missing (migration 0005 skips one while values
    repeat); returns, for each still missing, which values repeat (for ``tabula init`` to print)."""
    problems: list[str] = []
    conn = db.session.connection()
    for model, *_rest in CORE.values():
        table = model.__table__
        for index in sorted((i for i in table.indexes if i.unique), key=lambda i: str(i.name)):
            if _has_index(conn, str(index.name)):
                continue
            key = next(iter(index.expressions))
            count = func.count()
            query = select(key, count).where(key.is_not(None)).group_by(key).having(count > 1).limit(20)
            repeated = db.session.execute(query).all()
            if repeated:
                shown = ", ".join(f"{value} ({count})" for value, count in repeated)
                problems.append(
                    f"{table.name}: unique index {index.name} not created; these values occur in more than "
                    f"one record (letter case ignored, recycle bin included): {shown}"
                )
            else:
                index.create(conn)
    db.session.commit()
    return problems
