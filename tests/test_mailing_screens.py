"""The mailing screens over HTTP: templates with the merge-field picker and a sandboxed preview, a mailing
from a saved view with its counts before sending, start, pause, resume, cancel; refusals for those without
the *mail* right or someone else's mailing; hostile text escaped."""

from __future__ import annotations

import re
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from app.extensions import db
from models import Mailing, MailRecipient, MailTemplate
from tests.conftest import csrf_token
from tests.mail_helpers import SmtpServer, admin, make_contacts, view_of

SCRIPT = "<script>alert(1)</script>"


def _token(client, url: str = "/mailings/templates/new") -> str:  # noqa: ANN001
    return csrf_token(client.get(url).get_data(as_text=True))


def _template(client, **values: str) -> int:  # noqa: ANN001
    data = {"name": f"Шаблон {SCRIPT}", "subject": "Здравствуйте, {{ contact.first_name }}",
            "html": "<p>Привет, {{ contact.first_name | fallback('друг') }}!</p>", "text": "",
            "csrf_token": _token(client), **values}  # fmt: skip
    response = client.post("/mailings/templates/save", data=data)
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return int(response.headers["Location"].rstrip("/").split("/")[-1])


def test_templates_editor_preview_and_flags(app_ctx, admin_client) -> None:  # noqa: ANN001
    actor = admin()
    _tag, (contact,) = make_contacts(actor, [{"first_name": "<b>Вера</b>", "email": "vera@example.com"}])
    template_id = _template(admin_client, html="<p>{{ contact.first_name }} {{ contact.f_424242 }}</p>")
    page = admin_client.get(f"/mailings/templates/{template_id}").get_data(as_text=True)
    assert SCRIPT not in page and "&lt;script&gt;" in page
    assert 'id="merge-field"' in page and 'value="contact.first_name"' in page
    assert 'id="unknown-fields"' in page and "contact.f_424242" in page  # flagged
    preview = admin_client.get(f"/mailings/templates/{template_id}/preview?contact={contact}")
    assert preview.status_code == 200 and "sandbox" in preview.headers["Content-Security-Policy"]
    body = preview.get_data(as_text=True)
    assert "&lt;b&gt;Вера&lt;/b&gt;" in body and "<b>Вера" not in body
    assert admin_client.get(f"/mailings/templates/{template_id}/preview?contact=999999999").status_code == 200
    # a template Jinja cannot read is refused with the line, nothing saved
    before = db.session.scalar(select(func.count()).select_from(MailTemplate))
    response = admin_client.post(
        "/mailings/templates/save",
        data={"name": "x", "subject": "{{ oops", "html": "", "csrf_token": _token(admin_client)},
        follow_redirects=True,
    )
    assert "строке 1" in response.get_data(as_text=True) or "line 1" in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(MailTemplate)) == before


def test_a_mailing_from_a_saved_view_shows_counts_and_starts_pauses_and_cancels(
    app_ctx, admin_client
) -> None:  # noqa: ANN001
    actor = admin()
    tag, _ids = make_contacts(
        actor, [{"email": "a@example.com"}, {"email": "b@example.com", "email_consent": False}]
    )
    view_id = view_of(actor, tag)
    template_id = _template(admin_client)
    token = _token(admin_client, "/mailings/new")
    response = admin_client.post(
        "/mailings/create",
        data={"name": f"Акция {SCRIPT}", "template_id": template_id, "view_id": view_id,
              "control_percent": "0", "rate_per_second": "0", "rate_per_hour": "0", "csrf_token": token},
    )  # fmt: skip
    assert response.status_code == 302
    mailing_id = int(response.headers["Location"].rstrip("/").split("/")[-1])
    page = admin_client.get(f"/mailings/{mailing_id}").get_data(as_text=True)
    assert SCRIPT not in page
    assert re.search(r'data-count="no_consent">1<', page) and re.search(r'data-count="to_send">1<', page)
    # without a mail server: a clear message, nothing starts
    token = _token(admin_client, f"/mailings/{mailing_id}")
    app_ctx.config["SMTP_CONFIGURED"] = False  # as without SMTP_HOST (the tests' environment has a server)
    try:
        said = admin_client.post(
            f"/mailings/{mailing_id}/start", data={"csrf_token": token}, follow_redirects=True
        )
    finally:
        app_ctx.config["SMTP_CONFIGURED"] = True
    assert "SMTP_HOST" in said.get_data(as_text=True)
    assert db.session.get(Mailing, mailing_id).status == "draft"

    saved = {k: app_ctx.config[k] for k in ("SMTP_HOST", "SMTP_PORT", "SMTP_CONFIGURED", "TABULA_MAIL_QUEUE")}
    with SmtpServer() as server:
        app_ctx.config.update(
            SMTP_HOST="127.0.0.1", SMTP_PORT=server.port, SMTP_CONFIGURED=True,
            TABULA_MAIL_QUEUE=f"mail-screens-{uuid.uuid4().hex[:6]}",
        )  # fmt: skip
        try:
            for action, status in (("start", "sending"), ("pause", "paused"), ("resume", "sending"),
                                   ("cancel", "cancelled")):  # fmt: skip
                answer = admin_client.post(f"/mailings/{mailing_id}/{action}", data={"csrf_token": token})
                assert answer.status_code == 302, action
                db.session.expire_all()
                assert db.session.get(Mailing, mailing_id).status == status, action
            progress = admin_client.get(f"/mailings/{mailing_id}/progress").get_json()
            assert progress["status"] == "cancelled" and progress["counts"]["skipped"] == 1
            # a test to oneself, over SMTP
            user = app_ctx.appbuilder.sm.find_user(username="admin")
            answer = admin_client.post(
                f"/mailings/templates/{template_id}/test", data={"csrf_token": token}, follow_redirects=True
            )
            assert user.email in answer.get_data(as_text=True)
            assert server.sink.delivered()[user.email] == 1
        finally:
            app_ctx.config.update(saved)
    assert admin_client.post(f"/mailings/{mailing_id}/pause", data={}).status_code == 400  # no CSRF token


def test_without_the_mail_right_or_for_someone_elses_mailing_nothing_changes(
    app_ctx, admin_client, staff_client
) -> None:  # noqa: ANN001
    """staff1 has no *mail* right on contacts (the built-in default): every mailing route refuses, and the
    admin's mailing is not found for them."""
    actor = admin()
    tag, _ids = make_contacts(actor, [{"email": "c@example.com"}])
    template_id = _template(admin_client)
    from jobs import mailings

    mailing_id = mailings.create(
        actor, {"name": "Чужая", "template_id": template_id, "view_id": view_of(actor, tag)}
    ).id
    token = csrf_token(staff_client.get("/mailings/").get_data(as_text=True))  # the sign-out form's
    counts = (
        db.session.scalar(select(func.count()).select_from(Mailing)),
        db.session.scalar(select(func.count()).select_from(MailTemplate)),
        db.session.scalar(select(func.count()).select_from(MailRecipient)),
    )
    statuses = dict(db.session.execute(select(Mailing.id, Mailing.status)).all())
    assert staff_client.get("/mailings/templates/").status_code == 403
    assert staff_client.get("/mailings/new").status_code == 403
    assert staff_client.get(f"/mailings/{mailing_id}").status_code == 404
    refused = {
        "/mailings/templates/save": {"name": "x", "subject": "y", "html": "z"},
        f"/mailings/templates/{template_id}/test": {},
        "/mailings/create": {"name": "x", "template_id": template_id, "view_id": "1"},
        **{f"/mailings/{mailing_id}/{a}": {} for a in ("start", "pause", "resume", "cancel", "send-again")},
    }
    for url, data in refused.items():
        answer = staff_client.post(url, data={**data, "csrf_token": token})
        assert answer.status_code in (403, 404), (url, answer.status_code)
        anonymous = app_ctx.test_client().post(url, data=data)
        assert anonymous.status_code in (302, 400, 401, 403), url
    db.session.expire_all()
    assert counts == (
        db.session.scalar(select(func.count()).select_from(Mailing)),
        db.session.scalar(select(func.count()).select_from(MailTemplate)),
        db.session.scalar(select(func.count()).select_from(MailRecipient)),
    )
    assert statuses == dict(db.session.execute(select(Mailing.id, Mailing.status)).all())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.fixed_dictionaries(
        {},
        optional={
            name: st.one_of(
                st.text(max_size=30), st.sampled_from(["0", "10", "50", "50.1", "-1", "1e9", "nan", "²"])
            )
            for name in (
                "control_percent",
                "rate_per_second",
                "rate_per_hour",
                "conversion_days",
                "seed",
                "template_id",
                "view_id",
                "sender",
                "conversion",
                "name",
            )
        },
    )
)
def test_any_mailing_form_is_taken_or_refused_with_a_message(app_ctx, values: dict) -> None:  # noqa: ANN001
    """Whatever the form holds: a draft, or a refusal whose message is for the user; never a crash."""
    from custom_fields.query import QueryError
    from jobs import mailings

    try:
        mailing = mailings.create(admin(), values)
    except QueryError as refused:
        db.session.rollback()
        assert str(refused)
    else:
        assert mailing.status == "draft" and 0 <= mailing.control_share <= 0.5
