"""One door for reading: no module outside the query layer (``custom_fields/query.py``) and the rules
(``custom_fields/access.py``) applies a row scope by itself, and a screen shows no label of a record its
reader may not read."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from flask_appbuilder.security.sqla.models import User
from sqlalchemy import select

from app.extensions import db
from custom_fields import records
from custom_fields.access import Actor
from custom_fields.query import TableQuery

ROOT = Path(__file__).resolve().parent.parent
DOOR = {"custom_fields/query.py", "custom_fields/access.py"}
# The write path still finds its rows by itself; its owner moves it onto the layer
# (TableQuery.rows_statement), and then this allowance goes.
NOT_YET = {"custom_fields/records.py"}
SKIPPED = {".venv", "tests", "node_modules", ".git"}


def sources() -> list[Path]:
    return [p for p in ROOT.rglob("*.py") if not SKIPPED & set(p.relative_to(ROOT).parts)]


def test_no_module_outside_the_query_layer_applies_row_filter() -> None:
    calls = {
        str(path.relative_to(ROOT))
        for path in sources()
        if re.search(r"\brow_filter\(", path.read_text(encoding="utf-8"))
    }
    assert calls - DOOR <= NOT_YET, sorted(calls - DOOR - NOT_YET)


def test_no_module_outside_the_query_layer_imports_row_filter() -> None:
    importers = set()
    for path in sources():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.Attribute) and node.attr == "row_filter":
                names = ["row_filter"]
            if "row_filter" in names:
                importers.add(str(path.relative_to(ROOT)))
    assert importers - DOOR <= NOT_YET, sorted(importers - DOOR - NOT_YET)


def _user_id(username: str) -> int:
    return db.session.scalar(select(User.id).where(User.username == username))


def test_labels_of_records_the_reader_may_not_read_are_not_shown(app, staff_client) -> None:  # noqa: ANN001
    """staff1 (own scope) owns a deal linked to the admin's company: the deal's page, its edit form and
    the board show the company as ``#id``, never its name; the admin sees the name."""
    board = staff_client.get("/board/")
    assert board.status_code == 302
    pipeline = int(board.headers["Location"].rstrip("/").split("/")[-1].split("?")[0])
    with app.app_context():
        admin = Actor.of_user(db.session.get(User, _user_id("admin")))
        stages = TableQuery("stages", admin).where({"field": "pipeline_id", "op": "eq", "value": pipeline})
        stage = stages.order_by("position").page(1).rows[0]["id"]
        company = records.create(
            "companies", {"name": "Тайная <i>компания</i>", "kind": "customer"}, admin
        ).id
        values = {"title": "Сделка с тайной", "company_id": company, "stage_id": stage}
        deal = records.create("deals", {**values, "owner_id": _user_id("staff1")}, admin).id
    pages: dict[str, Any] = {
        "show": staff_client.get(f"/t/deals/show/{deal}"),
        "edit": staff_client.get(f"/t/deals/edit/{deal}"),
        "board": staff_client.get("/board/", follow_redirects=True),
    }
    for name, response in pages.items():
        html = response.get_data(as_text=True)
        assert response.status_code == 200, name
        assert "Тайная" not in html, name
    assert f"#{company}" in pages["show"].get_data(as_text=True)
    assert "Сделка с тайной" in pages["board"].get_data(as_text=True)
