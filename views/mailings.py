"""Mailing screens, and the one public route: unsubscribing from a link in a message.

``/mail/unsubscribe/<token>``: the token (signed with the app's secret) names the address and the mailing.
A mail client's one-click button POSTs ``List-Unsubscribe=One-Click`` with no cookies (RFC 8058), so the
route is exempt from CSRF and needs no session; a GET (a person following the link, or a link scanner) only
shows a confirmation page whose button POSTs.
"""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_appbuilder import AppBuilder, BaseView, expose, has_access
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from markupsafe import escape
from sqlalchemy import select

from app.crm import mail_audience, mail_render, mail_results
from app.extensions import csrf, db
from custom_fields import saved_views
from custom_fields.access import Actor, is_admin
from custom_fields.query import QueryDenied, QueryError, TableQuery
from jobs import mail_automations, mail_sender, mailings
from jobs.mailings import MailingNotFound
from jobs.queues import JobQueueUnavailable
from models import Mailing, MailRecipient, MailTemplate

unsubscribe_bp = Blueprint("mail_unsubscribe", __name__)


def _page(**context: Any) -> str:
    appbuilder = current_app.appbuilder
    if "user" not in g:
        g.user = current_user
    return render_template(
        "tabula/mailings/unsubscribe.html",
        appbuilder=appbuilder,
        base_template=appbuilder.base_template,
        **context,
    )


@unsubscribe_bp.route("/mail/unsubscribe/<token>", methods=["GET", "POST"])
def unsubscribe(token: str) -> Any:
    found = mail_render.read_unsubscribe_token(token)
    if found is None:
        abort(404)
    email, mailing_id = found
    if request.method == "GET":
        return _page(email=email, done=mail_audience.is_opted_out(email), action=request.path)
    one_click = request.form.get("List-Unsubscribe") == "One-Click"
    mail_audience.opt_out(email, "one_click" if one_click else "link", mailing_id)
    if one_click:
        return "", 200
    return _page(email=email, done=True, action=request.path)


# --- the screens ------------------------------------------------------------------------------------------

STATUS_LABELS = {
    "draft": _l("Draft"),
    "sending": _l("Sending"),
    "paused": _l("Paused"),
    "cancelled": _l("Cancelled"),
    "done": _l("Finished"),
}
STATE_LABELS = {
    "queued": _l("Waiting"),
    "sending": _l("Being sent"),
    "sent": _l("Sent"),
    "failed": _l("Not delivered"),
    "skipped": _l("Skipped"),
    "held_out": _l("Control group"),
    "unknown": _l("Unknown, check"),
}
EXCLUSION_LABELS = {
    "matched": _l("Contacts in the view"),
    "no_consent": _l("Without e-mail consent"),
    "opted_out": _l("Opted out"),
    "invalid": _l("Invalid address"),
    "duplicate": _l("Repeated address"),
    "held_out": _l("Held out (control group)"),
    "to_send": _l("To be mailed"),
}
CONVERSION_LABELS = {
    "either": _l("A deal won or an invoice paid"),
    "deal_won": _l("A deal won"),
    "invoice_paid": _l("An invoice paid"),
}
AUTOMATION_LABELS = {
    "birthday": _l("Birthday greetings"),
    "overdue_invoice": _l("Overdue invoice reminders"),
    "task_reminder": _l("Task reminders"),
}
RECIPIENTS_SHOWN = 200


def _actor() -> Actor:
    return Actor.current("ui")


def _refused(error: QueryError, back: str) -> Any:
    """A refusal: 403/404 as such; anything else a message on the page it came from."""
    if isinstance(error, QueryDenied | MailingNotFound) or getattr(error, "status", 422) in (403, 404):
        abort(getattr(error, "status", 403), description=str(error))
    flash(str(error), "danger")
    return redirect(back)


def _first_contact(actor: Actor) -> int | None:
    try:
        rows = TableQuery("contacts", actor).fields("id").order_by("id").page(1).rows
    except QueryError:
        return None
    return rows[0]["id"] if rows else None


def _contact_arg(actor: Actor) -> int | None:
    raw = request.values.get("contact", "")
    if raw.isdecimal() and len(raw) < 12:
        return int(raw)
    return _first_contact(actor)


def _rendered_for(template: MailTemplate, actor: Actor, contact_id: int | None) -> mail_render.Rendered:
    values = mail_render.merge_values(actor, [contact_id]) if contact_id else {}
    if contact_id not in values:
        raise mailings.MailingRefused(_("Pick a contact you may see for the preview."))
    email = values[contact_id]["contact"].get("email") or ""
    return mail_render.render(
        template.subject, template.html, template.text, values[contact_id],
        mail_render.unsubscribe_url(email, None),
    )  # fmt: skip


class MailingsView(BaseView):
    route_base = "/mailings"
    default_view = "index"

    @expose("/")
    @has_access
    def index(self) -> Any:
        found = mailings.listed(_actor())
        progress = {m.id: mail_sender.counts(m.id) for m in found}
        return self.render_template(
            "tabula/mailings/index.html", mailings=found, progress=progress, status_labels=STATUS_LABELS,
            is_admin=is_admin(_actor()),
            server=mailings.mail_server_configured(), title=_("Mailings"),
        )  # fmt: skip

    # --- templates --------------------------------------------------------------------------------------

    @expose("/templates/")
    @has_access
    def templates(self) -> Any:
        try:
            mail_audience.mailing_query(_actor())
        except QueryError as error:
            return _refused(error, url_for("MailingsView.index"))
        found = db.session.scalars(select(MailTemplate).order_by(MailTemplate.name, MailTemplate.id)).all()
        return self.render_template(
            "tabula/mailings/templates.html", templates=found, title=_("E-mail templates")
        )

    @expose("/templates/new")
    @expose("/templates/<int(max=2147483647):template_id>")
    @has_access
    def template(self, template_id: int | None = None) -> Any:
        actor = _actor()
        try:
            mail_audience.mailing_query(actor)
            template = mailings.get_template(template_id, actor) if template_id else None
            fields = mail_render.merge_fields(actor)
        except QueryError as error:
            return _refused(error, url_for("MailingsView.index"))
        unknown = []
        if template is not None:
            try:
                unknown = mail_render.unknown_fields(actor, template.subject, template.html, template.text)
            except mail_render.TemplateError:
                unknown = []
        return self.render_template(
            "tabula/mailings/template.html", mail_template=template, fields=fields, unknown=unknown,
            contact=_first_contact(actor), title=template.name if template else _("New template"),
        )  # fmt: skip

    @expose("/templates/save", methods=["POST"])
    @has_access
    def save_template(self) -> Any:
        raw_id = request.form.get("id") or None
        back = request.referrer or url_for("MailingsView.templates")
        try:
            template = mailings.save_template(_actor(), request.form.to_dict(), raw_id)
        except QueryError as error:
            db.session.rollback()
            return _refused(error, back)
        flash(_("The template was saved."), "success")
        return redirect(url_for("MailingsView.template", template_id=template.id))

    @expose("/templates/<int(max=2147483647):template_id>/preview")
    @has_access
    def preview(self, template_id: int) -> Any:
        actor = _actor()
        try:
            template = mailings.get_template(template_id, actor)
            rendered = _rendered_for(template, actor, _contact_arg(actor))
        except QueryError as error:
            body = f"<p>{escape(str(error))}</p>"
            return _preview_response(body, 200 if getattr(error, "status", 422) == 422 else error.status)
        subject = escape(rendered.subject)
        return _preview_response(f"<p><strong>{subject}</strong></p><hr>{rendered.html}", 200)

    @expose("/templates/<int(max=2147483647):template_id>/test", methods=["POST"])
    @has_access
    def send_test(self, template_id: int) -> Any:
        actor = _actor()
        back = url_for("MailingsView.template", template_id=template_id)
        try:
            template = mailings.get_template(template_id, actor)
            if not mailings.mail_server_configured():
                raise mailings.MailingRefused(_(mailings.NO_SERVER))
            to = current_user.email or ""
            if not mail_audience.valid_email(to):
                raise mailings.MailingRefused(_("Your account has no valid e-mail address."))
            rendered = _rendered_for(template, actor, _contact_arg(actor))
        except QueryError as error:
            return _refused(error, back)
        failure = mail_sender.send_one(rendered, current_app.config["MAIL_FROM"], to)
        if failure is not None:
            flash(_("The test was not sent: %(reason)s", reason=failure.reason), "danger")
        else:
            flash(_("A test was sent to %(email)s.", email=to), "success")
        return redirect(back)

    # --- automatic mailings (admins) -------------------------------------------------------------------

    @expose("/automations/")
    @has_access
    def automations(self) -> Any:
        if not is_admin(_actor()):
            abort(403, description=_("Only admins configure automatic mailings."))
        found = [mail_automations.automation(kind) for kind in AUTOMATION_LABELS]
        templates = db.session.scalars(
            select(MailTemplate).order_by(MailTemplate.name, MailTemplate.id)
        ).all()
        return self.render_template(
            "tabula/mailings/automations.html", automations=found, labels=AUTOMATION_LABELS,
            logs={a.id: mail_automations.log_of(a, 20) for a in found}, templates=templates,
            state_labels=STATE_LABELS,
            server=mailings.mail_server_configured(), title=_("Automatic mailings"),
        )  # fmt: skip

    @expose("/automations/<kind>", methods=["POST"])
    @has_access
    def configure_automation(self, kind: str) -> Any:
        back = url_for("MailingsView.automations")
        if kind not in AUTOMATION_LABELS:
            abort(404)
        try:
            mail_automations.configure(kind, _actor(), request.form.to_dict())
        except QueryError as error:
            db.session.rollback()
            return _refused(error, back)
        flash(_("Saved."), "success")
        return redirect(back)

    # --- mailings ---------------------------------------------------------------------------------------

    @expose("/new")
    @has_access
    def new(self) -> Any:
        actor = _actor()
        try:
            mail_audience.mailing_query(actor)
            views = saved_views.listed("contacts", actor)
        except QueryError as error:
            return _refused(error, url_for("MailingsView.index"))
        found = db.session.scalars(select(MailTemplate).order_by(MailTemplate.name, MailTemplate.id)).all()
        return self.render_template(
            "tabula/mailings/new.html", templates=found, views=views, sender=current_app.config["MAIL_FROM"],
            server=mailings.mail_server_configured(), title=_("New mailing"),
        )  # fmt: skip

    @expose("/create", methods=["POST"])
    @has_access
    def create(self) -> Any:
        try:
            mailing = mailings.create(_actor(), request.form.to_dict())
        except QueryError as error:
            db.session.rollback()
            return _refused(error, url_for("MailingsView.new"))
        return redirect(url_for("MailingsView.show", mailing_id=mailing.id))

    def _mine(self, mailing_id: int) -> Mailing:
        try:
            return mailings.get(mailing_id, _actor())
        except QueryError:
            abort(404)

    @expose("/<int(max=2147483647):mailing_id>")
    @has_access
    def show(self, mailing_id: int) -> Any:
        mailing = self._mine(mailing_id)
        actor = _actor()
        counts = mailing.exclusions or {}
        problem = ""
        if mailing.status == "draft":
            try:
                counts = mailings.preview(mailing, actor)
            except QueryError as error:
                problem = str(error)
        state = request.args.get("state", "")
        recipients = select(MailRecipient).where(MailRecipient.mailing_id == mailing.id)
        if state in STATE_LABELS:
            recipients = recipients.where(MailRecipient.state == state)
        shown = db.session.scalars(recipients.order_by(MailRecipient.id).limit(RECIPIENTS_SHOWN)).all()
        template = db.session.get(MailTemplate, mailing.template_id) if mailing.template_id else None
        found = mail_results.results(mailing, actor) if mailing.status != "draft" else None
        return self.render_template(
            "tabula/mailings/show.html", mailing=mailing, progress=mailings.progress(mailing),
            counts=counts, exclusion_labels=EXCLUSION_LABELS, status_labels=STATUS_LABELS,
            state_labels=STATE_LABELS, recipients=shown, state=state, problem=problem, mail_template=template,
            results=found, conversion_labels=CONVERSION_LABELS,
            title=mailing.name,
        )  # fmt: skip

    @expose("/<int(max=2147483647):mailing_id>/results.xlsx")
    @has_access
    def download(self, mailing_id: int) -> Any:
        """The results as an Excel file."""
        mailing = self._mine(mailing_id)
        data = results_workbook(mailing, mail_results.results(mailing, _actor()))
        return Response(
            data,
            mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            headers={"Content-Disposition": f'attachment; filename="mailing-{mailing.id}-results.xlsx"'},
        )

    @expose("/<int(max=2147483647):mailing_id>/progress")
    @has_access
    def progress(self, mailing_id: int) -> Any:
        mailing = self._mine(mailing_id)
        found = mailings.progress(mailing)
        found["status_label"] = str(STATUS_LABELS.get(mailing.status, mailing.status))
        message = found["message"]
        found["message"] = _(message) if message else ""
        return jsonify(found)

    def _act(self, mailing_id: int, action: Any, done: str) -> Any:
        mailing = self._mine(mailing_id)
        back = url_for("MailingsView.show", mailing_id=mailing_id)
        try:
            action(mailing)
        except QueryError as error:
            db.session.rollback()
            return _refused(error, back)
        except JobQueueUnavailable:
            flash(_("The job queue (Redis) cannot be reached: press Resume once it is back."), "danger")
            return redirect(back)
        flash(done, "success")
        return redirect(back)

    @expose("/<int(max=2147483647):mailing_id>/start", methods=["POST"])
    @has_access
    def start(self, mailing_id: int) -> Any:
        return self._act(mailing_id, lambda m: mailings.start(m, _actor()), _("Sending has started."))

    @expose("/<int(max=2147483647):mailing_id>/pause", methods=["POST"])
    @has_access
    def pause(self, mailing_id: int) -> Any:
        return self._act(mailing_id, mailings.pause, _("The mailing is paused."))

    @expose("/<int(max=2147483647):mailing_id>/resume", methods=["POST"])
    @has_access
    def resume(self, mailing_id: int) -> Any:
        return self._act(mailing_id, lambda m: mailings.resume(m, _actor()), _("Sending goes on."))

    @expose("/<int(max=2147483647):mailing_id>/cancel", methods=["POST"])
    @has_access
    def cancel(self, mailing_id: int) -> Any:
        return self._act(mailing_id, mailings.cancel, _("The mailing is cancelled."))

    @expose("/<int(max=2147483647):mailing_id>/send-again", methods=["POST"])
    @has_access
    def send_again(self, mailing_id: int) -> Any:
        return self._act(
            mailing_id,
            lambda m: mailings.send_again(m, _actor()),
            _("The unknown recipients are queued again."),
        )


# Talisman reads a view's own policy from this attribute (what its ``@talisman(...)`` decorator sets): the
# preview is the user's HTML, shown in a sandbox with no script and nothing fetched but images.
MailingsView.preview.talisman_view_options = {
    "content_security_policy": {
        "sandbox": "",
        "default-src": "'none'",
        "style-src": "'unsafe-inline'",
        "img-src": ["https:", "data:"],
    },
    "content_security_policy_nonce_in": [],
}


def results_workbook(mailing: Mailing, found: mail_results.Results) -> bytes:
    """The results as an Excel sheet (text written as text: nothing becomes a formula)."""
    import io

    import xlsxwriter

    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(
        buffer, {"in_memory": True, "strings_to_formulas": False, "strings_to_urls": False}
    )
    sheet = book.add_worksheet(_("Results")[:31])
    percent = book.add_format({"num_format": "0.00%"})
    rows = [
        (_("Mailing"), mailing.name),
        (_("Mailed"), found.target),
        (_("Converted among the mailed"), found.target_converted),
        (_("Control group"), found.control),
        (_("Converted in the control group"), found.control_converted),
    ]
    for index, (label, value) in enumerate(rows):
        sheet.write_string(index, 0, str(label))
        if isinstance(value, str):
            sheet.write_string(index, 1, value)
        else:
            sheet.write_number(index, 1, value)
    if found.uplift is not None:
        at = len(rows)
        shares = (
            (_("Conversion, mailed"), found.uplift.target),
            (_("Conversion, control group"), found.uplift.control),
            (_("Uplift"), found.uplift.difference),
            (_("Lower bound, 95 percent interval"), found.uplift.low),
            (_("Upper bound, 95 percent interval"), found.uplift.high),
        )
        for offset, (label, value) in enumerate(shares):
            sheet.write_string(at + offset, 0, str(label))
            sheet.write_number(at + offset, 1, value, percent)
    sheet.write_string(len(rows) + 6, 0, found.verdict)
    sheet.set_column(0, 0, 40)
    sheet.set_column(1, 1, 24)
    book.close()
    return buffer.getvalue()


def _preview_response(body: str, status: int) -> Response:
    """The rendered message alone, in a sandbox: no script runs, no form submits, nothing is fetched but
    images."""
    document = f'<!doctype html><html><head><meta charset="utf-8"></head><body>{body}</body></html>'
    return Response(document, status=status, mimetype="text/html")


def register(appbuilder: AppBuilder) -> None:
    from views import add_view

    current_app.register_blueprint(unsubscribe_bp)
    csrf.exempt(unsubscribe_bp)
    add_view(appbuilder, MailingsView, "Mailings", label=_l("Mailings"), icon="fa-envelope", audience="staff")
