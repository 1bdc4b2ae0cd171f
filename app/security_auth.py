"""Sign-in and sign-out pages: Flask-AppBuilder's, with the brute-force lockout and a sign-out by POST only.

A GET of ``/logout/`` no longer signs out (a link, an image or a prefetch could do that): it shows a page
with a sign-out button that posts the form with its CSRF token.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, flash, g, redirect, request
from flask_appbuilder.security.decorators import no_cache
from flask_appbuilder.security.forms import LoginForm_db
from flask_appbuilder.security.views import AuthDBView
from flask_appbuilder.utils.base import get_safe_redirect
from flask_appbuilder.views import expose
from flask_babel import gettext as _
from flask_login import login_user, logout_user

from app import security_log, sessions
from app.login_throttle import LoginLocked


class TabulaAuthDBView(AuthDBView):
    @expose("/login/", methods=["GET", "POST"])
    @no_cache
    def login(self) -> Any:
        if g.user is not None and g.user.is_authenticated:
            return redirect(self._get_safe_next_url())
        form = LoginForm_db()
        if form.validate_on_submit():
            next_url = get_safe_redirect(request.args.get("next", ""))
            try:
                user = self.appbuilder.sm.auth_user_db(form.username.data, form.password.data)
            except LoginLocked as locked:
                flash(locked.message, "warning")
                return redirect(self.appbuilder.get_url_for_login_with(next_url))
            if not user:
                flash(str(self.invalid_login_message), "warning")
                return redirect(self.appbuilder.get_url_for_login_with(next_url))
            login_user(user, remember=False)
            return redirect(next_url)
        return self.render_template(
            self.login_template, title=self.title, form=form, appbuilder=self.appbuilder
        )

    @expose("/logout/", methods=["GET", "POST"])
    @no_cache
    def logout(self) -> Any:
        user = self._get_authenticated_user()
        if request.method == "GET":
            if user is None:
                return redirect(self.appbuilder.get_url_for_login)
            return self.render_template("tabula/logout.html", appbuilder=self.appbuilder, title=_("Sign out"))
        logout_user()
        sessions.end_this_session()
        if user is not None:
            security_log.record(security_log.LOGOUT, user.username)
            self.appbuilder.sm.on_user_logout(user)
        return redirect(current_app.config.get("LOGOUT_REDIRECT_URL", self.appbuilder.get_url_for_index))
