"""Sign-in, sessions and the API's CSRF wall (issue 15, items 3, 4 and 6): brute-force lockout per user name
and per address, shared in Redis; sessions that end at sign-out, password change and deactivation; sign-out
by POST only; cookie-authenticated API writes only from the site itself."""

from __future__ import annotations

import re
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.extensions import db
from tests.conftest import ADMIN_PASSWORD, csrf_token, login, signed_in

PASSWORD = "Пароль-стойкий-1"
LOCKED_TEXT = "Too many failed sign-ins"
ACCOUNT_LIMIT, ADDRESS_LIMIT = 5, 20  # the documented defaults (README, Security)


def client_at(app: Flask, address: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def fresh_address() -> str:
    return f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 1}"


def new_user(app: Flask, role: str = "Staff") -> str:
    username = f"user_{uuid.uuid4().hex[:10]}"
    with app.app_context():
        sm = app.appbuilder.sm
        assert sm.add_user(username, "Тест", "Тестов", f"{username}@example.ru", sm.find_role(role), PASSWORD)
    return username


def api_login(client: FlaskClient, username: str, password: str):  # noqa: ANN201
    return client.post(
        "/api/v1/security/login", json={"username": username, "password": password, "provider": "db"}
    )


def flashed(client: FlaskClient) -> str:
    page = client.get("/login/").get_data(as_text=True)
    return " ".join(re.findall(r'class="alert[^"]*"[^>]*>(.*?)</div>', page, re.S))


def fail(client: FlaskClient, username: str, times: int) -> None:
    for attempt in range(times):
        if attempt % 2:
            assert api_login(client, username, "wrong-password").status_code == 401
        else:
            assert not signed_in(login(client, username, "wrong-password"))


# --- item 3: brute-force protection ------------------------------------------------------------------------


def test_five_failures_lock_the_name_on_the_form_and_the_api(app) -> None:  # noqa: ANN001
    username = new_user(app)
    client = client_at(app, fresh_address())
    fail(client, username, ACCOUNT_LIMIT)
    # The right password no longer works, by either door, with a message that says why.
    response = login(client, username, PASSWORD)
    assert not signed_in(response)
    assert LOCKED_TEXT in flashed(client)
    api = api_login(client, username, PASSWORD)
    assert api.status_code == 429
    assert LOCKED_TEXT in api.get_json()["message"] and int(api.headers["Retry-After"]) > 0
    # The lock is on the name, not the person's browser: another address is refused too.
    assert api_login(client_at(app, fresh_address()), username, PASSWORD).status_code == 429


def test_a_lockout_does_not_reveal_whether_the_account_exists(app) -> None:  # noqa: ANN001
    client = client_at(app, fresh_address())
    answers = {}
    for username in (new_user(app), f"nobody_{uuid.uuid4().hex[:8]}"):
        fail(client, username, ACCOUNT_LIMIT)
        form = login(client, username, "anything")
        api = api_login(client, username, "anything")
        answers[username] = (form.status_code, flashed(client), api.status_code, api.get_json())
    known, unknown = answers.values()
    assert known == unknown
    assert known[2] == 429 and LOCKED_TEXT in known[1]


def test_a_successful_sign_in_resets_the_count(app) -> None:  # noqa: ANN001
    username = new_user(app)
    client = client_at(app, fresh_address())
    most = ACCOUNT_LIMIT
    fail(client, username, most - 1)
    assert api_login(client, username, PASSWORD).status_code == 200
    fail(client, username, most - 1)
    assert api_login(client, username, PASSWORD).status_code == 200


def test_the_user_name_and_the_e_mail_share_one_count(app) -> None:  # noqa: ANN001
    username = new_user(app)
    email = f"{username}@example.ru"
    client = client_at(app, fresh_address())
    # FAB signs in by e-mail too: its failures, in any case, count against the same account.
    fail(client, username.upper(), 2)
    fail(client, email.upper(), ACCOUNT_LIMIT - 2)
    assert api_login(client_at(app, fresh_address()), username, PASSWORD).status_code == 429
    assert api_login(client_at(app, fresh_address()), email, PASSWORD).status_code == 429


def test_a_sign_in_by_e_mail_clears_the_user_names_count(app) -> None:  # noqa: ANN001
    username = new_user(app)
    client = client_at(app, fresh_address())
    fail(client, username, ACCOUNT_LIMIT - 1)
    assert api_login(client, f"{username}@example.ru", PASSWORD).status_code == 200
    fail(client, username, ACCOUNT_LIMIT - 1)
    assert api_login(client, username, PASSWORD).status_code == 200


def test_a_parallel_burst_gets_no_more_password_checks_than_the_limit(app) -> None:  # noqa: ANN001
    username = new_user(app)
    address = fresh_address()
    burst = 3 * ACCOUNT_LIMIT
    start = threading.Barrier(burst)

    def attempt(_: int) -> int:
        client = client_at(app, address)
        start.wait()
        return api_login(client, username, "wrong-password").status_code

    with ThreadPoolExecutor(burst) as pool:
        answers = list(pool.map(attempt, range(burst)))
    assert answers.count(401) == ACCOUNT_LIMIT, answers
    assert answers.count(429) == burst - ACCOUNT_LIMIT, answers


def test_failures_from_one_address_lock_that_address(app) -> None:  # noqa: ANN001
    address = fresh_address()
    client = client_at(app, address)
    for _ in range(ADDRESS_LIMIT):
        assert api_login(client, f"guess_{uuid.uuid4().hex[:8]}", "wrong").status_code == 401
    username = new_user(app)
    assert api_login(client, username, PASSWORD).status_code == 429
    assert not signed_in(login(client, username, PASSWORD))
    assert api_login(client_at(app, fresh_address()), username, PASSWORD).status_code == 200


@pytest.fixture(scope="module")
def app_behind_a_proxy(app, env):  # noqa: ANN001, ANN201
    from app import create_app

    proxied = create_app({**env, "TABULA_PROXY_HOPS": "1"})
    proxied.test_client_class = app.test_client_class
    return proxied


def fail_via_proxy(client: FlaskClient, forwarded_for: str, times: int) -> None:
    for _ in range(times):
        answer = client.post(
            "/api/v1/security/login",
            json={"username": f"guess_{uuid.uuid4().hex[:8]}", "password": "wrong", "provider": "db"},
            headers={"X-Forwarded-For": forwarded_for},
        )
        assert answer.status_code == 401


def test_behind_one_proxy_the_forwarded_addresses_are_counted_apart(app, app_behind_a_proxy) -> None:  # noqa: ANN001
    proxy, attacker, colleague = fresh_address(), fresh_address(), fresh_address()
    client = client_at(app_behind_a_proxy, proxy)
    fail_via_proxy(client, attacker, ADDRESS_LIMIT)
    username = new_user(app)
    forwarded = {"username": username, "password": PASSWORD, "provider": "db"}
    assert (
        client.post(
            "/api/v1/security/login", json=forwarded, headers={"X-Forwarded-For": attacker}
        ).status_code
        == 429
    )
    assert (
        client.post(
            "/api/v1/security/login", json=forwarded, headers={"X-Forwarded-For": colleague}
        ).status_code
        == 200
    )


def test_without_proxy_hops_the_forwarded_header_is_ignored(app) -> None:  # noqa: ANN001
    address = fresh_address()
    client = client_at(app, address)
    fail_via_proxy(client, fresh_address(), ADDRESS_LIMIT)
    # A client cannot choose its address by sending the header: the connection's address is locked.
    username = new_user(app)
    forwarded = {"username": username, "password": PASSWORD, "provider": "db"}
    assert (
        client.post(
            "/api/v1/security/login", json=forwarded, headers={"X-Forwarded-For": fresh_address()}
        ).status_code
        == 429
    )


def test_failures_and_lockouts_are_in_the_security_log(app, admin_client) -> None:  # noqa: ANN001
    from app import security_log

    username = new_user(app)
    address = fresh_address()
    fail(client_at(app, address), username, ACCOUNT_LIMIT)
    with app.app_context():
        mine = [e for e in security_log.recent(500) if e.subject == username.casefold()]
    kinds = [e.kind for e in mine]
    assert kinds.count(security_log.LOGIN_FAILED) == ACCOUNT_LIMIT
    assert kinds.count(security_log.LOCKED) == 1
    assert all(e.address == address for e in mine)
    page = admin_client.get("/admin/security/").get_data(as_text=True)
    assert username.casefold() in page and "Locked out" in page


def test_an_admin_unlocks_a_name(app, admin_client, staff_client) -> None:  # noqa: ANN001
    from app import security_log

    username = new_user(app)
    client = client_at(app, fresh_address())
    fail(client, username, ACCOUNT_LIMIT)
    form = {"kind": "account", "who": username.casefold()}
    # Staff may not, nor may anyone without the form's CSRF token.
    staff_page = staff_client.get("/admin/security/")
    assert staff_page.status_code == 403
    token = csrf_token(admin_client.get("/admin/security/").get_data(as_text=True))
    assert staff_client.post("/admin/security/unlock", data={**form, "csrf_token": token}).status_code in (
        400,
        403,
    )
    assert admin_client.post("/admin/security/unlock", data=form).status_code == 400
    assert api_login(client, username, PASSWORD).status_code == 429
    response = admin_client.post("/admin/security/unlock", data={**form, "csrf_token": token})
    assert response.status_code == 302
    assert api_login(client, username, PASSWORD).status_code == 200
    with app.app_context():
        unlocked = [e for e in security_log.recent(50) if e.kind == security_log.UNLOCKED]
    assert unlocked and unlocked[0].subject == username.casefold() and unlocked[0].actor == "admin"


# --- item 4: sessions end ----------------------------------------------------------------------------------


def session_cookie(client: FlaskClient) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value


def replay(app: Flask, cookie: str) -> FlaskClient:
    client = app.test_client()
    client.set_cookie("session", cookie)
    return client


def can_read_companies(client: FlaskClient) -> bool:
    screen = client.get("/t/companies/list/")
    api = client.get("/api/v1/t/companies/")
    assert (screen.status_code == 200) == (api.status_code == 200), (screen.status_code, api.status_code)
    return screen.status_code == 200


def test_a_replayed_cookie_opens_nothing_after_sign_out(app) -> None:  # noqa: ANN001
    username = new_user(app)
    client = app.test_client()
    assert signed_in(login(client, username, PASSWORD))
    cookie = session_cookie(client)
    assert can_read_companies(replay(app, cookie))
    token = csrf_token(client.get("/logout/").get_data(as_text=True))
    assert client.post("/logout/", data={"csrf_token": token}).status_code == 302
    assert not can_read_companies(client)
    stolen = replay(app, cookie)
    assert stolen.get("/t/companies/list/").status_code == 302
    assert stolen.get("/api/v1/t/companies/").status_code == 401


def test_sign_out_and_a_password_change_reach_every_web_process(app, other_process) -> None:  # noqa: ANN001
    import requests

    def opens_companies(cookie: str) -> bool:
        answer = requests.get(f"{other_process}/api/v1/t/companies/", cookies={"session": cookie}, timeout=30)
        return answer.status_code == 200

    username = new_user(app)
    here, there = app.test_client(), app.test_client()
    assert signed_in(login(here, username, PASSWORD)) and signed_in(login(there, username, PASSWORD))
    assert opens_companies(session_cookie(here)) and opens_companies(session_cookie(there))
    # Signed out in this process: the other process (gunicorn, two workers) refuses that cookie.
    cookie = session_cookie(here)
    here.post("/logout/", data={"csrf_token": csrf_token(here.get("/logout/").get_data(as_text=True))})
    assert not opens_companies(cookie)
    # The password changed in this process: the other process ends the user's other session too.
    assert signed_in(login(here, username, PASSWORD))
    form = here.get("/resetmypassword/form").get_data(as_text=True)
    here.post(
        "/resetmypassword/form",
        data={"password": "Ещё-пароль-4", "conf_password": "Ещё-пароль-4", "csrf_token": csrf_token(form)},
    )
    assert opens_companies(session_cookie(here))
    assert not opens_companies(session_cookie(there))


def test_sign_out_needs_a_post_with_the_csrf_token(app) -> None:  # noqa: ANN001
    username = new_user(app)
    client = app.test_client()
    assert signed_in(login(client, username, PASSWORD))
    page = client.get("/logout/")
    assert page.status_code == 200 and 'method="post"' in page.get_data(as_text=True)
    assert client.post("/logout/").status_code == 400
    assert can_read_companies(client)
    # The menu signs out by a form, not a link.
    home = client.get("/t/companies/list/").get_data(as_text=True)
    assert re.search(r'<form method="post" action="/logout/"', home)
    assert 'href="/logout/"' not in home


def test_a_password_change_by_an_admin_ends_every_session_and_token(app, admin_client) -> None:  # noqa: ANN001
    username = new_user(app)
    first, second = app.test_client(), app.test_client()
    assert signed_in(login(first, username, PASSWORD)) and signed_in(login(second, username, PASSWORD))
    access = api_login(app.test_client(), username, PASSWORD).get_json()["access_token"]
    bearer = {"Authorization": f"Bearer {access}"}
    assert app.test_client().get("/api/v1/t/companies/", headers=bearer).status_code == 200
    with app.app_context():
        user_id = app.appbuilder.sm.find_user(username=username).id
    form = admin_client.get(f"/resetpassword/form?pk={user_id}").get_data(as_text=True)
    new_password = "Новый-пароль-2"
    response = admin_client.post(
        f"/resetpassword/form?pk={user_id}",
        data={"password": new_password, "conf_password": new_password, "csrf_token": csrf_token(form)},
    )
    assert response.status_code == 302
    assert not can_read_companies(first) and not can_read_companies(second)
    assert app.test_client().get("/api/v1/t/companies/", headers=bearer).status_code == 401
    assert can_read_companies(admin_client)
    assert signed_in(login(app.test_client(), username, new_password))


def test_changing_ones_own_password_keeps_this_session_and_ends_the_others(app) -> None:  # noqa: ANN001
    username = new_user(app)
    here, elsewhere = app.test_client(), app.test_client()
    assert signed_in(login(here, username, PASSWORD)) and signed_in(login(elsewhere, username, PASSWORD))
    form = here.get("/resetmypassword/form").get_data(as_text=True)
    response = here.post(
        "/resetmypassword/form",
        data={"password": "Свой-пароль-3", "conf_password": "Свой-пароль-3", "csrf_token": csrf_token(form)},
    )
    assert response.status_code == 302
    assert can_read_companies(here)
    assert not can_read_companies(elsewhere)


def test_deactivating_a_user_ends_their_sessions_for_good(app, admin_client) -> None:  # noqa: ANN001
    username = new_user(app)
    client = app.test_client()
    assert signed_in(login(client, username, PASSWORD))
    with app.app_context():
        user = app.appbuilder.sm.find_user(username=username)
        user_id, role_id = user.id, user.roles[0].id

    def save_user(active: bool) -> None:
        form = admin_client.get(f"/users/edit/{user_id}").get_data(as_text=True)
        data = {
            "first_name": "Тест",
            "last_name": "Тестов",
            "username": username,
            "email": f"{username}@example.ru",
            "roles": [str(role_id)],
            "csrf_token": csrf_token(form),
        }
        if active:
            data["active"] = "y"
        assert admin_client.post(f"/users/edit/{user_id}", data=data).status_code == 302

    save_user(active=False)  # the admin's edit form, as in the browser
    assert not can_read_companies(client)
    save_user(active=True)
    assert not can_read_companies(client)  # reactivation does not bring the old session back
    assert signed_in(login(client, username, PASSWORD))
    assert can_read_companies(client)


def test_the_session_lives_in_redis_not_in_the_cookie(app, redis_url) -> None:  # noqa: ANN001
    from redis import Redis

    client = app.test_client()
    assert signed_in(login(client, new_user(app), PASSWORD))
    cookie = session_cookie(client)
    assert "." not in cookie and len(cookie) < 64  # an opaque id, not signed session data
    assert Redis.from_url(redis_url).exists(f"tabula:session:{cookie}")


def test_a_request_pushes_the_idle_expiry_back_and_never_undoes_a_concurrent_change(app, redis_url) -> None:  # noqa: ANN001
    """A request that did not change the session only pushes its expiry back: one that read the session
    before a concurrent request switched the language, and answered after it, leaves the language switched
    (it used to write back what it had read, as the dashboard's parallel card requests did)."""
    from redis import Redis

    client = app.test_client()
    assert signed_in(login(client, new_user(app), PASSWORD))
    cookie = session_cookie(client)
    key = f"tabula:session:{cookie}"
    redis = Redis.from_url(redis_url)
    redis.expire(key, 100)
    assert client.get("/dashboard/card?ref=std:funnel").status_code == 200
    assert redis.ttl(key) > 3600  # TABULA_SESSION_IDLE_HOURS from now again
    cookie_name = app.config.get("SESSION_COOKIE_NAME", "session")
    with app.test_request_context("/dashboard/", headers={"Cookie": f"{cookie_name}={cookie}"}):
        from flask import session

        assert session.get("_user_id")  # this request read the session ...
        assert client.get("/lang/ru").status_code == 302  # ... then another one switched the language ...
        app.process_response(app.make_response("answered last"))  # ... and this one answers after it
    assert "Сводка" in client.get("/dashboard/").get_data(as_text=True)  # still Russian


# --- item 6: cookie-authenticated API writes need the CSRF header or our Origin ---------------------------


@pytest.fixture
def company_api(app, admin_client):  # noqa: ANN001, ANN201
    def create(**headers: str):  # noqa: ANN202
        name = f"ООО Тест {uuid.uuid4().hex[:6]}"
        return admin_client.post("/api/v1/t/companies/", json={"name": name}, headers=headers), name

    return create


def company_count(app: Flask, name: str) -> int:
    from sqlalchemy import func, select

    from models import Company

    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Company).where(Company.name == name))


def test_a_cross_site_cookie_write_to_the_api_is_refused(app, admin_client, company_api) -> None:  # noqa: ANN001
    for headers in ({"Origin": "http://evil.example"}, {}, {"X-CSRFToken": "forged"}, {"Origin": "null"}):
        response, name = company_api(**headers)
        assert response.status_code == 403, headers
        assert "CSRF" in response.get_json()["message"]
        assert company_count(app, name) == 0
    created, _ = company_api(Origin="http://localhost")
    assert created.status_code == 201, created.get_data(as_text=True)
    pk = created.get_json()["id"]
    for method in (admin_client.put, admin_client.delete):
        refused = method(f"/api/v1/t/companies/{pk}", json={}, headers={"Origin": "http://evil.example"})
        assert refused.status_code == 403
    assert admin_client.get(f"/api/v1/t/companies/{pk}").status_code == 200


def test_the_origin_must_match_the_scheme_too(app, admin_client) -> None:  # noqa: ANN001
    def create(base_url: str, origin: str) -> tuple[int, str]:
        name = f"ООО Схема {uuid.uuid4().hex[:6]}"
        response = admin_client.post(
            "/api/v1/t/companies/", json={"name": name}, headers={"Origin": origin}, base_url=base_url
        )
        return response.status_code, name

    # An http:// page (another origin, e.g. one a network attacker serves) may not write to the https:// site.
    status, name = create("https://localhost", "http://localhost")
    assert status == 403 and company_count(app, name) == 0
    status, name = create("http://localhost", "https://localhost")
    assert status == 403 and company_count(app, name) == 0
    status, name = create("https://localhost", "https://localhost")
    assert status == 201 and company_count(app, name) == 1


def test_the_sites_own_csrf_header_is_accepted(app, admin_client, company_api) -> None:  # noqa: ANN001
    token = csrf_token(admin_client.get("/admin/security/").get_data(as_text=True))
    response, name = company_api(**{"X-CSRFToken": token})
    assert response.status_code == 201, response.get_data(as_text=True)
    assert company_count(app, name) == 1


def test_bearer_token_writes_are_unaffected(app) -> None:  # noqa: ANN001
    client = app.test_client()
    access = api_login(client, "admin", ADMIN_PASSWORD).get_json()["access_token"]
    name = f"ООО Токен {uuid.uuid4().hex[:6]}"
    response = client.post(
        "/api/v1/t/companies/",
        json={"name": name},
        headers={"Authorization": f"Bearer {access}", "Origin": "http://evil.example"},
    )
    assert response.status_code == 201, response.get_data(as_text=True)


@pytest.mark.browser
def test_the_menus_sign_out_works_in_a_browser_and_the_cookie_dies(app, browser, live_url, tmp_path) -> None:  # noqa: ANN001
    username = new_user(app)
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    page.goto(f"{live_url}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url(f"{live_url}/")
    cookie = next(c["value"] for c in context.cookies() if c["name"] == "session")
    page.click("a.dropdown-toggle:has(.fa-user)")
    page.screenshot(path=str(tmp_path / "user-menu.png"))
    page.click("button.tabula-logout")
    page.wait_for_load_state()
    assert page.locator("button.tabula-logout").count() == 0
    assert page.goto(f"{live_url}/t/companies/list/").url.startswith(f"{live_url}/login/")
    stolen = browser.new_context()
    stolen.add_cookies([{"name": "session", "value": cookie, "url": live_url}])
    replayed = stolen.new_page()
    replayed.goto(f"{live_url}/t/companies/list/")
    assert replayed.url.startswith(f"{live_url}/login/")
    assert replayed.request.get(f"{live_url}/api/v1/t/companies/").status == 401
    stolen.close()
    context.close()
