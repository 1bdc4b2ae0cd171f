"""E-mail templates: merge fields, rendering in Jinja2's sandbox, CSS inlined, the plain-text part, MIME.

A template names merge fields as ``{{ contact.first_name }}``, ``{{ company.name }}``, ``{{ owner.name }}``
(any field of the contact or their company the mailing's owner may see, custom fields included, by the
field's name) with a fallback for empty values: ``{{ contact.first_name | fallback("коллега") }}``. Values
are read only through the query layer and shown as the field type displays them; in the HTML part they are
escaped. A field the template names that is gone or hidden renders empty and is reported by ``unknown_fields``
(the editor flags it) instead of breaking a mailing.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import html as html_lib
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email import policy
from email.header import Header
from email.headerregistry import HeaderRegistry
from email.message import EmailMessage
from email.utils import formataddr, formatdate, parseaddr
from html.parser import HTMLParser
from typing import Any

import css_inline
from flask import current_app
from flask_appbuilder.security.sqla.models import User
from flask_babel import gettext as _
from itsdangerous import BadSignature, URLSafeSerializer
from jinja2 import Template, TemplateSyntaxError, nodes
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import select

from app.extensions import db
from custom_fields.access import Actor
from custom_fields.query import QueryError, TableQuery
from custom_fields.types import REGISTRY

#: The names a template may use: what each holds.
NAMESPACES = ("contact", "company", "owner")
OWNER_FIELDS = ("name", "first_name", "last_name", "email")
MAX_TEMPLATE = 200_000


class TemplateError(QueryError):
    """A template that cannot be used; the message is for the user."""

    status = 422


def fallback(value: Any, default: str = "") -> Any:
    """The value, or ``default`` when it is empty."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    try:
        if not str(value).strip():
            return default
    except Exception:  # noqa: BLE001 (an Undefined that refuses str())
        return default
    return value


def _environment(autoescape: bool) -> SandboxedEnvironment:
    env = SandboxedEnvironment(autoescape=autoescape)
    env.filters["fallback"] = fallback
    return env


_HTML_ENV = _environment(True)
_TEXT_ENV = _environment(False)


@functools.lru_cache(maxsize=64)
def _compiled(source: str, autoescape: bool) -> Template:
    """A template compiled once per process (a mailing renders the same three sources for every message)."""
    return (_HTML_ENV if autoescape else _TEXT_ENV).from_string(source)


def _parse(source: str, env: SandboxedEnvironment) -> nodes.Template:
    if len(source) > MAX_TEMPLATE:
        raise TemplateError(_("A template has at most %(n)d characters.", n=MAX_TEMPLATE))
    try:
        return env.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(
            _(
                "The template has an error on line %(line)d: %(message)s",
                line=exc.lineno,
                message=exc.message or "",
            )
        ) from None


def named_fields(*sources: str) -> set[tuple[str, str]]:
    """The (namespace, field name) pairs the sources refer to (``contact.email`` ...)."""
    found: set[tuple[str, str]] = set()
    for source in sources:
        tree = _parse(source or "", _TEXT_ENV)
        for node in tree.find_all(nodes.Getattr):
            if isinstance(node.node, nodes.Name) and node.node.name in NAMESPACES:
                found.add((node.node.name, node.attr))
        for node in tree.find_all(nodes.Getitem):
            if (
                isinstance(node.node, nodes.Name)
                and node.node.name in NAMESPACES
                and isinstance(node.arg, nodes.Const)
                and isinstance(node.arg.value, str)
            ):
                found.add((node.node.name, node.arg.value))
    return found


@dataclass(frozen=True)
class MergeField:
    key: str  # contact.first_name
    label: str
    namespace: str


def merge_fields(actor: Actor) -> list[MergeField]:
    """Every merge field ``actor`` may use (the editor's picker): the visible fields of contacts and of
    companies, and the owner's name and address."""
    found: list[MergeField] = []
    for namespace, table in (("contact", "contacts"), ("company", "companies")):
        try:
            query = TableQuery(table, actor)
        except QueryError:
            continue
        title = query.entity.label
        for column in query.columns:
            if column.name == "id":
                continue
            found.append(MergeField(f"{namespace}.{column.name}", f"{title}: {column.spec.label}", namespace))
    labels = {
        "name": _("Name"),
        "first_name": _("First name"),
        "last_name": _("Last name"),
        "email": _("E-mail"),
    }
    for name in OWNER_FIELDS:
        found.append(MergeField(f"owner.{name}", f"{_('Owner')}: {labels[name]}", "owner"))
    return found


def unknown_fields(actor: Actor, *sources: str) -> list[str]:
    """The merge fields the sources name that ``actor`` cannot use (purged, hidden or never there)."""
    known = {f.key for f in merge_fields(actor)}
    return sorted(f"{ns}.{name}" for ns, name in named_fields(*sources) if f"{ns}.{name}" not in known)


def check(subject: str, html: str, text: str) -> None:
    """Refuses a template Jinja cannot parse (``TemplateError`` with the line)."""
    for source in (subject, html, text):
        _parse(source or "", _TEXT_ENV)


# --- the values of one recipient ----------------------------------------------------------------------------


def shown(query: TableQuery, row: Mapping[str, Any], names: set[str] | None = None) -> dict[str, str]:
    """A row's values as text, the way each field's type shows it (links and users by their labels); only
    the fields ``names`` lists when it is given."""
    labels = row.get("_labels") or {}
    values: dict[str, str] = {}
    for column in query.columns:
        if column.name not in row or (names is not None and column.name not in names):
            continue
        if column.name in labels:
            values[column.name] = labels[column.name] or ""
        else:
            value = row[column.name]
            values[column.name] = "" if value is None else REGISTRY[column.type].display(value, column.spec)
    return values


def merge_values(
    actor: Actor, contact_ids: Iterable[int], needed: set[tuple[str, str]] | None = None
) -> dict[int, dict[str, dict[str, str]]]:
    """For each contact ``actor`` may read: {"contact": {...}, "company": {...}, "owner": {...}}, every
    value as text the way its field type shows it; with ``needed`` (``named_fields`` of the templates) only
    those fields, and the contact's full name (a mailing shows a thousand contacts the same few fields)."""
    wanted: dict[str, set[str]] | None = None
    if needed is not None:
        wanted = {"contact": {"full_name"}, "company": set()}
        for namespace, name in needed:
            wanted.setdefault(namespace, set()).add(name)
    contacts_query = TableQuery("contacts", actor)
    contacts = contacts_query.rows_of(contact_ids)
    company_ids = {row.get("company_id") for row in contacts.values()} - {None}
    try:
        companies_query: TableQuery | None = TableQuery("companies", actor)
        companies = companies_query.rows_of(company_ids)
    except QueryError:
        companies_query, companies = None, {}
    owner_ids = {row.get("owner_id") for row in contacts.values()} - {None}
    owners: dict[int, dict[str, str]] = {}
    if owner_ids:
        for user in db.session.scalars(select(User).where(User.id.in_(sorted(owner_ids)))):
            name = " ".join(p for p in (user.first_name, user.last_name) if p) or user.username
            owners[user.id] = {
                "name": name,
                "first_name": user.first_name or "",
                "last_name": user.last_name or "",
                "email": user.email or "",
            }
    found: dict[int, dict[str, dict[str, str]]] = {}
    for contact_id, row in contacts.items():
        company = companies.get(row.get("company_id"))
        found[contact_id] = {
            "contact": shown(contacts_query, row, wanted and wanted["contact"]),
            "company": (
                shown(companies_query, company, wanted and wanted["company"])
                if company and companies_query
                else {}
            ),
            "owner": owners.get(row.get("owner_id"), {}),
        }
    return found


# --- rendering ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str
    text: str


class _Text(HTMLParser):
    """HTML to readable plain text: blocks on lines of their own, links as ``text (address)``."""

    BLOCKS = frozenset(
        {
            "p",
            "div",
            "br",
            "tr",
            "li",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "table",
            "ul",
            "ol",
            "blockquote",
            "hr",
            "section",
            "header",
            "footer",
        }
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0
        self.href: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script", "head", "title"):
            self.skip += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")
        if tag == "li":
            self.parts.append("- ")
        if tag == "a":
            self.href.append(dict(attrs).get("href"))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "head", "title"):
            self.skip = max(0, self.skip - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n")
        if tag == "a" and self.href:
            href = self.href.pop()
            if href and href.startswith(("http://", "https://", "mailto:")):
                self.parts.append(f" ({href.removeprefix('mailto:')})")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    """The plain-text part made from the HTML part."""
    parser = _Text()
    parser.feed(html)
    parser.close()
    lines = [line.strip() for line in "".join(parser.parts).split("\n")]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


_INLINER = css_inline.CSSInliner(load_remote_stylesheets=False, keep_link_tags=False)


def render(subject: str, html: str, text: str, values: Mapping[str, Any], unsubscribe_url: str) -> Rendered:
    """One recipient's message: the HTML with its values escaped and CSS inlined, the plain-text part as
    edited or made from the HTML, and an unsubscribe line in both."""
    context = {
        **{ns: {} for ns in NAMESPACES},
        **{name: dict(found or {}) for name, found in values.items()},
        "unsubscribe_url": unsubscribe_url,
    }
    try:
        shown_subject = " ".join(_compiled(subject or "", False).render(context).split())
        body = _compiled(html or "", True).render(context)
        plain = _compiled(text, False).render(context) if (text or "").strip() else ""
    except TemplateSyntaxError as exc:
        raise TemplateError(
            _(
                "The template has an error on line %(line)d: %(message)s",
                line=exc.lineno,
                message=exc.message or "",
            )
        ) from None
    except Exception as exc:  # noqa: BLE001 (the template is the user's: whatever it raises, e.g. 1 // 0, is its fault)
        raise TemplateError(
            _(
                "The template cannot be filled in: %(message)s",
                message=str(exc)[:200] or exc.__class__.__name__,
            )
        ) from None
    footer = _("Unsubscribe from these e-mails")
    if unsubscribe_url and "unsubscribe_url" not in (html or ""):
        body += (
            f'<p style="font-size:12px;color:#666"><a href="{html_lib.escape(unsubscribe_url)}">'
            f"{html_lib.escape(footer)}</a></p>"
        )
    try:
        inlined = _INLINER.inline(body)
    except ValueError:
        inlined = body
    plain = plain or html_to_text(body)
    if unsubscribe_url and "unsubscribe_url" not in (text or ""):
        plain = plain.rstrip("\n") + (f"\n\n{footer}: {unsubscribe_url}\n" if (text or "").strip() else "\n")
    return Rendered(shown_subject, inlined, plain)


# --- unsubscribing -----------------------------------------------------------------------------------------


def normalise_email(address: Any) -> str:
    return str(address or "").strip().lower()


def _signer() -> URLSafeSerializer:
    return _signer_of(current_app.config["SECRET_KEY"])


@functools.lru_cache(maxsize=4)
def _signer_of(secret: str | bytes) -> URLSafeSerializer:
    return URLSafeSerializer(secret, salt="tabula-unsubscribe")


def unsubscribe_token(email: str, mailing_id: int | None) -> str:
    return _signer().dumps([normalise_email(email), mailing_id])


def read_unsubscribe_token(token: Any) -> tuple[str, int | None] | None:
    """(e-mail, mailing id) of a token this installation signed, or None."""
    if not isinstance(token, str) or len(token) > 2000:
        return None
    try:
        found = _signer().loads(token)
    except BadSignature:
        return None
    if not (isinstance(found, list) and len(found) == 2 and isinstance(found[0], str)):
        return None
    mailing_id = found[1] if isinstance(found[1], int) and not isinstance(found[1], bool) else None
    return found[0], mailing_id


def unsubscribe_url(email: str, mailing_id: int | None) -> str:
    base = current_app.config["TABULA_BASE_URL"].rstrip("/")
    return f"{base}/mail/unsubscribe/{unsubscribe_token(email, mailing_id)}"


# --- MIME --------------------------------------------------------------------------------------------------


def message_id(mailing_id: int, recipient_id: int, sender: str) -> str:
    """The same Message-ID for the same (mailing, recipient), whoever builds it, however often."""
    domain = _domain_of(sender)
    digest = hashlib.sha256(f"{mailing_id}:{recipient_id}".encode()).hexdigest()[:16]
    return f"<tabula.{mailing_id}.{recipient_id}.{digest}@{domain}>"


@functools.lru_cache(maxsize=64)
def _domain_of(sender: str) -> str:
    return parseaddr(sender)[1].rpartition("@")[2] or "localhost"


class _ReusedHeaders(HeaderRegistry):
    """The header registry of ``policy.SMTP``, keeping the parsed headers it made last: most of a mailing's
    headers are the same in every message (From, MIME-Version, the parts' Content-Type and encoding), and
    parsing them is most of the time it takes to build one. Parsed headers are immutable strings."""

    @functools.lru_cache(maxsize=512)  # noqa: B019 (one registry for the process)
    def __call__(self, name: str, value: str) -> Any:
        return super().__call__(name, value)


#: ``policy.SMTP`` (CRLF line ends, RFC 5322 folding, UTF-8 encoded words), with the parsed headers reused.
SMTP_POLICY = policy.SMTP.clone(header_factory=_ReusedHeaders())


def build_message(
    rendered: Rendered,
    *,
    sender: str,
    to_email: str,
    to_name: str = "",
    reply_to: str = "",
    msg_id: str,
    unsubscribe: str,
) -> EmailMessage:
    """A multipart/alternative message (plain text, then HTML), UTF-8, with RFC 8058 one-click headers."""
    message = EmailMessage(policy=SMTP_POLICY)
    message["Subject"] = rendered.subject
    name, address = parseaddr(sender)
    message["From"] = formataddr((name, address)) if address else sender
    message["To"] = formataddr((to_name, to_email)) if to_name else to_email
    if reply_to:
        message["Reply-To"] = reply_to
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = msg_id
    if unsubscribe:
        message["List-Unsubscribe"] = f"<{unsubscribe}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(rendered.text, charset="utf-8", cte="quoted-printable")
    message.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return message


def _one_line(value: str) -> str:
    """A header value on one line (no CR or LF can sneak in a header of its own)."""
    return " ".join(str(value or "").split())


def _header(name: str, value: str) -> bytes:
    """One header, folded: ASCII as it is (folded at spaces), anything else as UTF-8 encoded words."""
    value = _one_line(value)
    if value.isascii():
        line = f"{name}: {value}"
        if len(line) <= 78:
            return line.encode("ascii") + b"\r\n"
        folded = Header(value, "us-ascii", header_name=name).encode(linesep="\r\n")
        return f"{name}: {folded}\r\n".encode("ascii")
    return f"{name}: {_encoded_words(value)}\r\n".encode("ascii")


def _encoded_words(value: str, size: int = 42) -> str:
    """RFC 2047 base64 encoded words of at most ``size`` UTF-8 bytes each (never splitting a character),
    one per folded line."""
    words, chunk, length = [], [], 0
    for char in value:
        width = len(char.encode("utf-8"))
        if length + width > size and chunk:
            words.append("".join(chunk))
            chunk, length = [], 0
        chunk.append(char)
        length += width
    if chunk:
        words.append("".join(chunk))
    return "\r\n ".join(f"=?utf-8?b?{base64.b64encode(w.encode('utf-8')).decode('ascii')}?=" for w in words)


def _mailbox(name: str, address: str) -> str:
    """``name <address>`` with the name quoted or encoded as it needs (the address is plain ASCII)."""
    name = _one_line(name)
    if not name:
        return address
    if name.isascii():
        return formataddr((name, address))
    return f"{_encoded_words(name)} <{address}>"


def _quoted_printable(text: str) -> bytes:
    """A text part as UTF-8 quoted-printable with CRLF line ends (lines of at most 76 characters)."""
    data = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n").encode("utf-8")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return binascii.b2a_qp(b"\r\n" + data, istext=True)[2:]


class MessageShape:
    """What the messages of one mailing share (sender, reply-to, the MIME skeleton), built once; ``bytes``
    then writes one recipient's message straight as RFC 5322 bytes: ``multipart/alternative`` (plain text,
    then HTML), UTF-8 quoted-printable, the subject and names as encoded words, the RFC 8058 headers. The
    same message ``build_message`` makes with the ``email`` package, at a fraction of its cost (a mailing
    builds thousands). The boundary holds ``=_``, which quoted-printable text can never contain."""

    def __init__(self, sender: str, reply_to: str = "") -> None:
        name, address = parseaddr(_one_line(sender))
        self.boundary = f"=_tabula_{hashlib.sha256(sender.encode()).hexdigest()[:24]}"
        head = _header("From", _mailbox(name, address) if address else _one_line(sender))
        if reply_to:
            head += _header("Reply-To", _one_line(reply_to))
        self.head = head
        self.tail = (
            "MIME-Version: 1.0\r\nContent-Type: multipart/alternative;\r\n"
            f' boundary="{self.boundary}"\r\n\r\n'
        ).encode("ascii")
        part = 'Content-Type: text/{}; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
        self.text_head = f"--{self.boundary}\r\n{part.format('plain')}".encode("ascii")
        self.html_head = f"--{self.boundary}\r\n{part.format('html')}".encode("ascii")
        self.end = f"--{self.boundary}--\r\n".encode("ascii")
        self._date = (0, b"")

    def date(self) -> bytes:
        now = int(time.time())
        if self._date[0] != now:
            self._date = (now, _header("Date", formatdate(now, usegmt=True)))
        return self._date[1]

    def bytes(
        self, rendered: Rendered, *, to_email: str, to_name: str = "", msg_id: str, unsubscribe: str
    ) -> bytes:
        if any(c in to_email for c in "\r\n") or not to_email.isascii():
            raise ValueError("an address needs plain ASCII on one line")
        parts = [
            _header("Subject", rendered.subject),
            self.head,
            _header("To", _mailbox(to_name, to_email)),
            self.date(),
            _header("Message-ID", msg_id),
        ]
        if unsubscribe:
            parts.append(f"List-Unsubscribe: <{_one_line(unsubscribe)}>\r\n".encode("ascii"))
            parts.append(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
        parts += [
            self.tail,
            self.text_head,
            _quoted_printable(rendered.text),
            self.html_head,
            _quoted_printable(rendered.html),
            self.end,
        ]
        return b"".join(parts)


def parseaddr_email(sender: str) -> str:
    """The bare address of a sender identity such as ``Отдел продаж <sales@example.com>``."""
    return parseaddr(sender)[1] or sender
