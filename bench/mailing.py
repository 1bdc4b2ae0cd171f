"""Benchmark of a mailing (``jobs.mailings``: audience from a saved view, one recipient row each, two real
``rq worker`` processes sending exactly once) against a bare smtplib loop, both to a local aiosmtpd sink.

Builds a scratch database (PostgreSQL next to ``BENCH_DATABASE_URL``, or SQLite with ``--sqlite``) with
``--rows`` contacts (e-mail consent given, a company each) and a saved view of them, starts two workers on
``BENCH_REDIS_URL``, then:

- ``mailing_s``: from ``mailings.start`` (the "Start sending" button: audience built, recipients written,
  senders queued) until the mailing's status is "done" (every message sent, each one an activity in the
  contact's history);
- ``bare_s``: the baseline, in this process: the same messages, rendered and built as bytes beforehand (not
  timed), sent by ``smtplib.SMTP.sendmail`` in a loop over one connection; no database, no claims, no
  history, no rendering, no MIME.

- ``bare_message_s``: a second baseline, reported beside it (the one this bench used first): the same
  messages built beforehand as ``EmailMessage`` objects (``mail_render.build_message``), sent by
  ``smtplib.SMTP.send_message``, which flattens each one in the loop; ``ratio_send_message`` =
  bare_message_s / mailing_s.

The last stdout line is one JSON object, e.g. ``{"bench": "mailing", "rows": 10000, "ratio": 0.8, ...}``
with ``ratio`` = mailing rate / bare rate = bare_s / mailing_s (target ≥ 0.7). Usage::

    .venv/bin/python bench/mailing.py --rows 10000
    .venv/bin/python bench/mailing.py --rows 10000 --sqlite
"""

from __future__ import annotations

import argparse
import json
import smtplib
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)

from bench.export import start_worker, stop_worker  # noqa: E402
from bench.scratch import log  # noqa: E402

RATIO_TARGET = 0.7
WORKERS = 2


class CountingSink:
    """An SMTP server's handler that takes every message and counts deliveries per address."""

    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.count += len(envelope.rcpt_tos)
        return "250 OK"


def build_audience(actor: Any, rows: int) -> tuple[int, int]:
    """``rows`` contacts with consent and a company, a saved view of them, a template; returns the view's and
    the template's ids."""
    from custom_fields import records, saved_views
    from jobs import mailings

    tag = f"bench-{uuid.uuid4().hex[:6]}"
    names = [{"name": f"ООО «Компания {i}»"} for i in range(max(1, rows // 10))]
    companies = [saved.id for saved in records.create_many("companies", names, actor)]
    for start in range(0, rows, 2000):
        records.create_many(
            "contacts",
            [
                {"first_name": f"Имя{i}", "last_name": "Фамилия", "email": f"c{i}@example.com",
                 "email_consent": True, "position": tag, "company_id": companies[i % len(companies)]}
                for i in range(start, min(rows, start + 2000))
            ],
            actor,
        )  # fmt: skip
        log(f"  {min(rows, start + 2000):,} contacts")
    view = saved_views.save(
        "contacts", actor, tag, {"filter": {"field": "position", "op": "eq", "value": tag}}
    )
    template = mailings.save_template(
        actor,
        {"name": "Бенчмарк", "subject": "Здравствуйте, {{ contact.first_name }}!",
         "html": "<style>p { color: #333 }</style><p>Добрый день, {{ contact.first_name }} "
                 "{{ contact.last_name }} из {{ company.name | fallback('вашей компании') }}!</p>"
                 "<p>Новые цены уже на сайте.</p>"},
    )  # fmt: skip
    return view.id, template.id


def bare_messages(mailing_id: int, actor: Any) -> list[tuple[str, bytes]]:
    """The mailing's messages, rendered and built as the senders build them, as bytes (for the baseline:
    it pays for none of that)."""
    from sqlalchemy import select

    from app.crm import mail_render
    from app.extensions import db
    from models import Mailing, MailRecipient

    mailing = db.session.get(Mailing, mailing_id)
    shape = mail_render.MessageShape(mailing.sender, mailing.reply_to)
    rows = db.session.execute(
        select(MailRecipient.id, MailRecipient.contact_id, MailRecipient.email).where(
            MailRecipient.mailing_id == mailing_id
        )
    ).all()
    values = mail_render.merge_values(actor, [r.contact_id for r in rows])
    found = []
    for row in rows:
        unsubscribe = mail_render.unsubscribe_url(row.email, mailing_id)
        rendered = mail_render.render(mailing.subject, mailing.html, mailing.text, values[row.contact_id],
                                      unsubscribe)  # fmt: skip
        message = shape.bytes(
            rendered, to_email=row.email, to_name=values[row.contact_id]["contact"].get("full_name") or "",
            msg_id=f"<bare.{row.id}@example.com>", unsubscribe=unsubscribe,
        )  # fmt: skip
        found.append((row.email, message))
    return found


def message_objects(mailing_id: int, actor: Any) -> list[tuple[str, Any]]:
    """The same messages built as ``EmailMessage`` objects (``mail_render.build_message``, ``policy.SMTP``),
    as this bench's baseline sent them before the senders wrote bytes themselves."""
    from sqlalchemy import select

    from app.crm import mail_render
    from app.extensions import db
    from models import Mailing, MailRecipient

    mailing = db.session.get(Mailing, mailing_id)
    rows = db.session.execute(
        select(MailRecipient.id, MailRecipient.contact_id, MailRecipient.email).where(
            MailRecipient.mailing_id == mailing_id
        )
    ).all()
    values = mail_render.merge_values(actor, [r.contact_id for r in rows])
    found = []
    for row in rows:
        unsubscribe = mail_render.unsubscribe_url(row.email, mailing_id)
        rendered = mail_render.render(mailing.subject, mailing.html, mailing.text, values[row.contact_id],
                                      unsubscribe)  # fmt: skip
        message = mail_render.build_message(
            rendered, sender=mailing.sender, to_email=row.email, msg_id=f"<bare.{row.id}@example.com>",
            unsubscribe=unsubscribe,
        )  # fmt: skip
        found.append((row.email, message))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    args = parser.parse_args()

    from aiosmtpd.controller import Controller

    from bench.scratch import scratch_app

    sink = CountingSink()
    with socket_port() as port:
        controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    figures: dict[str, Any] = {
        "bench": "mailing", "rows": args.rows, "workers": WORKERS,
        "database": "sqlite" if args.sqlite else "postgresql",
    }  # fmt: skip
    try:
        with scratch_app(sqlite=args.sqlite) as app, app.app_context():
            from app.extensions import db
            from custom_fields.access import Actor
            from jobs import mailings
            from models import Mailing

            smtp = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port)}
            app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=port, SMTP_CONFIGURED=True,
                              TABULA_MAIL_SENDERS=WORKERS)  # fmt: skip
            actor = Actor.for_user_id(app.appbuilder.sm.find_user(username="admin").id, "ui")
            log(f"loading {args.rows:,} contacts")
            view_id, template_id = build_audience(actor, args.rows)
            mailing = mailings.create(
                actor, {"name": "Бенчмарк", "template_id": template_id, "view_id": view_id,
                        "sender": "Отдел продаж <sales@example.com>"},
            )  # fmt: skip
            workers = [start_worker({**app.bench_env, **smtp}) for _ in range(WORKERS)]
            try:
                log(f"the product: a mailing sent by {WORKERS} workers")
                began = time.perf_counter()
                mailings.start(mailing, actor)
                while True:
                    db.session.expire_all()
                    if db.session.get(Mailing, mailing.id).status != "sending":
                        break
                    time.sleep(0.05)
                figures["mailing_s"] = time.perf_counter() - began
            finally:
                for worker in workers:
                    stop_worker(worker)
            counts = mailings.progress(db.session.get(Mailing, mailing.id))["counts"]
            if counts["sent"] != args.rows or sink.count != args.rows:
                raise RuntimeError(f"sent {counts}, the sink took {sink.count} of {args.rows}")
            log("baseline: rendering the same messages (not timed)")
            messages = bare_messages(mailing.id, actor)
            log("baseline: a bare smtplib loop over one connection")
            began = time.perf_counter()
            with smtplib.SMTP("127.0.0.1", port) as connection:
                for address, message in messages:
                    connection.sendmail("sales@example.com", [address], message)
            figures["bare_s"] = time.perf_counter() - began
            log("second baseline: the same messages as EmailMessage objects, smtplib's send_message")
            objects = message_objects(mailing.id, actor)
            began = time.perf_counter()
            with smtplib.SMTP("127.0.0.1", port) as connection:
                for address, message in objects:
                    connection.send_message(message, from_addr="sales@example.com", to_addrs=[address])
            figures["bare_message_s"] = time.perf_counter() - began
    finally:
        controller.stop()
    figures["ratio"] = round(figures["bare_s"] / figures["mailing_s"], 2)
    figures["ratio_send_message"] = round(figures["bare_message_s"] / figures["mailing_s"], 2)
    figures["bare_message_s"] = round(figures["bare_message_s"], 2)
    figures["mailing_per_s"] = round(args.rows / figures["mailing_s"])
    figures["bare_per_s"] = round(args.rows / figures["bare_s"])
    figures["mailing_s"], figures["bare_s"] = round(figures["mailing_s"], 2), round(figures["bare_s"], 2)
    print(
        f"mailing {figures['mailing_s']} s ({figures['mailing_per_s']:,}/s), bare {figures['bare_s']} s "
        f"({figures['bare_per_s']:,}/s): ratio {figures['ratio']} (target ≥ {RATIO_TARGET})"
    )
    print(json.dumps(figures, ensure_ascii=False))


class socket_port:  # noqa: N801 (used as a context manager)
    """A free local port."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc: Any) -> None:
        self.sock.close()


if __name__ == "__main__":
    main()
