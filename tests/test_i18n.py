"""English and Russian UI; FAB's language switch; Cyrillic data round-trips."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from babel.messages.pofile import read_po

from app.extensions import db
from tests.conftest import ROOT, csrf_token

CATALOG = ROOT / "app" / "translations" / "ru" / "LC_MESSAGES" / "messages.po"


def test_language_switch_to_russian_and_back(admin_client) -> None:  # noqa: ANN001
    english = admin_client.get("/system/").get_data(as_text=True)
    assert "System status" in english and "Run a self-check job" in english
    assert admin_client.get("/lang/ru").status_code == 302
    russian = admin_client.get("/system/").get_data(as_text=True)
    assert "Состояние системы" in russian and "Запустить задачу самопроверки" in russian
    assert "Безопасность" in russian  # Flask-AppBuilder's own menu, translated by its catalog
    admin_client.get("/lang/en")
    assert "System status" in admin_client.get("/system/").get_data(as_text=True)


def test_browser_language_is_the_default(client) -> None:  # noqa: ANN001
    page = client.get("/", headers={"Accept-Language": "ru-RU,ru;q=0.9,en;q=0.5"})
    assert "Войти" in page.get_data(as_text=True)
    page = client.get("/", headers={"Accept-Language": "de-DE"})
    assert "Sign in" in page.get_data(as_text=True)


def test_unknown_language_is_404(client) -> None:  # noqa: ANN001
    assert client.get("/lang/xx").status_code == 404


def test_every_ui_string_has_a_russian_translation(tmp_path: Path) -> None:
    pot = tmp_path / "messages.pot"
    subprocess.run(
        [
            str(Path(sys.executable).with_name("pybabel")),
            "extract",
            "--no-location",
            "-F",
            "babel.cfg",
            "-k",
            "_l",
            "-k",
            "lazy_gettext",
            "-k",
            "N_",
            "--ignore-dirs",
            ".venv tests instance",
            "-o",
            str(pot),
            ".",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    with open(pot, "rb") as handle:
        wanted = {m.id for m in read_po(handle) if m.id}
    with open(CATALOG, "rb") as handle:
        translated = {m.id for m in read_po(handle, locale="ru") if m.id and m.string and not m.fuzzy}
    assert wanted, "no UI strings were extracted"
    assert wanted - translated == set()


def test_cyrillic_user_round_trips_through_the_admin_form(app, admin_client) -> None:  # noqa: ANN001
    form = admin_client.get("/users/add").get_data(as_text=True)
    with app.app_context():
        role = app.appbuilder.sm.find_role("Staff")
        role_id = role.id
    response = admin_client.post(
        "/users/add",
        data={
            "csrf_token": csrf_token(form),
            "first_name": "Ёлкина «Мария»",
            "last_name": "Щукина-Эйлер <script>alert(1)</script>",
            "username": "ёлкина",
            "email": "elkina@пример.рф",
            "active": "y",
            "roles": str(role_id),
            "password": "Пароль-123",
            "conf_password": "Пароль-123",
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    listing = admin_client.get("/users/list/?_flt_0_username=ёлкина").get_data(as_text=True)
    assert "Ёлкина «Мария»" in listing or "Ёлкина &laquo;Мария&raquo;" in listing
    assert "<script>alert(1)</script>" not in listing
    assert "&lt;script&gt;" in listing
    with app.app_context():
        user = app.appbuilder.sm.find_user(username="ёлкина")
        assert user.first_name == "Ёлкина «Мария»"
        assert user.last_name == "Щукина-Эйлер <script>alert(1)</script>"
        db.session.delete(user)
        db.session.commit()
