"""The deal board: columns per stage with counts and totals per currency over the deals a user may read,
cards moved between columns through the write path (history, derived fields, optimistic locking), refusals
as JSON (never a 500), read-only for users who may not edit deals, and a drag in real chromium."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from typing import Any

import pytest
from flask_appbuilder.security.sqla.models import User
from sqlalchemy import select

from app.extensions import db
from custom_fields import access, history, records, runtime
from custom_fields.access import Actor
from tests.conftest import DEMO_PASSWORD, csrf_token
from views import board as board_module


def tag() -> str:
    return uuid.uuid4().hex[:8]


def user(username: str) -> User:
    return db.session.scalar(select(User).where(User.username == username))


def actor(username: str) -> Actor:
    return Actor.of_user(user(username))


def deal_row(pk: int) -> Any:
    db.session.expire_all()
    return db.session.get(runtime.current().classes["deals"], pk)


@pytest.fixture
def book(app_ctx) -> dict[str, Any]:  # noqa: ANN001
    """A pipeline with three stages and deals of staff1, staff2 and the admin; a second pipeline."""
    admin = actor("admin")
    t = tag()
    pipeline = records.create("pipelines", {"name": f"Доска {t}", "position": 5}, admin).id
    new, talks, won = (
        s.id
        for s in records.create_many(
            "stages",
            [
                {"name": f"Новая {t}", "pipeline_id": pipeline, "position": 1, "probability": "10"},
                {"name": f"Переговоры {t}", "pipeline_id": pipeline, "position": 2, "probability": "50"},
                {"name": f"Выиграна {t}", "pipeline_id": pipeline, "position": 3, "is_won": True},
            ],
            admin,
        )
    )
    other_pipeline = records.create("pipelines", {"name": f"Другая {t}", "position": 6}, admin).id
    elsewhere = records.create("stages", {"name": f"Чужая {t}", "pipeline_id": other_pipeline}, admin).id
    # staff1 owns the company, so their cards may show its name (a company they may not read shows "#id")
    company = records.create(
        "companies", {"name": f"ООО «Берёзка {t}»", "kind": "customer"}, actor("staff1")
    ).id
    staff1, staff2 = actor("staff1"), actor("staff2")

    def deal(who: Actor, title: str, stage: int, amount: str | None, currency: str | None = "rub") -> int:
        values = {"title": f"{title} {t}", "stage_id": stage, "amount": amount, "currency": currency}
        # The admin's company, out of staff's reach: the fixture links it through the system path.
        with records.linking_unreadable("test fixture: a shared company"):
            return records.create("deals", {**values, "company_id": company}, who).id

    return {
        "tag": t, "pipeline": pipeline, "new": new, "talks": talks, "won": won,
        "other_pipeline": other_pipeline, "elsewhere": elsewhere, "company": company,
        "mine1": deal(staff1, "Поставка <b>кирпича</b>", new, "100,50"),
        "mine2": deal(staff1, "Поставка цемента", new, "200"),
        "mine_usd": deal(staff1, "Экспорт", new, "10", "usd"),
        "mine_talks": deal(staff1, "Переговоры", talks, "5"),
        "theirs": deal(staff2, "Чужая сделка", new, "999"),
        "admins": deal(admin, "Сделка админа", new, "1"),
    }  # fmt: skip


def page(client, pipeline: int, **args: str) -> str:  # noqa: ANN001
    response = client.get(f"/board/{pipeline}", query_string=args)
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def columns(html: str) -> dict[int, str]:
    """The HTML of each column by stage id, in page order."""
    parts = re.split(r'(?=<div class="tabula-board-column" data-stage-id=")', html)
    found: dict[int, str] = {}
    for part in parts[1:]:
        stage = int(re.match(r'<div class="tabula-board-column" data-stage-id="(\d+)"', part).group(1))
        found[stage] = part
    return found


def card_ids(html: str) -> set[int]:
    return {int(x) for x in re.findall(r'data-deal-id="(\d+)"', html)}


def count_of(column_html: str) -> int:
    return int(re.search(r'class="badge board-count"[^>]*>(\d+)<', column_html).group(1))


def move(client, body: Any, token: str, **kwargs: Any):  # noqa: ANN001, ANN201
    return client.post("/board/move", json=body, headers={"X-CSRFToken": token}, **kwargs)


# --- reading ------------------------------------------------------------------------------------------------


def test_board_shows_the_deals_a_user_may_read_with_totals(book, staff_client, admin_client) -> None:  # noqa: ANN001
    html = page(staff_client, book["pipeline"])
    by_stage = columns(html)
    assert list(by_stage) == [book["new"], book["talks"], book["won"]]  # ordered by position
    shown = card_ids(html)
    assert {book["mine1"], book["mine2"], book["mine_usd"], book["mine_talks"]} <= shown
    assert book["theirs"] not in shown and book["admins"] not in shown  # Staff reads their own deals
    new = by_stage[book["new"]]
    assert (
        count_of(new) == 3 and count_of(by_stage[book["talks"]]) == 1 and count_of(by_stage[book["won"]]) == 0
    )
    assert "300.50 RUB" in new and "10.00 USD" in new and "999" not in new
    assert card_ids(new) == {book["mine1"], book["mine2"], book["mine_usd"]}
    # Cards: a link to the deal, the company, the amount, the owner; user text is escaped.
    assert f'href="/t/deals/show/{book["mine1"]}"' in new
    assert "Поставка &lt;b&gt;кирпича&lt;/b&gt;" in new and "<b>кирпича" not in new
    assert f"ООО «Берёзка {book['tag']}»" in new and "100.50 RUB" in new and "staff1" in new
    assert re.search(rf'data-deal-id="{book["mine1"]}" data-version="1"\s+draggable="true"', new)
    # The pipeline switcher, and the CSRF token the script sends.
    assert f'href="/board/{book["other_pipeline"]}"' in html and csrf_token(html)

    everything = columns(page(admin_client, book["pipeline"]))
    assert count_of(everything[book["new"]]) == 5
    assert "1,300.50 RUB" in everything[book["new"]]
    only_mine = columns(page(admin_client, book["pipeline"], mine="1"))
    assert card_ids(only_mine[book["new"]]) == {book["admins"]} and count_of(only_mine[book["new"]]) == 1


def test_board_redirects_to_the_first_active_pipeline(book, staff_client) -> None:  # noqa: ANN001
    pipelines = runtime.current().classes["pipelines"]
    first = db.session.scalar(
        select(pipelines.id)
        .where(pipelines.deleted_at.is_(None), pipelines.active.is_not(False))
        .order_by(pipelines.position.is_(None), pipelines.position, pipelines.id)
    )
    response = staff_client.get("/board/")
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/board/{first}")
    assert staff_client.get("/board/2147483647").status_code == 404
    assert staff_client.get("/board/abc").status_code == 404


def test_more_cards_than_a_column_shows(book, staff_client, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(board_module, "CARD_LIMIT", 2)
    new = columns(page(staff_client, book["pipeline"]))[book["new"]]
    assert count_of(new) == 3 and len(card_ids(new)) == 2
    assert card_ids(new) == {book["mine2"], book["mine_usd"]}  # the newest
    assert "1 more" in new and f"_flt_0_stage_id={book['new']}" in new


def test_anonymous_users_are_sent_to_sign_in(book, client) -> None:  # noqa: ANN001
    response = client.get(f"/board/{book['pipeline']}")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    token = csrf_token(client.get("/login/").get_data(as_text=True))
    body = {"deal_id": book["mine1"], "stage_id": book["talks"], "version": 1}
    refused = move(client, body, token)
    assert refused.status_code == 401
    assert deal_row(book["mine1"]).stage_id == book["new"]


# --- moving -------------------------------------------------------------------------------------------------


def test_move_goes_through_the_write_path(book, staff_client) -> None:  # noqa: ANN001
    token = csrf_token(page(staff_client, book["pipeline"]))
    response = move(staff_client, {"deal_id": book["mine1"], "stage_id": book["won"], "version": 1}, token)
    assert response.status_code == 200, response.get_data(as_text=True)
    data = response.get_json()
    assert data["ok"] is True and data["version"] == 2
    assert data["columns"][str(book["new"])]["count"] == 2
    assert data["columns"][str(book["won"])] == {
        "count": 1,
        "totals": [{"currency": "rub", "label": "RUB", "amount": "100.50", "text": "100.50 RUB"}],
    }
    row = deal_row(book["mine1"])
    assert (row.stage_id, row.row_version, row.pipeline_id) == (book["won"], 2, book["pipeline"])
    assert row.closed_at is not None  # derived: a won stage closes the deal
    deals = runtime.current().entity("deals")
    changes = [
        c
        for c in history.lines(deals.id, book["mine1"])
        if c.field_id == deals.field_by_name("stage_id").id and c.action == "update"
    ]
    assert [(c.old_value, c.new_value, c.source) for c in changes] == [(book["new"], book["won"], "ui")]
    assert changes[0].user_id == user("staff1").id
    # The board shows the card in its new column, with its new version.
    won = columns(page(staff_client, book["pipeline"]))[book["won"]]
    assert f'data-deal-id="{book["mine1"]}" data-version="2"' in won


def test_a_stale_move_is_refused_and_changes_nothing(book, staff_client) -> None:  # noqa: ANN001
    token = csrf_token(page(staff_client, book["pipeline"]))
    records.update("deals", book["mine2"], {"amount": "201"}, actor("staff1"), expected_version=1)
    response = move(staff_client, {"deal_id": book["mine2"], "stage_id": book["talks"], "version": 1}, token)
    assert response.status_code == 409
    data = response.get_json()
    assert data["ok"] is False and data["version"] == 2 and "Someone else changed" in data["message"]
    row = deal_row(book["mine2"])
    assert (row.stage_id, row.row_version, row.amount) == (book["new"], 2, Decimal("201.00"))


def test_a_stage_of_another_pipeline_is_refused(book, staff_client) -> None:  # noqa: ANN001
    token = csrf_token(page(staff_client, book["pipeline"]))
    body = {"deal_id": book["mine1"], "stage_id": book["elsewhere"], "version": 1}
    response = move(staff_client, body, token)
    assert response.status_code == 400 and "another pipeline" in response.get_json()["message"]
    # The board's own pipeline must match too.
    body = {
        "deal_id": book["mine1"],
        "stage_id": book["talks"],
        "version": 1,
        "pipeline_id": book["other_pipeline"],
    }
    assert move(staff_client, body, token).status_code == 400
    row = deal_row(book["mine1"])
    assert (row.stage_id, row.row_version) == (book["new"], 1)


def test_staff_may_not_move_someone_elses_deal(book, staff_client) -> None:  # noqa: ANN001
    token = csrf_token(page(staff_client, book["pipeline"]))
    response = move(staff_client, {"deal_id": book["theirs"], "stage_id": book["talks"], "version": 1}, token)
    assert response.status_code == 404 and response.get_json()["ok"] is False
    assert deal_row(book["theirs"]).stage_id == book["new"]


def test_a_deleted_stage_or_deal_is_refused(book, staff_client) -> None:  # noqa: ANN001
    token = csrf_token(page(staff_client, book["pipeline"]))
    records.delete("stages", book["won"], actor("admin"))
    body = {"deal_id": book["mine1"], "stage_id": book["won"], "version": 1}
    assert move(staff_client, body, token).status_code == 400
    records.delete("deals", book["mine2"], actor("staff1"))
    body = {"deal_id": book["mine2"], "stage_id": book["talks"], "version": 1}
    assert move(staff_client, body, token).status_code == 404
    assert book["won"] not in columns(page(staff_client, book["pipeline"]))


@pytest.mark.parametrize(
    "body",
    [
        None,
        "text",
        [1, 2, 3],
        {},
        {"deal_id": "abc", "stage_id": 1, "version": 1},
        {"deal_id": -1, "stage_id": 1, "version": 1},
        {"deal_id": 0, "stage_id": 1, "version": 1},
        {"deal_id": 10**30, "stage_id": 1, "version": 1},
        {"deal_id": 1.5, "stage_id": 1, "version": 1},
        {"deal_id": True, "stage_id": 1, "version": 1},
        {"deal_id": None, "stage_id": None, "version": None},
        {"deal_id": [1], "stage_id": {"id": 1}, "version": "1"},
        {"deal_id": "١٢", "stage_id": 1, "version": 1},
        {"stage_id": 1, "version": 1},
        {"deal_id": 1, "stage_id": 1},
        {"deal_id": 1, "stage_id": 1, "version": 1, "pipeline_id": "x"},
    ],
)
def test_malformed_moves_are_refused_without_a_server_error(book, staff_client, body) -> None:  # noqa: ANN001
    token = csrf_token(page(staff_client, book["pipeline"]))
    if body is None:
        response = staff_client.post(
            "/board/move", data="{not json", content_type="application/json", headers={"X-CSRFToken": token}
        )
    else:
        response = move(staff_client, body, token)
    assert 400 <= response.status_code < 500, response.status_code
    assert response.get_json()["ok"] is False


def test_a_move_without_the_csrf_token_is_refused(book, staff_client) -> None:  # noqa: ANN001
    body = {"deal_id": book["mine1"], "stage_id": book["talks"], "version": 1}
    assert staff_client.post("/board/move", json=body).status_code == 400
    assert deal_row(book["mine1"]).stage_id == book["new"]


@pytest.fixture
def staff_may_not_edit_deals(app_ctx) -> Any:  # noqa: ANN001
    deals = runtime.current().entity("deals")
    staff = access_role_id("Staff")
    access.save_rules(staff, tables={deals.id: {"edit": False}})
    runtime.refresh()
    yield
    access.save_rules(staff, tables={deals.id: {"edit": None}})
    runtime.refresh()


def access_role_id(name: str) -> int:
    from flask_appbuilder.security.sqla.models import Role

    return db.session.scalar(select(Role.id).where(Role.name == name))


def test_users_who_may_not_edit_deals_see_a_read_only_board(
    book, staff_client, staff_may_not_edit_deals
) -> None:  # noqa: ANN001
    html = page(staff_client, book["pipeline"])
    assert book["mine1"] in card_ids(html)
    assert not re.search(r'data-version="\d+"\s+draggable', html) and 'data-can-move="false"' in html
    body = {"deal_id": book["mine1"], "stage_id": book["talks"], "version": 1}
    assert move(staff_client, body, csrf_token(html)).status_code == 403
    assert deal_row(book["mine1"]).stage_id == book["new"]


# --- in the browser -----------------------------------------------------------------------------------------


@pytest.mark.browser
def test_dragging_a_card_moves_the_deal(book, browser, live_url, tmp_path) -> None:  # noqa: ANN001
    from tests.test_browser_tables import sign_in

    tab = browser.new_context(locale="ru-RU").new_page()
    sign_in(tab, live_url, "staff1", DEMO_PASSWORD)
    tab.goto(f"{live_url}/board/{book['pipeline']}")
    card = f".tabula-board-card[data-deal-id='{book['mine1']}']"
    target = f".tabula-board-column[data-stage-id='{book['talks']}']"
    with tab.expect_response("**/board/move") as answer:
        tab.drag_and_drop(card, f"{target} .board-cards")
    assert answer.value.status == 200
    tab.wait_for_selector(f"{target} {card}[data-version='2']")
    assert tab.inner_text(f"{target} .board-count") == "2"
    tab.screenshot(path=str(tmp_path / "board.png"))
    row = deal_row(book["mine1"])
    assert (row.stage_id, row.row_version) == (book["talks"], 2)

    # Someone saves the deal meanwhile: the next drag is refused, the card goes back, the reason is shown.
    records.update("deals", book["mine1"], {"amount": "7"}, actor("staff1"), expected_version=2)
    new = f".tabula-board-column[data-stage-id='{book['new']}']"
    with tab.expect_response("**/board/move") as answer:
        tab.drag_and_drop(card, f"{new} .board-cards")
    assert answer.value.status == 409
    tab.wait_for_selector("#board-message", state="visible")
    assert tab.locator(f"{target} {card}").count() == 1
    assert deal_row(book["mine1"]).stage_id == book["talks"]
