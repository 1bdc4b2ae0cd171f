"""A real SMTP server (aiosmtpd) for the mailing tests, and contacts and views to mail."""

from __future__ import annotations

import email
import threading
import uuid
from collections import Counter
from email import policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from sqlalchemy import select

from app.extensions import db
from custom_fields import records, saved_views
from custom_fields.access import Actor
from tests.conftest import free_port


class Sink:
    """Takes every message; ``answers[address]`` lists SMTP answers given to RCPT first (e.g. "451 ...")."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []
        self.answers: dict[str, list[str]] = {}
        self.rcpt_tries: Counter = Counter()
        #: addresses whose message is taken, then the connection cut before the answer (a lost "250")
        self.cut_after_data: set[str] = set()
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001, ANN201, N802
        with self.lock:
            self.rcpt_tries[address] += 1
            queued = self.answers.get(address)
            if queued:
                return queued.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201, N802
        with self.lock:
            self.messages.append((list(envelope.rcpt_tos), envelope.content))
            cut = bool(self.cut_after_data & set(envelope.rcpt_tos))
        if cut:
            server.transport.abort()  # the message arrived; its "250" never will
        return "250 OK"

    def parsed(self) -> list[EmailMessage]:
        return [email.message_from_bytes(raw, policy=policy.default) for _to, raw in self.messages]

    def delivered(self) -> Counter:
        return Counter(address for to, _raw in self.messages for address in to)


class SmtpServer:
    def __init__(self) -> None:
        self.sink = Sink()
        self.port = free_port()
        self.controller = Controller(self.sink, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.controller.stop()


def admin() -> Actor:
    from flask_appbuilder.security.sqla.models import User

    user_id = db.session.scalar(select(User.id).where(User.username == "admin"))
    return Actor.for_user_id(user_id, "ui")


def make_contacts(actor: Actor, rows: list[dict[str, Any]], tag: str | None = None) -> tuple[str, list[int]]:
    """Contacts marked with ``tag`` in their position (a view selects them by it)."""
    tag = tag or f"mail-{uuid.uuid4().hex[:8]}"
    values = [{"first_name": "Имя", "email_consent": True, **row, "position": tag} for row in rows]
    saved = records.create_many("contacts", values, actor)
    return tag, [s.id for s in saved]


def view_of(actor: Actor, tag: str) -> int:
    state = {"filter": {"field": "position", "op": "eq", "value": tag}}
    return saved_views.save("contacts", actor, f"Рассылка {tag}", state).id
