"""Outgoing mail through the SMTP server of the settings (``SMTP_*``, ``MAIL_FROM``): the one SMTP path of
the application. ``SmtpLink`` is a connection reused message after message (mailings, automatic mailings,
tests sent to oneself); ``deliver`` hands one ``email.message.EmailMessage`` over on a connection of its
own (scheduled exports), errors coming back as ``MailError`` with a sentence for the user, never as a
traceback.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from collections.abc import Callable, Iterable
from email.message import EmailMessage
from email.utils import formatdate, getaddresses, make_msgid, parseaddr
from typing import Any

from flask import current_app
from flask_babel import gettext as _


class Stopped(smtplib.SMTPException):
    """The sender lost its lease before handing the message over: nothing was sent, it must stop."""


class AnswerLost(smtplib.SMTPException):
    """The message went over whole (DATA and its final dot) but the server's answer never came back: it may or
    may not have been taken."""


_LEADING_DOT = re.compile(rb"(?m)^\.")
#: An address ``smtplib.quoteaddr`` would only put in angle brackets (no display name, comment or quoting).
_BARE_ADDRESS = re.compile(r"[^\s<>()\[\]\\,;:\"@]+@[^\s<>()\[\]\\,;:\"@]+")


def envelope_address(address: str) -> str:
    """``address`` as MAIL FROM and RCPT TO give it (``<a@b>``): smtplib's ``quoteaddr``, whose address
    parser costs more than the rest of a command, taken only where the address is not already bare."""
    if _BARE_ADDRESS.fullmatch(address):
        return f"<{address}>"
    return smtplib.quoteaddr(address)


class SmtpLink:
    """One SMTP connection, opened on first use and reused for every message; dropped on a lost connection.

    A message goes as MAIL, RCPT, DATA: a connection lost before the final dot has been sent cannot have
    delivered it (tried again); one lost after it, while waiting for the server's answer, raises
    ``AnswerLost`` (the message may have arrived)."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.connection: smtplib.SMTP | None = None

    def _open(self) -> smtplib.SMTP:
        c = self.config
        timeout = c.get("SMTP_TIMEOUT", 30)
        if c["SMTP_SSL"]:
            connection: smtplib.SMTP = smtplib.SMTP_SSL(
                c["SMTP_HOST"], c["SMTP_PORT"], timeout=timeout, context=ssl.create_default_context()
            )
        else:
            connection = smtplib.SMTP(c["SMTP_HOST"], c["SMTP_PORT"], timeout=timeout)
        if c["SMTP_STARTTLS"] and not c["SMTP_SSL"]:
            connection.starttls(context=ssl.create_default_context())
        if c["SMTP_USER"]:
            connection.login(c["SMTP_USER"], c["SMTP_PASSWORD"])
        return connection

    def send(
        self,
        message: EmailMessage | bytes,
        sender: str,
        recipient: str | list[str],
        confirm: Callable[[], bool] | None = None,
    ) -> None:
        """One message. ``confirm`` is asked after RCPT, before DATA: False (the sender was given up for
        dead) resets the transaction and raises ``Stopped``: nothing went out."""
        data = (
            message
            if isinstance(message, bytes)
            else message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
        )
        if self.connection is None:
            self.connection = self._open()
        try:
            self._transaction(self.connection, data, sender, recipient, confirm)
        except (smtplib.SMTPServerDisconnected, OSError, AnswerLost):
            self.drop()
            raise
        except smtplib.SMTPException:
            if getattr(self.connection, "sock", None) is None:  # smtplib closed it (a 421 answer)
                self.drop()
            raise

    @staticmethod
    def _transaction(
        connection: smtplib.SMTP,
        data: bytes,
        sender: str,
        recipient: str | list[str],
        confirm: Callable[[], bool] | None,
    ) -> None:
        connection.ehlo_or_helo_if_needed()
        connection.putcmd("mail", f"from:{envelope_address(sender)}")  # smtplib's ``mail`` without options
        code, said = connection.getreply()
        if code != 250:
            _reset(connection, code)
            raise smtplib.SMTPSenderRefused(code, said, sender)
        refused = {}
        recipients = [recipient] if isinstance(recipient, str) else recipient
        for address in recipients:
            connection.putcmd("rcpt", f"to:{envelope_address(address)}")  # smtplib's ``rcpt``
            code, said = connection.getreply()
            if code not in (250, 251):
                refused[address] = (code, said)
                if code == 421:
                    break
        if refused and (len(refused) == len(recipients) or code == 421):
            _reset(connection, code)
            raise smtplib.SMTPRecipientsRefused(refused)
        if confirm is not None and not confirm():
            _reset(connection, 0)
            raise Stopped("the sender was given up for dead: nothing sent")
        code, said = connection.docmd("data")
        if code != 354:
            _reset(connection, code)
            raise smtplib.SMTPDataError(code, said)
        body = _LEADING_DOT.sub(b"..", data)
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        connection.send(body + b".\r\n")  # lost here: the server has no final dot, nothing was delivered
        try:
            code, said = connection.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise AnswerLost(str(exc) or exc.__class__.__name__) from exc
        if code != 250:
            raise smtplib.SMTPDataError(code, said)

    def drop(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()
            finally:
                self.connection = None

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.quit()
            except (smtplib.SMTPException, OSError):
                pass
            self.drop()


def _reset(connection: smtplib.SMTP, code: int) -> None:
    if code == 421:
        connection.close()
    else:
        try:
            connection.rset()
        except smtplib.SMTPServerDisconnected:
            pass


class MailError(Exception):
    """The message was not handed to the mail server; the text says why, for the user."""

    def __init__(self, message: str, *, temporary: bool = False) -> None:
        super().__init__(message)
        self.temporary = temporary


def new_message(to: Iterable[str], subject: str, text: str, html: str | None = None) -> EmailMessage:
    """A message from ``MAIL_FROM`` with a plain-text part and, when given, an HTML alternative."""
    message = EmailMessage()
    message["From"] = current_app.config["MAIL_FROM"]
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain=_sender_domain())
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message


def _sender_domain() -> str:
    address = current_app.config["MAIL_FROM"].rsplit("<", 1)[-1].rstrip(">")
    return address.rpartition("@")[2] or "localhost"


def deliver(message: EmailMessage) -> None:
    """Hand ``message`` to the mail server; raises ``MailError``."""
    cfg = current_app.config
    if not cfg.get("SMTP_CONFIGURED", True):
        raise MailError(
            _("No mail server is configured: set SMTP_HOST (and SMTP_PORT, SMTP_USER ...) and restart.")
        )
    host, port = cfg["SMTP_HOST"], cfg["SMTP_PORT"]
    sender = parseaddr(str(message["Sender"] or message["From"] or ""))[1]
    to = [address for _name, address in getaddresses([str(v) for v in message.get_all("To", [])]) if address]
    link = SmtpLink(cfg)
    try:
        link.send(message, sender, to)
        link.close()
    except smtplib.SMTPRecipientsRefused as refused:
        link.drop()
        raise MailError(
            _("The mail server refused the recipients: %(who)s.", who=", ".join(refused.recipients))
        ) from None
    except smtplib.SMTPResponseException as answer:
        link.drop()
        raise MailError(
            _(
                "The mail server answered %(code)s: %(text)s",
                code=answer.smtp_code,
                text=_text(answer.smtp_error),
            ),
            temporary=400 <= answer.smtp_code < 500,
        ) from None
    except (OSError, smtplib.SMTPException) as failure:
        link.drop()
        raise MailError(
            _(
                "No mail server answers at %(host)s:%(port)s (%(error)s); set SMTP_HOST and SMTP_PORT.",
                host=host,
                port=port,
                error=failure.__class__.__name__,
            ),
            temporary=True,
        ) from None


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
