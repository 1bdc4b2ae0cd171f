"""The report builder's page and JSON routes: what a table offers to group and measure (as the user may see
it), the pivot with a grid link for every figure that opens exactly the records behind it, and refusals
(hidden fields, anonymous visitors, a missing form token, malformed reports) that change nothing."""

from __future__ import annotations

import html
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

from custom_fields.access import Actor, save_rules
from custom_fields.query import TableQuery
from custom_fields.runtime import refresh
from tests.conftest import csrf_token
from tests.test_exports import deals_table, role_id, user_id  # noqa: F401 (a fixture)
from tests.test_route_authorization import database_digest


def token_of(client: Any) -> str:
    return csrf_token(client.get("/reports/").get_data(as_text=True))


def post(client: Any, body: Any, token: str | None) -> Any:
    headers = {"X-CSRFToken": token} if token else {}
    return client.post(
        "/reports/run", data=json.dumps(body), content_type="application/json", headers=headers
    )


def test_the_builder_offers_what_the_user_may_see(app, staff_client, deals_table) -> None:  # noqa: ANN001, F811
    page = staff_client.get("/reports/")
    assert page.status_code == 200
    attribute = page.get_data(as_text=True).split('data-config="', 1)[1].split('"', 1)[0]
    config = json.loads(html.unescape(attribute))
    assert deals_table["slug"] in {t["slug"] for t in config["tables"]}
    offered = staff_client.get(f"/reports/fields/{deals_table['slug']}").get_json()
    names = deals_table["names"]
    groups = {g["name"]: g for g in offered["groups"]}
    assert names["Секрет"] not in groups  # hidden from Staff
    assert [u["unit"] for u in groups[names["Когда"]]["units"]][:3] == ["day", "week", "month"]
    sums = next(m for m in offered["measures"] if m["function"] == "sum")
    assert [f["name"] for f in sums["fields"]] == [names["Сумма"]]
    assert staff_client.get("/reports/fields/no_such_table").status_code == 404


def test_figures_link_to_exactly_their_records(app, staff_client, deals_table) -> None:  # noqa: ANN001, F811
    names, slug = deals_table["names"], deals_table["slug"]
    body = {
        "table": slug,
        "rows": [names["Этап"]],
        "column": names["Когда"] + ":month",
        "measures": [{"function": "count"}, {"function": "sum", "field": names["Сумма"]}],
    }
    answer = post(staff_client, body, token_of(staff_client))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    result = answer.get_json()
    staff1 = Actor.for_user_id(user_id("staff1"))
    count = result["measures"][0]["alias"]
    assert result["grand_totals"][count] == 2  # staff1's own two rows
    for i, row in enumerate(result["links"]):
        for j, link in enumerate(row):
            parts = urlsplit(link)
            assert parts.path == f"/grid/{slug}/"
            state = json.loads(parse_qs(parts.query)["state"][0])
            found = TableQuery(slug, staff1).where(state["filter"]).count().value
            assert found == (result["cells"][count][i][j] or 0)
    assert staff_client.get(result["links"][0][0]).status_code == 200  # the grid opens on it


def test_refusals_change_nothing(app, client, staff_client, deals_table) -> None:  # noqa: ANN001, F811
    names, slug = deals_table["names"], deals_table["slug"]
    token = token_of(staff_client)
    before = database_digest()
    hidden = {"table": slug, "rows": [names["Секрет"]]}
    assert post(staff_client, hidden, token).status_code == 400
    for bad in (None, [], {"table": slug, "rows": "x"}, {"table": slug, "top": -1}, {"table": "nope"}):
        answer = post(staff_client, bad, token)
        assert answer.status_code in (400, 404) and answer.get_json()["message"]
    assert post(staff_client, {"table": slug}, None).status_code == 400  # no form token
    # A report's workbook: refused for a hidden field, without the export right, or without a token.
    export = {"table": slug, "rows": [names["Этап"]]}
    headers = {"X-CSRFToken": token}
    hidden_export = json.dumps({"table": slug, "rows": [names["Секрет"]]})
    answer = staff_client.post(
        "/reports/export", data=hidden_export, content_type="application/json", headers=headers
    )
    assert answer.status_code == 400
    assert (
        staff_client.post(
            "/reports/export", data=json.dumps(export), content_type="application/json"
        ).status_code
        == 400
    )
    assert post(client, {"table": slug}, token).status_code in (400, 401, 403)  # not signed in
    assert database_digest() == before
    from sqlalchemy import func, select

    from app.extensions import db
    from models.exports import ExportFile

    count = select(func.count()).select_from(ExportFile)
    exports_before = db.session.scalar(count)
    save_rules(role_id("Staff"), tables={deals_table["entity"].id: {"export": False}})
    refresh()
    answer = staff_client.post(
        "/reports/export", data=json.dumps(export), content_type="application/json", headers=headers
    )
    assert answer.status_code == 403 and answer.get_json()["message"]
    assert db.session.scalar(count) == exports_before


def test_a_saved_view_is_a_reports_source(app, staff_client, deals_table) -> None:  # noqa: ANN001, F811
    from custom_fields import saved_views

    names, slug = deals_table["names"], deals_table["slug"]
    big = {"filter": {"field": names["Сумма"], "op": "gt", "value": "100"}}
    mine = saved_views.save(slug, Actor.for_user_id(user_id("staff1")), "Крупные", big).id
    theirs = saved_views.save(slug, Actor.for_user_id(user_id("staff2")), "Чужой", {}).id
    offered = staff_client.get(f"/reports/fields/{slug}").get_json()["views"]
    assert mine in {v["id"] for v in offered} and theirs not in {v["id"] for v in offered}
    token = token_of(staff_client)
    result = post(staff_client, {"table": slug, "view": mine}, token).get_json()
    [[count]] = result["cells"][result["measures"][0]["alias"]]
    assert count == 1  # staff1's rows above 100: "=1+2" (1234.50)
    state = json.loads(parse_qs(urlsplit(result["total_link"]).query)["state"][0])
    assert TableQuery(slug, Actor.for_user_id(user_id("staff1"))).where(state["filter"]).count().value == 1
    assert post(staff_client, {"table": slug, "view": theirs}, token).status_code == 404


def test_a_report_exports_to_a_workbook_with_its_chart(
    app,  # noqa: ANN001
    staff_client,  # noqa: ANN001
    deals_table,  # noqa: F811
    worker,  # noqa: ANN001
    tmp_path,  # noqa: ANN001
) -> None:
    import csv
    import io
    import shutil
    import subprocess
    import zipfile

    import openpyxl

    from tests.test_exports import wait_export

    names, slug = deals_table["names"], deals_table["slug"]
    body = {
        "table": slug,
        "rows": [names["Этап"]],
        "column": names["Когда"] + ":month",
        "measures": [{"function": "count"}, {"function": "sum", "field": names["Сумма"]}],
        "chart": "stacked",
    }
    token = token_of(staff_client)
    started = staff_client.post(
        "/reports/export",
        data=json.dumps(body),
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )
    assert started.status_code == 202, started.get_data(as_text=True)
    export = wait_export(started.get_json()["id"])
    assert export.status == "ready", export.message
    data = staff_client.get(f"/exports/{export.id}/download").data
    assert "xl/charts/chart1.xml" in zipfile.ZipFile(io.BytesIO(data)).namelist()  # a native Excel chart
    book = openpyxl.load_workbook(io.BytesIO(data))
    summary, records_sheet = book.worksheets[0], book.worksheets[1]
    cells = [list(r) for r in summary.iter_rows(values_only=True)]
    assert cells[2][0] == "Этап" and cells[2][1] == "December 2026: Number of records"
    # staff1's two rows, both "Выиграна" on 31.12.2026: 2 records, 1244.50 RUB.
    assert cells[3][:3] == ["Выиграна", 2, 1244.5]
    assert summary.cell(row=4, column=3).number_format == money_format(slug, names["Сумма"])
    rows = [list(r) for r in records_sheet.iter_rows(values_only=True)]
    assert len(rows) == 3 and "Секрет" not in rows[0]  # the records behind it, as staff1 may see them
    if shutil.which("soffice"):  # an independent reader sees the same totals
        path = tmp_path / "report.xlsx"
        path.write_bytes(data)
        subprocess.run(  # noqa: S603
            [shutil.which("soffice"), f"-env:UserInstallation=file://{tmp_path / 'profile'}", "--headless",
             "--convert-to", "csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,true",
             "--outdir", str(tmp_path), str(path)],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        with open(tmp_path / "report.csv", encoding="utf-8", newline="") as handle:
            seen = list(csv.reader(handle))
        assert seen[3][:2] == ["Выиграна", "2"] and seen[-1][0] == "Total"


def money_format(slug: str, name: str) -> str:
    from custom_fields.runtime import current
    from custom_fields.types import REGISTRY

    field = current().entity(slug).field_by_name(name)
    return REGISTRY[field.type].xlsx_format(field)["num_format"]
