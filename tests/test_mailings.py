"""Mailings against a real SMTP server (aiosmtpd): merge fields, MIME, audience rules, control group, rate,
retries, opt-out, the one-click unsubscribe over HTTP, and no double sends when a worker is killed."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from app.crm import mail_audience, mail_render
from app.extensions import db
from custom_fields import records
from custom_fields.query import TableQuery
from jobs import mail_sender, mailings
from models import Mailing, MailOptOut, MailRecipient
from tests.mail_helpers import SmtpServer, admin, make_contacts, view_of

MAIL_SETTINGS = (
    "SMTP_HOST",
    "SMTP_PORT",
    "SMTP_CONFIGURED",
    "TABULA_MAIL_QUEUE",
    "TABULA_MAIL_SENDERS",
    "TABULA_MAIL_RETRY_SECONDS",
    "TABULA_BASE_URL",
)


@pytest.fixture
def smtp(app_ctx):  # noqa: ANN001, ANN201
    """A real SMTP server; the app sends to it; senders queued by ``start`` wait in a queue of their own
    (the tests run the sending loop themselves)."""
    saved = {k: app_ctx.config[k] for k in MAIL_SETTINGS}
    with SmtpServer() as server:
        app_ctx.config.update(
            SMTP_HOST="127.0.0.1",
            SMTP_PORT=server.port,
            SMTP_CONFIGURED=True,
            TABULA_MAIL_QUEUE=f"mail-test-{uuid.uuid4().hex[:8]}",
            TABULA_MAIL_SENDERS=1,
            TABULA_MAIL_RETRY_SECONDS=0.05,
        )
        try:
            yield server.sink
        finally:
            app_ctx.config.update(saved)


def _template(actor, subject: str, html: str, text: str = "") -> int:  # noqa: ANN001
    return mailings.save_template(
        actor, {"name": f"Шаблон {uuid.uuid4().hex[:6]}", "subject": subject, "html": html, "text": text}
    ).id


def _mailing(actor, tag: str, template_id: int, **values: Any) -> Mailing:  # noqa: ANN001
    return mailings.create(
        actor,
        {
            "name": f"Рассылка {tag}",
            "template_id": template_id,
            "view_id": view_of(actor, tag),
            "sender": "Отдел продаж <sales@example.com>",
            **values,
        },
    )


def _states(mailing_id: int) -> dict[int, tuple[str, str]]:
    rows = db.session.execute(
        select(MailRecipient.contact_id, MailRecipient.state, MailRecipient.reason).where(
            MailRecipient.mailing_id == mailing_id
        )
    )
    return {r.contact_id: (r.state, r.reason) for r in rows}


def test_merge_fields_custom_fields_cyrillic_and_mime(smtp) -> None:  # noqa: ANN001
    from custom_fields.runtime import refresh
    from models import Entity
    from tests.tables_helpers import new_field

    actor = admin()
    contacts = db.session.scalar(select(Entity).where(Entity.slug == "contacts"))
    color = new_field(contacts, f"Любимый цвет {uuid.uuid4().hex[:4]}", "text")
    refresh()
    company = records.create("companies", {"name": "ООО «Ромашка»"}, actor)
    tag, (first, second) = make_contacts(
        actor,
        [
            {
                "first_name": "Анна",
                "last_name": "Петрова",
                "email": "anna@example.com",
                "company_id": company.id,
                color.name: "<b>синий</b>",
            },
            {"first_name": "Борис", "email": "boris@example.com"},
        ],
    )
    template = _template(
        actor,
        "Здравствуйте, {{ contact.first_name }}!",
        '<style>p.hi { color: #c00 }</style><p class="hi">Привет, {{ contact.first_name }} из '
        "{{ company.name | fallback('вашей компании') }}! Цвет: {{ contact."
        + color.name
        + " | fallback('не указан') }}</p>",
    )
    mailing = _mailing(actor, tag, template)
    assert mailings.preview(mailing, actor)["to_send"] == 2
    mailings.start(mailing, actor)
    assert mail_sender.run(mailing.id) == {"sent": 2, "failed": 0, "skipped": 0}

    messages = {m["To"].addresses[0].addr_spec: m for m in smtp.parsed()}
    anna = messages["anna@example.com"]
    assert anna["Subject"] == "Здравствуйте, Анна!"
    assert anna.get_content_type() == "multipart/alternative"
    plain, html = anna.get_payload()
    assert (plain.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    assert plain.get_content_charset() == html.get_content_charset() == "utf-8"
    body = html.get_content()
    assert "ООО «Ромашка»" in body and "&lt;b&gt;синий&lt;/b&gt;" in body and "<b>" not in body
    assert 'style="color: #c00' in body and "<style" not in body  # CSS inlined
    assert "Привет, Анна из ООО «Ромашка»! Цвет: <b>синий</b>" in plain.get_content()
    boris = messages["boris@example.com"]
    assert "Борис из вашей компании! Цвет: не указан" in boris.get_payload()[0].get_content()
    raw = next(content for to, content in smtp.messages if "anna@example.com" in to)
    assert b"Subject: =?utf-8?" in raw.split(b"\r\n\r\n")[0]  # the Cyrillic subject, encoded

    recipient = db.session.scalar(
        select(MailRecipient).where(MailRecipient.mailing_id == mailing.id, MailRecipient.contact_id == first)
    )
    assert anna["Message-ID"] == mail_render.message_id(mailing.id, recipient.id, mailing.sender)
    assert anna["Message-ID"] == mail_render.message_id(mailing.id, recipient.id, mailing.sender)
    assert anna["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert re.fullmatch(r"<https?://.+/mail/unsubscribe/[\w.-]+>", anna["List-Unsubscribe"])
    assert anna["From"].addresses[0].display_name == "Отдел продаж"

    # each message sent is an outbound e-mail activity in the contact's history
    activities = TableQuery("activities", actor).where(
        {"field": "contact_id", "op": "eq", "value": str(second)}
    )
    rows = list(activities.stream())
    assert len(rows) == 1 and rows[0]["kind"] == "email" and rows[0]["direction"] == "outbound"
    assert rows[0]["subject"] == "Здравствуйте, Борис!"


def test_a_template_naming_a_missing_or_hidden_field_is_flagged_not_broken(app_ctx) -> None:  # noqa: ANN001
    actor = admin()
    assert mail_render.unknown_fields(actor, "{{ contact.first_name }} {{ contact.f_999999 }}", "") == [
        "contact.f_999999"
    ]
    rendered = mail_render.render(
        "Тема {{ contact.f_999999 }}", "<p>{{ contact.nope }}x</p>", "", {"contact": {}}, ""
    )
    assert rendered.subject == "Тема" and "x" in rendered.html
    with pytest.raises(mail_render.TemplateError):
        mail_render.check("{{ contact.first_name ", "", "")
    with pytest.raises(mail_render.TemplateError):  # the sandbox refuses what reaches Python's insides
        mail_render.render("{{ contact.__class__.__mro__ }}", "", "", {"contact": {}}, "")


def test_audience_leaves_out_no_consent_invalid_opted_out_and_duplicates_and_holds_out_a_control_group(
    smtp,  # noqa: ANN001
) -> None:
    actor = admin()
    opted = f"opted-{uuid.uuid4().hex[:6]}@example.com"
    mail_audience.opt_out(opted.upper(), "admin", None)
    good = [{"email": f"ok{i}-{uuid.uuid4().hex[:6]}@example.com"} for i in range(40)]
    tag, ids = make_contacts(
        actor,
        [
            {"email": "noconsent@example.com", "email_consent": False},
            {"email": opted},
            {"email": "Same@Example.com"},
            {"email": " same@example.com"},
            *good,
        ],
    )
    # an invalid address written around the field's own check (as an old import might have left it)
    from custom_fields.runtime import current

    model = current().classes["contacts"]
    db.session.get(model, ids[0]).email_consent = True
    bad_id = make_contacts(actor, [{"email": "x@example.com"}], tag)[1][0]
    db.session.get(model, bad_id).email = "not an address"
    db.session.get(model, ids[0]).email_consent = False
    db.session.commit()

    template = _template(actor, "Тема", "<p>Текст</p>")
    mailing = _mailing(actor, tag, template, control_percent="25", seed="42")
    counts = mailings.preview(mailing, actor)
    assert counts["matched"] == 45
    assert (counts["no_consent"], counts["invalid"], counts["opted_out"], counts["duplicate"]) == (1, 1, 1, 1)
    assert counts["held_out"] + counts["to_send"] == 41 and 3 <= counts["held_out"] <= 20
    mailings.start(mailing, actor)
    assert mailing.exclusions == counts
    mail_sender.run(mailing.id)
    states = _states(mailing.id)
    held = {c for c, (s, _r) in states.items() if s == "held_out"}
    assert len(held) == counts["held_out"]
    assert sum(1 for s, _r in states.values() if s == "sent") == counts["to_send"]
    delivered = smtp.delivered()
    assert len(delivered) == counts["to_send"] and all(n == 1 for n in delivered.values())
    held_emails = set(
        db.session.scalars(
            select(MailRecipient.email).where(
                MailRecipient.mailing_id == mailing.id, MailRecipient.state == "held_out"
            )
        )
    )
    assert not held_emails & set(delivered)
    # the same seed holds out the same contacts
    assert all(mail_audience.held_out(42, c, 0.25) for c in held)


def test_the_rate_limit_is_kept(smtp) -> None:  # noqa: ANN001
    actor = admin()
    tag, _ids = make_contacts(actor, [{"email": f"r{i}@example.com"} for i in range(9)])
    mailing = _mailing(actor, tag, _template(actor, "Тема", "<p>x</p>"), rate_per_second="4")
    mailings.start(mailing, actor)
    began = time.monotonic()
    assert mail_sender.run(mailing.id)["sent"] == 9
    assert time.monotonic() - began >= 1.9  # 9 messages at 4 a second take over two seconds


def test_temporary_errors_are_retried_and_permanent_ones_are_not(smtp) -> None:  # noqa: ANN001
    actor = admin()
    later, refused = (
        f"later-{uuid.uuid4().hex[:6]}@example.com",
        f"refused-{uuid.uuid4().hex[:6]}@example.com",
    )
    smtp.answers[later] = ["451 4.3.0 Try again later", "421 4.7.0 Busy"]
    smtp.answers[refused] = ["550 5.1.1 No such user"]
    tag, (a, b) = make_contacts(actor, [{"email": later}, {"email": refused}])
    mailing = _mailing(actor, tag, _template(actor, "Тема", "<p>x</p>"))
    mailings.start(mailing, actor)
    assert mail_sender.run(mailing.id) == {"sent": 1, "failed": 1, "skipped": 0}
    states = _states(mailing.id)
    assert states[a][0] == "sent" and smtp.rcpt_tries[later] == 3  # 451, then 421 (the server hangs up)
    assert states[b] == ("failed", "550 5.1.1 No such user") and smtp.rcpt_tries[refused] == 1
    assert mailings.progress(mailing)["status"] == "done"


def test_a_recipient_the_template_cannot_be_filled_for_fails_alone(smtp) -> None:  # noqa: ANN001
    """A template that fails on one contact's values (here a division by the length of an empty last
    name, which Jinja raises as ZeroDivisionError): that recipient fails with a sentence, the ones around
    it are sent, and the mailing ends (it used to stop the sender with the error, again at every retry)."""
    actor = admin()
    emails = [f"{name}-{uuid.uuid4().hex[:6]}@example.com" for name in ("a", "b", "c")]
    tag, (a, b, c) = make_contacts(
        actor,
        [
            {"email": emails[0], "last_name": "Иванов"},
            {"email": emails[1]},  # no last name: 100 // 0
            {"email": emails[2], "last_name": "Ли"},
        ],
    )
    html = "<p>{{ contact.first_name }}: {{ 100 // (contact.last_name | length) }}</p>"
    mailing = _mailing(actor, tag, _template(actor, "Тема", html))
    mailings.start(mailing, actor)
    assert mail_sender.run(mailing.id) == {"sent": 2, "failed": 1, "skipped": 0}
    states = _states(mailing.id)
    assert states[a][0] == "sent" and states[c][0] == "sent"
    assert states[b][0] == "failed" and states[b][1].startswith("The template cannot be filled in")
    assert smtp.delivered() == {emails[0]: 1, emails[2]: 1}
    bodies = {m["To"].addresses[0].addr_spec: m.get_body(("plain",)).get_content() for m in smtp.parsed()}
    assert "Имя: 16" in bodies[emails[0]] and "Имя: 50" in bodies[emails[2]]
    assert mailings.progress(mailing)["status"] == "done"


def _activities_of(actor, contact_ids: list[int]) -> dict[int, int]:  # noqa: ANN001
    found: dict[int, int] = {}
    for contact_id in contact_ids:
        query = TableQuery("activities", actor).where(
            {"field": "contact_id", "op": "eq", "value": str(contact_id)}
        )
        found[contact_id] = len(list(query.stream()))
    return found


def test_a_sender_that_dies_writing_the_history_leaves_the_batch_to_its_journal(smtp, monkeypatch) -> None:  # noqa: ANN001
    """The batch's outcomes and its history lines are one transaction: a sender that dies while the
    activities are written (here the write path raising, as a lost connection would) has committed neither.
    The next sender settles the batch from the dead one's journal: every message sent, each contact one
    activity, nobody mailed twice, nothing lost."""
    actor = admin()
    emails = [f"h{i}-{uuid.uuid4().hex[:6]}@example.com" for i in range(3)]
    tag, ids = make_contacts(actor, [{"email": e} for e in emails])
    mailing = _mailing(actor, tag, _template(actor, "Тема", "<p>Здравствуйте</p>"))
    mailings.start(mailing, actor)

    real = records.create_many

    def dies(slug, rows, who):  # noqa: ANN001, ANN202
        if slug == "activities":
            raise ConnectionResetError("the worker died here")
        return real(slug, rows, who)

    monkeypatch.setattr(records, "create_many", dies)
    with pytest.raises(ConnectionResetError):
        mail_sender.run(mailing.id)
    db.session.rollback()
    assert smtp.delivered() == dict.fromkeys(emails, 1)
    # not "sent" without its history
    assert {state for state, _reason in _states(mailing.id).values()} == {"sending"}
    assert _activities_of(actor, ids) == dict.fromkeys(ids, 0)

    monkeypatch.setattr(records, "create_many", real)
    assert mail_sender.run(mailing.id) == {"sent": 0, "failed": 0, "skipped": 0}  # nothing left to send
    assert {state for state, _reason in _states(mailing.id).values()} == {"sent"}
    assert _activities_of(actor, ids) == dict.fromkeys(ids, 1)
    assert smtp.delivered() == dict.fromkeys(emails, 1)
    assert mailings.progress(mailing)["status"] == "done"
    # logging the same rows again (a second sender settling the same claim) writes nothing twice
    recipients = db.session.scalars(select(MailRecipient.id).where(MailRecipient.mailing_id == mailing.id))
    with records.atomic():
        assert mail_sender.log_activities(mailing.id, dict.fromkeys(recipients, "Тема")) == 0
    assert _activities_of(actor, ids) == dict.fromkeys(ids, 1)


def test_activities_the_write_path_refuses_leave_the_outcomes_committed(smtp, monkeypatch) -> None:  # noqa: ANN001
    """When the activities are refused (say the table gained a required field), the messages still count as
    sent (they were), with a warning; the mailing ends."""
    from custom_fields.records import RecordInvalid

    actor = admin()
    email = f"r-{uuid.uuid4().hex[:6]}@example.com"
    tag, ids = make_contacts(actor, [{"email": email}])
    mailing = _mailing(actor, tag, _template(actor, "Тема", "<p>x</p>"))
    mailings.start(mailing, actor)

    def refuses(slug, rows, who):  # noqa: ANN001, ANN202
        raise RecordInvalid({"subject": "Обязательное поле"})

    monkeypatch.setattr(records, "create_many", refuses)
    assert mail_sender.run(mailing.id) == {"sent": 1, "failed": 0, "skipped": 0}
    assert _states(mailing.id)[ids[0]][0] == "sent"
    assert mailings.progress(mailing)["status"] == "done"
    assert smtp.delivered() == {email: 1}


def test_an_opt_out_after_the_start_is_honoured_at_send_time(smtp) -> None:  # noqa: ANN001
    actor = admin()
    leaving = f"leaving-{uuid.uuid4().hex[:6]}@example.com"
    tag, (a, b) = make_contacts(
        actor, [{"email": leaving}, {"email": f"s-{uuid.uuid4().hex[:6]}@example.com"}]
    )
    mailing = _mailing(actor, tag, _template(actor, "Тема", "<p>x</p>"))
    mailings.start(mailing, actor)
    assert mail_audience.opt_out(leaving, "link", None)
    assert mail_sender.run(mailing.id) == {"sent": 1, "failed": 0, "skipped": 1}
    assert _states(mailing.id)[a] == ("skipped", "opted out") and leaving not in smtp.delivered()


def test_without_a_mail_server_a_mailing_says_so(app_ctx) -> None:  # noqa: ANN001
    actor = admin()
    tag, _ids = make_contacts(actor, [{"email": "x@example.com"}])
    mailing = _mailing(actor, tag, _template(actor, "Тема", "<p>x</p>"))
    app_ctx.config["SMTP_CONFIGURED"] = False  # as without SMTP_HOST (the tests' environment has a server)
    try:
        with pytest.raises(mailings.MailingRefused, match="No mail server is configured"):
            mailings.start(mailing, actor)
    finally:
        app_ctx.config["SMTP_CONFIGURED"] = True
    assert db.session.get(Mailing, mailing.id).status == "draft"


def test_pause_resume_cancel_and_send_again(smtp) -> None:  # noqa: ANN001
    actor = admin()
    tag, ids = make_contacts(actor, [{"email": f"p{i}-{uuid.uuid4().hex[:4]}@example.com"} for i in range(4)])
    mailing = _mailing(actor, tag, _template(actor, "Тема", "<p>x</p>"))
    mailings.start(mailing, actor)
    mailings.pause(mailing)
    assert mail_sender.run(mailing.id)["sent"] == 0  # a paused mailing sends nothing
    mailings.resume(mailing, actor)
    # a recipient left "sending" by a sender that died: unknown, not sent again by itself
    recipient = db.session.scalar(select(MailRecipient).where(MailRecipient.contact_id == ids[0]))
    recipient.state, recipient.claim = "sending", "dead-sender"
    db.session.commit()
    assert mail_sender.run(mailing.id)["sent"] == 3
    assert _states(mailing.id)[ids[0]][0] == "unknown"
    assert mailings.progress(mailing)["status"] == "done"
    assert mailings.send_again(mailing, actor) == 1  # a deliberate decision
    assert mail_sender.run(mailing.id)["sent"] == 1
    assert len(smtp.messages) == 4
    with pytest.raises(mailings.MailingRefused):
        mailings.cancel(db.session.get(Mailing, mailing.id))  # done: nothing to cancel
    other = _mailing(actor, tag, _template(actor, "Тема", "<p>x</p>"))
    mailings.start(other, actor)
    mailings.cancel(other)
    assert mail_sender.run(other.id)["sent"] == 0
    assert {s for s, _r in _states(other.id).values()} == {"skipped"}


def test_one_click_unsubscribe_over_http_is_honoured_by_the_next_mailing(smtp, live_url, app_ctx) -> None:  # noqa: ANN001
    app_ctx.config["TABULA_BASE_URL"] = live_url
    actor = admin()
    address = f"oneclick-{uuid.uuid4().hex[:6]}@example.com"
    tag, _ids = make_contacts(actor, [{"email": address}])
    mailing = _mailing(actor, tag, _template(actor, "Тема", "<p>x</p>"))
    mailings.start(mailing, actor)
    mail_sender.run(mailing.id)
    message = smtp.parsed()[0]
    url = message["List-Unsubscribe"].strip("<>")
    assert url.startswith(live_url)
    assert url in message.get_payload()[1].get_content()  # the link in the body too

    page = requests.get(url, timeout=10)  # following the link only asks
    assert page.status_code == 200 and "confirm-unsubscribe" in page.text
    assert not mail_audience.is_opted_out(address)
    forged = requests.post(url[:-3] + "abc", data={"List-Unsubscribe": "One-Click"}, timeout=10)
    assert forged.status_code == 404 and not mail_audience.is_opted_out(address)
    # the mail client's button: a POST without cookies or a form token
    answer = requests.post(url, data={"List-Unsubscribe": "One-Click"}, timeout=10)
    assert answer.status_code == 200
    db.session.expire_all()
    opt_out = db.session.scalar(select(MailOptOut).where(MailOptOut.email == address))
    assert (opt_out.source, opt_out.mailing_id) == ("one_click", mailing.id)
    assert "unsubscribed" in requests.get(url, timeout=10).text
    assert mailings.progress(db.session.get(Mailing, mailing.id))["opt_outs"] == 1

    later = _mailing(actor, tag, _template(actor, "Тема", "<p>x</p>"))
    assert mailings.preview(later, actor)["opted_out"] == 1
    assert mailings.preview(later, actor)["to_send"] == 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=st.text(max_size=300))
def test_any_token_is_refused_never_crashes(app_ctx, token: str) -> None:  # noqa: ANN001
    assert mail_render.read_unsubscribe_token(token) is None


def test_a_connection_lost_after_data_leaves_the_message_unknown_not_resent(smtp) -> None:  # noqa: ANN001
    """The server took the whole message but its answer never came (the connection cut after the final dot):
    it may have arrived, so it is not tried again: "unknown", with the reason; the rest of the mailing goes
    on over a new connection; "send again" is the deliberate way to resend it."""
    actor = admin()
    cut = f"cut-{uuid.uuid4().hex[:6]}@example.com"
    smtp.cut_after_data.add(cut)
    tag, (a, b, c) = make_contacts(
        actor, [{"email": f"x-{uuid.uuid4().hex[:6]}@example.com"}, {"email": cut},
                {"email": f"y-{uuid.uuid4().hex[:6]}@example.com"}],
    )  # fmt: skip
    mailing = _mailing(actor, tag, _template(actor, "Тема", "<p>x</p>"))
    mailings.start(mailing, actor)
    assert mail_sender.run(mailing.id) == {"sent": 2, "failed": 0, "skipped": 0, "unknown": 1}
    states = _states(mailing.id)
    assert states[a][0] == states[c][0] == "sent"
    assert states[b][0] == "unknown" and states[b][1].startswith(mail_sender.UNKNOWN_AFTER_DATA)
    assert smtp.delivered()[cut] == 1 and smtp.rcpt_tries[cut] == 1  # not retried
    assert mailings.progress(db.session.get(Mailing, mailing.id))["status"] == "done"
    smtp.cut_after_data.clear()
    assert mailings.send_again(db.session.get(Mailing, mailing.id), actor) == 1
    assert mail_sender.run(mailing.id)["sent"] == 1
    assert smtp.delivered()[cut] == 2  # the second only because someone chose to send it again


def test_the_sender_classifies_smtp_answers() -> None:
    import smtplib

    assert mail_sender.classify(smtplib.SMTPResponseException(451, b"later")).temporary
    assert not mail_sender.classify(smtplib.SMTPResponseException(554, b"no")).temporary
    assert mail_sender.classify(smtplib.SMTPServerDisconnected("gone")).temporary
    lost = mail_sender.classify(mail_sender.AnswerLost("gone"))
    assert lost.unknown and not lost.temporary
    refused = smtplib.SMTPRecipientsRefused({"a@b.c": (550, b"no such user")})
    assert mail_sender.classify(refused).reason == "550 no such user"


ADDRESS_TEXT = st.text(alphabet=st.sampled_from("aZ9._+-@<>()[]\\,;:\" \tяЁ'!#"), max_size=30)


@settings(max_examples=1000, deadline=None)
@given(
    address=st.one_of(
        st.emails(),
        ADDRESS_TEXT,
        st.builds(lambda name, email: f"{name} <{email}>", ADDRESS_TEXT, st.emails()),
        st.sampled_from(["иван@пример.рф", "a..b@c", ".a@b", "a@b.", "@b", "a@", "a@b@c", "Отдел <s@x.ru>"]),
    )
)
def test_envelope_addresses_are_written_as_smtplib_writes_them(address: str) -> None:
    """MAIL FROM and RCPT TO take an address as ``smtplib.quoteaddr`` gives it, however odd the address."""
    import smtplib

    from app.mailer import envelope_address

    assert envelope_address(address) == smtplib.quoteaddr(address)


LOCAL_TEXT = st.text(alphabet=st.sampled_from("aZ9._+-!#$%&'*/=?^`{|}~\"() \tяЁ@"), min_size=0, max_size=70)
HOSTS = ["a", "b-c", "x" * 250, "-a", "a_b"]
DOMAIN_TEXT = st.text(alphabet=st.sampled_from("ab9.-_рф "), min_size=0, max_size=20)


@settings(max_examples=2000, deadline=None)
@given(
    address=st.one_of(
        st.emails(),
        st.builds(lambda local, domain: f"{local}@{domain}", LOCAL_TEXT, DOMAIN_TEXT),
        st.builds(lambda local, host: f"{local}@{host}.com", LOCAL_TEXT, st.sampled_from(HOSTS)),
        ADDRESS_TEXT,
        st.sampled_from(["иван@пример.рф", "a..b@c.com", ".a@b.com", "a.@b.com", "a@b.", "@b.com", "a@",
                         '"a@b"@c.com', "a@b@c.com", "a" * 64 + "@b.com", "a" * 65 + "@b.com",
                         "a@[127.0.0.1]", "a@localhost", "a@b.c" + "om" * 130]),
    )
)  # fmt: skip
def test_the_audiences_address_check_is_email_validators(address: str) -> None:
    """``valid_email`` (a plain address's domain checked once per domain) says what email-validator says."""
    from email_validator import EmailNotValidError, validate_email

    try:
        validate_email(address, check_deliverability=False)
        expected = True
    except EmailNotValidError:
        expected = False
    assert mail_audience.valid_email(address) is expected


def test_a_worker_killed_mid_mailing_and_a_new_one_send_no_one_two_messages(app_ctx, env, redis_url) -> None:  # noqa: ANN001
    """SIGKILL the worker (and its work horse) while it sends, start another: nobody gets two messages, at
    most one recipient is left "unknown", every other one is sent."""
    import signal

    import psutil

    from tests.conftest import start_worker, stop_worker
    from tests.test_jobs import _worker_on

    queue = f"mail-kill-{uuid.uuid4().hex[:6]}"
    saved = {k: app_ctx.config[k] for k in MAIL_SETTINGS}
    processes = []
    with SmtpServer() as server:
        worker_env = {
            **env,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(server.port),
            "TABULA_MAIL_LEASE_SECONDS": "2",
            "TABULA_WORKER_HEARTBEAT_SECONDS": "1",
        }
        app_ctx.config.update(
            SMTP_HOST="127.0.0.1",
            SMTP_PORT=server.port,
            SMTP_CONFIGURED=True,
            TABULA_MAIL_QUEUE=queue,
            TABULA_MAIL_SENDERS=2,
        )
        try:
            actor = admin()
            total = 120
            tag, _ids = make_contacts(
                actor, [{"email": f"k{i}-{uuid.uuid4().hex[:6]}@example.com"} for i in range(total)]
            )
            mailing = _mailing(actor, tag, _template(actor, "Тема", "<p>x</p>"), rate_per_second="30")
            processes.append(start_worker(worker_env, queue))
            doomed = _worker_on(redis_url, queue)
            mailings.start(mailing, actor)
            deadline = time.monotonic() + 60
            while len(server.sink.messages) < 25:  # the database learns of a batch's messages at its end
                assert time.monotonic() < deadline, mail_sender.counts(mailing.id)
                time.sleep(0.05)

            horses = psutil.Process(processes[0].pid).children(recursive=True)
            processes[0].send_signal(signal.SIGKILL)
            for horse in horses:
                horse.send_signal(signal.SIGKILL)
            processes[0].wait(timeout=10)
            doomed.register_death()
            assert mail_sender.counts(mailing.id)["sent"] < total

            processes.append(start_worker(worker_env, queue))
            time.sleep(2.5)  # the killed sender's lease lapses
            db.session.expire_all()
            mailings.resume(db.session.get(Mailing, mailing.id), actor)
            deadline = time.monotonic() + 90
            while (found := mailings.progress(db.session.get(Mailing, mailing.id)))["status"] != "done":
                assert time.monotonic() < deadline, found
                time.sleep(0.2)
                db.session.expire_all()
        finally:
            app_ctx.config.update(saved)
            for process in processes:
                if process.poll() is None:
                    stop_worker(process)
        counts = found["counts"]
        delivered = server.sink.delivered()
        assert max(delivered.values()) == 1, [a for a, n in delivered.items() if n > 1]
        assert counts["unknown"] <= 1 and counts["sent"] + counts["unknown"] == total, counts
        sent = set(
            db.session.scalars(
                select(MailRecipient.email).where(
                    MailRecipient.mailing_id == mailing.id, MailRecipient.state == "sent"
                )
            )
        )
        assert sent <= set(delivered) and len(delivered) - len(sent) <= counts["unknown"]


def test_a_dead_senders_journal_settles_its_rows(smtp) -> None:  # noqa: ANN001
    """A sender marks a whole batch ``sending`` and keeps what it did in its journal (Redis): after its death
    the row it sent is sent (and in the contact's history), the one under way unknown, the one it never
    reached queued again and sent by the next sender; a claim without a journal leaves every row unknown."""
    from app.redis_client import redis_connection

    actor = admin()
    tag, ids = make_contacts(actor, [{"email": f"j{i}-{uuid.uuid4().hex[:6]}@example.com"} for i in range(5)])
    mailing = _mailing(actor, tag, _template(actor, "Тема", "<p>x</p>"))
    mailings.start(mailing, actor)
    rows = {
        r.contact_id: r.id
        for r in db.session.scalars(select(MailRecipient).where(MailRecipient.mailing_id == mailing.id))
    }
    dead, lost = f"dead-{uuid.uuid4().hex}", f"lost-{uuid.uuid4().hex}"
    for contact, claim in zip(ids, (dead, dead, dead, lost, None), strict=True):
        recipient = db.session.get(MailRecipient, rows[contact])
        recipient.claim, recipient.state = claim, "sending" if claim else "queued"
    db.session.commit()
    redis_connection().hset(
        mail_sender.JOURNAL_PREFIX + dead,
        mapping={
            "open": "1",
            str(rows[ids[0]]): mail_sender.sent_outcome("Тема"),
            "inflight": str(rows[ids[1]]),
        },
    )
    found = mail_sender.recover(mailing.id)
    assert (found["sent"], found["unknown"], found["freed"], found["dead"]) == (1, 2, 1, 2)
    states = _states(mailing.id)
    assert states[ids[0]][0] == "sent" and states[ids[1]][0] == "unknown" and states[ids[3]][0] == "unknown"
    assert states[ids[2]] == ("queued", "")
    assert db.session.get(MailRecipient, rows[ids[0]]).logged  # an e-mail activity in the contact's history
    assert mail_sender.run(mailing.id)["sent"] == 2  # the one never reached, and the one never claimed
    assert smtp.delivered()[db.session.get(MailRecipient, rows[ids[1]]).email] == 0


def _kill_worker(process) -> None:  # noqa: ANN001
    import signal

    import psutil

    horses = psutil.Process(process.pid).children(recursive=True)
    process.send_signal(signal.SIGKILL)
    for horse in horses:
        horse.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


def test_a_mailing_whose_worker_died_is_taken_up_without_resume(app_ctx, env, redis_url) -> None:  # noqa: ANN001
    """SIGKILL the only worker mid-mailing and press nothing: the mailing says no sender works on it; the
    check ``tabula cron`` runs every minute settles the dead sender's claim and queues senders again, which a
    new worker runs to the end: nobody gets two messages, at most one is unknown."""
    from tests.conftest import start_worker, stop_worker
    from tests.test_jobs import _worker_on

    queue = f"mail-stall-{uuid.uuid4().hex[:6]}"
    saved = {k: app_ctx.config[k] for k in (*MAIL_SETTINGS, "TABULA_MAIL_LEASE_SECONDS")}
    processes = []
    with SmtpServer() as server:
        worker_env = {
            **env,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(server.port),
            "TABULA_MAIL_LEASE_SECONDS": "2",
            "TABULA_WORKER_HEARTBEAT_SECONDS": "1",
        }
        app_ctx.config.update(
            SMTP_HOST="127.0.0.1",
            SMTP_PORT=server.port,
            SMTP_CONFIGURED=True,
            TABULA_MAIL_QUEUE=queue,
            TABULA_MAIL_SENDERS=1,
            TABULA_MAIL_LEASE_SECONDS=2,
        )
        try:
            actor = admin()
            total = 90
            tag, _ids = make_contacts(
                actor, [{"email": f"st{i}-{uuid.uuid4().hex[:6]}@example.com"} for i in range(total)]
            )
            mailing = _mailing(actor, tag, _template(actor, "Тема", "<p>x</p>"), rate_per_second="30")
            processes.append(start_worker(worker_env, queue))
            doomed = _worker_on(redis_url, queue)
            mailings.start(mailing, actor)
            deadline = time.monotonic() + 60
            while len(server.sink.messages) < 20:
                assert time.monotonic() < deadline, mail_sender.counts(mailing.id)
                time.sleep(0.05)
            _kill_worker(processes[0])
            doomed.register_death()
            assert mailings.take_up_stalled() == []  # its lease has not lapsed yet: not given up so soon
            time.sleep(2.5)
            db.session.expire_all()
            shown = mailings.progress(db.session.get(Mailing, mailing.id))
            assert shown["status"] == "sending" and shown["message"] == mailings.STALLED
            assert shown["counts"]["sent"] + shown["counts"]["unknown"] < total

            processes.append(start_worker(worker_env, queue))
            assert mailings.take_up_stalled() == [mailing.id]  # what the cron job does
            assert mailings.take_up_stalled() == []  # taken up once: its new sender is queued
            deadline = time.monotonic() + 90
            while (found := mailings.progress(db.session.get(Mailing, mailing.id)))["status"] != "done":
                assert time.monotonic() < deadline, found
                time.sleep(0.2)
                db.session.expire_all()
        finally:
            app_ctx.config.update(saved)
            for process in processes:
                if process.poll() is None:
                    stop_worker(process)
        assert found["message"] == mailings.TAKEN_UP
        counts = found["counts"]
        delivered = server.sink.delivered()
        assert max(delivered.values()) == 1, [a for a, n in delivered.items() if n > 1]
        assert counts["unknown"] <= 1 and counts["sent"] + counts["unknown"] == total, counts


def test_the_cron_schedule_takes_up_stalled_mailings(redis_url) -> None:  # noqa: ANN001
    from pathlib import Path

    from redis import Redis
    from rq.cron import CronScheduler

    scheduler = CronScheduler(connection=Redis.from_url(redis_url))
    scheduler.load_config_from_file(str(Path(mailings.__file__).with_name("cron.py")))  # as `rq cron` does
    found = {job.name: job for job in scheduler.get_jobs()}
    assert found["mailings_take_up"].func is mailings.scheduled_take_up


def test_newcombe_interval_for_known_values() -> None:
    from app.crm.uplift import newcombe

    found = newcombe(120, 2000, 40, 1000)
    assert found.difference == pytest.approx(0.02)
    assert found.low == pytest.approx(0.0030, abs=5e-5) and found.high == pytest.approx(0.0354, abs=5e-5)
    assert found.verdict == "positive"
    assert newcombe(10, 100, 10, 100).verdict == "unclear"
    assert newcombe(0, 50, 5, 50).verdict == "negative"
    with pytest.raises(ValueError):
        newcombe(1, 0, 1, 10)


def test_results_compare_the_mailed_with_the_control_group(smtp, admin_client) -> None:  # noqa: ANN001
    from app.crm import mail_results

    actor = admin()
    tag, _ids = make_contacts(
        actor, [{"email": f"u{i}-{uuid.uuid4().hex[:6]}@example.com"} for i in range(60)]
    )
    mailing = _mailing(actor, tag, _template(actor, "Тема", "<p>x</p>"), control_percent="50", seed="7",
                       conversion="deal_won", conversion_days="30")  # fmt: skip
    mailings.start(mailing, actor)
    mail_sender.run(mailing.id)
    found = mail_results.results(mailing, actor)
    assert found.target + found.control == 60 and found.target_converted == found.control_converted == 0
    assert found.verdict == "The campaign's effect is not distinguishable from zero."

    pipeline = records.create("pipelines", {"name": f"Воронка {tag}"}, actor).id
    won = records.create("stages", {"name": "Выиграна", "pipeline_id": pipeline, "is_won": True}, actor).id
    states = _states(mailing.id)
    mailed = [c for c, (s, _r) in states.items() if s == "sent"]
    held = [c for c, (s, _r) in states.items() if s == "held_out"]
    for contact in mailed:
        records.create("deals", {"title": "Покупка", "stage_id": won, "contact_id": contact}, actor)
    found = mail_results.results(mailing, actor)
    assert (found.target_converted, found.control_converted) == (len(mailed), 0)
    assert found.uplift is not None and found.uplift.low > 0
    assert found.verdict.startswith("The campaign raised conversion by")
    page = admin_client.get(f"/mailings/{mailing.id}").get_data(as_text=True)
    assert 'id="mailing-verdict"' in page and str(len(held)) in page
    workbook = admin_client.get(f"/mailings/{mailing.id}/results.xlsx")
    assert workbook.status_code == 200
    import io

    import openpyxl

    sheet = openpyxl.load_workbook(io.BytesIO(workbook.data)).active
    values = {row[0]: row[1] for row in sheet.iter_rows(values_only=True) if row[0]}
    assert values[next(k for k in values if "control" in k.lower() and "converted" not in k.lower())] == len(
        held
    )


def test_an_invoice_paid_after_the_mailing_counts_as_its_companys_conversion(smtp) -> None:  # noqa: ANN001
    """Conversion "an invoice paid": a contact converts when an invoice of their company is paid in full in
    the window (its payment day); an invoice of a held-out contact's company counts for the control group,
    and an invoice only partly paid counts for nobody."""
    from app.crm import mail_results

    actor = admin()
    tag = f"mail-{uuid.uuid4().hex[:8]}"
    companies = [
        records.create("companies", {"name": f"ООО «Оплата {tag} {i}»"}, actor).id for i in range(40)
    ]
    tag, _ids = make_contacts(
        actor,
        [
            {"email": f"p{i}-{uuid.uuid4().hex[:6]}@example.com", "company_id": c}
            for i, c in enumerate(companies)
        ],
        tag,
    )
    mailing = _mailing(actor, tag, _template(actor, "Счёт", "<p>x</p>"), control_percent="50", seed="3",
                       conversion="invoice_paid", conversion_days="30")  # fmt: skip
    mailings.start(mailing, actor)
    mail_sender.run(mailing.id)
    states = _states(mailing.id)
    company_of = {r["id"]: r["company_id"] for r in TableQuery("contacts", actor).where(
        {"field": "position", "op": "eq", "value": tag}).fields("company_id").stream()}  # fmt: skip
    mailed = [company_of[c] for c, (s, _r) in states.items() if s == "sent"]
    held = [company_of[c] for c, (s, _r) in states.items() if s == "held_out"]
    assert mailed and held
    for n, company in enumerate(mailed):
        records.create("invoices", {"number": f"{tag}-{n}", "company_id": company, "amount": "100",
                                    "paid_amount": "100"}, actor)  # fmt: skip
    records.create("invoices", {"number": f"{tag}-held", "company_id": held[0], "amount": "100",
                                "paid_amount": "100"}, actor)  # fmt: skip
    records.create("invoices", {"number": f"{tag}-part", "company_id": held[1 % len(held)], "amount": "100",
                                "paid_amount": "40"}, actor)  # fmt: skip
    found = mail_results.results(mailing, actor)
    assert (found.target_converted, found.control_converted) == (len(mailed), 1)
