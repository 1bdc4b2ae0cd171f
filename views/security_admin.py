"""*System → Sign-in security*: locked user names and addresses (with an Unlock button each) and the newest
security events (failed sign-ins, lockouts, unlocks, ended sessions, sign-outs)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import flash, g, redirect, request, url_for
from flask_appbuilder import BaseView, expose, has_access
from flask_babel import gettext as _
from redis.exceptions import RedisError

from app import login_throttle, security_log

EVENTS_SHOWN = 200


class SignInSecurityView(BaseView):
    route_base = "/admin/security"
    default_view = "overview"
    class_permission_name = "SignInSecurity"
    method_permission_name = {"overview": "read", "unlock": "write"}

    @expose("/")
    @has_access
    def overview(self) -> Any:
        try:
            lockouts = login_throttle.lockouts()
            events = security_log.recent(EVENTS_SHOWN)
        except RedisError as exc:
            flash(_("Redis is unreachable: %(error)s", error=exc.__class__.__name__), "danger")
            lockouts, events = [], []
        return self.render_template(
            "tabula/security_admin.html",
            lockouts=lockouts,
            events=events,
            event_label=_event_label,
            until=lambda epoch: dt.datetime.fromtimestamp(epoch, dt.UTC),
        )

    @expose("/unlock", methods=["POST"])
    @has_access
    def unlock(self) -> Any:
        kind = request.form.get("kind", "")
        who = request.form.get("who", "")[: login_throttle.MAX_NAME]
        if not who or not login_throttle.unlock(kind, who, actor=g.user.username):
            flash(_("Nothing to unlock."), "warning")
        else:
            flash(_("Unlocked %(who)s.", who=who), "success")
        return redirect(url_for("SignInSecurityView.overview"))


def _event_label(kind: str) -> str:
    labels = {
        security_log.LOGIN_FAILED: _("Failed sign-in"),
        security_log.LOCKED: _("Locked out"),
        security_log.UNLOCKED: _("Unlocked"),
        security_log.SESSIONS_ENDED: _("Sessions ended"),
        security_log.LOGOUT: _("Signed out"),
    }
    return labels.get(kind, kind)
